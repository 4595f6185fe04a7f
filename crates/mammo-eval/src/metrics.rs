//! The metrics records written to `eval/metrics.json`, and their flat dotted-key form.
//!
//! Undefined values (a metric with no contributing patch) are NaN in memory and `null` in JSON: a
//! missing number must never be mistaken for a measured 0. Both records deserialise `null` back to NaN,
//! so a written file reads back into the same struct.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::classifier::{bootstrap_auc_ci, roc_auc, sensitivity_specificity};

/// Classifier performance on the test split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMetrics {
    /// ROC AUC of P(malignant) against the labels.
    pub auc: f64,
    /// 95% bootstrap percentile interval of the AUC, `[lower, upper]`.
    pub auc_ci95: [f64; 2],
    /// True positive rate at `threshold`.
    pub sensitivity: f64,
    /// True negative rate at `threshold`.
    pub specificity: f64,
    /// The operating threshold (chosen on validation; a case is called malignant when `score >= threshold`).
    pub threshold: f64,
    /// Malignant cases in the test split.
    pub n_pos: usize,
    /// Benign (and normal) cases in the test split.
    pub n_neg: usize,
}

impl ClassifierMetrics {
    /// Computes all classifier metrics on the test split, at a `threshold` chosen beforehand on
    /// validation (see [`crate::choose_threshold`]) and with a bootstrap of `replicates` draws from
    /// `seed` (see [`crate::bootstrap_auc_ci`]).
    ///
    /// `None` if one class is absent from the test split or any score is NaN: then there is no AUC to
    /// report, and a record full of placeholders would be worse than none.
    ///
    /// # Panics
    /// If `scores` and `labels` differ in length.
    pub fn compute(scores: &[f64], labels: &[bool], threshold: f64, replicates: usize, seed: u64) -> Option<Self> {
        let auc = roc_auc(scores, labels)?;
        let (lo, hi) = bootstrap_auc_ci(scores, labels, replicates, seed)?;
        let (sensitivity, specificity) = sensitivity_specificity(scores, labels, threshold);
        let n_pos = labels.iter().filter(|&&l| l).count();
        Some(ClassifierMetrics {
            auc,
            auc_ci95: [lo, hi],
            sensitivity,
            specificity,
            threshold,
            n_pos,
            n_neg: labels.len() - n_pos,
        })
    }
}

/// Agreement between one kind of map (the attribution GAN's |m|, or the saliency baseline) and the
/// ground-truth masks, aggregated over the test patches (see [`crate::MapMetricsAccumulator`] for the
/// rules). NaN (`null` in JSON) where no patch contributed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MapMetrics {
    /// Pixel-level average precision inside the breast, all patches pooled.
    #[serde(deserialize_with = "f64_or_nan")]
    pub pxap: f64,
    /// Mean per-patch normalised cross-correlation between map and mask.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ncc: f64,
    /// Pointing-game hit rate (share of patches whose map maximum lies in the mask).
    #[serde(deserialize_with = "f64_or_nan")]
    pub pointing_game: f64,
    /// Mean share of map energy inside the mask.
    #[serde(deserialize_with = "f64_or_nan")]
    pub energy_in_mask: f64,
    /// Mean drop of P(malignant) from x to x + m (NaN for a method without a counterfactual).
    #[serde(deserialize_with = "f64_or_nan")]
    pub counterfactual_drop: f64,
    /// Patches evaluated.
    pub n: usize,
}

/// Reads a JSON number, or `null` as NaN (serde_json writes NaN as `null`).
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The flat object for `eval/metrics.json`: every field of each record under its prefix, e.g.
/// `classifier.auc`, `classifier.auc_ci95` (a 2-element array), `classifier.sensitivity`,
/// `classifier.threshold`, `classifier.n_pos`, `attribution.pxap`, …, `saliency.counterfactual_drop`,
/// `saliency.n`. A record that is `None` contributes no keys. NaN values become `null`.
///
/// Keys are sorted (serde_json's default map), so the file is byte-stable for equal metrics.
pub fn flatten_metrics(
    classifier: Option<&ClassifierMetrics>,
    attribution: Option<&MapMetrics>,
    saliency: Option<&MapMetrics>,
    form_only: Option<&MapMetrics>,
) -> Map<String, Value> {
    let mut out = Map::new();
    // Going through serde keeps the key list in one place (the struct) instead of repeating it here.
    // A missing record still lists its keys, as null: readers of metrics.json find every key, always.
    let records = [
        ("classifier", serde_json::to_value(classifier.copied().unwrap_or_default()), classifier.is_some()),
        ("attribution", serde_json::to_value(attribution.copied().unwrap_or_default()), attribution.is_some()),
        ("saliency", serde_json::to_value(saliency.copied().unwrap_or_default()), saliency.is_some()),
        ("form_only", serde_json::to_value(form_only.copied().unwrap_or_default()), form_only.is_some()),
    ];
    for (prefix, value, present) in records {
        let Ok(Value::Object(fields)) = value else { unreachable!("the metrics records serialise to objects") };
        for (key, v) in fields {
            out.insert(format!("{prefix}.{key}"), if present { v } else { Value::Null });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_metrics() -> MapMetrics {
        MapMetrics {
            pxap: 0.5,
            ncc: 0.25,
            pointing_game: 0.75,
            energy_in_mask: 0.4,
            counterfactual_drop: f64::NAN,
            n: 12,
        }
    }

    #[test]
    fn compute_by_hand() {
        let scores = [0.1, 0.4, 0.35, 0.8];
        let labels = [false, false, true, true];
        let m = ClassifierMetrics::compute(&scores, &labels, 0.5, 200, 3).unwrap();
        assert_eq!(m.auc, 0.75);
        assert!(m.auc_ci95[0] <= m.auc_ci95[1]);
        assert_eq!((m.sensitivity, m.specificity), (0.5, 1.0));
        assert_eq!((m.n_pos, m.n_neg, m.threshold), (2, 2, 0.5));
        assert_eq!(ClassifierMetrics::compute(&[0.1], &[true], 0.5, 200, 3), None);
    }

    #[test]
    fn flat_keys() {
        let c = ClassifierMetrics {
            auc: 0.9,
            auc_ci95: [0.85, 0.95],
            sensitivity: 0.8,
            specificity: 0.7,
            threshold: 0.4,
            n_pos: 10,
            n_neg: 20,
        };
        let m = map_metrics();
        let flat = flatten_metrics(Some(&c), Some(&m), Some(&m), Some(&m));
        for key in [
            "classifier.auc",
            "classifier.auc_ci95",
            "classifier.sensitivity",
            "classifier.specificity",
            "classifier.threshold",
            "attribution.pxap",
            "attribution.ncc",
            "attribution.pointing_game",
            "attribution.energy_in_mask",
            "attribution.counterfactual_drop",
            "saliency.pxap",
            "saliency.ncc",
            "saliency.pointing_game",
            "saliency.energy_in_mask",
            "saliency.counterfactual_drop",
            "form_only.pxap",
            "form_only.ncc",
        ] {
            assert!(flat.contains_key(key), "missing {key}");
        }
        assert_eq!(flat["classifier.auc_ci95"], serde_json::json!([0.85, 0.95]));
        assert_eq!(flat["attribution.pointing_game"], serde_json::json!(0.75));
        assert_eq!(flat["saliency.counterfactual_drop"], Value::Null);
        assert_eq!(flat.len(), 7 + 6 + 6 + 6);
        let only_classifier = flatten_metrics(Some(&c), None, None, None);
        assert_eq!(only_classifier.len(), flat.len(), "absent records keep their keys");
        assert_eq!(only_classifier["attribution.pxap"], Value::Null);
        assert_eq!(only_classifier["saliency.n"], Value::Null);
        assert_eq!(only_classifier["classifier.auc"], serde_json::json!(0.9));
    }

    #[test]
    fn nan_round_trips_through_null() {
        let m = map_metrics();
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"counterfactual_drop\":null"), "{json}");
        let back: MapMetrics = serde_json::from_str(&json).unwrap();
        assert!(back.counterfactual_drop.is_nan());
        assert_eq!((back.pxap, back.n), (0.5, 12));
    }
}
