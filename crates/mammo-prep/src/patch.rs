//! Patch extraction: lesion-centred patches with positional jitter (so a model cannot learn "the lesion is
//! always in the middle"), and normal-tissue patches from the breast away from every lesion.

use mammo_io::GrayImage;
use mammo_io::layouts::Label;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How patches are cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchParams {
    /// Side in pixels at the target spacing.
    pub size: usize,
    /// Patches per lesion (each with its own jitter).
    pub per_lesion: usize,
    /// Maximum offset of the lesion centre from the patch centre, as a fraction of the patch side. At
    /// least a quarter: whole-image inference slides tiles every half patch, so the tile nearest a
    /// lesion may have it up to a quarter of a side off centre in each direction.
    pub jitter: f64,
    /// Normal-tissue patches per image.
    pub normal_per_image: usize,
    /// A normal patch must be at least this much breast (default: what explain's tiles need,
    /// [`crate::tiling::MIN_BREAST_FRACTION`]).
    pub min_breast_fraction: f64,
    /// Clearance between a normal patch and any lesion pixel, in pixels.
    pub lesion_clearance: usize,
}

impl Default for PatchParams {
    fn default() -> Self {
        PatchParams {
            size: 64,
            per_lesion: 4,
            jitter: 0.3,
            normal_per_image: 4,
            min_breast_fraction: crate::tiling::MIN_BREAST_FRACTION,
            lesion_clearance: 8,
        }
    }
}

/// One cut patch in the prepared image's coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub label: Label,
    /// Top-left corner in the prepared (oriented, resampled) image; may be negative near the border,
    /// where the patch is padded with background.
    pub x: i64,
    pub y: i64,
    /// Normalised intensities in [0, 1].
    pub pixels: Vec<f32>,
    /// Bit 0: lesion, bit 1: malignancy features, bit 2: breast.
    pub mask: Vec<u8>,
}

pub const MASK_LESION: u8 = 1;
pub const MASK_FEATURES: u8 = 2;
pub const MASK_BREAST: u8 = 4;

/// The prepared image and its masks, all at the same size.
pub struct Prepared<'a> {
    pub image: &'a GrayImage<f32>,
    pub breast: &'a GrayImage<u8>,
    /// Per lesion: (label, lesion mask, feature mask).
    pub lesions: &'a [(Label, GrayImage<u8>, GrayImage<u8>)],
}

impl Prepared<'_> {
    fn cut(&self, label: Label, x: i64, y: i64, size: usize) -> Patch {
        let (w, h) = (self.image.width as i64, self.image.height as i64);
        let mut pixels = vec![0f32; size * size];
        let mut mask = vec![0u8; size * size];
        for py in 0..size as i64 {
            let sy = y + py;
            if sy < 0 || sy >= h {
                continue;
            }
            for px in 0..size as i64 {
                let sx = x + px;
                if sx < 0 || sx >= w {
                    continue;
                }
                let (s, d) = ((sy * w + sx) as usize, (py * size as i64 + px) as usize);
                pixels[d] = self.image.data[s];
                let mut m = if self.breast.data[s] != 0 { MASK_BREAST } else { 0 };
                for (_, lesion, features) in self.lesions {
                    if lesion.data[s] != 0 {
                        m |= MASK_LESION;
                    }
                    if features.data[s] != 0 {
                        m |= MASK_FEATURES;
                    }
                }
                mask[d] = m;
            }
        }
        Patch { label, x, y, pixels, mask }
    }
}

/// Cuts every patch of one prepared image.
pub fn extract(prep: &Prepared, params: &PatchParams, rng: &mut impl Rng) -> Vec<Patch> {
    let size = params.size as i64;
    let mut out = Vec::new();
    for (label, lesion, _) in prep.lesions {
        let Some((cx, cy)) = centroid(lesion) else { continue };
        let max_jitter = params.jitter * params.size as f64;
        for _ in 0..params.per_lesion {
            let (jx, jy) = if max_jitter > 0.0 {
                (rng.random_range(-max_jitter..=max_jitter), rng.random_range(-max_jitter..=max_jitter))
            } else {
                (0.0, 0.0)
            };
            let x = (cx + jx - size as f64 / 2.0).round() as i64;
            let y = (cy + jy - size as f64 / 2.0).round() as i64;
            out.push(prep.cut(*label, x, y, params.size));
        }
    }
    out.extend(normal_patches(prep, params, rng));
    out
}

fn normal_patches(prep: &Prepared, params: &PatchParams, rng: &mut impl Rng) -> Vec<Patch> {
    let (w, h, size) = (prep.image.width, prep.image.height, params.size);
    if w < size || h < size || params.normal_per_image == 0 {
        return Vec::new();
    }
    let breast_sum = IntegralImage::new(prep.breast);
    let mut any_lesion = GrayImage::<u8>::new(w, h);
    for (_, lesion, _) in prep.lesions {
        for (a, b) in any_lesion.data.iter_mut().zip(&lesion.data) {
            *a |= *b;
        }
    }
    let lesion_sum = IntegralImage::new(&any_lesion);
    let c = params.lesion_clearance;
    let need = (params.min_breast_fraction * (size * size) as f64).ceil() as u64;
    let mut out = Vec::new();
    // Bounded attempts: a small or mostly-lesion breast simply yields fewer normal patches.
    for _ in 0..params.normal_per_image * 50 {
        if out.len() == params.normal_per_image {
            break;
        }
        let x = rng.random_range(0..=w - size);
        let y = rng.random_range(0..=h - size);
        if breast_sum.sum(x, y, x + size, y + size) < need {
            continue;
        }
        let (x0, y0) = (x.saturating_sub(c), y.saturating_sub(c));
        let (x1, y1) = ((x + size + c).min(w), (y + size + c).min(h));
        if lesion_sum.sum(x0, y0, x1, y1) > 0 {
            continue;
        }
        out.push(prep.cut(Label::Normal, x as i64, y as i64, size));
    }
    out
}

/// Centre of mass of a 0/1 mask.
pub fn centroid(mask: &GrayImage<u8>) -> Option<(f64, f64)> {
    let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
    for (i, &v) in mask.data.iter().enumerate() {
        if v != 0 {
            sx += (i % mask.width) as f64 + 0.5;
            sy += (i / mask.width) as f64 + 0.5;
            n += 1.0;
        }
    }
    (n > 0.0).then(|| (sx / n, sy / n))
}

/// Summed-area table for O(1) box counts.
struct IntegralImage {
    w: usize,
    sums: Vec<u64>,
}

impl IntegralImage {
    fn new(mask: &GrayImage<u8>) -> Self {
        let w = mask.width + 1;
        let mut sums = vec![0u64; w * (mask.height + 1)];
        for y in 0..mask.height {
            let mut row = 0u64;
            for x in 0..mask.width {
                row += (mask.data[y * mask.width + x] != 0) as u64;
                sums[(y + 1) * w + x + 1] = sums[y * w + x + 1] + row;
            }
        }
        IntegralImage { w, sums }
    }
    /// Count in [x0, x1) x [y0, y1).
    fn sum(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> u64 {
        let s = |x: usize, y: usize| self.sums[y * self.w + x];
        s(x1, y1) + s(x0, y0) - s(x0, y1) - s(x1, y0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lesion_patches_contain_the_lesion_and_normal_patches_avoid_it() {
        let (w, h) = (200, 200);
        let image = GrayImage::from_vec(w, h, vec![0.5f32; w * h]);
        let breast = GrayImage::from_vec(w, h, vec![1u8; w * h]);
        let mut lesion = GrayImage::<u8>::new(w, h);
        for y in 95..105 {
            for x in 45..55 {
                lesion.set(x, y, 1);
            }
        }
        let features = GrayImage::<u8>::new(w, h);
        let lesions = vec![(Label::Malignant, lesion, features)];
        let prep = Prepared { image: &image, breast: &breast, lesions: &lesions };
        let params = PatchParams { size: 32, ..PatchParams::default() };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let patches = extract(&prep, &params, &mut rng);
        let (les, norm): (Vec<_>, Vec<_>) = patches.iter().partition(|p| p.label == Label::Malignant);
        assert_eq!(les.len(), 4);
        assert_eq!(norm.len(), 4);
        for p in les {
            assert!(p.mask.iter().any(|m| m & MASK_LESION != 0));
        }
        for p in norm {
            assert!(p.mask.iter().all(|m| m & MASK_LESION == 0));
            assert!(p.mask.iter().all(|m| m & MASK_BREAST != 0));
        }
    }
}
