//! `reproduce`'s two checks: the data is the run's data (named files when not), and the re-run's
//! outcome matches the original's — bit for bit on a deterministic backend, within a measured
//! tolerance otherwise.

use std::path::Path;

use serde::Serialize;

use crate::diff::{Change, diff, render_changes};
use crate::error::{Result, RunError};
use crate::manifest::{DatasetRef, Manifest};

/// The largest relative difference of final metrics accepted as "numerically equivalent" when the
/// backend does not promise bit-exactness (CUDA). Reduction order on GPUs changes the last bits of
/// every step; over a short run these stay far below this.
pub const TOLERANCE: f64 = 1e-2;

/// Checks that the DATASET in `dir` is the one `recorded` describes: every data file is re-hashed and
/// compared with the manifest. The error names each differing or missing file.
pub fn check_dataset(dir: &Path, recorded: &DatasetRef) -> Result<()> {
    let json = dir.join(mammo_prep::dataset::DATASET_JSON);
    if !json.is_file() {
        return Err(RunError::invalid(dir, "is not a DATASET (no dataset.json); pass the run's data with --data"));
    }
    let mut differing = Vec::new();
    for (file, hash) in &recorded.files {
        let p = dir.join(file);
        if !p.exists() {
            differing.push(format!("{file} (missing)"));
            continue;
        }
        let (_, found) = mammo_prep::dataset::hash_file(&p)?;
        if &found != hash {
            differing.push(format!("{file} (blake3 {} recorded, {} found)", &hash[..12.min(hash.len())], &found[..12]));
        }
    }
    let info: mammo_prep::DatasetInfo =
        serde_json::from_slice(&std::fs::read(&json).map_err(|e| RunError::io(&json, e))?)
            .map_err(|e| RunError::invalid(&json, format!("not a valid dataset.json: {e}")))?;
    if differing.is_empty() && info.content_hash != recorded.content_hash {
        differing.push(format!(
            "dataset.json (content hash {} recorded, {} found)",
            &recorded.content_hash[..12.min(recorded.content_hash.len())],
            &info.content_hash[..12.min(info.content_hash.len())]
        ));
    }
    if differing.is_empty() {
        Ok(())
    } else {
        Err(RunError::invalid(dir, format!("is not the data the run used: {} differs", differing.join(", "))))
    }
}

/// The verdict of a reproduction.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// Every model's final weights are identical.
    BitExact,
    /// Weights differ, but every final metric is within [`TOLERANCE`] (non-deterministic backends only).
    WithinTolerance {
        /// The largest relative metric difference measured.
        measured: f64,
        /// The accepted one.
        tolerance: f64,
    },
    /// Not reproduced.
    Different,
}

/// The comparison of an original run with its reproduction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The verdict.
    pub verdict: Verdict,
    /// Models whose weights differ: (model, original, reproduction).
    pub weights: Vec<(String, Option<String>, Option<String>)>,
    /// Metrics that differ: (key, original, reproduction).
    pub metrics: Vec<(String, Option<f64>, Option<f64>)>,
    /// What went in differently (code, build, config, data, seeds, environment).
    pub causes: Vec<Change>,
}

impl Comparison {
    /// Whether the run counts as reproduced.
    pub fn reproduced(&self) -> bool {
        self.verdict != Verdict::Different
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.verdict {
            Verdict::BitExact => out.push_str("REPRODUCED (bit-exact)\n"),
            Verdict::WithinTolerance { measured, tolerance } => out.push_str(&format!(
                "REPRODUCED (numerically equivalent within tolerance: largest relative metric difference \
                 {measured:.2e} <= {tolerance:.0e}; this backend does not promise bit-exact results)\n"
            )),
            Verdict::Different => out.push_str("NOT REPRODUCED\n"),
        }
        let short = |s: &Option<String>| s.as_deref().map(|h| h[..12.min(h.len())].to_string() + "…");
        if !self.weights.is_empty() {
            out.push_str("weights that differ:\n");
            for (m, a, b) in &self.weights {
                out.push_str(&format!(
                    "  {m}: {} -> {}\n",
                    short(a).unwrap_or("(none)".into()),
                    short(b).unwrap_or("(none)".into())
                ));
            }
        }
        if !self.metrics.is_empty() {
            out.push_str("first metric differences:\n");
            for (k, a, b) in self.metrics.iter().take(8) {
                let f = |v: &Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or("(none)".into());
                out.push_str(&format!("  {k}: {} -> {}\n", f(a), f(b)));
            }
        }
        if self.reproduced() {
            if !self.causes.is_empty() {
                out.push_str("differences that did not change the result:\n");
                out.push_str(&render_changes(&self.causes, "  "));
            }
        } else if self.causes.is_empty() {
            out.push_str(
                "no difference in code, build, config, data, seeds or environment explains it: the backend \
                 itself is not deterministic here\n",
            );
        } else {
            out.push_str("differences that explain it:\n");
            out.push_str(&render_changes(&self.causes, "  "));
        }
        out
    }
}

/// Compares an original run `a` with its reproduction `b`.
pub fn compare(a: &Manifest, b: &Manifest) -> Comparison {
    let mut models: Vec<&String> = a.outcome.weights.keys().chain(b.outcome.weights.keys()).collect();
    models.sort();
    models.dedup();
    let weights: Vec<_> = models
        .into_iter()
        .filter(|m| a.outcome.weights.get(*m) != b.outcome.weights.get(*m))
        .map(|m| (m.clone(), a.outcome.weights.get(m).cloned(), b.outcome.weights.get(m).cloned()))
        .collect();
    let mut keys: Vec<&String> = a.outcome.metrics.keys().chain(b.outcome.metrics.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut measured: f64 = 0.0;
    let mut metrics = Vec::new();
    for k in keys {
        let (x, y) = (a.outcome.metrics.get(k).copied(), b.outcome.metrics.get(k).copied());
        if x.map(f64::to_bits) == y.map(f64::to_bits) {
            continue;
        }
        measured = measured.max(match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() / x.abs().max(y.abs()).max(1e-12),
            _ => f64::INFINITY,
        });
        metrics.push((k.clone(), x, y));
    }
    let bit_exact_promised = a.deterministic() && b.deterministic() && a.run.backend == b.run.backend;
    let verdict = if weights.is_empty() && !a.outcome.weights.is_empty() {
        Verdict::BitExact
    } else if !bit_exact_promised && measured <= TOLERANCE && !a.outcome.metrics.is_empty() {
        Verdict::WithinTolerance { measured, tolerance: TOLERANCE }
    } else {
        Verdict::Different
    };
    Comparison { verdict, weights, metrics, causes: diff(a, b).causes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::tests::manifest;

    #[test]
    fn equal_weights_are_bit_exact_and_other_threads_are_reported_not_blamed() {
        let a = manifest(0.001, 2, 10.0, "w");
        let b = manifest(0.001, 1, 6.0, "w");
        let c = compare(&a, &b);
        assert_eq!(c.verdict, Verdict::BitExact);
        let text = c.render();
        assert!(text.starts_with("REPRODUCED (bit-exact)") && text.contains("threads"), "{text}");
    }

    #[test]
    fn different_weights_name_metrics_and_causes() {
        let a = manifest(0.001, 2, 10.0, "w1");
        let mut b = manifest(0.001, 2, 10.0, "w2");
        b.outcome.metrics.insert("classifier.loss".into(), 0.6);
        b.environment.simd_available = vec!["avx512f".into()];
        let c = compare(&a, &b);
        assert_eq!(c.verdict, Verdict::Different);
        let text = c.render();
        assert!(text.starts_with("NOT REPRODUCED"), "{text}");
        assert!(text.contains("classifier.loss") && text.contains("simd_available"), "{text}");
        // On a backend without the promise, small metric differences are equivalence within tolerance.
        let mut g = b.clone();
        g.run.backend = "cuda".into();
        g.run.deterministic = false;
        g.outcome.metrics.insert("classifier.loss".into(), 0.5001);
        let c = compare(&a, &g);
        assert!(matches!(c.verdict, Verdict::WithinTolerance { measured, .. } if measured > 0.0 && measured < 1e-3));
        assert!(c.render().contains("numerically equivalent within tolerance"));
    }

    #[test]
    fn a_changed_byte_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("patches.u16"), [1u8, 2, 3, 4]).unwrap();
        std::fs::write(d.join("masks.u8"), [0u8, 1]).unwrap();
        let files = ["patches.u16", "masks.u8"]
            .iter()
            .map(|f| (f.to_string(), mammo_prep::dataset::hash_file(&d.join(f)).unwrap().1))
            .collect();
        let recorded = DatasetRef {
            path: d.display().to_string(),
            content_hash: "c".into(),
            split: "train".into(),
            source_format: "phantom".into(),
            files,
        };
        let info = serde_json::json!({"format_version": 1, "created_by": "t", "source_format": "phantom",
            "params": {}, "patch_size": 1, "spacing_mm": 0.4, "patches": 1, "counts": {}, "patients": {},
            "images": 1, "inputs": [], "outputs": [], "content_hash": "c"});
        std::fs::write(d.join("dataset.json"), info.to_string()).unwrap();
        check_dataset(d, &recorded).unwrap();
        std::fs::write(d.join("patches.u16"), [1u8, 2, 3, 5]).unwrap();
        let e = check_dataset(d, &recorded).unwrap_err().to_string();
        assert!(e.contains("patches.u16") && !e.contains("masks.u8") && !e.contains('\n'), "{e}");
    }
}
