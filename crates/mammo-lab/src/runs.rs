//! Finding the runs under the lab's directory and summarising each from its own files (`manifest.json`,
//! `eval/metrics.json`). Read-only: nothing here opens a file for writing.
//!
//! A run is named by its directory relative to the lab's root (`sweep/trials/3`), never by an absolute
//! path, which could carry a user's or a patient's name.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use mammo_run::{Manifest, Status};
use serde::Serialize;

/// How deep below the root runs are looked for (a sweep's trials sit at depth 3).
const MAX_DEPTH: usize = 6;
/// Directory entries looked at in one listing at most, so a huge tree cannot stall every page.
const MAX_ENTRIES: usize = 20_000;

/// The runs under `root`, by name (the relative path with `/`). A run is a directory holding
/// `manifest.json`; inside a run only `trials/` is searched further (a sweep run's trials). Links are not
/// followed and hidden directories (`.partial` outputs) are skipped.
pub fn discover(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut budget = MAX_ENTRIES;
    walk(root, root, 0, &mut found, &mut budget);
    found.sort();
    found
}

fn walk(root: &Path, dir: &Path, depth: usize, found: &mut Vec<String>, budget: &mut usize) {
    let is_run = dir.join("manifest.json").is_file();
    if is_run {
        found.extend(name_of(root, dir));
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut subdirs: Vec<PathBuf> = Vec::new();
    for e in entries.flatten() {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // Inside a run, only a sweep's trials are runs; checkpoints, eval and tb are not searched.
        if is_run && name != "trials" {
            continue;
        }
        subdirs.push(e.path());
    }
    subdirs.sort();
    for d in subdirs {
        walk(root, &d, depth + 1, found, budget);
    }
}

/// `dir` relative to `root` with `/` separators; "." for the root itself; None for a name that is not
/// plain UTF-8.
fn name_of(root: &Path, dir: &Path) -> Option<String> {
    let rel = dir.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let parts = parts?;
    Some(if parts.is_empty() { ".".to_string() } else { parts.join("/") })
}

/// The directory of the run called `name`, if `name` is a plain relative path (no `..`, no root, no
/// empty part) naming a run under `root`. Everything a client names goes through this.
pub fn resolve(root: &Path, name: &str) -> Option<PathBuf> {
    if name == "." {
        return root.join("manifest.json").is_file().then(|| root.to_path_buf());
    }
    let rel = Path::new(name);
    let plain = !name.is_empty()
        && !name.contains('\\')
        && rel.components().all(|c| matches!(c, Component::Normal(p) if !p.to_string_lossy().starts_with('.')));
    if !plain || rel.components().count() > MAX_DEPTH {
        return None;
    }
    let dir = root.join(rel);
    // No link anywhere on the way: a link could lead out of the root.
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        if std::fs::symlink_metadata(&at).map_or(true, |m| !m.is_dir()) {
            return None;
        }
    }
    dir.join("manifest.json").is_file().then_some(dir)
}

/// A run's state as the lab shows it: `mammogan status`'s reading of the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LabStatus {
    Running,
    Finished,
    Failed,
    Killed,
}

/// The status `mammogan status` tells: a manifest that still says "running" whose process is gone
/// (SIGKILL, out of memory, power cut) is a killed run; one written on another host stays "running",
/// since its process cannot be looked at from here.
pub fn status_of(m: &Manifest) -> LabStatus {
    match m.outcome.status {
        Status::Finished => LabStatus::Finished,
        Status::Failed => LabStatus::Failed,
        Status::Killed => LabStatus::Killed,
        Status::Running => {
            let same_host = m.environment.host_hash == mammo_run::environment::host_hash();
            match m.run.process_alive(same_host) {
                Some(false) => LabStatus::Killed,
                Some(true) | None => LabStatus::Running,
            }
        }
    }
}

/// One row of the runs table.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub name: String,
    pub status: LabStatus,
    /// The models trained (classifier, attribution).
    pub models: Vec<String>,
    /// The DATASET's content hash (never its path).
    pub dataset: Option<String>,
    pub started_unix: u64,
    /// Wall time so far (running) or in all.
    pub duration_s: f64,
    pub steps: BTreeMap<String, u64>,
    /// The headline figures: validation AUC while training, test figures once evaluated.
    pub metrics: BTreeMap<String, f64>,
    pub error: Option<String>,
    /// Whether `model/` holds an exported model (explain can use it).
    pub has_model: bool,
    /// Whether `eval/report.html` exists.
    pub has_report: bool,
}

/// The figures shown in the runs table, when a run has them.
pub const KEY_METRICS: [&str; 5] =
    ["classifier.val_auc", "classifier.auc", "image.auc", "detection.sensitivity_at_1fpi", "attribution.pxap"];

pub fn summarise(name: &str, dir: &Path) -> anyhow::Result<RunSummary> {
    let m = Manifest::read(dir)?;
    let status = status_of(&m);
    let eval = read_eval_metrics(dir);
    let mut metrics = BTreeMap::new();
    for k in KEY_METRICS {
        let v = eval.get(k).and_then(|v| v.as_f64()).or_else(|| m.outcome.metrics.get(k).copied());
        if let Some(v) = v.filter(|v| v.is_finite()) {
            metrics.insert(k.to_string(), v);
        }
    }
    let duration_s = if status == LabStatus::Running {
        now_unix().saturating_sub(m.run.started_unix) as f64
    } else {
        m.outcome.wall_time_s
    };
    Ok(RunSummary {
        name: name.to_string(),
        status,
        models: m.inputs.models.clone(),
        dataset: m.inputs.dataset.as_ref().map(|d| d.content_hash.clone()),
        started_unix: m.run.started_unix,
        duration_s,
        steps: m.outcome.steps.clone(),
        metrics,
        error: m.outcome.error.as_deref().map(redact_paths),
        has_model: dir.join("model").join("model.json").is_file(),
        has_report: dir.join("eval").join("report.html").is_file(),
    })
}

/// Every run under `root`, summarised; a run whose manifest cannot be read is left out with a warning
/// (it may be half-written by a run starting this very moment).
pub fn list(root: &Path) -> Vec<RunSummary> {
    discover(root)
        .into_iter()
        .filter_map(|name| {
            let dir = if name == "." { root.to_path_buf() } else { root.join(&name) };
            summarise(&name, &dir).map_err(|e| tracing::warn!("run {name}: {e}")).ok()
        })
        .collect()
}

/// The largest `eval/metrics.json` read (it is a few kB).
const MAX_EVAL_BYTES: u64 = 4 * 1024 * 1024;

/// `eval/metrics.json` as an object; empty when absent or unreadable.
pub fn read_eval_metrics(dir: &Path) -> serde_json::Map<String, serde_json::Value> {
    let p = dir.join("eval").join("metrics.json");
    let small = std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.len() <= MAX_EVAL_BYTES);
    if !small {
        return Default::default();
    }
    std::fs::read(&p)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| match v {
            serde_json::Value::Object(o) => Some(o),
            _ => None,
        })
        .unwrap_or_default()
}

/// An error message with every absolute or home-relative path replaced by `<path>`: errors name the
/// file they are about, and an input's path may carry a patient's name.
pub fn redact_paths(message: &str) -> String {
    message
        .split(' ')
        .map(|word| {
            let bare = word.trim_start_matches(['(', '"', '\'', '`']);
            if bare.starts_with('/') || bare.starts_with("~/") {
                let head = &word[..word.len() - bare.len()];
                let tail: String =
                    bare.chars().rev().take_while(|c| matches!(c, ':' | ',' | ')' | '"' | '\'' | '`' | ';')).collect();
                format!("{head}<path>{}", tail.chars().rev().collect::<String>())
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_errors_are_redacted() {
        assert_eq!(
            redact_paths("/data/smith_jane/x.dcm: not a DICOM (see `~/notes/a.txt`), train.steps 0"),
            "<path>: not a DICOM (see `<path>`), train.steps 0"
        );
        assert_eq!(
            redact_paths("config: train.steps 0: must be at least 1"),
            "config: train.steps 0: must be at least 1"
        );
    }
}
