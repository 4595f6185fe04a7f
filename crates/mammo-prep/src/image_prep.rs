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
    /// background (labels, markers) blanked -> chest wall to the left -> normalised.
    pub fn new(m: &Mammogram, source_spacing_mm: f64, spacing_mm: f64) -> Self {
        let (sw, sh) = (m.width, m.height);
        let (w, h) = working_size(sw, sh, source_spacing_mm, spacing_mm);
        let mut image = resample::resize(&m.density_values(), w, h);
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
        PreparedImage { image, breast, flipped, source_size: (sw, sh) }
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

/// The working size of a `w` x `h` image resampled from `from_mm` to `to_mm`.
pub fn working_size(w: usize, h: usize, from_mm: f64, to_mm: f64) -> (usize, usize) {
    (resample::scaled_size(w, from_mm, to_mm), resample::scaled_size(h, from_mm, to_mm))
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
        let p = PreparedImage::new(&m, 0.2, 0.4);
        assert!(p.flipped);
        assert_eq!((p.image.width, p.image.height), (100, 50));
        // The breast is now on the left; its box in prepared pixels maps back to the right of the source.
        let b = p.box_to_source(0, 0, 40, 50);
        assert_eq!(b, [120, 0, 80, 100]);
        let back = p.map_to_source(&p.breast.map(|v| v as f32));
        assert_eq!((back.width, back.height), (w, h));
        assert!(back.get(190, 50) > 0.5 && back.get(10, 50) < 0.5);
    }
}
