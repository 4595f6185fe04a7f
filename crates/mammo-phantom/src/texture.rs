//! Fibroglandular texture: Gaussian random fields with a power-law spectrum, P(k) ~ 1/k^beta.
//!
//! Mammographic parenchyma has a power spectrum close to a power law with beta about 3 (Burgess et al.,
//! Med. Phys. 2001; Heine & Velthuizen 2002), which is what makes masses hard to see: the "anatomical
//! noise" has most of its power at the scale of the lesions. We synthesise the field in the frequency
//! domain on a power-of-two grid: random phases, amplitude k^(-beta/2), one inverse FFT.
//!
//! One complex inverse FFT gives two fields for the price of one: with an even (k -> -k symmetric)
//! amplitude and independent random phases, the real and imaginary parts of the result are two
//! uncorrelated real fields with the same spectrum.

use std::f32::consts::TAU;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustfft::num_complex::Complex32;
use rustfft::{FftDirection, FftPlannerScalar};

/// How a texture is shaped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextureSpec {
    /// Spectral exponent: P(k) ~ k^-beta.
    pub beta: f64,
    /// Grid spacing in mm, so that the cut-offs are physical.
    pub spacing_mm: f64,
    /// Below this spatial frequency (cycles/mm) the spectrum is flat. Without it a beta = 3 field is
    /// dominated by one or two grid-sized blobs; with it the largest structures are about 1/k0 mm.
    pub k0_per_mm: f64,
    /// Stretch of the structures along `angle` (1 = isotropic). Ducts and Cooper's ligaments run
    /// towards the nipple, so the texture is elongated along that axis. A homogeneous anisotropy
    /// leaves the radially averaged spectrum a power law with the same exponent.
    pub anisotropy: f64,
    /// Direction of elongation in radians (0 = along the image rows).
    pub angle: f64,
}

/// Two independent zero-mean, unit-variance fields on a `gw` x `gh` grid (both powers of two),
/// row-major.
pub(crate) fn power_law_pair(gw: usize, gh: usize, spec: &TextureSpec, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<f32>) {
    assert!(gw.is_power_of_two() && gh.is_power_of_two());
    let s = spec.spacing_mm as f32;
    let (sin, cos) = (spec.angle as f32).sin_cos();
    let aniso = spec.anisotropy as f32;
    let k0 = spec.k0_per_mm as f32;
    let half_beta = (spec.beta / 2.0) as f32;
    let freq = |i: usize, n: usize| -> f32 {
        let i = if i < n / 2 { i as f32 } else { i as f32 - n as f32 };
        i / (n as f32 * s)
    };
    let amplitude = |r: usize, c: usize| -> f32 {
        let (kx, ky) = (freq(c, gw), freq(r, gh));
        // Rotate into the texture's frame; compressing the spectrum along the elongation axis
        // stretches the structures along it.
        let u = kx * cos + ky * sin;
        let v = -kx * sin + ky * cos;
        let k = ((u * aniso) * (u * aniso) + v * v).sqrt().max(k0);
        k.powf(-half_beta)
    };
    // The amplitude is even: at (-ky, -kx) every product and sum above is negated exactly, so k and the
    // amplitude are the same bits. Rows past the middle read the mirrored rows' amplitudes (kept from
    // the first half) instead of calling `powf` again: half the work, the same field. The Nyquist
    // column is its own mirror with the same sign (-gw/2), so it is not mirrored.
    let half = gh / 2;
    let mut kept = vec![0f32; (half + 1) * gw];
    let mut buf = vec![Complex32::new(0.0, 0.0); gw * gh];
    for r in 0..gh {
        for c in 0..gw {
            let amp = if r <= half || c == gw / 2 {
                let a = amplitude(r, c);
                if r <= half {
                    kept[r * gw + c] = a;
                }
                a
            } else {
                kept[(gh - r) * gw + (gw - c) % gw]
            };
            let phase = rng.random::<f32>() * TAU;
            buf[r * gw + c] = Complex32::from_polar(amp, phase);
        }
    }
    buf[0] = Complex32::new(0.0, 0.0);
    fft2(&mut buf, gw, gh, FftDirection::Inverse);
    let mut re: Vec<f32> = buf.iter().map(|z| z.re).collect();
    let mut im: Vec<f32> = buf.iter().map(|z| z.im).collect();
    standardise(&mut re);
    standardise(&mut im);
    (re, im)
}

/// Shifts and scales to zero mean and unit variance (sums in f64, in a fixed order: deterministic).
fn standardise(v: &mut [f32]) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 };
    for x in v {
        *x = ((*x as f64 - mean) * inv) as f32;
    }
}

/// In-place 2-D FFT of a row-major `w` x `h` buffer (unnormalised).
///
/// The scalar planner is used on purpose: the SIMD planners pick AVX/SSE code paths at run time, whose
/// different operation order would make the same seed give different bits on different machines.
pub(crate) fn fft2(buf: &mut [Complex32], w: usize, h: usize, dir: FftDirection) {
    let mut planner = FftPlannerScalar::<f32>::new();
    planner.plan_fft(w, dir).process(buf);
    let mut t = vec![Complex32::new(0.0, 0.0); w * h];
    transpose(buf, &mut t, w, h);
    planner.plan_fft(h, dir).process(&mut t);
    transpose(&t, buf, h, w);
}

/// `dst` (`w` rows of `h`) = the transpose of `src` (`h` rows of `w`), in cache-sized tiles.
fn transpose(src: &[Complex32], dst: &mut [Complex32], w: usize, h: usize) {
    const T: usize = 32;
    for r0 in (0..h).step_by(T) {
        for c0 in (0..w).step_by(T) {
            for r in r0..(r0 + T).min(h) {
                for c in c0..(c0 + T).min(w) {
                    dst[c * h + r] = src[r * w + c];
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::{Purpose, stream};

    /// Radially averaged power spectrum of a square n x n real field: `p[k]` for integer radii k in
    /// cycles per grid.
    pub(crate) fn radial_power(field: &[f32], n: usize) -> Vec<f64> {
        let mut buf: Vec<Complex32> = field.iter().map(|&x| Complex32::new(x, 0.0)).collect();
        fft2(&mut buf, n, n, FftDirection::Forward);
        let mut sum = vec![0.0f64; n];
        let mut count = vec![0usize; n];
        for r in 0..n {
            let ky = if r < n / 2 { r as f64 } else { r as f64 - n as f64 };
            for c in 0..n {
                let kx = if c < n / 2 { c as f64 } else { c as f64 - n as f64 };
                let k = (kx * kx + ky * ky).sqrt().round() as usize;
                if k < n {
                    sum[k] += buf[r * n + c].norm_sqr() as f64;
                    count[k] += 1;
                }
            }
        }
        sum.iter().zip(&count).map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 }).collect()
    }

    /// Least-squares slope of log P against log k over `k0..=k1`.
    pub(crate) fn spectral_slope(p: &[f64], k0: usize, k1: usize) -> f64 {
        let pts: Vec<(f64, f64)> = (k0..=k1).map(|k| ((k as f64).ln(), p[k].ln())).collect();
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>();
        let sxx = pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
        sxy / sxx
    }

    #[test]
    fn fft2_round_trips() {
        let (w, h) = (8, 4);
        let orig: Vec<Complex32> = (0..w * h).map(|i| Complex32::new(i as f32, (i % 3) as f32)).collect();
        let mut b = orig.clone();
        fft2(&mut b, w, h, FftDirection::Forward);
        fft2(&mut b, w, h, FftDirection::Inverse);
        for (a, b) in orig.iter().zip(&b) {
            assert!((a - b / (w * h) as f32).norm() < 1e-4);
        }
    }

    #[test]
    fn measured_spectral_slope_matches_beta_over_mid_frequencies() {
        let n = 256;
        for (i, beta) in [2.5, 3.0, 3.5].into_iter().enumerate() {
            for anisotropy in [1.0, 1.6] {
                // k0 = 1/25 mm at 0.2 mm spacing is 2 cycles per grid; fit well above it and below the
                // corner frequencies where the square grid's radial bins are incomplete.
                let spec = TextureSpec { beta, spacing_mm: 0.2, k0_per_mm: 1.0 / 25.0, anisotropy, angle: 0.4 };
                let (re, im) = power_law_pair(n, n, &spec, &mut stream(i as u64, Purpose::Texture, 0, 0));
                for field in [&re, &im] {
                    let mean = field.iter().sum::<f32>() / field.len() as f32;
                    assert!(mean.abs() < 1e-3);
                    let slope = spectral_slope(&radial_power(field, n), 8, n / 4);
                    assert!((slope + beta).abs() < 0.3, "beta {beta} anisotropy {anisotropy}: slope {slope}");
                }
            }
        }
    }

    #[test]
    fn the_two_fields_are_uncorrelated() {
        let spec = TextureSpec { beta: 3.0, spacing_mm: 0.4, k0_per_mm: 0.04, anisotropy: 1.3, angle: 0.0 };
        let (re, im) = power_law_pair(128, 64, &spec, &mut stream(3, Purpose::Texture, 0, 0));
        let corr = re.iter().zip(&im).map(|(a, b)| (a * b) as f64).sum::<f64>() / re.len() as f64;
        assert!(corr.abs() < 0.15, "{corr}");
    }
}
