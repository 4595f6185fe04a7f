//! Resampling to a target pixel spacing. Downsampling a 0.07 mm image to 0.4 mm without a low-pass
//! filter would alias the fine texture that the models learn from, so this is a separable resampler with
//! a triangle (linear) kernel widened by the scale factor, like an area average.

use mammo_io::GrayImage;
use rayon::prelude::*;

/// Resizes `img` to `out_w` x `out_h`.
///
/// Output rows are independent, so both passes run over rows with rayon: explain maps its highlight
/// and breast mask back to the source's full 10-30 megapixels this way. Each value is the same sum in
/// the same order whatever the thread count.
pub fn resize(img: &GrayImage<f32>, out_w: usize, out_h: usize) -> GrayImage<f32> {
    let horizontal = weights(img.width, out_w);
    // Rows first (contiguous), then columns.
    let mut tmp = vec![0f32; out_w * img.height];
    tmp.par_chunks_mut(out_w).zip(img.data.par_chunks(img.width)).for_each(|(out, row)| {
        filter_row(row, &horizontal, out);
    });
    columns(&tmp, img.height, out_w, out_h)
}

/// [`resize`] of a `w` x `h` image given a row at a time: `row(y, buf)` writes row `y` (`w` values)
/// into `buf`. The same bits as [`resize`] of the whole image, without it: the downsampling of a
/// full-field mammogram reads its stored samples, not a 48 MB float copy of them.
pub fn resize_rows(
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    row: impl Fn(usize, &mut [f32]) + Sync,
) -> GrayImage<f32> {
    let horizontal = weights(w, out_w);
    let mut tmp = vec![0f32; out_w * h];
    tmp.par_chunks_mut(out_w).enumerate().for_each_init(
        || vec![0f32; w],
        |buf, (y, out)| {
            row(y, buf);
            filter_row(buf, &horizontal, out);
        },
    );
    columns(&tmp, h, out_w, out_h)
}

/// The horizontal pass of one row: each output, its weights times the row from their start.
fn filter_row(row: &[f32], horizontal: &[(usize, Vec<f32>)], out: &mut [f32]) {
    for (o, (start, w)) in out.iter_mut().zip(horizontal) {
        *o = w.iter().zip(&row[*start..]).map(|(a, b)| a * b).sum();
    }
}

/// The vertical pass: `tmp` (`h_in` rows of `out_w`) to `out_h` rows.
fn columns(tmp: &[f32], h_in: usize, out_w: usize, out_h: usize) -> GrayImage<f32> {
    let vertical = weights(h_in, out_h);
    let mut out = vec![0f32; out_w * out_h];
    out.par_chunks_mut(out_w).zip(vertical.par_iter()).for_each(|(dst, (start, w))| {
        for (k, wk) in w.iter().enumerate() {
            let src = &tmp[(start + k) * out_w..(start + k + 1) * out_w];
            if k == 0 {
                // The first term is written, not added: `+=` on a fresh page of the zeroed buffer read
                // it first, which maps the kernel's shared zero page, so the write then faulted again
                // and flushed the other cores' TLBs (an IPI per 4 KiB page, an eighth of explain's
                // CPU time on a 2-core VM). `0.0 +` keeps the sum's bits (it turns -0.0 into +0.0).
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = 0.0 + wk * s;
                }
            } else {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += wk * s;
                }
            }
        }
    });
    GrayImage::from_vec(out_w, out_h, out)
}

/// Resizes a 0/1 mask: a pixel is inside when at least half of its footprint was.
pub fn resize_mask(mask: &GrayImage<u8>, out_w: usize, out_h: usize) -> GrayImage<u8> {
    resize(&mask.map(|v| (v != 0) as u8 as f32), out_w, out_h).map(|v| (v >= 0.5) as u8)
}

/// For each output sample: the first input index and the normalised kernel weights.
fn weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / n_out as f64;
    let support = scale.max(1.0);
    (0..n_out)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(n_in);
            let mut w: Vec<f32> = (lo..hi)
                .map(|i| {
                    let d = ((i as f64 + 0.5) - centre).abs() / support;
                    (1.0 - d).max(0.0) as f32
                })
                .collect();
            let sum: f32 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|x| *x /= sum);
            } else {
                // Degenerate: nearest sample.
                let nearest = (centre as usize).min(n_in - 1);
                return (nearest, vec![1.0]);
            }
            (lo, w)
        })
        .collect()
}

/// Output size for resampling from `from_mm` to `to_mm` spacing (at least one pixel).
pub fn scaled_size(size: usize, from_mm: f64, to_mm: f64) -> usize {
    ((size as f64 * from_mm / to_mm).round() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_stays_constant_and_means_are_kept() {
        let img = GrayImage::from_vec(40, 30, vec![3.5f32; 1200]);
        let r = resize(&img, 10, 7);
        assert!(r.data.iter().all(|v| (v - 3.5).abs() < 1e-5));
        let ramp = GrayImage::from_vec(100, 1, (0..100).map(|i| i as f32).collect());
        let r = resize(&ramp, 25, 1);
        let mean: f32 = r.data.iter().sum::<f32>() / 25.0;
        assert!((mean - 49.5).abs() < 0.6, "{mean}");
        let up = resize(&ramp, 200, 1);
        assert_eq!(up.width, 200);
    }

    /// The vertical pass writes its first term instead of adding it to a zeroed buffer: the same bits
    /// as the plain accumulation (negative zeros and signed values included), down and up.
    #[test]
    fn first_term_written_gives_the_accumulated_bits() {
        let (w, h) = (13, 11);
        // The top rows all -0.0: outputs there are sums of -0.0 alone, where the start's +0.0 shows.
        let data: Vec<f32> = (0..w * h)
            .map(|i| match i % 7 {
                _ if i < 4 * w => -0.0,
                0 => -0.0,
                1 => 0.0,
                k => (i as f32 * 0.37).sin() * 10f32.powi(k as i32 - 4),
            })
            .collect();
        let img = GrayImage::from_vec(w, h, data);
        for (ow, oh) in [(5, 4), (13, 11), (40, 31), (1, 1)] {
            let got = resize(&img, ow, oh);
            // The accumulation as it was: every term added to +0.0.
            let (hz, vt) = (weights(w, ow), weights(h, oh));
            let tmp: Vec<f32> = (0..h)
                .flat_map(|y| {
                    let row = &img.data[y * w..(y + 1) * w];
                    hz.iter().map(move |(start, wt)| wt.iter().zip(&row[*start..]).map(|(a, b)| a * b).sum::<f32>())
                })
                .collect();
            let mut want = vec![0f32; ow * oh];
            for (y, (start, wt)) in vt.iter().enumerate() {
                for (k, wk) in wt.iter().enumerate() {
                    for x in 0..ow {
                        want[y * ow + x] += wk * tmp[(start + k) * ow + x];
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.data), bits(&want), "{ow} x {oh}");
        }
    }

    #[test]
    fn rows_given_one_at_a_time_resize_to_the_same_bits() {
        let (w, h) = (37, 23);
        let img = GrayImage::from_vec(w, h, (0..w * h).map(|i| (i as f32 * 0.731).cos() * 100.0).collect());
        for (ow, oh) in [(9, 6), (37, 23), (80, 50)] {
            let whole = resize(&img, ow, oh);
            let by_rows = resize_rows(w, h, ow, oh, |y, row| row.copy_from_slice(&img.data[y * w..(y + 1) * w]));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&by_rows.data), bits(&whole.data), "{ow} x {oh}");
        }
    }

    #[test]
    fn mask_area_is_preserved_approximately() {
        let mut m = GrayImage::<u8>::new(100, 100);
        for y in 20..60 {
            for x in 30..70 {
                m.set(x, y, 1);
            }
        }
        let r = resize_mask(&m, 25, 25);
        let area: usize = r.data.iter().map(|&v| v as usize).sum();
        assert!((area as i64 - 100).abs() <= 12, "{area}");
    }
}
