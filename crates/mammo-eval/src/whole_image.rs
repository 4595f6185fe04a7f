//! Whole-image metrics: what a user of `explain` and `serve` gets, measured on whole mammograms.
//!
//! A patch metric is a diagnostic: on a lesion-centred patch that the lesion fills, "the map's maximum
//! is in the lesion" is nearly free. These metrics take what explain returns for a whole image (one
//! score, the top regions as boxes, one highlight map over the whole image) and score it against the
//! image's masks:
//! - image and breast AUC ([`breast_scores`] groups a breast's views; the AUC itself is
//!   [`crate::roc_auc`]);
//! - detection of malignant masses as a free-response ROC ([`froc`]): a region *hits* a mass when its box
//!   overlaps the mass's mask; every other region is a false positive (one on a benign mass included);
//! - where the highlight puts its weight ([`ImageMapAccumulator`]): its maximum on a malignant mass,
//!   its mass inside the malignant masks, its NCC with the feature mask, and its total on normal
//!   breasts relative to malignant ones (a map that lights up normal breasts is wrong).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::maps::{energy_in_mask, ncc, pointing_game};

/// The false-positive rates per image at which [`froc`] reports sensitivity by default.
pub const FROC_FP_RATES: [f64; 4] = [0.25, 0.5, 1.0, 2.0];

/// A reported region of one image: its score and which malignant masses (by their index in the whole
/// evaluation, from 0 to the number of masses) its box overlaps.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredRegion {
    pub score: f64,
    pub masses: Vec<usize>,
}

/// Whether the box `(x, y, w, h)` (pixels, may reach outside the image) covers any non-zero pixel of
/// `mask`, a `width`-wide row-major raster.
pub fn box_overlaps_mask(mask: &[u8], width: usize, bbox: [i64; 4]) -> bool {
    if width == 0 {
        return false;
    }
    let height = mask.len() / width;
    let [x, y, w, h] = bbox;
    let (x0, x1) = (x.max(0) as usize, (x + w).clamp(0, width as i64) as usize);
    let (y0, y1) = (y.max(0) as usize, (y + h).clamp(0, height as i64) as usize);
    (y0..y1).any(|row| mask[row * width + x0.min(x1)..row * width + x1].iter().any(|&v| v != 0))
}

/// The free-response ROC of mass detection: for every threshold on the region scores, the share of the
/// `n_masses` malignant masses hit by at least one region at or above it, against the false positives
/// per image (regions at or above it that hit no malignant mass, over `images.len()`), as
/// `(false positives per image, sensitivity)` points from the strictest threshold to the loosest, after
/// a first point (0, 0) (sensitivities are NaN when there is no mass).
///
/// A second region on an already-hit mass is neither a hit nor a false positive (it found something
/// real), as in the usual FROC scoring of lesion detection.
pub fn froc(images: &[Vec<ScoredRegion>], n_masses: usize) -> Vec<(f64, f64)> {
    let mut all: Vec<&ScoredRegion> = images.iter().flatten().collect();
    // Strictest first; ties are taken together below.
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    let n_images = images.len().max(1) as f64;
    let mut hit = vec![false; n_masses];
    let (mut hits, mut fps) = (0usize, 0usize);
    let none = if n_masses == 0 { f64::NAN } else { 0.0 };
    let mut out = vec![(0.0, none)];
    let mut i = 0;
    while i < all.len() {
        let t = all[i].score;
        while i < all.len() && all[i].score == t {
            let r = all[i];
            if r.masses.is_empty() {
                fps += 1;
            }
            for &m in &r.masses {
                if m < n_masses && !hit[m] {
                    hit[m] = true;
                    hits += 1;
                }
            }
            i += 1;
        }
        let sensitivity = if n_masses == 0 { f64::NAN } else { hits as f64 / n_masses as f64 };
        out.push((fps as f64 / n_images, sensitivity));
    }
    out
}

/// The sensitivity of a [`froc`] curve at `fp_rate` false positives per image: the best sensitivity of
/// any threshold whose false-positive rate does not exceed it. NaN when there are no masses.
pub fn sensitivity_at(curve: &[(f64, f64)], fp_rate: f64) -> f64 {
    let mut best = f64::NAN;
    for &(fp, s) in curve {
        if fp <= fp_rate + 1e-12 && !s.is_nan() {
            best = if best.is_nan() { s } else { best.max(s) };
        }
    }
    best
}

/// One score per breast: the highest score among its views (a breast is as suspicious as its most
/// suspicious view), with its label (malignant if any view is). Keyed by the caller's breast key
/// (patient pseudonym and laterality), in key order.
pub fn breast_scores<'a>(images: impl IntoIterator<Item = (&'a str, f64, bool)>) -> Vec<(f64, bool)> {
    let mut by_breast: BTreeMap<&str, (f64, bool)> = BTreeMap::new();
    for (key, score, malignant) in images {
        let e = by_breast.entry(key).or_insert((f64::NEG_INFINITY, false));
        e.0 = e.0.max(score);
        e.1 |= malignant;
    }
    by_breast.into_values().collect()
}

/// The whole-image headline figures of a split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WholeImageMetrics {
    /// ROC AUC of the image score, malignant images against all others.
    pub image_auc: f64,
    /// Its 95 % bootstrap interval.
    pub image_auc_ci95: [f64; 2],
    /// ROC AUC of the breast score ([`breast_scores`]: a breast's most suspicious view).
    pub breast_auc: f64,
    /// Its 95 % bootstrap interval.
    pub breast_auc_ci95: [f64; 2],
    /// Sensitivity for malignant masses at [`FROC_FP_RATES`] false positives per image, in that order.
    pub froc: Vec<(f64, f64)>,
    /// Images, of which malignant and normal (the rest hold a benign mass).
    pub n_images: usize,
    pub n_malignant: usize,
    pub n_normal: usize,
    /// Breasts (a woman's side, over its views).
    pub n_breasts: usize,
    /// Malignant masses the FROC counts.
    pub n_masses: usize,
}

impl WholeImageMetrics {
    /// Adds the metrics to `metrics.json`'s flat object: `image.auc`, `image.auc_ci95`, `breast.auc`,
    /// `breast.auc_ci95`, `detection.froc` (`{"0.25": s, "0.5": s, "1": s, "2": s}`, sensitivity by
    /// false positives per image), `detection.sensitivity_at_1fpi` (the same number as `"1"`, as a plain
    /// key for sweeps to optimise), and the counts. NaN becomes `null`.
    pub fn flatten_into(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::{Value, json};
        let num = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        out.insert("image.auc".into(), num(self.image_auc));
        out.insert("image.auc_ci95".into(), json!([num(self.image_auc_ci95[0]), num(self.image_auc_ci95[1])]));
        out.insert("image.n".into(), json!(self.n_images));
        out.insert("image.n_malignant".into(), json!(self.n_malignant));
        out.insert("image.n_normal".into(), json!(self.n_normal));
        out.insert("breast.auc".into(), num(self.breast_auc));
        out.insert("breast.auc_ci95".into(), json!([num(self.breast_auc_ci95[0]), num(self.breast_auc_ci95[1])]));
        out.insert("breast.n".into(), json!(self.n_breasts));
        let froc: serde_json::Map<String, Value> = self.froc.iter().map(|&(fp, s)| (format!("{fp}"), num(s))).collect();
        out.insert("detection.froc".into(), Value::Object(froc));
        let at1 = self.froc.iter().find(|p| p.0 == 1.0).map_or(f64::NAN, |p| p.1);
        out.insert("detection.sensitivity_at_1fpi".into(), num(at1));
        out.insert("detection.n_masses".into(), json!(self.n_masses));
    }
}

impl ImageMapMetrics {
    /// Adds the metrics under `prefix` (`image_attribution`, `image_saliency`, `image_form_only`).
    pub fn flatten_into(&self, prefix: &str, out: &mut serde_json::Map<String, serde_json::Value>) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) else {
            unreachable!("the record serialises to an object")
        };
        for (key, v) in fields {
            out.insert(format!("{prefix}.{key}"), v);
        }
    }
}

/// How one kind of whole-image highlight map (the GAN's, the saliency baseline, the form-only map)
/// places its weight, over the images of a split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageMapMetrics {
    /// Share of malignant images whose map maximum lies inside a malignant mass.
    pub pointing_game: f64,
    /// Mean over malignant images of the map's mass inside the malignant masses over its mass inside
    /// the breast.
    pub energy_in_lesion: f64,
    /// Mean over malignant images with a feature mask of the NCC between the map (inside the breast)
    /// and the malignancy-feature mask.
    pub ncc: f64,
    /// Mean total map mass (inside the breast) of normal images over that of malignant images: near 0
    /// when the map stays quiet on normal breasts, 1 or more when it lights them up as much.
    pub normal_to_malignant_mass: f64,
    /// Malignant images evaluated.
    pub n_malignant: usize,
    /// Normal images evaluated.
    pub n_normal: usize,
}

/// Accumulates [`ImageMapMetrics`] image by image (maps and masks are large; nothing is kept).
#[derive(Debug, Clone, Default)]
pub struct ImageMapAccumulator {
    hits: usize,
    energy_sum: f64,
    ncc_sum: f64,
    ncc_n: usize,
    malignant_mass_sum: f64,
    normal_mass_sum: f64,
    n_malignant: usize,
    n_normal: usize,
}

impl ImageMapAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a malignant image: its map, the union of its malignant masses' masks, their feature masks
    /// (all zero when the data has none) and its breast mask, all the same size.
    ///
    /// # Panics
    /// If the rasters differ in length.
    pub fn add_malignant(&mut self, map: &[f32], lesion: &[u8], features: &[u8], breast: &[u8]) {
        let inside = masked(map, breast);
        self.hits += usize::from(pointing_game(&inside, lesion));
        self.energy_sum += energy_in_mask(&inside, lesion);
        if let Some(r) = features.iter().any(|&v| v != 0).then(|| ncc(&inside, features)).flatten() {
            self.ncc_sum += r;
            self.ncc_n += 1;
        }
        self.malignant_mass_sum += inside.iter().map(|&v| f64::from(v)).sum::<f64>();
        self.n_malignant += 1;
    }

    /// Adds a normal image (no lesion): only its map's total inside the breast counts.
    ///
    /// # Panics
    /// If the rasters differ in length.
    pub fn add_normal(&mut self, map: &[f32], breast: &[u8]) {
        self.normal_mass_sum += masked(map, breast).iter().map(|&v| f64::from(v)).sum::<f64>();
        self.n_normal += 1;
    }

    /// The metrics; NaN where no image contributed.
    pub fn finish(&self) -> ImageMapMetrics {
        let mean = |sum: f64, n: usize| if n == 0 { f64::NAN } else { sum / n as f64 };
        let malignant_mass = mean(self.malignant_mass_sum, self.n_malignant);
        let normal_mass = mean(self.normal_mass_sum, self.n_normal);
        ImageMapMetrics {
            pointing_game: mean(self.hits as f64, self.n_malignant),
            energy_in_lesion: mean(self.energy_sum, self.n_malignant),
            ncc: mean(self.ncc_sum, self.ncc_n),
            normal_to_malignant_mass: if malignant_mass > 0.0 { normal_mass / malignant_mass } else { f64::NAN },
            n_malignant: self.n_malignant,
            n_normal: self.n_normal,
        }
    }
}

/// |map| inside the breast, 0 outside.
fn masked(map: &[f32], breast: &[u8]) -> Vec<f32> {
    assert_eq!(map.len(), breast.len(), "map and breast mask must have the same size");
    map.iter().zip(breast).map(|(&v, &b)| if b != 0 && !v.is_nan() { v.abs() } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(score: f64, masses: &[usize]) -> ScoredRegion {
        ScoredRegion { score, masses: masses.to_vec() }
    }

    #[test]
    fn boxes_overlap_masks_only_where_they_cover_a_pixel() {
        // 4 x 3 mask with one pixel at (2, 1).
        let mut mask = vec![0u8; 12];
        mask[4 + 2] = 1;
        assert!(box_overlaps_mask(&mask, 4, [2, 1, 1, 1]));
        assert!(box_overlaps_mask(&mask, 4, [-5, -5, 8, 7]));
        assert!(!box_overlaps_mask(&mask, 4, [0, 0, 2, 3]));
        assert!(!box_overlaps_mask(&mask, 4, [3, 0, 5, 5]));
        assert!(!box_overlaps_mask(&mask, 4, [10, 10, 2, 2]));
    }

    #[test]
    fn froc_by_hand() {
        // Three images, two malignant masses (0 in image 0, 1 in image 1); image 2 is normal.
        let images = vec![
            vec![region(0.9, &[0]), region(0.4, &[])],
            vec![region(0.7, &[]), region(0.6, &[1]), region(0.5, &[1])],
            vec![region(0.8, &[])],
        ];
        let curve = froc(&images, 2);
        // Thresholds 0.9, 0.8, 0.7, 0.6, 0.5, 0.4: (fp / 3 images, hits / 2).
        let expected = [
            (0.0, 0.0),
            (0.0, 0.5),
            (1.0 / 3.0, 0.5),
            (2.0 / 3.0, 0.5),
            (2.0 / 3.0, 1.0),
            (2.0 / 3.0, 1.0),
            (1.0, 1.0),
        ];
        assert_eq!(curve.len(), expected.len());
        for (a, b) in curve.iter().zip(expected) {
            assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12, "{curve:?}");
        }
        assert_eq!(sensitivity_at(&curve, 0.25), 0.5);
        assert_eq!(sensitivity_at(&curve, 0.5), 0.5);
        assert_eq!(sensitivity_at(&curve, 2.0 / 3.0), 1.0);
        assert_eq!(sensitivity_at(&curve, 2.0), 1.0);
        assert!(sensitivity_at(&froc(&images, 0), 1.0).is_nan());
    }

    #[test]
    fn froc_takes_tied_scores_together() {
        // A hit and a false positive at the same score: no threshold separates them.
        let images = vec![vec![region(0.5, &[0]), region(0.5, &[])]];
        assert_eq!(froc(&images, 1), vec![(0.0, 0.0), (1.0, 1.0)]);
        assert_eq!(sensitivity_at(&froc(&images, 1), 0.5), 0.0);
    }

    #[test]
    fn breasts_take_their_most_suspicious_view() {
        let images = [("pt-a/L", 0.2, false), ("pt-a/L", 0.9, true), ("pt-a/R", 0.3, false), ("pt-b/L", 0.1, false)];
        assert_eq!(breast_scores(images), vec![(0.9, true), (0.3, false), (0.1, false)]);
    }

    #[test]
    fn image_maps_by_hand() {
        // 1 x 4 images; breast everywhere but the last pixel.
        let breast = [1, 1, 1, 0];
        let lesion = [0, 1, 0, 0];
        let features = [0, 1, 0, 0];
        let mut acc = ImageMapAccumulator::new();
        // Hit: the maximum (outside the breast at pixel 3 is ignored) is on the lesion; energy 2/4.
        acc.add_malignant(&[1.0, 2.0, 1.0, 9.0], &lesion, &features, &breast);
        // Miss: the maximum is at pixel 0; energy 1/4.
        acc.add_malignant(&[3.0, 1.0, 0.0, 0.0], &lesion, &[0; 4], &breast);
        acc.add_normal(&[1.0, 1.0, 0.0, 5.0], &breast);
        let m = acc.finish();
        assert_eq!(m.pointing_game, 0.5);
        assert!((m.energy_in_lesion - (0.5 + 0.25) / 2.0).abs() < 1e-12);
        // Only the first image has a feature mask; NCC of [1, 2, 1, 0] with [0, 1, 0, 0].
        let expected_ncc = ncc(&[1.0, 2.0, 1.0, 0.0], &features).unwrap();
        assert!((m.ncc - expected_ncc).abs() < 1e-12);
        // Normal mass 2 against malignant mean (4 + 4) / 2.
        assert!((m.normal_to_malignant_mass - 0.5).abs() < 1e-12);
        assert_eq!((m.n_malignant, m.n_normal), (2, 1));
        assert!(ImageMapAccumulator::new().finish().pointing_game.is_nan());
    }
}
