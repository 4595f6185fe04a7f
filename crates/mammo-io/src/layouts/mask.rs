//! Rasterising lesion annotations into binary masks at an image's size.

use crate::error::{IoError, Result};
use crate::image::GrayImage;

use super::MaskSource;

/// A 0/1 mask of `width` x `height`.
pub fn rasterize(mask: &MaskSource, width: usize, height: usize) -> Result<GrayImage<u8>> {
    let mut out = GrayImage::<u8>::new(width, height);
    match mask {
        MaskSource::File { path } => {
            let m = crate::read_image(path)?;
            if m.width == width && m.height == height {
                for (o, i) in out.data.iter_mut().zip(0..m.samples.len()) {
                    *o = (m.samples.get(i) != 0) as u8;
                }
            } else {
                // Nearest-neighbour scaling: some CBIS-DDSM masks are a few pixels off the image size.
                let ratio = (m.width as f64 / width as f64, m.height as f64 / height as f64);
                if (ratio.0 - ratio.1).abs() > 0.05 {
                    return Err(IoError::format(
                        path,
                        format!(
                            "mask is {} x {} but its image is {width} x {height} (different aspect ratio)",
                            m.width, m.height
                        ),
                    ));
                }
                for y in 0..height {
                    let sy = ((y as f64 + 0.5) * ratio.1) as usize;
                    for x in 0..width {
                        let sx = ((x as f64 + 0.5) * ratio.0) as usize;
                        out.data[y * width + x] =
                            (m.samples.get(sy.min(m.height - 1) * m.width + sx.min(m.width - 1)) != 0) as u8;
                    }
                }
            }
        }
        MaskSource::Disk { cx, cy, r } => {
            let (x0, x1) = (((cx - r).floor().max(0.0)) as usize, ((cx + r).ceil() as usize + 1).min(width));
            let (y0, y1) = (((cy - r).floor().max(0.0)) as usize, ((cy + r).ceil() as usize + 1).min(height));
            for y in y0..y1 {
                for x in x0..x1 {
                    let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                    if dx * dx + dy * dy <= r * r {
                        out.data[y * width + x] = 1;
                    }
                }
            }
        }
        MaskSource::Rect { x0, y0, x1, y1 } => {
            let clamp = |v: f64, hi: usize| v.round().clamp(0.0, hi as f64) as usize;
            for y in clamp(*y0, height)..clamp(*y1, height) {
                for x in clamp(*x0, width)..clamp(*x1, width) {
                    out.data[y * width + x] = 1;
                }
            }
        }
        MaskSource::Polygon { points } => fill_polygon(&mut out, points),
    }
    Ok(out)
}

/// Even-odd scanline fill, sampling pixel centres.
fn fill_polygon(out: &mut GrayImage<u8>, points: &[(f64, f64)]) {
    if points.len() < 3 {
        return;
    }
    let ymin = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).floor().max(0.0) as usize;
    let ymax = (points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).ceil().max(0.0) as usize).min(out.height);
    let mut xs = Vec::new();
    for y in ymin..ymax {
        let yc = y as f64 + 0.5;
        xs.clear();
        for i in 0..points.len() {
            let (a, b) = (points[i], points[(i + 1) % points.len()]);
            if (a.1 <= yc) != (b.1 <= yc) {
                xs.push(a.0 + (yc - a.1) / (b.1 - a.1) * (b.0 - a.0));
            }
        }
        xs.sort_by(|a, b| a.total_cmp(b));
        for pair in xs.chunks_exact(2) {
            let x0 = (pair[0] - 0.5).ceil().max(0.0) as usize;
            let x1 = ((pair[1] - 0.5).floor() + 1.0).clamp(0.0, out.width as f64) as usize;
            for x in x0..x1 {
                out.data[y * out.width + x] = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_rect_and_polygon_have_the_expected_areas() {
        let d = rasterize(&MaskSource::Disk { cx: 50.0, cy: 50.0, r: 10.0 }, 100, 100).unwrap();
        let area: usize = d.data.iter().map(|&v| v as usize).sum();
        assert!((area as f64 - std::f64::consts::PI * 100.0).abs() < 12.0, "{area}");
        let r = rasterize(&MaskSource::Rect { x0: 10.0, y0: 20.0, x1: 30.0, y1: 25.0 }, 100, 100).unwrap();
        assert_eq!(r.data.iter().map(|&v| v as usize).sum::<usize>(), 100);
        let square = vec![(10.0, 10.0), (20.0, 10.0), (20.0, 20.0), (10.0, 20.0)];
        let p = rasterize(&MaskSource::Polygon { points: square }, 100, 100).unwrap();
        assert_eq!(p.data.iter().map(|&v| v as usize).sum::<usize>(), 100);
        assert_eq!(p.get(10, 10), 1);
        assert_eq!(p.get(20, 20), 0);
    }
}
