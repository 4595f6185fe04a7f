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
    /// Per image: the normal linear structures (ducts, Cooper's ligaments).
    Lines = 8,
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

/// A log-normal deviate with the given median and log-space standard deviation `sigma`, truncated to
/// `[lo, hi]` (`0 < lo <= hi`). Drawn by inverting the CDF between the bounds, so it takes exactly one
/// uniform (the streams after it do not shift) and is the same distribution as re-drawing until the
/// value falls within the bounds, without the loop: pinned bounds are honoured exactly, however far
/// they are from the median. Where the bounds hold no measurable probability (deep in a tail) the draw
/// is log-uniform between them.
pub(crate) fn truncated_lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64, lo: f64, hi: f64) -> f64 {
    let u: f64 = rng.random();
    let (mu, a, b) = (median.ln(), lo.ln(), hi.ln());
    if hi <= lo || sigma <= 0.0 {
        return median.clamp(lo, hi);
    }
    let (za, zb) = ((a - mu) / sigma, (b - mu) / sigma);
    // Above the median, work with upper-tail probabilities: they keep their precision far out.
    let z = if za > 0.0 {
        let (qa, qb) = (normal_sf(za), normal_sf(zb));
        (qa - qb > 1e-300).then(|| -normal_quantile(qb + u * (qa - qb)))
    } else {
        let (pa, pb) = (normal_cdf(za), normal_cdf(zb));
        (pb - pa > 1e-300).then(|| normal_quantile(pa + u * (pb - pa)))
    };
    match z {
        Some(z) => (mu + sigma * z).exp().clamp(lo, hi),
        None => (a + u * (b - a)).exp().clamp(lo, hi),
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Standard normal CDF.
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Standard normal upper tail, 1 - CDF.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Standard normal quantile for `p` in (0, 1) (Acklam's rational approximation, relative error below
/// 1.2e-9); clamped to +-40 at the ends.
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    const P_LOW: f64 = 0.02425;
    if p <= 0.0 {
        return -40.0;
    }
    if p >= 1.0 {
        return 40.0;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
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

    #[test]
    fn normal_quantile_inverts_the_cdf() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_cdf(1.959964) - 0.975).abs() < 1e-6);
        for i in 1..1000 {
            let p = i as f64 / 1000.0;
            assert!((normal_cdf(normal_quantile(p)) - p).abs() < 1e-6, "{p}");
        }
        for z in [3.0, 5.0, 8.0] {
            assert!((normal_quantile(normal_sf(z)) + z).abs() < 1e-3 * z, "{z}");
        }
    }

    #[test]
    fn truncated_lognormal_stays_within_its_bounds() {
        let mut rng = stream(2, Purpose::Breast, 0, 0);
        for (lo, hi) in [(5.0, 30.0), (8.0, 25.0), (40.0, 45.0), (400.0, 500.0), (0.1, 0.2), (7.0, 7.0)] {
            for _ in 0..2000 {
                let d = truncated_lognormal(&mut rng, 14.0, 0.5, lo, hi);
                assert!(d >= lo && d <= hi, "{d} outside {lo}..{hi}");
            }
        }
    }
}
