//! Synthetic full-field mammograms with exact ground truth: the project's embedded default data and its
//! test bed.
//!
//! A phantom is a set of synthetic women, four images each ([`case_slot`]: L-CC, L-MLO, R-CC, R-MLO).
//! Each image is generated from `(seed, index)` alone by [`generate_case`], so cases can be produced in
//! any order or in parallel and a single case can be regenerated to debug it. [`write_phantom`] writes
//! them in one of four layouts ([`OutputFormat`]): our own (DICOM or PNG plus exact masks and
//! `phantom.json`), or imitations of mini-MIAS and CBIS-DDSM that exercise those readers.
//!
//! # What an image holds
//! - **Orientation.** The chest wall of a *left* breast is on the *left* edge of the image, that of a
//!   *right* breast on the *right* edge (the nipple points into the image). Rows run top to bottom.
//! - **Values.** Stored values are "brighter = denser" (MONOCHROME2), roughly the line integral of
//!   attenuation: background (air) near zero, fat darker than fibroglandular tissue, the pectoral muscle
//!   (MLO only, in the upper chest-wall corner) bright. Values lie in `0..2^bits_stored`.
//! - **Anatomy.** A half-ellipse outline with low-order wobble (oblique and running into the axilla in
//!   MLO), compressed thickness falling off over the rounded edge near the skin line, subcutaneous and
//!   retromammary fat, fibroglandular texture from a 1/f^beta random field mixed at one of the BI-RADS
//!   density categories A-D (shared by a woman's four images), a small Gaussian blur (detector) and
//!   signal-dependent Gaussian quantum noise. MLO views show the pectoral muscle, bright, in the upper
//!   chest-wall corner; CC views none.
//! - **Linear structures.** Every breast, normal ones included, has a few dozen thin bright lines
//!   (drawn per view): ducts fanning out from just behind the nipple towards the chest wall, gently
//!   curved and tapering, and Cooper's ligaments, arcs in the fat a few mm inside the skin line. They
//!   have the width and cross-section of spicules and a little less than their contrast at the default
//!   lesion contrast (their own does not follow `lesion_contrast`), so at the working resolution of
//!   0.4 mm a spicule is told apart only by radiating from a mass, not by being a line. They are
//!   anatomy: no mask holds them.
//! - **Lesions.** Normal breasts have none; benign ones a round or oval circumscribed mass, malignant
//!   ones an irregular spiculated mass. Diameters are log-normal (median 14 mm; about 80 % within
//!   8-25 mm, as in public datasets and screening statistics) truncated to
//!   `[min_diameter_mm, max_diameter_mm]`; see [`PhantomParams`] for sizes and contrast. A breast's
//!   class and lesion are shared by its two views. Per lesion there is a mask (body and spicules) and a
//!   malignancy-feature mask (spicules and the irregular margin band; all zero for benign lesions).

#![warn(missing_docs)]

mod anatomy;
mod generate;
mod identity;
mod lesion;
mod linear;
mod rng;
mod texture;
mod write;

use std::path::PathBuf;

use mammo_io::GrayImage;
use serde::{Deserialize, Serialize};

pub use generate::{CaseSlot, Density, VIEWS_PER_PATIENT, case_label, case_slot, generate_case};
pub use identity::{
    FAKE_ACCESSION_PREFIX, FAKE_ID_PREFIX, FAKE_INSTITUTION, FAKE_NAME_PREFIX, FAKE_REFERRING_PHYSICIAN, FakeIdentity,
    UID_ROOT, fake_identity,
};
pub use write::{CBIS_CSV, CBIS_CSV_HEADER, MIAS_INFO, write_phantom};

/// Everything that determines a phantom. Equal parameters give byte-identical output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhantomParams {
    /// Number of images (for the CBIS-DDSM layout: of candidate images, normal ones being skipped).
    pub cases: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// Image width in mm (the axis from the chest wall to beyond the nipple); the breast scales with it.
    pub width_mm: f64,
    /// Image height / width.
    pub aspect: f64,
    /// Pixel spacing in mm (isotropic).
    pub spacing_mm: f64,
    /// Fraction of breasts (hence images) with a malignant lesion.
    pub malignant_fraction: f64,
    /// Fraction of breasts with a benign lesion; the rest are normal.
    pub benign_fraction: f64,
    /// Mean peak lesion contrast relative to the surrounding tissue (0.04 = 4 %). The normal linear
    /// structures (ducts, ligaments) are scaled to the default, whatever this is.
    pub lesion_contrast: f64,
    /// Relative spread of the contrast: each lesion's is `lesion_contrast * (1 ± contrast_jitter)`.
    pub contrast_jitter: f64,
    /// Smallest lesion body diameter in mm (lesions are shrunk where a breast is too small to hold them).
    /// Diameters are drawn log-normal with a median of 14 mm, truncated (not clamped) to
    /// `[min_diameter_mm, max_diameter_mm]`: about 80 % of them fall within 8-25 mm with the defaults,
    /// and bounds set closer are always honoured.
    pub min_diameter_mm: f64,
    /// Largest lesion body diameter in mm.
    pub max_diameter_mm: f64,
    /// Range of the number of spicules of a malignant lesion (inclusive).
    pub spicule_count: (u32, u32),
    /// Range of spicule lengths in mm, measured from the body's edge.
    pub spicule_length_mm: (f64, f64),
    /// Bits per stored value, 12 to 16.
    pub bits_stored: u16,
    /// Exponent of the texture's power spectrum, P(k) ~ 1/k^beta (about 3 for real parenchyma).
    pub beta: f64,
    /// Standard deviation of the detector blur in mm (0 = none).
    pub blur_mm: f64,
    /// Quantum noise: the standard deviation is `quantum_noise * sqrt(v * max)` for a value `v`, i.e.
    /// this fraction of the full scale at full scale. Default 0.0015: mammograms are limited by the
    /// anatomical noise, not the quantum noise; at 0.005 the white noise flattened the image's spectrum
    /// to an exponent of 2.6 over 0.16-0.94 cycles/mm once the texture had its default amplitude.
    pub quantum_noise: f64,
    /// Scale of the glandular texture's amplitude (the anatomical noise masses are seen against) over
    /// each density class's base amplitude. See [`DEFAULT_ANATOMICAL_NOISE`].
    pub anatomical_noise: f64,
}

/// The default [`PhantomParams::anatomical_noise`]. With the base amplitudes (1.0) a mass at the
/// default 4 % contrast was invisible: on whole images cropped around it and contrast-stretched, no body
/// could be made out, only a few spicules among the ducts, and the best classifier reached an image AUC
/// near 0.7 on cues a reader would not use. At 0.35 the masses are subtle but visible, as screening's
/// are (the glandular texture still has its power-law spectrum, so the anatomical noise at a mass's
/// scale is what limits seeing it), and the ducts and ligaments still look like spicules.
pub const DEFAULT_ANATOMICAL_NOISE: f64 = 0.35;

impl Default for PhantomParams {
    fn default() -> Self {
        PhantomParams {
            cases: 16,
            seed: 0,
            width_mm: 200.0,
            aspect: 1.2,
            spacing_mm: 0.2,
            malignant_fraction: 0.3,
            benign_fraction: 0.3,
            lesion_contrast: 0.04,
            contrast_jitter: 0.25,
            min_diameter_mm: 5.0,
            max_diameter_mm: 30.0,
            spicule_count: (6, 14),
            spicule_length_mm: (4.0, 15.0),
            bits_stored: 14,
            beta: 3.0,
            blur_mm: 0.12,
            quantum_noise: 0.0015,
            anatomical_noise: DEFAULT_ANATOMICAL_NOISE,
        }
    }
}

impl PhantomParams {
    /// Image size in pixels: (width, height).
    pub fn image_size(&self) -> (usize, usize) {
        let w = (self.width_mm / self.spacing_mm).round() as usize;
        let h = (self.width_mm * self.aspect / self.spacing_mm).round() as usize;
        (w, h)
    }

    /// Checks every parameter, naming the first bad one and its allowed range.
    pub fn validate(&self) -> Result<(), PhantomError> {
        let bad = |m: String| Err(PhantomError::InvalidParams(m));
        let floats = [
            ("width_mm", self.width_mm),
            ("aspect", self.aspect),
            ("spacing_mm", self.spacing_mm),
            ("malignant_fraction", self.malignant_fraction),
            ("benign_fraction", self.benign_fraction),
            ("lesion_contrast", self.lesion_contrast),
            ("contrast_jitter", self.contrast_jitter),
            ("min_diameter_mm", self.min_diameter_mm),
            ("max_diameter_mm", self.max_diameter_mm),
            ("spicule_length_mm", self.spicule_length_mm.0),
            ("spicule_length_mm", self.spicule_length_mm.1),
            ("beta", self.beta),
            ("blur_mm", self.blur_mm),
            ("quantum_noise", self.quantum_noise),
            ("anatomical_noise", self.anatomical_noise),
        ];
        if let Some((name, v)) = floats.iter().find(|(_, v)| !v.is_finite()) {
            return bad(format!("{name} must be a finite number, got {v}"));
        }
        if self.cases == 0 || self.cases > 9_999_999 {
            return bad(format!("cases must be between 1 and 9999999, got {}", self.cases));
        }
        if self.spacing_mm <= 0.0 || self.width_mm <= 0.0 || self.aspect <= 0.0 {
            return bad("spacing_mm, width_mm and aspect must be positive".into());
        }
        // The same range every reader of a spacing applies: a phantom must be preparable.
        if let Some(p) = mammo_io::physical::spacing_problem(self.spacing_mm) {
            return bad(format!("spacing_mm: {p}"));
        }
        let (w, h) = self.image_size();
        if w < 32 || h < 32 || w > 16384 || h > 16384 {
            return bad(format!(
                "image would be {w} x {h} px (width_mm {} / spacing_mm {}); each side must be 32..=16384",
                self.width_mm, self.spacing_mm
            ));
        }
        // The texture is synthesised on a power-of-two grid of complex f32 values (two of them, plus the
        // FFT's scratch), on every core at once: 2^26 values is 512 MiB a buffer, about 2 GiB for an image
        // being generated. That is 8192 x 8192 px, a 20 cm breast at 0.025 mm.
        let grid = w.next_power_of_two() as u64 * h.next_power_of_two() as u64;
        if grid > 1 << 26 {
            return bad(format!(
                "image would be {w} x {h} px (width_mm {} / spacing_mm {}), whose texture grid of {} x {} values \
                 exceeds 2^26 (about 2 GiB per image being generated); raise spacing_mm or lower width_mm",
                self.width_mm,
                self.spacing_mm,
                w.next_power_of_two(),
                h.next_power_of_two()
            ));
        }
        for (name, v) in [("malignant_fraction", self.malignant_fraction), ("benign_fraction", self.benign_fraction)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be within 0..=1, got {v}"));
            }
        }
        if self.malignant_fraction + self.benign_fraction > 1.0 + 1e-9 {
            return bad(format!(
                "malignant_fraction + benign_fraction must not exceed 1, got {}",
                self.malignant_fraction + self.benign_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.lesion_contrast) || !(0.0..1.0).contains(&self.contrast_jitter) {
            return bad(format!(
                "lesion_contrast and contrast_jitter must be within 0..1, got {} and {}",
                self.lesion_contrast, self.contrast_jitter
            ));
        }
        // Sizes in mm bound loops and kernels measured in pixels (the lesion shrinking to fit, the blur
        // kernel of 6 sigma): the largest masses are about 10 cm, spicules a few cm, detector blur well
        // under a millimetre.
        for (name, v, max) in [
            ("max_diameter_mm", self.max_diameter_mm, 100.0),
            ("spicule_length_mm", self.spicule_length_mm.1, 100.0),
            ("blur_mm", self.blur_mm, 5.0),
        ] {
            if v > max {
                return bad(format!("{name} must be at most {max}, got {v}"));
            }
        }
        if self.min_diameter_mm <= 0.0 || self.min_diameter_mm > self.max_diameter_mm {
            return bad(format!(
                "lesion diameters must satisfy 0 < min_diameter_mm <= max_diameter_mm, got {} and {}",
                self.min_diameter_mm, self.max_diameter_mm
            ));
        }
        if self.spicule_count.0 > self.spicule_count.1 || self.spicule_count.1 > 200 {
            return bad(format!("spicule_count must be MIN <= MAX <= 200, got {:?}", self.spicule_count));
        }
        if self.spicule_length_mm.0 < 0.0 || self.spicule_length_mm.0 > self.spicule_length_mm.1 {
            return bad(format!("spicule_length_mm must be 0 <= MIN <= MAX, got {:?}", self.spicule_length_mm));
        }
        if !(12..=16).contains(&self.bits_stored) {
            return bad(format!("bits_stored must be within 12..=16, got {}", self.bits_stored));
        }
        if self.beta <= 0.0 || self.beta > 6.0 {
            return bad(format!("beta must be within (0, 6], got {}", self.beta));
        }
        if self.blur_mm < 0.0 || self.quantum_noise < 0.0 {
            return bad("blur_mm and quantum_noise must not be negative".into());
        }
        if !(0.0..=4.0).contains(&self.anatomical_noise) {
            return bad(format!("anatomical_noise must be within 0..=4, got {}", self.anatomical_noise));
        }
        Ok(())
    }
}

/// The layouts [`write_phantom`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Our layout with DICOM images (rotating transfer syntaxes, some MONOCHROME1), PNG masks and
    /// `phantom.json`; read back with `mammo_io::layouts::load(Format::Phantom, dir)`.
    Dicom,
    /// The mini-MIAS layout: `mdbNNN.pgm` (8-bit, 1024 x 1024, 200 µm, MLO only; mdb001 right and mdb002
    /// left breast of one woman, and so on) and `Info.txt`.
    Mias,
    /// A CBIS-DDSM-like tree of DICOM full images, crops and ROI masks with
    /// `mass_case_description_train_set.csv`; lesion images only.
    Cbis,
    /// Our layout with 16-bit PNG images.
    Png,
}

impl OutputFormat {
    /// Every format, in a fixed order.
    pub const ALL: [OutputFormat; 4] = [OutputFormat::Dicom, OutputFormat::Mias, OutputFormat::Cbis, OutputFormat::Png];

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Dicom => "dicom",
            OutputFormat::Mias => "mias",
            OutputFormat::Cbis => "cbis",
            OutputFormat::Png => "png",
        }
    }

    /// The inverse of [`OutputFormat::name`].
    pub fn parse(s: &str) -> Option<Self> {
        OutputFormat::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// One generated image with its exact ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedCase {
    /// Stored values, "brighter = denser" (MONOCHROME2), within `0..2^bits_stored`. Writers that store
    /// MONOCHROME1 invert them (`max - v`).
    pub image: GrayImage<u16>,
    /// Per lesion, 0/255: the mass body including its spicules.
    pub lesion_masks: Vec<GrayImage<u8>>,
    /// Per lesion, 0/255: the malignancy features (spicules and irregular margin band); all zero for a
    /// benign lesion. Always a subset of the lesion mask.
    pub feature_masks: Vec<GrayImage<u8>>,
    /// 0/255: inside the skin line (pectoral muscle included); the ground truth for breast segmentation.
    pub breast_mask: GrayImage<u8>,
    /// Labels and descriptors. `image`, `mask` and `feature_mask` paths are empty / `None` until a
    /// writer fills them.
    pub meta: mammo_io::layouts::PhantomCase,
}

/// What [`write_phantom`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhantomSummary {
    /// The phantom directory.
    pub dir: PathBuf,
    /// Its layout.
    pub format: OutputFormat,
    /// Images written.
    pub images: usize,
    /// Images without a lesion.
    pub normal: usize,
    /// Images whose worst lesion is benign.
    pub benign: usize,
    /// Images with a malignant lesion.
    pub malignant: usize,
    /// Normal images not written because the layout has none (CBIS-DDSM).
    pub skipped_normal: usize,
    /// Files written in all (images, masks, tables).
    pub files: usize,
}

/// Why a phantom could not be written. Each message is one line naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    /// A parameter is out of range.
    #[error("invalid phantom parameters: {0}")]
    InvalidParams(String),
    /// The output directory already holds something: a phantom never overwrites or mixes with other files.
    #[error("{}: output directory exists and is not empty; choose a new directory or remove this one", .0.display())]
    OutputNotEmpty(PathBuf),
    /// A directory could not be created or listed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] mammo_io::IoError),
}
