//! Bringing the MLflow run up to what the RUN directory holds: the run itself (created once), params
//! and tags, every metric of `metrics.jsonl` above the last step the server confirmed, evaluation
//! metrics that changed, artifacts whose content changed, and the run's status. Used at the end of a
//! live run, by `evaluate` on a tracked run, and by `mammogan track push`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::api::{self, Metric, RunStatus};
use super::client::{Client, MlflowError};
use super::state::State;
use crate::error::TrackError;
use crate::jsonl::read_metrics;

/// What a run has to send besides its metrics file, gathered by the caller (which knows the config and
/// the manifest). Nothing here may identify a patient or name an input path.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Config keys (`train.steps`, ...) and their values.
    pub params: Vec<(String, String)>,
    /// Tags (`mlflow.source.git.commit`, `mammogan.image`, ...).
    pub tags: Vec<(String, String)>,
    /// When the run started, ms since the epoch.
    pub start_ms: u64,
    /// Evaluation metrics (`eval/test.classifier.auc`), logged at step 0.
    pub eval: Vec<(String, f64)>,
    /// Artifact path in the MLflow run -> the file to upload.
    pub artifacts: Vec<(String, PathBuf)>,
    /// The run's status now, and its end time when it ended.
    pub status: RunStatus,
    /// See `status`.
    pub end_ms: Option<u64>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why a sync stopped.
#[derive(Debug)]
pub enum SyncError {
    /// The server refused or could not be reached.
    Server(MlflowError),
    /// A file of the RUN directory could not be read, or the state not written.
    Files(TrackError),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Server(e) => e.fmt(f),
            SyncError::Files(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SyncError {}

impl From<MlflowError> for SyncError {
    fn from(e: MlflowError) -> Self {
        SyncError::Server(e)
    }
}

impl From<TrackError> for SyncError {
    fn from(e: TrackError) -> Self {
        SyncError::Files(e)
    }
}

/// How many of each were sent by one sync.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sent {
    /// Params and tags (0 when they had been sent before).
    pub params: usize,
    /// Metric values, evaluation included.
    pub metrics: usize,
    /// Artifact files.
    pub artifacts: usize,
}

/// The key a training metric has in MLflow: `MODEL/NAME`, as in TensorBoard.
pub fn metric_key(model: &str, name: &str) -> String {
    format!("{model}/{name}")
}

/// Params and tags that fit the documented sizes, and a note for each that does not.
fn sendable(pairs: &[(String, String)], max: usize, what: &str, notes: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        if api::fits(k, v, max) {
            out.push((k.clone(), v.clone()));
        } else {
            notes.push(format!("{what} {k:?}: too long for MLflow, not sent"));
        }
    }
    out
}

/// Makes the MLflow run if the state has none (recording it at once, so it is made only once).
pub fn ensure_run(run_dir: &Path, client: &Client, payload: &Payload, state: &mut State) -> Result<(), SyncError> {
    if !state.run_id.is_empty() {
        return Ok(());
    }
    let mut notes = Vec::new();
    let tags = sendable(&payload.tags, api::MAX_TAG_VALUE_CHARS, "tag", &mut notes);
    let experiment_id = client.experiment_id()?;
    let run = client.create_run(&experiment_id, payload.start_ms, &tags)?;
    state.server = client.target().shown().to_string();
    state.experiment = client.target().experiment.clone();
    state.experiment_id = experiment_id;
    state.run_id = run.run_id;
    state.artifact_uri = run.artifact_uri;
    state.write(run_dir)?;
    Ok(())
}

/// Sends params and tags if not yet accepted.
pub fn send_params(run_dir: &Path, client: &Client, payload: &Payload, state: &mut State) -> Result<usize, SyncError> {
    if state.params_sent {
        return Ok(0);
    }
    let mut notes = Vec::new();
    let params = sendable(&payload.params, api::MAX_PARAM_VALUE_CHARS, "param", &mut notes);
    let tags = sendable(&payload.tags, api::MAX_TAG_VALUE_CHARS, "tag", &mut notes);
    let n = params.len() + tags.len();
    for b in api::batches(Vec::new(), params, tags) {
        client.log_batch(&state.run_id, &b.metrics, &b.params, &b.tags)?;
    }
    state.params_sent = true;
    state.write(run_dir)?;
    Ok(n)
}

/// Sends `metrics` (in order) whose step is above the last one the server confirmed for their key,
/// recording each accepted batch. Returns how many were sent.
pub fn send_metrics(
    run_dir: &Path,
    client: &Client,
    metrics: Vec<Metric>,
    state: &mut State,
) -> Result<usize, SyncError> {
    let fresh: Vec<Metric> =
        metrics.into_iter().filter(|m| state.metric_steps.get(&m.key).is_none_or(|&last| m.step > last)).collect();
    let mut n = 0;
    for b in api::batches(fresh, Vec::new(), Vec::new()) {
        client.log_batch(&state.run_id, &b.metrics, &[], &[])?;
        for m in &b.metrics {
            let last = state.metric_steps.entry(m.key.clone()).or_insert(m.step);
            *last = (*last).max(m.step);
        }
        n += b.metrics.len();
        state.write(run_dir)?;
    }
    Ok(n)
}

/// Every metric of `RUN/metrics.jsonl`, stamped `timestamp_ms` (the file keeps no wall time).
pub fn file_metrics(run_dir: &Path, timestamp_ms: u64) -> Result<Vec<Metric>, TrackError> {
    let path = run_dir.join(crate::RunDir::METRICS);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for r in read_metrics(&path)? {
        for (name, &value) in &r.scalars {
            out.push(Metric { key: metric_key(&r.model, name), value, timestamp_ms, step: r.step });
        }
    }
    Ok(out)
}

fn blake3_file(path: &Path) -> Result<(Vec<u8>, String), TrackError> {
    let bytes = std::fs::read(path).map_err(|source| TrackError::Io { path: path.to_path_buf(), source })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    Ok((bytes, hash))
}

/// Sends everything the RUN directory holds that the server has not confirmed, then records in the
/// state whether anything is left. Stops at the first failure (the state says how far it got).
pub fn sync(run_dir: &Path, client: &Client, payload: &Payload, state: &mut State) -> Result<Sent, SyncError> {
    let result = sync_inner(run_dir, client, payload, state);
    // Whatever happened, the file says what is left.
    state.not_sent = pending(run_dir, payload, state);
    state.complete = state.not_sent.is_empty();
    if !state.run_id.is_empty() || !state.not_sent.is_empty() {
        state.write(run_dir)?;
    }
    result
}

fn sync_inner(run_dir: &Path, client: &Client, payload: &Payload, state: &mut State) -> Result<Sent, SyncError> {
    let mut sent = Sent::default();
    ensure_run(run_dir, client, payload, state)?;
    sent.params = send_params(run_dir, client, payload, state)?;
    // A batch the server stored but whose answer was lost (the server killed mid-request, a timeout)
    // is not in the state: what the server holds counts as confirmed, so a push never logs a step twice.
    // Step 0 is where evaluation metrics go; they are tracked by value (`eval_sent`), not by step.
    for (key, step) in client.latest_steps(&state.run_id)?.into_iter().filter(|&(_, step)| step > 0) {
        let last = state.metric_steps.entry(key).or_insert(step);
        *last = (*last).max(step);
    }
    sent.metrics = send_metrics(run_dir, client, file_metrics(run_dir, now_ms())?, state)?;
    let eval: Vec<Metric> = payload
        .eval
        .iter()
        .filter(|(k, v)| state.eval_sent.get(k) != Some(&v.to_string()))
        .map(|(k, v)| Metric { key: k.clone(), value: *v, timestamp_ms: now_ms(), step: 0 })
        .collect();
    for b in api::batches(eval, Vec::new(), Vec::new()) {
        client.log_batch(&state.run_id, &b.metrics, &[], &[])?;
        for m in &b.metrics {
            state.eval_sent.insert(m.key.clone(), m.value.to_string());
        }
        sent.metrics += b.metrics.len();
        state.write(run_dir)?;
    }
    for (rel, file) in &payload.artifacts {
        let (bytes, hash) = blake3_file(file)?;
        if state.artifacts_sent.get(rel) == Some(&hash) {
            continue;
        }
        client.put_artifact(&state.artifact_uri, rel, &bytes)?;
        state.artifacts_sent.insert(rel.clone(), hash);
        sent.artifacts += 1;
        state.write(run_dir)?;
    }
    if state.status_sent.as_deref() != Some(payload.status.as_str()) {
        client.update_run(&state.run_id, payload.status, payload.end_ms)?;
        state.status_sent = Some(payload.status.as_str().to_string());
        state.write(run_dir)?;
    }
    Ok(sent)
}

/// What the server has not confirmed, in words, from the files and the state alone (no network).
pub fn pending(run_dir: &Path, payload: &Payload, state: &State) -> Vec<String> {
    let mut out = Vec::new();
    if state.run_id.is_empty() {
        out.push("the run itself (never created on the server)".to_string());
    }
    if !state.params_sent {
        out.push(format!("{} params and {} tags", payload.params.len(), payload.tags.len()));
    }
    match file_metrics(run_dir, 0) {
        Ok(metrics) => {
            let left =
                metrics.iter().filter(|m| state.metric_steps.get(&m.key).is_none_or(|&last| m.step > last)).count();
            if left > 0 {
                out.push(format!("{left} metric values of {}", crate::RunDir::METRICS));
            }
        }
        Err(e) => out.push(format!("metrics: {e}")),
    }
    let eval = payload.eval.iter().filter(|(k, v)| state.eval_sent.get(k) != Some(&v.to_string())).count();
    if eval > 0 {
        out.push(format!("{eval} evaluation metrics"));
    }
    for (rel, file) in &payload.artifacts {
        let current = blake3_file(file).map(|(_, h)| h).ok();
        if current.is_none() || state.artifacts_sent.get(rel) != current.as_ref() {
            out.push(format!("artifact {rel}"));
        }
    }
    if state.status_sent.as_deref() != Some(payload.status.as_str()) {
        out.push(format!("status {}", payload.status.as_str()));
    }
    out
}
