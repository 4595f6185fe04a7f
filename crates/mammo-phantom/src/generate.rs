//! From `(seed, index)` to an image and its ground truth.

use mammo_io::layouts::{Label, PhantomCase, PhantomLesion};
use mammo_io::{GrayImage, Laterality, View};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::anatomy::{Anatomy, Breast, PatientAnatomy};
use crate::lesion::{LesionShape, Placed};
use crate::linear;
use crate::rng::{Gaussian, Purpose, stream, uniform};
use crate::texture::{TextureSpec, power_law_pair};
use crate::{GeneratedCase, PhantomParams};

/// Images per synthetic woman: L-CC, L-MLO, R-CC, R-MLO, in that order.
pub const VIEWS_PER_PATIENT: usize = 4;

/// Where an image index falls: which woman, which breast, which view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CaseSlot {
    /// 0-based synthetic woman (`index / 4`).
    pub patient: usize,
    /// The breast.
    pub laterality: Laterality,
    /// CC or MLO.
    pub view: View,
}

impl CaseSlot {
    /// The phantom's own patient key, written to `phantom.json` (`PH-00012`); deliberately not the fake
    /// DICOM PatientID, which must never be needed downstream.
    pub fn patient_key(&self) -> String {
        format!("PH-{:05}", self.patient)
    }

    /// The breast's number among all breasts (`2 * patient + side`).
    fn breast(&self) -> usize {
        2 * self.patient + (self.laterality == Laterality::Right) as usize
    }
}

/// The woman, breast and view of image `index`.
pub fn case_slot(index: usize) -> CaseSlot {
    let (laterality, view) = match index % VIEWS_PER_PATIENT {
        0 => (Laterality::Left, View::CC),
        1 => (Laterality::Left, View::MLO),
        2 => (Laterality::Right, View::CC),
        _ => (Laterality::Right, View::MLO),
    };
    CaseSlot { patient: index / VIEWS_PER_PATIENT, laterality, view }
}

/// BI-RADS breast density category (5th edition): A almost entirely fatty, B scattered fibroglandular,
/// C heterogeneously dense, D extremely dense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Density {
    /// Almost entirely fatty.
    A,
    /// Scattered areas of fibroglandular density.
    B,
    /// Heterogeneously dense.
    C,
    /// Extremely dense.
    D,
}

impl Density {
    /// `A`..`D`.
    pub fn letter(self) -> &'static str {
        match self {
            Density::A => "A",
            Density::B => "B",
            Density::C => "C",
            Density::D => "D",
        }
    }

    /// From `A`..`D`.
    pub fn parse(s: &str) -> Option<Self> {
        [Density::A, Density::B, Density::C, Density::D].into_iter().find(|d| d.letter() == s.trim())
    }

    /// The number 1..4 (CBIS-DDSM's `breast_density`).
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// mini-MIAS background tissue: F fatty, G fatty-glandular, D dense-glandular.
    pub fn mias(self) -> &'static str {
        match self {
            Density::A => "F",
            Density::B => "G",
            Density::C | Density::D => "D",
        }
    }
}

/// A synthetic woman.
struct Patient {
    density: Density,
    anatomy: PatientAnatomy,
    /// Mean glandular fraction and the texture's amplitude around it.
    gland_mean: f64,
    gland_amp: f64,
}

fn patient(seed: u64, p: usize, noise: f64) -> Patient {
    let mut rng = stream(seed, Purpose::Patient, p as u64, 0);
    // Roughly the screening population: 10 % A, 40 % B, 40 % C, 10 % D.
    let u: f64 = rng.random();
    let density = [(0.1, Density::A), (0.5, Density::B), (0.9, Density::C), (1.01, Density::D)]
        .into_iter()
        .find(|(c, _)| u < *c)
        .map(|(_, d)| d)
        .unwrap();
    // The amplitudes keep the anatomical noise at the scale of a lesion comparable to the default lesion
    // contrast (a few per cent): masses are subtle, as in screening, but not invisible.
    let (gland_mean, gland_amp) = match density {
        Density::A => (uniform(&mut rng, 0.03, 0.10), 0.05),
        Density::B => (uniform(&mut rng, 0.15, 0.25), 0.07),
        Density::C => (uniform(&mut rng, 0.33, 0.45), 0.09),
        Density::D => (uniform(&mut rng, 0.55, 0.70), 0.09),
    };
    Patient { density, anatomy: PatientAnatomy::draw(&mut rng), gland_mean, gland_amp: gland_amp * noise }
}

/// Breasts are assigned their class in blocks of this many, stratified: each block holds the requested
/// fractions (randomly rounded), so even a phantom of a few women has every class.
const CLASS_BLOCK: usize = 20;

/// The label of image `index` (that of its breast), cheaply, without generating it.
pub fn case_label(params: &PhantomParams, index: usize) -> Label {
    let breast = case_slot(index).breast();
    let (block, pos) = (breast / CLASS_BLOCK, breast % CLASS_BLOCK);
    let mut rng = stream(params.seed, Purpose::Classes, block as u64, 0);
    let mut count = |fraction: f64| {
        let x = fraction.clamp(0.0, 1.0) * CLASS_BLOCK as f64;
        (x.floor() + (rng.random::<f64>() < x.fract()) as u8 as f64) as usize
    };
    let malignant = count(params.malignant_fraction).min(CLASS_BLOCK);
    let benign = count(params.benign_fraction).min(CLASS_BLOCK - malignant);
    let mut labels: Vec<Label> = (0..CLASS_BLOCK)
        .map(|i| {
            if i < malignant {
                Label::Malignant
            } else if i < malignant + benign {
                Label::Benign
            } else {
                Label::Normal
            }
        })
        .collect();
    // Fisher-Yates with our own draws (not `SliceRandom`) so the permutation is pinned by this crate.
    for i in (1..CLASS_BLOCK).rev() {
        let j = rng.random_range(0..=i);
        labels.swap(i, j);
    }
    labels[pos]
}

// Attenuation model, in arbitrary units per mm. Only the ratios matter: glandular tissue attenuates about
// 1.8x as much as fat at mammographic energies, muscle a little more than gland.
const MU_FAT: f64 = 0.55;
const MU_GLAND: f64 = 1.0;
const MU_MUSCLE: f64 = 1.05;
/// Thickness that maps to `GAIN` of the full scale for pure gland.
const T_REF_MM: f64 = 75.0;
const GAIN: f64 = 0.85;
/// Background level as a fraction of the full scale: near zero, as in processed MONOCHROME2 images.
const PEDESTAL: f64 = 0.004;
/// Below this spatial frequency (cycles/mm) the texture spectrum is flat: the largest glandular
/// structures are a few centimetres.
const TEXTURE_K0: f64 = 1.0 / 25.0;

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Generates image `index` of the phantom. Depends on `params` and `index` only: cases can be generated
/// in any order, in parallel, or singly.
///
/// Panics if `params` fails [`PhantomParams::validate`].
pub fn generate_case(params: &PhantomParams, index: usize) -> GeneratedCase {
    generate(params, index, true)
}

/// [`generate_case`], optionally without the normal linear structures (for tests that need the same
/// image without them).
pub(crate) fn generate(params: &PhantomParams, index: usize, with_lines: bool) -> GeneratedCase {
    if let Err(e) = params.validate() {
        panic!("{e}");
    }
    let seed = params.seed;
    let slot = case_slot(index);
    let woman = patient(seed, slot.patient, params.anatomical_noise);
    let label = case_label(params, index);
    let (w, h) = params.image_size();
    let s = params.spacing_mm;

    let mut view_rng = stream(seed, Purpose::View, index as u64, 0);
    let breast = Breast::draw(&woman.anatomy, slot.laterality, slot.view, w, h, s, &mut view_rng);
    let anatomy = breast.anatomy();

    // Texture on a power-of-two grid covering the image; elongated along the nipple axis (mirrored for
    // a right breast).
    let angle = match slot.laterality {
        Laterality::Left => breast.tilt,
        Laterality::Right => -breast.tilt,
    };
    let spec = TextureSpec {
        beta: params.beta,
        spacing_mm: s,
        k0_per_mm: TEXTURE_K0,
        anisotropy: uniform(&mut view_rng, 1.3, 1.8),
        angle,
    };
    let (gw, gh) = (w.next_power_of_two(), h.next_power_of_two());
    let (gland_tex, fine_tex) = power_law_pair(gw, gh, &spec, &mut stream(seed, Purpose::Texture, index as u64, 0));

    let mut signal = tissue_signal(&breast, &anatomy, &woman, &gland_tex, &fine_tex, gw);

    // Ducts and Cooper's ligaments: normal anatomy in every breast, as thin and about as bright as
    // spicules, in no mask.
    if with_lines {
        let lines = linear::draw(&breast, &mut stream(seed, Purpose::Lines, index as u64, 0));
        linear::render(&lines, &breast, &anatomy, &mut signal);
    }

    // The lesion: drawn per breast (both views show the same mass), projected per view.
    let mut lesion_masks = Vec::new();
    let mut feature_masks = Vec::new();
    let mut lesions = Vec::new();
    if label != Label::Normal {
        let mut breast_rng = stream(seed, Purpose::Breast, slot.patient as u64, slot.laterality as u64);
        let shape = LesionShape::draw(label, params, &mut breast_rng);
        // Where in the breast, on the breast's own axes, so CC and MLO agree roughly on depth.
        let (ud, vd) = (uniform(&mut breast_rng, 0.25, 0.7), uniform(&mut breast_rng, -0.6, 0.6));
        let rotation = uniform(&mut view_rng, 0.0, std::f64::consts::TAU);
        let placed = place(shape, rotation, &breast, &anatomy, (ud, vd), &mut view_rng);
        let mut r = placed.render(s, w, h, &mut signal);
        // Placement keeps the lesion clear of the skin; this only matters for absurdly small breasts, where
        // the lesion may be shrunk to its limit and still not fit. Ground truth never leaves the breast.
        for (i, &inside) in anatomy.breast.iter().enumerate() {
            if !inside {
                r.mask[i] = 0;
                r.features[i] = 0;
            }
        }
        lesions.push(PhantomLesion {
            label,
            shape: placed.shape.shape.name().into(),
            margin: placed.shape.margin().into(),
            cx: placed.cx,
            cy: placed.cy,
            diameter_mm: placed.shape.diameter_mm,
            contrast: placed.shape.contrast,
            mask: String::new(),
            feature_mask: None,
        });
        lesion_masks.push(GrayImage::from_vec(w, h, r.mask));
        feature_masks.push(GrayImage::from_vec(w, h, r.features));
    }

    blur(&mut signal, w, h, params.blur_mm / s);
    let image = quantise(&signal, params, index);
    let breast_mask = GrayImage::from_vec(w, h, anatomy.breast.iter().map(|&b| if b { 255 } else { 0 }).collect());
    GeneratedCase {
        image,
        lesion_masks,
        feature_masks,
        breast_mask,
        meta: PhantomCase {
            image: String::new(),
            patient: slot.patient_key(),
            laterality: slot.laterality,
            view: slot.view,
            density: woman.density.letter().into(),
            spacing_mm: s,
            lesions,
        },
    }
}

/// Attenuation line integral (before lesions, blur and noise) as a fraction of the reference.
fn tissue_signal(
    breast: &Breast,
    an: &Anatomy,
    woman: &Patient,
    gland_tex: &[f32],
    fine_tex: &[f32],
    grid_w: usize,
) -> Vec<f32> {
    let (w, h) = (breast.w, breast.h);
    let mut out = vec![0f32; w * h];
    let t_full = breast.thickness_mm;
    for row in 0..h {
        for col in 0..w {
            let i = row * w + col;
            if !an.breast[i] {
                continue;
            }
            // A rounded edge: the thickness rises like a half-circle over `edge_mm` from the skin line.
            let e = (an.d_skin[i] as f64 / breast.edge_mm).min(1.0);
            let thickness = t_full * (1.0 - (1.0 - e) * (1.0 - e)).sqrt();
            let g = row * grid_w + col;
            // The second texture gives fat and muscle their own faint structure (lobules, fibres): a
            // perfectly flat region would be an artefact a network could key on.
            let fine = 1.0 + 0.02 * fine_tex[g] as f64;
            let mu = if an.pectoral[i] {
                MU_MUSCLE * fine
            } else {
                // Fat under the skin and in front of the chest wall; glandular tissue in between.
                let envelope =
                    smoothstep(an.d_skin[i] as f64 / breast.fat_mm) * smoothstep(an.x_mm[i] as f64 / breast.retro_mm);
                let gland = (envelope * (woman.gland_mean + woman.gland_amp * gland_tex[g] as f64)).clamp(0.0, 1.0);
                MU_FAT * fine + (MU_GLAND - MU_FAT) * gland
            };
            out[i] = (thickness / T_REF_MM * mu) as f32;
        }
    }
    out
}

/// Puts the lesion where it fits: inside the breast, clear of skin, muscle and image edges by a margin.
/// Tries the breast's preferred spot, then random ones, then smaller versions of the lesion; a breast too
/// small for any gets the lesion shrunk into its deepest point.
fn place(
    mut shape: LesionShape,
    rotation: f64,
    breast: &Breast,
    an: &Anatomy,
    spot: (f64, f64),
    rng: &mut ChaCha8Rng,
) -> Placed {
    let (w, h, s) = (breast.w, breast.h, breast.spacing);
    let margin = (3.0f64).min(0.03 * w as f64 * s);
    // Room around a pixel: to air or muscle, and to the image edges (which cut a lesion off).
    let room = |col: usize, row: usize| -> f64 {
        let edge =
            (col as f64 + 0.5).min(w as f64 - col as f64 - 0.5).min(row as f64 + 0.5).min(h as f64 - row as f64 - 0.5);
        (an.d_free[row * w + col] as f64).min(edge * s)
    };
    let pixel = |cx: f64, cy: f64| -> Option<(usize, usize)> {
        (cx >= 0.0 && cy >= 0.0 && cx < w as f64 && cy < h as f64).then_some((cx as usize, cy as usize))
    };
    for _ in 0..8 {
        let need = shape.reach_mm(s) + margin;
        let (x, y) = breast.point_on_axes(spot.0, spot.1);
        let (cx, cy) = (breast.col_of(x), y / s);
        if let Some((col, row)) = pixel(cx, cy)
            && room(col, row) >= need
        {
            return Placed { shape, cx, cy, rotation };
        }
        for _ in 0..200 {
            let (col, row) = (rng.random_range(0..w), rng.random_range(0..h));
            if room(col, row) >= need {
                return Placed { shape, cx: col as f64 + 0.5, cy: row as f64 + 0.5, rotation };
            }
        }
        shape = shape.scaled(0.8);
    }
    // The deepest point (first in raster order on ties: deterministic).
    let (mut best, mut at) = (f64::NEG_INFINITY, (w / 2, h / 2));
    for row in 0..h {
        for col in 0..w {
            let r = room(col, row);
            if r > best {
                (best, at) = (r, (col, row));
            }
        }
    }
    let target = (best - 0.5 * margin).max(s);
    while shape.reach_mm(s) > target && shape.diameter_mm > 2.0 * s {
        shape = shape.scaled(0.9);
    }
    Placed { shape, cx: at.0 as f64 + 0.5, cy: at.1 as f64 + 0.5, rotation }
}

/// Separable Gaussian blur with standard deviation `sigma` pixels, edges clamped.
fn blur(v: &mut [f32], w: usize, h: usize, sigma: f64) {
    if sigma < 0.1 {
        return;
    }
    let r = (3.0 * sigma).ceil() as isize;
    let mut k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|x| *x /= sum);
    let mut tmp = vec![0f32; w * h];
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let ru = r as usize;
    // Away from the edges no tap needs clamping: those pixels take the taps straight from the row (or
    // from whole rows, vectorised across columns), in the same order, so the same sums as the clamped
    // loop that the edges keep.
    for row in 0..h {
        let line = &v[row * w..(row + 1) * w];
        let out = &mut tmp[row * w..(row + 1) * w];
        for col in 0..w {
            if col >= ru && col + ru < w {
                let window = &line[col - ru..=col + ru];
                out[col] = k.iter().zip(window).fold(0f32, |acc, (kv, x)| acc + kv * x);
            } else {
                let mut acc = 0f32;
                for (j, kv) in k.iter().enumerate() {
                    acc += kv * line[clamp(col as isize + j as isize - r, w)];
                }
                out[col] = acc;
            }
        }
    }
    let mut acc = vec![0f32; w];
    for row in 0..h {
        acc.fill(0.0);
        for (j, kv) in k.iter().enumerate() {
            let src = clamp(row as isize + j as isize - r, h) * w;
            for (a, x) in acc.iter_mut().zip(&tmp[src..src + w]) {
                *a += kv * x;
            }
        }
        v[row * w..(row + 1) * w].copy_from_slice(&acc);
    }
}

/// Scales to the stored range, adds quantum noise (Gaussian, standard deviation proportional to the
/// square root of the signal, as for Poisson counts) and rounds.
fn quantise(signal: &[f32], params: &PhantomParams, index: usize) -> GrayImage<u16> {
    let (w, h) = params.image_size();
    let full = ((1u32 << params.bits_stored) - 1) as f64;
    let mut rng = stream(params.seed, Purpose::Noise, index as u64, 0);
    let mut gauss = Gaussian::new();
    let data = signal
        .iter()
        .map(|&l| {
            let v = full * (PEDESTAL + GAIN * l as f64);
            let noisy = v + params.quantum_noise * (v * full).sqrt() * gauss.sample(&mut rng);
            round_to_stored(noisy, full)
        })
        .collect();
    GrayImage::from_vec(w, h, data)
}

/// `x.round().clamp(0.0, full) as u16` without `round`, a libm call on x86-64 that was 2 % of the
/// phantom: truncation and a compare round half away from zero the same way for these values.
fn round_to_stored(x: f64, full: f64) -> u16 {
    // Negative values and NaN end at 0 either way; above `full` both give `full` (an integer).
    if !(x > 0.0) {
        return 0;
    }
    let x = x.min(full);
    let t = x as u64;
    (t + u64::from(x - t as f64 >= 0.5)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::texture::tests::{radial_power, spectral_slope};

    #[test]
    fn rounding_to_the_stored_range_is_round_then_clamp() {
        let full = 16383.0;
        let mut values = vec![
            -1.5,
            -0.5,
            -0.49,
            -0.0,
            0.0,
            0.49999999999999994,
            0.5,
            1.5,
            2.5,
            16382.5,
            16383.0,
            16383.4,
            16383.5,
            1e9,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut x = 0.123456789f64;
        for _ in 0..100_000 {
            x = (x * 9973.0 + 0.31830988618).fract();
            values.push(x * 16500.0 - 50.0);
        }
        for v in values {
            assert_eq!(round_to_stored(v, full), v.round().clamp(0.0, full) as u16, "{v}");
        }
    }

    /// 2 x 2 mean of an image: 0.2 mm -> the working resolution of 0.4 mm.
    fn bin2(img: &GrayImage<u16>) -> (Vec<f64>, usize, usize) {
        let (w2, h2) = (img.width / 2, img.height / 2);
        let mut out = vec![0.0; w2 * h2];
        for r in 0..h2 {
            for c in 0..w2 {
                let s: u32 =
                    [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|(a, b)| img.get(2 * c + b, 2 * r + a) as u32).sum();
                out[r * w2 + c] = s as f64 / 4.0;
            }
        }
        (out, w2, h2)
    }

    /// Separable Gaussian filter of `v` with standard deviation `sigma` pixels and derivative order
    /// `dx`, `dy` (0, 1 or 2) along each axis; edges clamped.
    fn gauss(v: &[f64], w: usize, h: usize, sigma: f64, dx: u8, dy: u8) -> Vec<f64> {
        let r = (4.0 * sigma).ceil() as isize;
        let kernel = |order: u8| -> Vec<f64> {
            (-r..=r)
                .map(|i| {
                    let x = i as f64;
                    let g = (-x * x / (2.0 * sigma * sigma)).exp() / (sigma * std::f64::consts::TAU.sqrt());
                    match order {
                        0 => g,
                        1 => -x / (sigma * sigma) * g,
                        _ => (x * x / sigma.powi(4) - 1.0 / (sigma * sigma)) * g,
                    }
                })
                .collect()
        };
        let (kx, ky) = (kernel(dx), kernel(dy));
        let at = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
        let mut tmp = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] =
                    kx.iter().enumerate().map(|(j, k)| k * v[y * w + at(x as isize + j as isize - r, w)]).sum();
            }
        }
        let mut out = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                out[y * w + x] =
                    ky.iter().enumerate().map(|(j, k)| k * tmp[at(y as isize + j as isize - r, h) * w + x]).sum();
            }
        }
        out
    }

    /// Bright-line response at 0.4 mm: where the Hessian (at 0.4 mm scale) curves down strongly across
    /// one direction and little along the other, its larger curvature relative to the local mean; zero
    /// elsewhere and outside `keep`.
    fn ridges(case: &GeneratedCase, keep: impl Fn(usize, usize) -> bool) -> (Vec<f64>, usize, usize) {
        let (v, w, h) = bin2(&case.image);
        let (hxx, hyy, hxy) = (gauss(&v, w, h, 1.0, 2, 0), gauss(&v, w, h, 1.0, 0, 2), gauss(&v, w, h, 1.0, 1, 1));
        let mean = gauss(&v, w, h, 5.0, 0, 0);
        let out = (0..w * h)
            .map(|i| {
                if !keep(i % w, i / w) {
                    return 0.0;
                }
                let (tr, det) = (hxx[i] + hyy[i], hxx[i] * hyy[i] - hxy[i] * hxy[i]);
                let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
                let (l1, l2) = (tr / 2.0 - disc, tr / 2.0 + disc);
                if l1 < 0.0 && l1.abs() > 3.0 * l2.abs() { -l1 / mean[i].max(1.0) } else { 0.0 }
            })
            .collect();
        (out, w, h)
    }

    /// The breast of image `i`, rebuilt as `generate` builds it.
    fn breast_of(p: &PhantomParams, i: usize) -> (Breast, Anatomy) {
        let (slot, (w, h)) = (case_slot(i), p.image_size());
        let woman = patient(p.seed, slot.patient, p.anatomical_noise);
        let mut rng = stream(p.seed, Purpose::View, i as u64, 0);
        let b = Breast::draw(&woman.anatomy, slot.laterality, slot.view, w, h, p.spacing_mm, &mut rng);
        let an = b.anatomy();
        (b, an)
    }

    /// At 0.4 mm (pixel `k` of the binned image): inside the breast, 6 mm or more from the skin, not muscle.
    fn interior(an: &Anatomy, w: usize, k: usize) -> bool {
        let j = 2 * (k / (w / 2)) * w + 2 * (k % (w / 2));
        an.breast[j] && !an.pectoral[j] && an.d_skin[j] > 6.0
    }

    /// 99.5th percentile of a ridge response over the pixels `keep`.
    fn threshold(r: &[f64], keep: impl Fn(usize) -> bool) -> f64 {
        let mut v: Vec<f64> = (0..r.len()).filter(|&k| keep(k)).map(|k| r[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() * 995 / 1000]
    }

    /// Binned `a / b - 1`: what a structure present in `a` and absent from `b` adds, relatively.
    fn elevation(a: &GeneratedCase, b: &GeneratedCase) -> Vec<f64> {
        let ((a, _, _), (b, _, _)) = (bin2(&a.image), bin2(&b.image));
        a.iter().zip(&b).map(|(a, b)| a / b.max(1.0) - 1.0).collect()
    }

    fn fraction_above(r: &[f64], pixels: &[usize], t: f64) -> f64 {
        pixels.iter().filter(|&&k| r[k] > t).count() as f64 / pixels.len().max(1) as f64
    }

    #[test]
    fn normal_breasts_show_thin_bright_lines() {
        // A line detector at the working resolution (0.4 mm) responds along the ducts and ligaments of
        // normal breasts: on their centre lines it exceeds the 99.5th percentile of its response to the
        // same image without them far more often than there (0.5 % of the interior by construction).
        let p = PhantomParams { cases: 40, seed: 1, ..Default::default() };
        let (w, _) = p.image_size();
        let normal: Vec<usize> = (0..p.cases).filter(|&i| case_label(&p, i) == Label::Normal).take(4).collect();
        let (mut with_hits, mut without_hits, mut total) = (0.0, 0.0, 0.0);
        for &i in &normal {
            let (with, without) = (generate(&p, i, true), generate(&p, i, false));
            assert!(with.meta.lesions.is_empty() && with.lesion_masks.is_empty());
            assert_eq!(with.breast_mask, without.breast_mask);
            let (_, an) = breast_of(&p, i);
            let keep = |k: usize| interior(&an, w, k);
            let (r_with, _, _) = ridges(&with, |_, _| true);
            let (r_without, _, _) = ridges(&without, |_, _| true);
            let t = threshold(&r_without, keep);
            let e = elevation(&with, &without);
            let on: Vec<usize> = (0..e.len()).filter(|&k| keep(k) && e[k] >= 0.3 * linear::LINE_CONTRAST).collect();
            assert!(on.len() > 500, "case {i}: only {} line pixels", on.len());
            let n = on.len() as f64;
            with_hits += fraction_above(&r_with, &on, t) * n;
            without_hits += fraction_above(&r_without, &on, t) * n;
            total += n;
        }
        let (with_f, without_f) = (with_hits / total, without_hits / total);
        println!("line pixels above the 99.5th percentile: {with_f:.3} with lines, {without_f:.3} without");
        assert!(with_f > 0.03 && with_f > 4.0 * without_f, "{with_f} vs {without_f}");
    }

    #[test]
    fn lines_enter_no_mask_and_look_like_spicules_at_the_working_resolution() {
        let p = PhantomParams { cases: 40, seed: 1, ..Default::default() };
        let flat = PhantomParams { lesion_contrast: 0.0, ..p.clone() };
        let (w, _) = p.image_size();
        let malignant: Vec<usize> = (0..p.cases).filter(|&i| case_label(&p, i) == Label::Malignant).take(4).collect();
        let (mut spicule, mut line) = ((0.0, 0.0), (0.0, 0.0));
        for &i in &malignant {
            let (with, without) = (generate(&p, i, true), generate(&p, i, false));
            // The lines change the image, outside the lesion too, and nothing else.
            assert_eq!(with.lesion_masks, without.lesion_masks, "case {i}");
            assert_eq!(with.feature_masks, without.feature_masks, "case {i}");
            assert_eq!((&with.breast_mask, &with.meta), (&without.breast_mask, &without.meta), "case {i}");
            let changed_outside = (0..with.image.data.len())
                .filter(|&j| with.image.data[j] != without.image.data[j] && with.lesion_masks[0].data[j] == 0)
                .count();
            assert!(changed_outside > 1000, "case {i}: {changed_outside}");

            // Spicules (the lesion alone, beyond its body) and lines, in the same image, as a line
            // detector at 0.4 mm sees them.
            let (_, an) = breast_of(&p, i);
            let keep = |k: usize| interior(&an, w, k);
            let (r, _, _) = ridges(&with, |_, _| true);
            let t = threshold(&r, keep);
            let l = &with.meta.lesions[0];
            let lesion = elevation(&without, &generate(&flat, i, false));
            let lines = elevation(&with, &without);
            let rho = |k: usize| {
                let (x, y) = ((2 * (k % (w / 2))) as f64 + 1.0, (2 * (k / (w / 2))) as f64 + 1.0);
                (x - l.cx).hypot(y - l.cy) * p.spacing_mm
            };
            let body = (0..lesion.len()).filter(|&k| lesion[k] >= 0.9 * l.contrast).map(rho).fold(0.0, f64::max);
            let strong = 0.3 * linear::LINE_CONTRAST;
            let on_spicules: Vec<usize> =
                (0..lesion.len()).filter(|&k| keep(k) && rho(k) > body + 1.0 && lesion[k] >= strong).collect();
            let on_lines: Vec<usize> =
                (0..lines.len()).filter(|&k| keep(k) && rho(k) > body + 15.0 && lines[k] >= strong).collect();
            assert!(on_spicules.len() > 50 && on_lines.len() > 500, "case {i}");
            for (acc, on) in [(&mut spicule, &on_spicules), (&mut line, &on_lines)] {
                acc.0 += fraction_above(&r, on, t) * on.len() as f64;
                acc.1 += on.len() as f64;
            }
        }
        let (s, l) = (spicule.0 / spicule.1, line.0 / line.1);
        println!("pixels above the 99.5th percentile of a line detector: spicules {s:.3}, lines {l:.3}");
        assert!(s > 0.02 && l > 0.02, "{s} {l}");
        assert!(l > 0.5 * s && l < 1.3 * s, "lines {l} vs spicules {s}");
    }

    #[test]
    fn interior_texture_keeps_a_power_law_slope_near_three() {
        // The radially averaged power spectrum of a normal breast's interior (256 px = 51 mm, Hann
        // window), lines, blur and noise included, falls as k^-beta with beta within 2.8..3.3 over
        // 0.16-0.94 cycles/mm.
        let p = PhantomParams { cases: 40, seed: 1, ..Default::default() };
        let normal: Vec<usize> = (0..p.cases).filter(|&i| case_label(&p, i) == Label::Normal).take(4).collect();
        let n = 256;
        let hann = |k: usize| 0.5 - 0.5 * (std::f64::consts::TAU * (k as f64 + 0.5) / n as f64).cos();
        for &i in &normal {
            let c = generate(&p, i, true);
            let (b, an) = breast_of(&p, i);
            let (x, y) = b.point_on_axes(0.45, 0.0);
            let (x0, y0) = (b.col_of(x) as usize - n / 2, (y / p.spacing_mm) as usize - n / 2);
            let at = |r: usize, col: usize| (y0 + r) * b.w + x0 + col;
            assert!((0..n * n).all(|k| {
                let j = at(k / n, k % n);
                an.breast[j] && !an.pectoral[j] && an.d_skin[j] as f64 > b.fat_mm
            }));
            let mean = (0..n * n).map(|k| c.image.data[at(k / n, k % n)] as f64).sum::<f64>() / (n * n) as f64;
            let field: Vec<f32> = (0..n * n)
                .map(|k| ((c.image.data[at(k / n, k % n)] as f64 - mean) * hann(k / n) * hann(k % n)) as f32)
                .collect();
            let beta = -spectral_slope(&radial_power(&field, n), 8, 48);
            println!("case {i} (density {}): beta {beta:.3}", c.meta.density);
            assert!((2.8..=3.3).contains(&beta), "case {i}: beta {beta}");
        }
    }

    #[test]
    fn mlo_views_show_a_bright_pectoral_muscle_and_cc_views_none() {
        let p = PhantomParams { cases: 8, seed: 2, width_mm: 120.0, ..Default::default() };
        for i in 0..p.cases {
            let c = generate_case(&p, i);
            let (_, an) = breast_of(&p, i);
            let muscle: Vec<f64> =
                (0..an.breast.len()).filter(|&j| an.pectoral[j]).map(|j| c.image.data[j] as f64).collect();
            if case_slot(i).view == View::CC {
                assert!(muscle.is_empty(), "case {i}");
                continue;
            }
            // Brighter than the breast tissue beside it (within 30 mm of the chest wall, away from the skin).
            let beside: Vec<f64> = (0..an.breast.len())
                .filter(|&j| an.breast[j] && !an.pectoral[j] && an.x_mm[j] < 30.0 && an.d_skin[j] > 15.0)
                .map(|j| c.image.data[j] as f64)
                .collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (m, t) = (mean(&muscle), mean(&beside));
            assert!(muscle.len() > 1000 && m > 1.2 * t, "case {i}: muscle {m} vs tissue {t}");
        }
    }

    /// Run by hand: `cargo test --release -p mammo-phantom --lib -- --ignored --nocapture timing`. The cost
    /// of the linear structures, interleaved with and without them so that machine load cancels; the
    /// minimum of several runs per case.
    #[test]
    #[ignore]
    fn timing_of_the_linear_structures() {
        let p = PhantomParams { cases: 8, ..Default::default() };
        let (mut with, mut without) = (vec![f64::MAX; p.cases], vec![f64::MAX; p.cases]);
        for _ in 0..5 {
            for i in 0..p.cases {
                for (lines, best) in [(true, &mut with), (false, &mut without)] {
                    let t = std::time::Instant::now();
                    std::hint::black_box(generate(&p, i, lines));
                    best[i] = best[i].min(t.elapsed().as_secs_f64());
                }
            }
        }
        let (a, b) = (with.iter().sum::<f64>() / p.cases as f64, without.iter().sum::<f64>() / p.cases as f64);
        println!("per case (best of 5): {a:.4} s with lines, {b:.4} s without: +{:.1} %", 100.0 * (a / b - 1.0));
    }

    #[test]
    fn slots_and_stratified_labels() {
        assert_eq!(case_slot(5), CaseSlot { patient: 1, laterality: Laterality::Left, view: View::MLO });
        assert_eq!(case_slot(5).patient_key(), "PH-00001");
        let p = PhantomParams { seed: 3, ..Default::default() };
        // A breast's two views share its label.
        for i in (0..400).step_by(2) {
            assert_eq!(case_label(&p, i), case_label(&p, i + 1));
        }
        let labels: Vec<Label> = (0..4 * CLASS_BLOCK / 2).step_by(2).map(|i| case_label(&p, i)).collect();
        let n = |l| labels.iter().filter(|&&x| x == l).count();
        assert_eq!((n(Label::Malignant), n(Label::Benign), n(Label::Normal)), (6, 6, 8));
    }
}
