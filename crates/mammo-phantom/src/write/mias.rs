//! An imitation of mini-MIAS (Suckling et al., 1994; the 200 µm, 8-bit version):
//!
//! ```text
//! mdb001.pgm  mdb002.pgm ...   8-bit binary PGM (P5), 1024 x 1024, 200 µm; MLO views only;
//!                              mdb001 (right) and mdb002 (left) are one woman, and so on
//! Info.txt                     REFNUM BG CLASS SEVERITY X Y RADIUS, one line per abnormality,
//!                              `REFNUM BG NORM` for normal images; written last
//! ```
//!
//! BG is the background tissue (F fatty, G fatty-glandular, D dense-glandular, from the woman's
//! density); CLASS is CIRC for our benign (circumscribed) masses and SPIC for malignant (spiculated) ones;
//! SEVERITY B or M. X and Y are the lesion centre in pixels with the origin at the **bottom-left**
//! corner, as in MIAS: `X = round(cx)`, `Y = round(1024 - cy)` for a centre (cx, cy) in top-left
//! continuous pixel coordinates. RADIUS (pixels) is that of a circle about the centre enclosing the
//! whole lesion, spicules included.

use std::path::Path;

use mammo_io::layouts::Label;
use mammo_io::{GrayImage, Laterality, atomic, pgm};

use super::parallel;
use super::phantom::case_label_of;
use crate::{Density, GeneratedCase, OutputFormat, PhantomError, PhantomParams, PhantomSummary, generate_case};

/// The table of a mini-MIAS directory.
pub const MIAS_INFO: &str = "Info.txt";
const SIZE: usize = 1024;
const MIAS_SPACING_MM: f64 = 0.2;

/// The phantom image shown as mini-MIAS image `k` (0-based, file `mdb{k+1}`): woman `k / 2`'s right MLO
/// for even `k`, her left MLO for odd `k`. The MIAS documentation: "the list is arranged in pairs of
/// films, where each pair represents the left (even filename numbers) and right mammograms (odd filename
/// numbers) of a single patient".
pub(crate) fn mias_index(k: usize) -> usize {
    4 * (k / 2) + if k % 2 == 0 { 3 } else { 1 }
}

pub(super) fn write(
    dir: &Path,
    params: &PhantomParams,
    progress: &dyn Fn(usize, usize),
) -> Result<PhantomSummary, PhantomError> {
    let job = |k: usize| -> Result<(Vec<String>, Label), PhantomError> {
        let case = generate_case(params, mias_index(k));
        let name = format!("mdb{:03}", k + 1);
        let (canvas, lesions) = to_mias(&case, params);
        pgm::write_pgm(&dir.join(format!("{name}.pgm")), &canvas, 255)?;
        let bg = Density::parse(&case.meta.density).map_or("G", Density::mias);
        let lines = if lesions.is_empty() {
            vec![format!("{name} {bg} NORM")]
        } else {
            lesions
                .iter()
                .map(|(label, x, y, r)| {
                    let (class, severity) = if *label == Label::Malignant { ("SPIC", "M") } else { ("CIRC", "B") };
                    format!("{name} {bg} {class} {severity} {x} {y} {r}")
                })
                .collect()
        };
        Ok((lines, case_label_of(&case.meta)))
    };
    let results = parallel(params.cases, &job, progress)?;
    let mut info = String::new();
    for (lines, _) in &results {
        for l in lines {
            info.push_str(l);
            info.push('\n');
        }
    }
    atomic::write_bytes(&dir.join(MIAS_INFO), info.as_bytes())?;
    let labels: Vec<Label> = results.iter().map(|r| r.1).collect();
    Ok(super::summarise(dir, OutputFormat::Mias, &labels, 0, params.cases + 1))
}

/// Resamples to 200 µm, converts to 8 bits and places the breast on a 1024 x 1024 canvas with the chest
/// wall on its edge and the breast centred vertically (cropping or padding with black). Returns the
/// canvas and, per lesion, (label, X, Y, RADIUS) in MIAS coordinates.
fn to_mias(case: &GeneratedCase, params: &PhantomParams) -> (GrayImage<u16>, Vec<(Label, i64, i64, i64)>) {
    let f = params.spacing_mm / MIAS_SPACING_MM;
    let img = resample(&case.image, f);
    let (w, h) = (img.width as i64, img.height as i64);
    let n = SIZE as i64;
    let lesions: Vec<(Label, f64, f64, f64)> = case
        .meta
        .lesions
        .iter()
        .zip(&case.lesion_masks)
        .map(|(l, m)| (l.label, l.cx * f, l.cy * f, enclosing_radius(m, l.cx, l.cy) * f))
        .collect();
    // Offsets of the resampled image on the canvas; when it is larger than the canvas, keep the lesions.
    let offset = |ideal: i64, extent: i64, centres: Vec<(f64, f64)>| -> i64 {
        if extent <= n {
            return ideal;
        }
        let (mut lo, mut hi) = (n - extent, 0);
        for (c, r) in centres {
            lo = lo.max((r - c).ceil() as i64);
            hi = hi.min((n as f64 - r - c).floor() as i64);
        }
        if lo > hi { ideal.clamp(n - extent, 0) } else { ideal.clamp(lo, hi) }
    };
    let ideal_x = if case.meta.laterality == Laterality::Left { 0 } else { n - w };
    let ox = offset(ideal_x, w, lesions.iter().map(|l| (l.1, l.3)).collect());
    let oy = offset((n - h).div_euclid(2), h, lesions.iter().map(|l| (l.2, l.3)).collect());
    let full = ((1u32 << params.bits_stored) - 1) as f32;
    // The breast's values are 0.25..0.85 of the full scale: map 0.85 to white.
    let scale = 255.0 / (0.85 * full);
    let mut canvas = GrayImage::<u16>::new(SIZE, SIZE);
    for y in 0..n {
        let sy = y - oy;
        if sy < 0 || sy >= h {
            continue;
        }
        for x in 0..n {
            let sx = x - ox;
            if sx < 0 || sx >= w {
                continue;
            }
            let v = img.data[(sy * w + sx) as usize] * scale;
            canvas.data[(y * n + x) as usize] = v.round().clamp(0.0, 255.0) as u16;
        }
    }
    let placed = lesions
        .into_iter()
        .map(|(label, cx, cy, r)| {
            let (cx, cy) = (cx + ox as f64, cy + oy as f64);
            (label, cx.round() as i64, (n as f64 - cy).round() as i64, r.ceil() as i64)
        })
        .collect();
    (canvas, placed)
}

/// Radius (pixels) of the circle about (cx, cy) that encloses every mask pixel entirely.
fn enclosing_radius(mask: &GrayImage<u8>, cx: f64, cy: f64) -> f64 {
    let mut r2 = 0.0f64;
    for y in 0..mask.height {
        for x in 0..mask.width {
            if mask.data[y * mask.width + x] != 0 {
                r2 = r2.max((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2));
            }
        }
    }
    r2.sqrt() + std::f64::consts::FRAC_1_SQRT_2
}

/// Resamples by `f` output pixels per input pixel: bilinear, averaged over `ceil(1/f)`² sub-samples per
/// output pixel when shrinking so that fine texture does not alias.
fn resample(img: &GrayImage<u16>, f: f64) -> GrayImage<f32> {
    if (f - 1.0).abs() < 1e-9 {
        return img.map(|v| v as f32);
    }
    let (w, h) = (img.width, img.height);
    let (w2, h2) = (((w as f64 * f).round() as usize).max(1), ((h as f64 * f).round() as usize).max(1));
    let n = (1.0 / f).ceil().max(1.0) as usize;
    let at = |x: usize, y: usize| img.data[y.min(h - 1) * w + x.min(w - 1)] as f64;
    let bilinear = |sx: f64, sy: f64| -> f64 {
        let (sx, sy) = (sx.clamp(0.0, (w - 1) as f64), sy.clamp(0.0, (h - 1) as f64));
        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
        let (tx, ty) = (sx - x0 as f64, sy - y0 as f64);
        let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1, y0) * tx;
        let bottom = at(x0, y0 + 1) * (1.0 - tx) + at(x0 + 1, y0 + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    };
    let mut out = GrayImage::<f32>::new(w2, h2);
    for y in 0..h2 {
        for x in 0..w2 {
            let mut acc = 0.0;
            for j in 0..n {
                for i in 0..n {
                    let sx = (x as f64 + (i as f64 + 0.5) / n as f64) / f - 0.5;
                    let sy = (y as f64 + (j as f64 + 0.5) / n as f64) / f - 0.5;
                    acc += bilinear(sx, sy);
                }
            }
            out.data[y * w2 + x] = (acc / (n * n) as f64) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_one_womans_left_and_right_mlo() {
        use crate::case_slot;
        for k in 0..6 {
            let s = case_slot(mias_index(k));
            assert_eq!(s.patient, k / 2);
            assert_eq!(s.view, mammo_io::View::MLO);
            assert_eq!(s.laterality, if k % 2 == 0 { Laterality::Right } else { Laterality::Left });
        }
    }

    #[test]
    fn resampling_keeps_a_constant_and_the_size() {
        let img = GrayImage::from_vec(10, 6, vec![100u16; 60]);
        let r = resample(&img, 0.5);
        assert_eq!((r.width, r.height), (5, 3));
        assert!(r.data.iter().all(|&v| (v - 100.0).abs() < 1e-3));
        let r = resample(&img, 2.0);
        assert_eq!((r.width, r.height), (20, 12));
    }
}
