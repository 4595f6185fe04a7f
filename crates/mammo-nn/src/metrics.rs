//! Evaluation metrics.

/// Area under the ROC curve of `scores` for `labels` (true = positive): the probability that a random
/// positive scores above a random negative, ties counting one half (Mann-Whitney U). `None` unless
/// both classes are present. NaN scores are ranked lowest.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])));
    // Sum of the positives' ranks, with tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && key(scores[order[j + 1]]) == key(scores[order[i]]) {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * mean_rank;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.9, 0.3, 0.5, 0.1], &[true, true, false, false]), Some(0.75));
        assert_eq!(roc_auc(&[0.9], &[true]), None);
    }
}
