//! Classifier metrics: ROC AUC with a bootstrap confidence interval, the ROC curve, the operating
//! threshold (Youden's J on validation) and sensitivity/specificity at it.
//!
//! Conventions shared by every function here:
//! - `labels[i] == true` means malignant (the positive class); a case is *called* positive when
//!   `score >= threshold`.
//! - `scores` and `labels` must have the same length; a mismatch is a caller bug and panics.
//! - A NaN score has no place in a ranking, so the ranking functions return `None` (or an empty curve)
//!   rather than inventing an order for it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The bootstrap replicates behind an AUC's 95% interval unless a caller asks for another number.
pub const DEFAULT_BOOTSTRAP_REPLICATES: usize = 2000;

/// The threshold [`choose_threshold`] falls back to when Youden's J is undefined (a class is absent from
/// the validation split): scores are probabilities, so 0.5 is the neutral cut.
pub const FALLBACK_THRESHOLD: f64 = 0.5;

/// The cases sorted by ascending score, with runs of equal scores marked as tie groups.
///
/// Sorting once and then walking the groups lets the AUC of any re-weighting of the cases (a bootstrap
/// replicate is one) be computed in linear time, exactly as the rank formula would.
struct Ranked<'a> {
    labels: &'a [bool],
    /// Case indices in ascending score order.
    order: Vec<usize>,
    /// `order[groups[g]..groups[g + 1]]` is the g-th run of equal scores.
    groups: Vec<usize>,
}

impl<'a> Ranked<'a> {
    /// Sorts the cases; `None` if any score is NaN.
    fn new(scores: &[f64], labels: &'a [bool]) -> Option<Self> {
        assert_eq!(scores.len(), labels.len(), "scores and labels must have the same length");
        if scores.iter().any(|s| s.is_nan()) {
            return None;
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Stable sort on a total order: the result never depends on the input's accidental layout.
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut groups = vec![0];
        for k in 1..order.len() {
            // `==` rather than total_cmp, so that -0.0 and 0.0 form one tie group.
            if scores[order[k]] != scores[order[k - 1]] {
                groups.push(k);
            }
        }
        groups.push(order.len());
        Some(Ranked { labels, order, groups })
    }

    /// The tie groups as slices of case indices, ascending by score.
    fn tie_groups(&self) -> impl DoubleEndedIterator<Item = &[usize]> {
        self.groups.windows(2).map(|w| &self.order[w[0]..w[1]])
    }

    /// The Mann–Whitney AUC when case `i` counts `weight(i)` times: P(score of a random positive >
    /// score of a random negative) + ½ P(tie). `None` if either class has zero total weight.
    ///
    /// Counting pairs group by group is the rank formula with mid-ranks for ties, written so that the
    /// numerator stays an exact integer (doubled to absorb the ½) and is divided once at the end.
    fn auc_weighted(&self, weight: impl Fn(usize) -> u64) -> Option<f64> {
        let (mut pos_total, mut neg_total, mut neg_below, mut twice_pairs) = (0u64, 0u64, 0u64, 0u128);
        for group in self.tie_groups() {
            let (mut p, mut n) = (0u64, 0u64);
            for &i in group {
                if self.labels[i] {
                    p += weight(i);
                } else {
                    n += weight(i);
                }
            }
            twice_pairs += 2 * u128::from(p) * u128::from(neg_below) + u128::from(p) * u128::from(n);
            neg_below += n;
            pos_total += p;
            neg_total += n;
        }
        if pos_total == 0 || neg_total == 0 {
            return None;
        }
        Some(twice_pairs as f64 / (2.0 * pos_total as f64 * neg_total as f64))
    }

    /// Walks thresholds from the highest score down: for each distinct score `t`, yields
    /// `(t, true positives, false positives)` with a case called positive when `score >= t`.
    fn descending_counts(&self, scores: &'a [f64]) -> impl Iterator<Item = (f64, u64, u64)> + '_ {
        let (mut tp, mut fp) = (0u64, 0u64);
        self.tie_groups().rev().map(move |group| {
            for &i in group {
                if self.labels[i] {
                    tp += 1;
                } else {
                    fp += 1;
                }
            }
            (scores[group[0]], tp, fp)
        })
    }
}

/// Class counts `(positives, negatives)`.
fn class_counts(labels: &[bool]) -> (u64, u64) {
    let pos = labels.iter().filter(|&&l| l).count() as u64;
    (pos, labels.len() as u64 - pos)
}

/// Area under the ROC curve, by the rank (Mann–Whitney U) formula: tied scores count ½ per
/// positive–negative pair, which equals the trapezoidal area under [`roc_curve`] and sklearn's
/// `roc_auc_score`.
///
/// Returns `None` if one class is absent (the AUC is undefined) or any score is NaN.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    Ranked::new(scores, labels)?.auc_weighted(|_| 1)
}

/// The ROC curve as `(false positive rate, true positive rate, threshold)` points, like sklearn's
/// `roc_curve(..., drop_intermediate=False)`.
///
/// The first point is `(0, 0, +inf)` (nothing called positive); then one point per distinct score, in
/// descending order of threshold, where a case is called positive when `score >= threshold`. The last
/// point is therefore `(1, 1, lowest score)`. Collinear points are kept: the curve is exact, and a few
/// thousand points are cheap to draw.
///
/// Returns an empty vector if one class is absent or any score is NaN.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64, f64)> {
    let (pos, neg) = class_counts(labels);
    let Some(ranked) = Ranked::new(scores, labels) else { return Vec::new() };
    if pos == 0 || neg == 0 {
        return Vec::new();
    }
    let mut curve = vec![(0.0, 0.0, f64::INFINITY)];
    curve.extend(
        ranked.descending_counts(scores).map(|(t, tp, fp)| (fp as f64 / neg as f64, tp as f64 / pos as f64, t)),
    );
    curve
}

/// A 95% percentile bootstrap interval `(lower, upper)` for [`roc_auc`].
///
/// Resampling is **stratified**: each replicate draws `n_pos` cases with replacement from the positives
/// and `n_neg` from the negatives. This keeps the class balance of the test set fixed (the quantity being
/// estimated is the AUC at that balance) and means no replicate can lack a class, so none has to be
/// redrawn or skipped and every one of the `replicates` counts. The bounds are the 2.5th and 97.5th
/// percentiles of the replicate AUCs, linearly interpolated between order statistics (numpy's default
/// `percentile` method).
///
/// Deterministic: the replicates come from a ChaCha8 generator seeded with `seed`, so the same inputs and
/// seed give the same interval on every machine.
///
/// Returns `None` if one class is absent, any score is NaN, or `replicates` is 0.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn bootstrap_auc_ci(scores: &[f64], labels: &[bool], replicates: usize, seed: u64) -> Option<(f64, f64)> {
    let ranked = Ranked::new(scores, labels)?;
    let positives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
    let negatives: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
    if positives.is_empty() || negatives.is_empty() || replicates == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A replicate is a multiset of cases: `counts[i]` is how often case i was drawn.
    let mut counts = vec![0u64; labels.len()];
    let mut aucs = Vec::with_capacity(replicates);
    for _ in 0..replicates {
        counts.iter_mut().for_each(|c| *c = 0);
        for class in [&positives, &negatives] {
            for _ in 0..class.len() {
                counts[class[rng.random_range(0..class.len())]] += 1;
            }
        }
        // Both classes are drawn at full size, so the weighted AUC is always defined.
        aucs.extend(ranked.auc_weighted(|i| counts[i]));
    }
    aucs.sort_by(f64::total_cmp);
    Some((percentile(&aucs, 2.5), percentile(&aucs, 97.5)))
}

/// The `q`-th percentile (0..=100) of sorted, non-empty `values`, linearly interpolated.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The operating threshold that maximises Youden's J = sensitivity + specificity − 1 on the validation
/// split.
///
/// Candidates are the distinct validation scores (a case is called positive when `score >= threshold`),
/// so the result is always a finite score that was actually seen. J is compared exactly (as the integer
/// `tp·n_neg − fp·n_pos`), so ties are real ties, not rounding noise. **Ties go to the highest
/// threshold**: among equally good cuts, the one that calls fewer cases malignant (higher specificity)
/// is preferred, which also makes the choice independent of the input order.
///
/// Falls back to [`FALLBACK_THRESHOLD`] (0.5) if one class is absent or any score is NaN, since J is
/// undefined then.
///
/// # Panics
/// If `val_scores` and `val_labels` differ in length.
pub fn choose_threshold(val_scores: &[f64], val_labels: &[bool]) -> f64 {
    let (pos, neg) = class_counts(val_labels);
    let Some(ranked) = Ranked::new(val_scores, val_labels) else { return FALLBACK_THRESHOLD };
    if pos == 0 || neg == 0 {
        return FALLBACK_THRESHOLD;
    }
    let mut best: Option<(i128, f64)> = None;
    for (t, tp, fp) in ranked.descending_counts(val_scores) {
        // J · n_pos · n_neg, exact.
        let j = i128::from(tp) * i128::from(neg) - i128::from(fp) * i128::from(pos);
        // Strictly greater: thresholds come in descending order, so the first (highest) one wins ties.
        if best.is_none_or(|(b, _)| j > b) {
            best = Some((j, t));
        }
    }
    best.map_or(FALLBACK_THRESHOLD, |(_, t)| t)
}

/// `(sensitivity, specificity)` when a case is called positive iff `score >= threshold`.
///
/// Sensitivity = TP / positives, specificity = TN / negatives; either is NaN if its class is absent. A NaN
/// score compares false, so it is called negative (a missed malignancy, never a silent pass).
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn sensitivity_specificity(scores: &[f64], labels: &[bool], threshold: f64) -> (f64, f64) {
    assert_eq!(scores.len(), labels.len(), "scores and labels must have the same length");
    let (pos, neg) = class_counts(labels);
    let (mut tp, mut tn) = (0u64, 0u64);
    for (&s, &l) in scores.iter().zip(labels) {
        let called = s >= threshold;
        match (l, called) {
            (true, true) => tp += 1,
            (false, false) => tn += 1,
            _ => {}
        }
    }
    let rate = |k: u64, total: u64| if total == 0 { f64::NAN } else { k as f64 / total as f64 };
    (rate(tp, pos), rate(tn, neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Labels of the sklearn-documentation example, as bools.
    fn doc_example() -> (Vec<f64>, Vec<bool>) {
        (vec![0.1, 0.4, 0.35, 0.8], vec![false, false, true, true])
    }

    /// A small example with ties across classes, checked against sklearn 1.9:
    /// roc_auc_score = 0.78125; roc_curve(drop_intermediate=False) below.
    fn tied_example() -> (Vec<f64>, Vec<bool>) {
        let y = [0, 1, 0, 1, 1, 0, 1, 0];
        (vec![0.5, 0.5, 0.2, 0.9, 0.5, 0.1, 0.7, 0.7], y.iter().map(|&v| v == 1).collect())
    }

    /// The rank formula written directly (average ranks for ties), as an independent reference.
    fn auc_by_ranks(scores: &[f64], labels: &[bool]) -> f64 {
        let n = scores.len();
        let mut rank_sum_pos = 0.0;
        for i in 0..n {
            let below = scores.iter().filter(|&&s| s < scores[i]).count() as f64;
            let equal = scores.iter().filter(|&&s| s == scores[i]).count() as f64;
            if labels[i] {
                rank_sum_pos += below + (equal + 1.0) / 2.0;
            }
        }
        let p = labels.iter().filter(|&&l| l).count() as f64;
        let q = n as f64 - p;
        (rank_sum_pos - p * (p + 1.0) / 2.0) / (p * q)
    }

    #[test]
    fn auc_matches_sklearn_docs() {
        let (s, y) = doc_example();
        assert!(close(roc_auc(&s, &y).unwrap(), 0.75));
    }

    #[test]
    fn auc_with_ties_matches_sklearn() {
        let (s, y) = tied_example();
        assert!(close(roc_auc(&s, &y).unwrap(), 0.78125));
    }

    #[test]
    fn auc_heavy_ties_matches_sklearn() {
        // 40 cases on a 5-level score grid (numpy default_rng(3)); sklearn gives 0.44245524296675187.
        let y = [
            1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0,
            1, 0, 0, 1,
        ];
        let s = [
            0.75, 0.75, 0.75, 0.75, 0.5, 0.75, 1.0, 0.0, 0.75, 0.5, 0.5, 0.25, 0.75, 0.25, 0.75, 0.25, 0.5, 0.5, 0.5,
            0.25, 0.25, 0.75, 0.75, 0.5, 1.0, 0.25, 0.75, 0.25, 1.0, 0.5, 0.5, 1.0, 0.75, 0.75, 0.0, 0.25, 0.0, 0.25,
            0.25, 0.75,
        ];
        let y: Vec<bool> = y.iter().map(|&v| v == 1).collect();
        assert!(close(roc_auc(&s, &y).unwrap(), 0.44245524296675187));
        assert!(close(roc_auc(&s, &y).unwrap(), auc_by_ranks(&s, &y)));
    }

    #[test]
    fn auc_extremes_and_undefined() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.3, 0.4], &y), Some(1.0));
        assert_eq!(roc_auc(&[0.4, 0.3, 0.2, 0.1], &y), Some(0.0));
        assert_eq!(roc_auc(&[0.5; 4], &y), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[], &[]), None);
        assert_eq!(roc_auc(&[0.1, f64::NAN, 0.3, 0.4], &y), None);
    }

    #[test]
    fn auc_equals_trapezoid_under_curve() {
        let (s, y) = tied_example();
        let curve = roc_curve(&s, &y);
        let area: f64 = curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        assert!(close(area, roc_auc(&s, &y).unwrap()));
    }

    #[test]
    fn curve_matches_sklearn() {
        let (s, y) = tied_example();
        let expected = [
            (0.0, 0.0, f64::INFINITY),
            (0.0, 0.25, 0.9),
            (0.25, 0.5, 0.7),
            (0.5, 1.0, 0.5),
            (0.75, 1.0, 0.2),
            (1.0, 1.0, 0.1),
        ];
        assert_eq!(roc_curve(&s, &y), expected);
        let (s, y) = doc_example();
        let expected = [(0.0, 0.0, f64::INFINITY), (0.0, 0.5, 0.8), (0.5, 0.5, 0.4), (0.5, 1.0, 0.35), (1.0, 1.0, 0.1)];
        assert_eq!(roc_curve(&s, &y), expected);
        assert!(roc_curve(&[0.3], &[true]).is_empty());
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_auc() {
        // 200 cases with overlapping scores, generated by a fixed formula.
        let n = 200;
        let labels: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let scores: Vec<f64> =
            (0..n).map(|i| ((i * 37 % 101) as f64 / 101.0) + if labels[i] { 0.3 } else { 0.0 }).collect();
        let auc = roc_auc(&scores, &labels).unwrap();
        let a = bootstrap_auc_ci(&scores, &labels, DEFAULT_BOOTSTRAP_REPLICATES, 7).unwrap();
        let b = bootstrap_auc_ci(&scores, &labels, DEFAULT_BOOTSTRAP_REPLICATES, 7).unwrap();
        let c = bootstrap_auc_ci(&scores, &labels, DEFAULT_BOOTSTRAP_REPLICATES, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.0 < auc && auc < a.1, "{a:?} should bracket {auc}");
        // Roughly the normal-theory width: AUC SE is about 0.03 here, so the interval is ~0.1 wide.
        assert!(a.1 - a.0 > 0.05 && a.1 - a.0 < 0.2, "{a:?}");
    }

    #[test]
    fn bootstrap_of_perfect_separation_is_a_point() {
        let y = [false, false, false, true, true];
        assert_eq!(bootstrap_auc_ci(&[0.1, 0.2, 0.3, 0.8, 0.9], &y, 100, 1), Some((1.0, 1.0)));
        assert_eq!(bootstrap_auc_ci(&[0.1, 0.2], &[false, false], 100, 1), None);
        assert_eq!(bootstrap_auc_ci(&[0.1, 0.2], &[false, true], 0, 1), None);
    }

    #[test]
    fn weighted_auc_equals_auc_of_the_expanded_sample() {
        // A bootstrap replicate is a multiset; its AUC must equal the plain AUC of the expanded list.
        let (s, y) = tied_example();
        let weights = [2u64, 0, 1, 3, 1, 1, 0, 2];
        let ranked = Ranked::new(&s, &y).unwrap();
        let weighted = ranked.auc_weighted(|i| weights[i]).unwrap();
        let (mut es, mut ey) = (Vec::new(), Vec::new());
        for i in 0..s.len() {
            for _ in 0..weights[i] {
                es.push(s[i]);
                ey.push(y[i]);
            }
        }
        assert!(close(weighted, auc_by_ranks(&es, &ey)));
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 97.5]) = [1.075, 3.925]
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!(close(percentile(&v, 2.5), 1.075));
        assert!(close(percentile(&v, 97.5), 3.925));
        assert_eq!(percentile(&[0.7], 2.5), 0.7);
    }

    #[test]
    fn youden_threshold_by_hand() {
        // Tied example: J at thresholds 0.9, 0.7, 0.5, 0.2, 0.1 = 0.25, 0.25, 0.5, 0.25, 0 → 0.5.
        let (s, y) = tied_example();
        assert_eq!(choose_threshold(&s, &y), 0.5);
        // Docs example: J at 0.8, 0.4, 0.35, 0.1 = 0.5, 0, 0.5, 0 → tie between 0.8 and 0.35; highest wins.
        let (s, y) = doc_example();
        assert_eq!(choose_threshold(&s, &y), 0.8);
        // The answer does not depend on input order.
        let (mut s2, mut y2) = doc_example();
        s2.reverse();
        y2.reverse();
        assert_eq!(choose_threshold(&s2, &y2), 0.8);
        assert_eq!(choose_threshold(&[0.2, 0.3], &[true, true]), FALLBACK_THRESHOLD);
    }

    #[test]
    fn sensitivity_specificity_by_hand() {
        let (s, y) = tied_example();
        // threshold 0.5: positives 0.5,0.9,0.5,0.7 all called → sens 1; negatives 0.5,0.2,0.1,0.7 → 2 of 4 below.
        assert_eq!(sensitivity_specificity(&s, &y, 0.5), (1.0, 0.5));
        // threshold 0.7: positives 0.9,0.7 called (2/4); negatives 0.5,0.2,0.1 below (3/4).
        assert_eq!(sensitivity_specificity(&s, &y, 0.7), (0.5, 0.75));
        let (sens, spec) = sensitivity_specificity(&[f64::NAN, 0.1], &[true, false], 0.5);
        assert_eq!((sens, spec), (0.0, 1.0));
        let (sens, spec) = sensitivity_specificity(&[0.9], &[true], 0.5);
        assert_eq!(sens, 1.0);
        assert!(spec.is_nan());
    }

    #[test]
    #[should_panic(expected = "same length")]
    fn length_mismatch_panics() {
        roc_auc(&[0.1, 0.2], &[true]);
    }
}
