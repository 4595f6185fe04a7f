//! Attribution-map metrics: how well a map (|m| from the attribution GAN, or a gradient-saliency
//! magnitude) agrees with a ground-truth mask.
//!
//! Inputs are row-major rasters of one patch, all the same length:
//! - `map`: the attribution magnitude, non-negative (callers pass |m|, not m).
//! - `mask`: the target, 0/1 (any non-zero byte counts as 1): the malignancy-feature mask where the data
//!   has one, else the lesion mask.
//! - `valid`: the breast region, 0/1 (non-zero = inside). Only PxAP uses it: pixels outside the breast are
//!   trivially "not lesion" and would inflate the precision of any map that is zero there.
//!
//! Per-patch functions return the patch's value; [`MapMetricsAccumulator`] aggregates a whole split the
//! way the report and `metrics.json` expect. A length mismatch between rasters is a caller bug and
//! panics.

use crate::metrics::MapMetrics;

/// Asserts that the rasters of one patch have the same length.
fn check_len(map: &[f32], other: &[u8], what: &str) {
    assert_eq!(map.len(), other.len(), "map and {what} must have the same number of pixels");
}

/// Collects `(score, is_positive)` pixels from many patches and computes pixel-level average precision
/// (PxAP) over all of them pooled.
///
/// Pooling (rather than averaging per-patch AP) is the definition of PxAP (Choe et al., CVPR 2020): a
/// map's scale must be comparable across patches for a single threshold to work. Pixels are kept in two
/// `Vec<f32>` (positives, negatives), 4 bytes each: 5,000 patches of 64×64 take about 80 MB.
#[derive(Debug, Clone, Default)]
pub struct PxapAccumulator {
    positives: Vec<f32>,
    negatives: Vec<f32>,
}

impl PxapAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the pixels of one patch that lie inside the breast (`valid != 0`), each labelled positive
    /// where `mask != 0`.
    ///
    /// A NaN map value is stored as −∞: it never ranks a pixel above a real value, so a broken map cannot
    /// score well by accident.
    ///
    /// # Panics
    /// If the rasters differ in length.
    pub fn add_patch(&mut self, map: &[f32], mask: &[u8], valid: &[u8]) {
        check_len(map, mask, "mask");
        check_len(map, valid, "valid");
        for ((&m, &t), &v) in map.iter().zip(mask).zip(valid) {
            if v == 0 {
                continue;
            }
            let score = if m.is_nan() { f32::NEG_INFINITY } else { m };
            if t != 0 { self.positives.push(score) } else { self.negatives.push(score) }
        }
    }

    /// Moves the pixels of `other` into `self` (for accumulating on several threads).
    pub fn merge(&mut self, mut other: PxapAccumulator) {
        self.positives.append(&mut other.positives);
        self.negatives.append(&mut other.negatives);
    }

    /// The number of positive (in-mask) pixels collected so far.
    pub fn n_positive(&self) -> usize {
        self.positives.len()
    }

    /// The number of negative (out-of-mask, in-breast) pixels collected so far.
    pub fn n_negative(&self) -> usize {
        self.negatives.len()
    }

    /// Average precision over all pixels collected, exactly as sklearn's `average_precision_score`:
    /// `AP = Σₙ (Rₙ − Rₙ₋₁) Pₙ` over the distinct scores in descending order (a step function, no
    /// interpolation; tied pixels enter together).
    ///
    /// Sorts the collected pixels in place (instead of copying tens of millions of values); the
    /// accumulator stays valid and can take more patches afterwards. `None` if no positive pixel was seen.
    pub fn average_precision(&mut self) -> Option<f64> {
        self.positives.sort_unstable_by(|a, b| b.total_cmp(a));
        self.negatives.sort_unstable_by(|a, b| b.total_cmp(a));
        ap_from_descending(&self.positives, &self.negatives)
    }
}

/// PxAP of a whole split in one call: `(map, mask, valid)` for each patch, pooled as in
/// [`PxapAccumulator`]. `None` if no in-breast pixel is positive.
///
/// # Panics
/// If a patch's three rasters differ in length.
pub fn pxap<'a>(patches: impl IntoIterator<Item = (&'a [f32], &'a [u8], &'a [u8])>) -> Option<f64> {
    let mut acc = PxapAccumulator::new();
    for (map, mask, valid) in patches {
        acc.add_patch(map, mask, valid);
    }
    acc.average_precision()
}

/// Average precision of `scores` against `labels` (true = positive), as sklearn's
/// `average_precision_score`; see [`PxapAccumulator::average_precision`] for the definition.
///
/// `None` if there is no positive or any score is NaN.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "scores and labels must have the same length");
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut pos: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| **l).map(|(s, _)| *s).collect();
    let mut neg: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| !**l).map(|(s, _)| *s).collect();
    pos.sort_unstable_by(|a, b| b.total_cmp(a));
    neg.sort_unstable_by(|a, b| b.total_cmp(a));
    ap_from_descending(&pos, &neg)
}

/// AP from positive and negative scores, each sorted descending, without NaN.
///
/// Merges the two lists one distinct score at a time: every pixel with that score is called positive at
/// once, so ties are handled as sklearn does (one step per distinct threshold).
fn ap_from_descending<T: Copy + PartialOrd>(pos: &[T], neg: &[T]) -> Option<f64> {
    if pos.is_empty() {
        return None;
    }
    let total = pos.len() as f64;
    let (mut i, mut j, mut ap) = (0usize, 0usize, 0.0f64);
    while i < pos.len() || j < neg.len() {
        let t = match (pos.get(i), neg.get(j)) {
            (Some(&p), Some(&n)) => {
                if p >= n {
                    p
                } else {
                    n
                }
            }
            (Some(&p), None) => p,
            (None, Some(&n)) => n,
            (None, None) => unreachable!(),
        };
        let i0 = i;
        while i < pos.len() && pos[i] == t {
            i += 1;
        }
        while j < neg.len() && neg[j] == t {
            j += 1;
        }
        if i > i0 {
            // Recall rises by (i - i0) / P at this threshold; precision is tp / (tp + fp) with tp = i, fp = j.
            ap += (i - i0) as f64 / total * (i as f64 / (i + j) as f64);
        }
    }
    Some(ap)
}

/// Normalised cross-correlation (Pearson's r) between a map and a 0/1 mask, over the whole patch.
///
/// `None` when either is constant (an empty or full mask, an all-zero map): r is undefined there, and
/// counting it as 0 would mix "no information" with "uncorrelated". Callers average the defined values.
/// Computed in two passes in f64 (means first), which stays accurate for maps with a large offset.
///
/// # Panics
/// If `map` and `mask` differ in length.
pub fn ncc(map: &[f32], mask: &[u8]) -> Option<f64> {
    check_len(map, mask, "mask");
    if map.is_empty() {
        return None;
    }
    let n = map.len() as f64;
    let target = |t: u8| if t != 0 { 1.0 } else { 0.0 };
    let mean_m = map.iter().map(|&m| f64::from(m)).sum::<f64>() / n;
    let mean_t = mask.iter().map(|&t| target(t)).sum::<f64>() / n;
    let (mut cov, mut var_m, mut var_t) = (0.0, 0.0, 0.0);
    for (&m, &t) in map.iter().zip(mask) {
        let dm = f64::from(m) - mean_m;
        let dt = target(t) - mean_t;
        cov += dm * dt;
        var_m += dm * dm;
        var_t += dt * dt;
    }
    if var_m == 0.0 || var_t == 0.0 {
        return None;
    }
    Some(cov / (var_m * var_t).sqrt())
}

/// The pointing game: is the map's maximum inside the mask?
///
/// The argmax is the **first** maximal pixel in row-major order (ties go to the lowest index), and NaN
/// values are ignored. An empty or all-NaN map scores a miss. Note that a constant map "points" at pixel
/// 0, so a degenerate map is a hit only if the mask covers the top-left corner.
///
/// # Panics
/// If `map` and `mask` differ in length.
pub fn pointing_game(map: &[f32], mask: &[u8]) -> bool {
    check_len(map, mask, "mask");
    let mut best: Option<(usize, f32)> = None;
    for (i, &m) in map.iter().enumerate() {
        // Strictly greater keeps the first of equal maxima; NaN fails every comparison.
        if !m.is_nan() && best.is_none_or(|(_, b)| m > b) {
            best = Some((i, m));
        }
    }
    best.is_some_and(|(i, _)| mask[i] != 0)
}

/// The share of the map's total energy (sum of values) that lies inside the mask, in [0, 1] for a
/// non-negative map; 0 if the map sums to 0.
///
/// # Panics
/// If `map` and `mask` differ in length.
pub fn energy_in_mask(map: &[f32], mask: &[u8]) -> f64 {
    check_len(map, mask, "mask");
    let (mut inside, mut total) = (0.0f64, 0.0f64);
    for (&m, &t) in map.iter().zip(mask) {
        total += f64::from(m);
        if t != 0 {
            inside += f64::from(m);
        }
    }
    if total == 0.0 { 0.0 } else { inside / total }
}

/// The mean drop in P(malignant) from the input x to the counterfactual x + m:
/// `mean(p_before[i] − p_after[i])`. Positive when the map removes what the classifier sees as malignant.
/// NaN for empty input (the mean of nothing), which `metrics.json` records as `null`.
///
/// # Panics
/// If the two slices differ in length.
pub fn counterfactual_drop(p_before: &[f64], p_after: &[f64]) -> f64 {
    assert_eq!(p_before.len(), p_after.len(), "p_before and p_after must have the same length");
    if p_before.is_empty() {
        return f64::NAN;
    }
    p_before.iter().zip(p_after).map(|(b, a)| b - a).sum::<f64>() / p_before.len() as f64
}

/// Aggregates the map metrics of one method (attribution or saliency) over many patches into a
/// [`MapMetrics`].
///
/// Aggregation rules:
/// - `pxap`: pooled over all in-breast pixels of all patches ([`PxapAccumulator`]).
/// - `ncc`: the mean over patches where it is defined (see [`ncc`]).
/// - `pointing_game`: the hit rate over patches whose lesion mask is non-empty, and `energy_in_mask`:
///   the mean over patches whose target mask is non-empty (with no target there is nothing to point at).
/// - `counterfactual_drop`: the mean over patches added with probabilities.
/// - `n`: every patch added.
///
/// Metrics with no contributing patch are NaN (`null` in JSON).
#[derive(Debug, Clone, Default)]
pub struct MapMetricsAccumulator {
    pxap: PxapAccumulator,
    ncc_sum: f64,
    ncc_n: usize,
    hits: usize,
    pointed_n: usize,
    energy_sum: f64,
    targeted_n: usize,
    drop_sum: f64,
    drop_n: usize,
    n: usize,
}

impl MapMetricsAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one patch: its map, the target `mask` of PxAP, NCC and energy (the malignancy features where
    /// the data has them, else the lesion), the `lesion` mask the pointing game aims at (body and
    /// spicules, as the issue defines it), and `valid`, the in-breast pixels. `probabilities` is
    /// `Some((P(malignant | x), P(malignant | x + m)))` where the method has a counterfactual (the
    /// attribution GAN), `None` otherwise (plain saliency).
    ///
    /// # Panics
    /// If the rasters differ in length.
    pub fn add_patch(
        &mut self,
        map: &[f32],
        mask: &[u8],
        lesion: &[u8],
        valid: &[u8],
        probabilities: Option<(f64, f64)>,
    ) {
        self.pxap.add_patch(map, mask, valid);
        if let Some(r) = ncc(map, mask) {
            self.ncc_sum += r;
            self.ncc_n += 1;
        }
        if mask.iter().any(|&t| t != 0) {
            self.energy_sum += energy_in_mask(map, mask);
            self.targeted_n += 1;
        }
        if lesion.iter().any(|&t| t != 0) {
            self.hits += usize::from(pointing_game(map, lesion));
            self.pointed_n += 1;
        }
        if let Some((before, after)) = probabilities {
            self.drop_sum += before - after;
            self.drop_n += 1;
        }
        self.n += 1;
    }

    /// The aggregated metrics. Sorts the pooled pixels in place (see
    /// [`PxapAccumulator::average_precision`]); more patches may still be added afterwards.
    pub fn finish(&mut self) -> MapMetrics {
        let mean = |sum: f64, n: usize| if n == 0 { f64::NAN } else { sum / n as f64 };
        MapMetrics {
            pxap: self.pxap.average_precision().unwrap_or(f64::NAN),
            ncc: mean(self.ncc_sum, self.ncc_n),
            pointing_game: mean(self.hits as f64, self.pointed_n),
            energy_in_mask: mean(self.energy_sum, self.targeted_n),
            counterfactual_drop: mean(self.drop_sum, self.drop_n),
            n: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn ap_matches_sklearn_docs() {
        // average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!(close(ap, 5.0 / 6.0), "{ap}");
    }

    #[test]
    fn ap_with_ties_matches_sklearn() {
        // sklearn 1.9: average_precision_score(y, s) = 0.75 for this tied example; by hand:
        // 0.9 → +¼·1, 0.7 (1 pos, 1 neg) → +¼·⅔, 0.5 (2 pos, 1 neg) → +½·(4/6).
        let y = [0, 1, 0, 1, 1, 0, 1, 0].map(|v| v == 1);
        let s = [0.5, 0.5, 0.2, 0.9, 0.5, 0.1, 0.7, 0.7];
        assert!(close(average_precision(&s, &y).unwrap(), 0.75));
        // sklearn 1.9 on 40 cases with heavy ties (numpy default_rng(3)): 0.4136327503974563.
        let y = [
            1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0,
            1, 0, 0, 1,
        ]
        .map(|v| v == 1);
        let s = [
            0.75, 0.75, 0.75, 0.75, 0.5, 0.75, 1.0, 0.0, 0.75, 0.5, 0.5, 0.25, 0.75, 0.25, 0.75, 0.25, 0.5, 0.5, 0.5,
            0.25, 0.25, 0.75, 0.75, 0.5, 1.0, 0.25, 0.75, 0.25, 1.0, 0.5, 0.5, 1.0, 0.75, 0.75, 0.0, 0.25, 0.0, 0.25,
            0.25, 0.75,
        ];
        assert!(close(average_precision(&s, &y).unwrap(), 0.4136327503974563));
    }

    #[test]
    fn ap_edge_cases() {
        assert_eq!(average_precision(&[0.3, 0.2], &[false, false]), None);
        assert_eq!(average_precision(&[0.3, f64::NAN], &[true, false]), None);
        // All positives: precision is 1 everywhere.
        assert_eq!(average_precision(&[0.3, 0.2], &[true, true]), Some(1.0));
        // A constant score: one step at precision = prevalence.
        assert_eq!(average_precision(&[0.5; 4], &[true, false, false, false]), Some(0.25));
    }

    #[test]
    fn pxap_pools_valid_pixels_of_all_patches() {
        // Two 2×2 patches; the invalid pixel (score 9.0) would otherwise be the top-ranked negative.
        let mut acc = PxapAccumulator::new();
        acc.add_patch(&[0.8, 0.4, 9.0, 0.0], &[1, 0, 0, 0], &[1, 1, 0, 1]);
        acc.add_patch(&[0.35, 0.1, 0.0, 0.0], &[1, 0, 0, 0], &[1, 1, 0, 0]);
        assert_eq!((acc.n_positive(), acc.n_negative()), (2, 3));
        // Pooled: positives 0.8, 0.35; negatives 0.4, 0.0, 0.1 → like the docs example: 0.5 + 0.5·⅔.
        assert!(close(acc.average_precision().unwrap(), 5.0 / 6.0));
        // The accumulator is still usable after computing, and merge pools.
        let mut other = PxapAccumulator::new();
        other.add_patch(&[1.0], &[0], &[1]);
        acc.merge(other);
        // Negative 1.0 now ranks first: 0.5·½ + 0.5·(2/4).
        assert!(close(acc.average_precision().unwrap(), 0.5));
        // The one-call form pools the same way.
        let patches: [(&[f32], &[u8], &[u8]); 2] = [
            (&[0.8, 0.4, 9.0, 0.0], &[1, 0, 0, 0], &[1, 1, 0, 1]),
            (&[0.35, 0.1, 0.0, 0.0], &[1, 0, 0, 0], &[1, 1, 0, 0]),
        ];
        assert!(close(pxap(patches).unwrap(), 5.0 / 6.0));
    }

    #[test]
    fn pxap_ranks_nan_last() {
        let mut acc = PxapAccumulator::new();
        acc.add_patch(&[f32::NAN, 0.1], &[1, 0], &[1, 1]);
        // The positive ranks below the negative: precision ½ at full recall.
        assert_eq!(acc.average_precision(), Some(0.5));
        assert_eq!(PxapAccumulator::new().average_precision(), None);
    }

    #[test]
    fn ncc_by_hand() {
        // Perfect agreement, anti-agreement, and a hand-computed case.
        assert!(close(ncc(&[0.0, 2.0, 0.0, 2.0], &[0, 1, 0, 1]).unwrap(), 1.0));
        assert!(close(ncc(&[1.0, 0.0], &[0, 1]).unwrap(), -1.0));
        // map [1,2,3,4], mask [0,0,1,1]: means 2.5, 0.5; cov = (-1.5·-.5)+(-.5·-.5)+(.5·.5)+(1.5·.5) = 2;
        // var_m = 5, var_t = 1 → r = 2/√5.
        assert!(close(ncc(&[1.0, 2.0, 3.0, 4.0], &[0, 0, 1, 1]).unwrap(), 2.0 / 5f64.sqrt()));
        // Mask bytes other than 1 count as 1.
        assert!(close(ncc(&[1.0, 2.0, 3.0, 4.0], &[0, 0, 255, 1]).unwrap(), 2.0 / 5f64.sqrt()));
        // Undefined when either side is constant.
        assert_eq!(ncc(&[0.0; 4], &[0, 0, 1, 1]), None);
        assert_eq!(ncc(&[1.0, 2.0], &[0, 0]), None);
        assert_eq!(ncc(&[], &[]), None);
    }

    #[test]
    fn ncc_is_invariant_to_offset_and_scale() {
        let map = [0.1f32, 0.7, 0.3, 0.9, 0.2, 0.0];
        let mask = [0, 1, 0, 1, 1, 0];
        let shifted: Vec<f32> = map.iter().map(|m| 1000.0 + 3.0 * m).collect();
        let (a, b) = (ncc(&map, &mask).unwrap(), ncc(&shifted, &mask).unwrap());
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    #[test]
    fn pointing_game_by_hand() {
        assert!(pointing_game(&[0.1, 0.9, 0.3], &[0, 1, 0]));
        assert!(!pointing_game(&[0.1, 0.9, 0.3], &[1, 0, 1]));
        // Ties: the first maximum decides.
        assert!(pointing_game(&[0.9, 0.2, 0.9], &[1, 0, 0]));
        assert!(!pointing_game(&[0.9, 0.2, 0.9], &[0, 0, 1]));
        // NaN is ignored; empty or all-NaN is a miss.
        assert!(pointing_game(&[f32::NAN, 0.5, 0.1], &[1, 1, 0]));
        assert!(!pointing_game(&[], &[]));
        assert!(!pointing_game(&[f32::NAN], &[1]));
    }

    #[test]
    fn energy_in_mask_by_hand() {
        assert!(close(energy_in_mask(&[1.0, 3.0, 0.0, 4.0], &[0, 1, 1, 0]), 3.0 / 8.0));
        assert_eq!(energy_in_mask(&[0.0; 3], &[1, 1, 1]), 0.0);
        assert_eq!(energy_in_mask(&[2.0, 2.0], &[1, 1]), 1.0);
    }

    #[test]
    fn counterfactual_drop_by_hand() {
        assert!(close(counterfactual_drop(&[0.9, 0.8, 0.6], &[0.1, 0.5, 0.7]), (0.8 + 0.3 - 0.1) / 3.0));
        assert!(counterfactual_drop(&[], &[]).is_nan());
    }

    #[test]
    fn accumulator_aggregates_by_the_documented_rules() {
        let mut acc = MapMetricsAccumulator::new();
        let valid = [1u8; 4];
        // Patch 1: hit, energy 1, ncc 1.
        acc.add_patch(&[0.0, 1.0, 0.0, 1.0], &[0, 1, 0, 1], &[0, 1, 0, 1], &valid, Some((0.9, 0.2)));
        // Patch 2: miss (the maximum is pixel 0), energy 0.25 (1 of 4).
        acc.add_patch(&[3.0, 1.0, 0.0, 0.0], &[0, 1, 0, 0], &[0, 1, 1, 0], &valid, Some((0.7, 0.6)));
        // Patch 3: empty mask → counts in n and PxAP only; no probabilities.
        acc.add_patch(&[0.5, 0.5, 0.5, 0.5], &[0, 0, 0, 0], &[0, 0, 0, 0], &valid, None);
        // Patch 4: no feature target, but a lesion: the maximum (pixel 2) is inside the lesion, so it
        // counts as a hit for the pointing game, and in nothing else but n and PxAP.
        acc.add_patch(&[0.0, 0.1, 0.9, 0.0], &[0, 0, 0, 0], &[0, 0, 1, 1], &valid, None);
        let m = acc.finish();
        assert_eq!(m.n, 4);
        assert!(close(m.pointing_game, 2.0 / 3.0));
        assert!(close(m.energy_in_mask, (1.0 + 0.25) / 2.0));
        let ncc2 = ncc(&[3.0, 1.0, 0.0, 0.0], &[0, 1, 0, 0]).unwrap();
        assert!(close(m.ncc, (1.0 + ncc2) / 2.0));
        assert!(close(m.counterfactual_drop, (0.7 + 0.1) / 2.0));
        let mut pooled = PxapAccumulator::new();
        pooled.add_patch(&[0.0, 1.0, 0.0, 1.0], &[0, 1, 0, 1], &valid);
        pooled.add_patch(&[3.0, 1.0, 0.0, 0.0], &[0, 1, 0, 0], &valid);
        pooled.add_patch(&[0.5; 4], &[0; 4], &valid);
        pooled.add_patch(&[0.0, 0.1, 0.9, 0.0], &[0; 4], &valid);
        assert_eq!(m.pxap, pooled.average_precision().unwrap());

        let empty = MapMetricsAccumulator::new().finish();
        assert_eq!(empty.n, 0);
        assert!(empty.pxap.is_nan() && empty.ncc.is_nan() && empty.counterfactual_drop.is_nan());
    }

    #[test]
    #[should_panic(expected = "same number of pixels")]
    fn mismatched_rasters_panic() {
        energy_in_mask(&[1.0, 2.0], &[1]);
    }
}
