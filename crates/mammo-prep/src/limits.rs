//! The ranges `prepare`'s parameters must lie in, checked before any image is read.
//!
//! Every one of these sizes something that is allocated: the resampled image (the spacings), every patch
//! (its side squared), the number of patches held in memory until the dataset is written (the counts),
//! the worker threads. A value off by orders of magnitude (`--patch-size 100000`, `--spacing 0.0001`,
//! `--per-lesion 100000`) must be a one-line error, not an abort or the OOM killer. The bounds are
//! generous for any real use and each says why.

use std::ops::RangeInclusive;

use mammo_io::layouts::Case;

use crate::pipeline::PrepParams;

/// Patch side in pixels. Below 8 there is no texture to learn from; 512 px at the default 0.4 mm is
/// 20 cm, a whole breast, and at 0.1 mm a 5 cm region, larger than any mass.
pub const PATCH_SIZE: RangeInclusive<usize> = 8..=512;

/// Patches per lesion, and normal patches per image. Each lesion patch differs from the others only by
/// its jitter (at most [`JITTER`] of a side), so beyond a few dozen they are near duplicates.
pub const PER_IMAGE_COUNT: RangeInclusive<usize> = 0..=64;

/// Lesion-centre jitter as a fraction of the patch side: beyond a half the lesion may leave the patch.
pub const JITTER: RangeInclusive<f64> = 0.0..=0.5;

/// Clearance between a normal patch and a lesion, in pixels: more than 1024 px (41 cm at 0.4 mm) clears
/// every image.
pub const LESION_CLEARANCE: RangeInclusive<usize> = 0..=1024;

/// Worker threads (0 = all cores). More than 1024 only costs memory: each holds an image.
pub const THREADS: RangeInclusive<usize> = 0..=1024;

/// The patches, masks and index are held in memory until the dataset is written (16-bit pixels and an
/// 8-bit mask: 3 bytes a pixel). A run whose worst case exceeds this is refused up front, naming the
/// parameters, rather than killed for memory at the end; the defaults on the largest public dataset
/// (CBIS-DDSM, ~3,600 images) come to well under 1 GiB.
pub const MAX_PATCH_BYTES: u64 = 16 << 30;

impl PrepParams {
    /// `None` when every parameter lies in its range, else the first that does not (one line, naming the
    /// option the way the command line spells it).
    pub fn problem(&self) -> Option<String> {
        let spacing = |name: &str, v: f64| mammo_io::physical::spacing_problem(v).map(|p| format!("--{name}: {p}"));
        let range = |name: &str, v: usize, r: RangeInclusive<usize>| {
            (!r.contains(&v)).then(|| format!("--{name} {v}: must be in {}..={}", r.start(), r.end()))
        };
        let fraction = |name: &str, v: f64, r: RangeInclusive<f64>| {
            (!r.contains(&v)).then(|| format!("{name} {v}: must be in {}..={}", r.start(), r.end()))
        };
        let s = &self.split;
        let split_ok =
            [s.train, s.val, s.test].iter().all(|f| (0.0..=1.0).contains(f)) && s.train + s.val + s.test > 0.0;
        spacing("spacing", self.spacing_mm)
            .or_else(|| spacing("default-spacing", self.default_spacing_mm))
            .or_else(|| range("patch-size", self.patch.size, PATCH_SIZE))
            .or_else(|| range("per-lesion", self.patch.per_lesion, PER_IMAGE_COUNT))
            .or_else(|| range("normal-per-image", self.patch.normal_per_image, PER_IMAGE_COUNT))
            .or_else(|| range("threads", self.threads, THREADS))
            .or_else(|| fraction("jitter", self.patch.jitter, JITTER))
            .or_else(|| fraction("min_breast_fraction", self.patch.min_breast_fraction, 0.0..=1.0))
            .or_else(|| range("lesion_clearance", self.patch.lesion_clearance, LESION_CLEARANCE))
            .or_else(|| {
                (!split_ok)
                    .then(|| format!("split {}/{}/{}: fractions must be in 0..=1, not all 0", s.train, s.val, s.test))
            })
    }

    /// `None` when the most patches these cases can give fits [`MAX_PATCH_BYTES`], else why not.
    pub fn output_size_problem(&self, cases: &[Case]) -> Option<String> {
        let per_patch = 3 * (self.patch.size as u64).pow(2);
        let patches: u64 =
            cases.iter().map(|c| (c.lesions.len() * self.patch.per_lesion + self.patch.normal_per_image) as u64).sum();
        let bytes = patches.saturating_mul(per_patch);
        (bytes > MAX_PATCH_BYTES).then(|| {
            let (size, gib, max) = (self.patch.size, bytes as f64 / (1u64 << 30) as f64, MAX_PATCH_BYTES >> 30);
            format!(
                "up to {patches} patches of {size} x {size} px would need {gib:.1} GiB of memory (more than {max} \
                 GiB); lower --patch-size, --per-lesion or --normal-per-image"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_exploding_parameter_is_named() {
        assert_eq!(PrepParams::default().problem(), None);
        let with = |f: &dyn Fn(&mut PrepParams)| {
            let mut p = PrepParams::default();
            f(&mut p);
            p.problem().expect("refused")
        };
        assert_eq!(with(&|p| p.patch.size = 100_000), "--patch-size 100000: must be in 8..=512");
        assert_eq!(with(&|p| p.patch.size = 4), "--patch-size 4: must be in 8..=512");
        assert_eq!(with(&|p| p.patch.per_lesion = 100_000), "--per-lesion 100000: must be in 0..=64");
        assert_eq!(with(&|p| p.patch.normal_per_image = 65), "--normal-per-image 65: must be in 0..=64");
        assert!(with(&|p| p.spacing_mm = 0.0001).starts_with("--spacing: pixel spacing 0.0001 mm is outside"));
        assert!(with(&|p| p.spacing_mm = f64::NAN).starts_with("--spacing: pixel spacing NaN mm"));
        assert!(with(&|p| p.default_spacing_mm = 500.0).starts_with("--default-spacing: pixel spacing 500 mm"));
        assert_eq!(with(&|p| p.threads = 1_000_000), "--threads 1000000: must be in 0..=1024");
        assert_eq!(with(&|p| p.patch.jitter = 2.0), "jitter 2: must be in 0..=0.5");
        assert!(with(&|p| p.split.train = -1.0).starts_with("split -1/"));
    }

    #[test]
    fn the_most_patches_the_cases_can_give_must_fit_in_memory() {
        let case = |lesions: usize| Case {
            image: "x.png".into(),
            patient: "p".into(),
            label: mammo_io::layouts::Label::Normal,
            lesions: (0..lesions)
                .map(|_| mammo_io::layouts::Lesion {
                    label: mammo_io::layouts::Label::Malignant,
                    kind: "mass".into(),
                    mask: mammo_io::layouts::MaskSource::Disk { cx: 0.0, cy: 0.0, r: 1.0 },
                    feature_mask: None,
                })
                .collect(),
            laterality: None,
            view: None,
            spacing_mm: None,
        };
        let p = PrepParams::default();
        assert_eq!(p.output_size_problem(&vec![case(1); 4000]), None);
        let mut big = PrepParams::default();
        big.patch.size = 512;
        big.patch.per_lesion = 64;
        let e = big.output_size_problem(&vec![case(3); 4000]).expect("refused");
        assert!(e.starts_with("up to 784000 patches of 512 x 512 px would need 574.2 GiB of memory"), "{e}");
    }
}
