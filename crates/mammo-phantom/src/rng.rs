//! Deterministic random streams.
//!
//! Every random decision is drawn from a ChaCha8 stream whose 256-bit key is `(seed, purpose, a, b)`.
//! Keying by purpose and by the case's own coordinates (patient, breast, image index) rather than by
//! position in one long stream is what makes a case depend on `(seed, index)` alone: cases can be
//! generated in any order, in parallel, or one at a time, and adding a draw for one purpose never
//! shifts the numbers another purpose sees.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a stream is for. The discriminants are part of the output format: changing one changes every
/// phantom generated with any seed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// Per synthetic woman: density, breast size, compression.
    Patient = 1,
    /// Per breast (woman, side): the lesion and its shape, shared by the breast's two views.
    Breast = 2,
    /// Per image: outline, pectoral muscle, lesion projection and placement.
    View = 3,
    /// Per image: the fibroglandular texture.
    Texture = 4,
    /// Per image: quantum noise.
    Noise = 5,
    /// Per block of breasts: the stratified assignment of normal / benign / malignant.
    Classes = 6,
    /// Per image: the CBIS-DDSM-only descriptors (assessment, subtlety).
    Cbis = 7,
}

/// The stream for `purpose` at coordinates `(a, b)`.
pub(crate) fn stream(seed: u64, purpose: Purpose, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&a.to_le_bytes());
    key[24..32].copy_from_slice(&b.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Uniform in `[lo, hi)`; unlike `random_range` it accepts `lo == hi` (a parameter range collapsed to
/// a value).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Standard normal deviates by the Box-Muller transform, two per pair of uniforms. Written here rather
/// than taken from `rand_distr` so the sequence is pinned by this crate, not by a dependency's version.
pub(crate) struct Gaussian {
    spare: Option<f64>,
}

impl Gaussian {
    pub(crate) fn new() -> Self {
        Gaussian { spare: None }
    }

    pub(crate) fn sample(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| stream(7, Purpose::View, 3, 0).random()).collect();
        let b: Vec<u64> = (0..4).map(|_| stream(7, Purpose::View, 3, 0).random()).collect();
        assert_eq!(a, b);
        let x: u64 = stream(7, Purpose::View, 3, 0).random();
        let y: u64 = stream(7, Purpose::Texture, 3, 0).random();
        let z: u64 = stream(8, Purpose::View, 3, 0).random();
        assert!(x != y && x != z);
    }

    #[test]
    fn gaussian_has_unit_variance() {
        let mut rng = stream(1, Purpose::Noise, 0, 0);
        let mut g = Gaussian::new();
        let v: Vec<f64> = (0..20000).map(|_| g.sample(&mut rng)).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
