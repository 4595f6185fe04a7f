//! The per-image half of preparation, shared by `prepare` (which then cuts patches) and `explain` (which
//! slides models over the whole breast and maps the result back onto the original image).

use mammo_io::{GrayImage, Mammogram};

use crate::{normalize, orient, resample, segment};

/// A mammogram at the working spacing: density values normalised to [0, 1] inside the breast, background
/// 0, chest wall on the left.
pub struct PreparedImage {
    pub image: GrayImage<f32>,
    pub breast: GrayImage<u8>,
    /// Whether the source was mirrored to put the chest wall on the left.
    pub flipped: bool,
    /// The source image's size in pixels.
    pub source_size: (usize, usize),
}

impl PreparedImage {
    /// Decoded image -> density -> resample from `source_spacing_mm` to `spacing_mm` -> breast mask ->
    /// background (labels, markers) blanked -> chest wall to the left -> normalised. Both spacings and
    /// the resampled size are checked first ([`checked_working_size`]): nothing is allocated from a
    /// spacing in the wrong unit.
    pub fn new(m: &Mammogram, source_spacing_mm: f64, spacing_mm: f64) -> Result<Self, GeometryError> {
        let (sw, sh) = (m.width, m.height);
        let (w, h) = checked_working_size(sw, sh, source_spacing_mm, spacing_mm)?;
        let density = m.density_rows();
        let mut image = resample::resize_rows(sw, sh, w, h, |y, row| density.row(y, row));
        let breast = segment::breast_mask(&image);
        for (v, b) in image.data.iter_mut().zip(&breast.data) {
            if *b == 0 {
                *v = 0.0;
            }
        }
        let flipped = orient::chest_wall_on_right(&breast);
        let (mut image, breast) =
            if flipped { (orient::flip_horizontal(&image), orient::flip_horizontal(&breast)) } else { (image, breast) };
        normalize::normalize(&mut image, &breast);
        Ok(PreparedImage { image, breast, flipped, source_size: (sw, sh) })
    }

    /// Brings a source-resolution mask (e.g. a lesion annotation) into this image's geometry.
    pub fn mask_from_source(&self, mask: &GrayImage<u8>) -> GrayImage<u8> {
        let m = resample::resize_mask(mask, self.image.width, self.image.height);
        if self.flipped { orient::flip_horizontal(&m) } else { m }
    }

    /// Brings a map computed on this image (same size) back to the source image's size and orientation.
    pub fn map_to_source(&self, map: &GrayImage<f32>) -> GrayImage<f32> {
        let unflipped = if self.flipped { orient::flip_horizontal(map) } else { map.clone() };
        resample::resize(&unflipped, self.source_size.0, self.source_size.1)
    }

    /// A box `(x, y, w, h)` in this image's pixels, in the source image's pixel coordinates.
    pub fn box_to_source(&self, x: i64, y: i64, w: i64, h: i64) -> [i64; 4] {
        let (sx, sy) =
            (self.source_size.0 as f64 / self.image.width as f64, self.source_size.1 as f64 / self.image.height as f64);
        let x = if self.flipped { self.image.width as i64 - x - w } else { x };
        [
            (x as f64 * sx).round() as i64,
            (y as f64 * sy).round() as i64,
            (w as f64 * sx).round() as i64,
            (h as f64 * sy).round() as i64,
        ]
    }
}

/// The working size of a `w` x `h` image resampled from `from_mm` to `to_mm` (unchecked: see
/// [`checked_working_size`]).
pub fn working_size(w: usize, h: usize, from_mm: f64, to_mm: f64) -> (usize, usize) {
    (resample::scaled_size(w, from_mm, to_mm), resample::scaled_size(h, from_mm, to_mm))
}

/// The most pixels a resampled (working) image may have. The largest detector made is 24 x 30 cm;
/// this is that detector at 0.045 mm, finer than any working spacing a patch model uses (0.4 mm by
/// default) and as fine as the finest detectors' pitch, so no real mammogram at a sane spacing comes
/// near it. A [`PreparedImage`] holds about three images of this size at once (the f32 image, the resampler's
/// intermediate, the mask), so this bounds one image's preparation to roughly 0.5 GiB.
pub const MAX_WORKING_PIXELS: usize = 32 * 1024 * 1024;

/// Why an image cannot be prepared at the spacings asked for: one line, without the file's name (the
/// caller knows it).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GeometryError(pub String);

/// [`working_size`], after checking both spacings against [`mammo_io::physical::SPACING_MM`] and the
/// result against [`MAX_WORKING_PIXELS`]; the size is computed in floating point first, so no spacing
/// can overflow it. Shared by `prepare`, `explain` and the server.
pub fn checked_working_size(w: usize, h: usize, from_mm: f64, to_mm: f64) -> Result<(usize, usize), GeometryError> {
    if let Some(p) = mammo_io::physical::spacing_problem(from_mm) {
        return Err(GeometryError(format!("source {p}")));
    }
    if let Some(p) = mammo_io::physical::spacing_problem(to_mm) {
        return Err(GeometryError(format!("working {p}")));
    }
    let scale = from_mm / to_mm;
    let (fw, fh) = ((w as f64 * scale).round().max(1.0), (h as f64 * scale).round().max(1.0));
    if fw * fh > MAX_WORKING_PIXELS as f64 {
        return Err(GeometryError(format!(
            "{w} x {h} px at {from_mm} mm resampled to {to_mm} mm would be {fw} x {fh} px \
             (more than {MAX_WORKING_PIXELS}); is the pixel spacing right?"
        )));
    }
    Ok(working_size(w, h, from_mm, to_mm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mammo_io::{ImageInfo, Samples, SourceKind};

    #[test]
    fn boxes_and_maps_return_to_the_source_geometry() {
        // A 200 x 100 image at 0.2 mm, breast against the right edge (so it gets flipped), to 0.4 mm.
        let (w, h) = (200, 100);
        let data: Vec<u16> = (0..w * h).map(|i| if i % w >= 120 { 3000 + (i % 7) as u16 } else { 0 }).collect();
        let m = Mammogram {
            width: w,
            height: h,
            samples: Samples::Unsigned(data),
            info: ImageInfo::plain(SourceKind::Png { bit_depth: 16 }, 12),
        };
        let p = PreparedImage::new(&m, 0.2, 0.4).unwrap();
        assert!(p.flipped);
        assert_eq!((p.image.width, p.image.height), (100, 50));
        // The breast is now on the left; its box in prepared pixels maps back to the right of the source.
        let b = p.box_to_source(0, 0, 40, 50);
        assert_eq!(b, [120, 0, 80, 100]);
        let back = p.map_to_source(&p.breast.map(|v| v as f32));
        assert_eq!((back.width, back.height), (w, h));
        assert!(back.get(190, 50) > 0.5 && back.get(10, 50) < 0.5);
    }

    #[test]
    fn spacings_in_the_wrong_unit_and_oversized_results_are_refused_before_allocating() {
        assert_eq!(checked_working_size(3000, 4000, 0.1, 0.4), Ok((750, 1000)));
        // A header spacing of 50 mm (cm or µm mistaken for mm), a --spacing of 1000 or 1e300, a working
        // spacing of 0.0001: each a one-line error, not an allocation of terabytes.
        let e = checked_working_size(64, 64, 50.0, 0.4).unwrap_err().0;
        assert_eq!(e, "source pixel spacing 50 mm is outside 0.01..=1 mm (mammography detectors are 0.025-0.2 mm)");
        for bad in [1000.0, 1e300, f64::INFINITY, f64::NAN, 0.0, -1.0] {
            assert!(checked_working_size(64, 64, bad, 0.4).unwrap_err().0.starts_with("source pixel spacing"));
        }
        let e = checked_working_size(64, 64, 0.1, 0.0001).unwrap_err().0;
        assert!(e.starts_with("working pixel spacing 0.0001 mm is outside"), "{e}");
        // Both spacings sane, but the result too large: a 20000 x 20000 PNG at 1 mm to 0.01 mm.
        let e = checked_working_size(20000, 20000, 1.0, 0.01).unwrap_err().0;
        assert!(e.contains("would be 2000000 x 2000000 px (more than 33554432)"), "{e}");
        // The largest detector at its finest pitch, to the default working spacing, is fine.
        assert!(checked_working_size(9600, 12000, 0.025, 0.4).is_ok());
        // And PreparedImage refuses the same before touching the pixels.
        let m = Mammogram {
            width: 64,
            height: 64,
            samples: Samples::Unsigned(vec![0; 64 * 64]),
            info: ImageInfo::plain(SourceKind::Png { bit_depth: 16 }, 12),
        };
        assert!(PreparedImage::new(&m, 1000.0, 0.4).is_err());
    }
}
