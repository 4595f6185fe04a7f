//! Data augmentation on CPU arrays, before a batch is uploaded: flips, 90-degree rotations, and small
//! intensity and contrast jitter.
//!
//! Mammographic patches have no preferred orientation once the chest wall is left (lesions can point
//! any way), so the eight flips/rotations are free extra data. Intensity jitter is kept small: the
//! patches are already normalised per breast, and large changes would erase the density cue.

use rand::Rng;

/// Which augmentations to draw and how strong.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Random horizontal and vertical flips.
    pub flip: bool,
    /// Random rotation by 0, 90, 180 or 270 degrees.
    pub rotate90: bool,
    /// Uniform additive offset in [-x, x].
    pub intensity_jitter: f32,
    /// Scale about the patch mean by a factor uniform in [1-x, 1+x].
    pub contrast_jitter: f32,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment { flip: false, rotate90: false, intensity_jitter: 0.0, contrast_jitter: 0.0 };

    /// Whether this changes nothing.
    pub fn is_identity(&self) -> bool {
        !self.flip && !self.rotate90 && self.intensity_jitter == 0.0 && self.contrast_jitter == 0.0
    }

    /// Augments one square patch of side `size` in place. Draws a fixed number of values from `rng`
    /// whatever the switches, so turning one augmentation off does not shift the others' draws.
    /// Returns the symmetry it applied, for the patch's mask.
    pub fn apply(&self, patch: &mut [f32], size: usize, rng: &mut impl Rng) -> Geometry {
        debug_assert_eq!(patch.len(), size * size);
        let flip_h = rng.random::<bool>();
        let flip_v = rng.random::<bool>();
        let quarter_turns = rng.random_range(0..4u8);
        let offset = rng.random_range(-1.0f32..=1.0) * self.intensity_jitter;
        let gain = 1.0 + rng.random_range(-1.0f32..=1.0) * self.contrast_jitter;
        let geometry = Geometry {
            flip_h: self.flip && flip_h,
            flip_v: self.flip && flip_v,
            quarter_turns: if self.rotate90 { quarter_turns } else { 0 },
        };
        geometry.apply(patch, size);
        if self.intensity_jitter > 0.0 || self.contrast_jitter > 0.0 {
            let mean = patch.iter().map(|&v| v as f64).sum::<f64>() as f32 / patch.len() as f32;
            for v in patch.iter_mut() {
                *v = ((*v - mean) * gain + mean + offset).clamp(0.0, 1.0);
            }
        }
        geometry
    }
}

/// One of the eight symmetries of the square.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Geometry {
    /// Mirror left-right.
    pub flip_h: bool,
    /// Mirror top-bottom.
    pub flip_v: bool,
    /// Counter-clockwise quarter turns after flipping (0..4).
    pub quarter_turns: u8,
}

impl Geometry {
    /// The eight symmetries of the square: four quarter turns, each with and without a mirror.
    pub fn all() -> [Geometry; 8] {
        std::array::from_fn(|i| Geometry { flip_h: i >= 4, flip_v: false, quarter_turns: (i % 4) as u8 })
    }

    /// Applies the symmetry to a square array of side `size` (any element type: pixels or masks).
    pub fn apply<T: Copy>(&self, data: &mut [T], size: usize) {
        if *self == Geometry::default() {
            return;
        }
        let src = data.to_vec();
        for y in 0..size {
            for x in 0..size {
                // Where does output (x, y) come from? Undo the rotation, then the flips.
                let (mut sx, mut sy) = (x, y);
                for _ in 0..self.quarter_turns % 4 {
                    // A counter-clockwise turn maps source (sx, sy) to (sy, size-1-sx); invert it.
                    (sx, sy) = (size - 1 - sy, sx);
                }
                if self.flip_h {
                    sx = size - 1 - sx;
                }
                if self.flip_v {
                    sy = size - 1 - sy;
                }
                data[y * size + x] = src[sy * size + sx];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn four_quarter_turns_are_the_identity_and_flips_invert() {
        let orig: Vec<u32> = (0..16).collect();
        let mut a = orig.clone();
        let turn = Geometry { quarter_turns: 1, ..Default::default() };
        turn.apply(&mut a, 4);
        assert_ne!(a, orig);
        for _ in 0..3 {
            turn.apply(&mut a, 4);
        }
        assert_eq!(a, orig);
        let flip = Geometry { flip_h: true, ..Default::default() };
        flip.apply(&mut a, 4);
        assert_eq!(&a[..4], &[3, 2, 1, 0]);
        flip.apply(&mut a, 4);
        assert_eq!(a, orig);
    }

    #[test]
    fn all_gives_the_eight_distinct_symmetries_of_the_square() {
        let orig: Vec<u32> = (0..9).collect();
        let mut seen: Vec<Vec<u32>> = Geometry::all()
            .iter()
            .map(|g| {
                let mut a = orig.clone();
                g.apply(&mut a, 3);
                a
            })
            .collect();
        assert_eq!(seen[0], orig, "the first is the identity");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn augmentation_keeps_range_and_is_reproducible() {
        let aug = Augment { flip: true, rotate90: true, intensity_jitter: 0.1, contrast_jitter: 0.2 };
        let patch: Vec<f32> = (0..64).map(|i| i as f32 / 63.0).collect();
        let mut a = patch.clone();
        let mut b = patch.clone();
        aug.apply(&mut a, 8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        aug.apply(&mut b, 8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        let mut c = patch.clone();
        Augment::NONE.apply(&mut c, 8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        assert_eq!(c, patch);
    }
}
