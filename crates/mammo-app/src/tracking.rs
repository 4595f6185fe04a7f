//! MLflow tracking of a run: the live sink of a training (started and finished here, so training's
//! own code only queues metrics), `evaluate` on a tracked run, and pushing a run afterwards.
//!
//! What a run sends is taken from its manifest and files, never from anything else: the config keys
//! as params (the config holds no path or identifier), tags for the code, image and inputs' hashes,
//! the metrics of `metrics.jsonl`, `evaluate`'s numbers, and as artifacts the config, the exported
//! model and the evaluation's report, metrics and overlays. The DATASET's path is left out on purpose.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mammo_run::{Manifest, Status};
use mammo_track::RunDir;
use mammo_track::mlflow::{self, Finished, Live, Payload, RunStatus, State, Target};

/// How long the end of a run waits for the server (the run's own files are complete before it).
const FINISH_WAIT: Duration = Duration::from_secs(120);

/// Which MLflow server and experiment to track to, as asked; each falls back on the environment.
#[derive(Clone, Default, Debug)]
pub struct Mlflow {
    /// The tracking server's URI (default: $MLFLOW_TRACKING_URI; neither: no tracking).
    pub uri: Option<String>,
    /// The experiment (default: $MLFLOW_EXPERIMENT_NAME, else "mammogan").
    pub experiment: Option<String>,
}

/// An environment variable, unset when empty.
pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl Mlflow {
    /// The server to track to, if any; a malformed URI is an error before anything starts.
    pub fn target(&self) -> Result<Option<Target>> {
        let Some(uri) = self.uri.clone().or_else(|| env("MLFLOW_TRACKING_URI")) else {
            return Ok(None);
        };
        let experiment = self
            .experiment
            .clone()
            .or_else(|| env("MLFLOW_EXPERIMENT_NAME"))
            .unwrap_or_else(|| mlflow::DEFAULT_EXPERIMENT.to_string());
        Target::parse(&uri, &experiment, env).map(Some).map_err(anyhow::Error::msg)
    }
}

/// Config JSON -> `section.key` = value (strings bare, everything else as JSON).
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn status(s: Status) -> RunStatus {
    match s {
        Status::Running => RunStatus::Running,
        Status::Finished => RunStatus::Finished,
        Status::Failed => RunStatus::Failed,
        Status::Killed => RunStatus::Killed,
    }
}

/// The files of `dir` (recursively, regular files only), as (path under `prefix`, file), sorted.
fn files_under(dir: &Path, prefix: &str, keep: &dyn Fn(&str) -> bool, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        // Hidden entries are temporaries of atomic writes.
        let Ok(kind) = e.file_type() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let rel = format!("{prefix}/{name}");
        if kind.is_dir() {
            files_under(&e.path(), &rel, keep, out);
        } else if kind.is_file() && keep(&name) {
            out.push((rel, e.path()));
        }
    }
}

/// What `run_dir` has to send, from its manifest and files.
pub fn payload(run_dir: &Path, m: &Manifest) -> Payload {
    let mut params = Vec::new();
    flatten("", &m.inputs.config, &mut params);
    let mut tags = vec![
        ("mlflow.source.name".to_string(), "mammogan train".to_string()),
        ("mlflow.source.type".to_string(), "LOCAL".to_string()),
        ("mlflow.source.git.commit".to_string(), m.build.git_commit.clone()),
        ("mammogan.version".to_string(), m.build.version.clone()),
        ("mammogan.git_dirty".to_string(), m.build.git_dirty.clone()),
        ("mammogan.models".to_string(), m.inputs.models.join(",")),
        ("mammogan.config_blake3".to_string(), m.inputs.config_toml_blake3.clone()),
        ("mammogan.cargo_lock_blake3".to_string(), m.build.cargo_lock_blake3.clone()),
        ("mammogan.backend".to_string(), m.run.backend.clone()),
    ];
    if let Some(d) = &m.inputs.dataset {
        // The DATASET's content hash and layout, never its path.
        tags.push(("mammogan.dataset_hash".to_string(), d.content_hash.clone()));
        tags.push(("mammogan.dataset_split".to_string(), d.split.clone()));
        tags.push(("mammogan.dataset_format".to_string(), d.source_format.clone()));
    }
    let env = &m.environment.container;
    for (k, v) in
        [("image", &env.image_name), ("image_version", &env.image_version), ("image_revision", &env.image_revision)]
    {
        if let Some(v) = v {
            tags.push((format!("mammogan.{k}"), v.clone()));
        }
    }
    let eval = m.outcome.eval.iter().map(|(k, v)| (format!("eval/{k}"), *v)).collect();
    let mut artifacts = Vec::new();
    let config = run_dir.join(RunDir::CONFIG);
    if config.is_file() {
        artifacts.push((RunDir::CONFIG.to_string(), config));
    }
    if status(m.outcome.status) == RunStatus::Finished {
        files_under(&run_dir.join(RunDir::MODEL), RunDir::MODEL, &|_| true, &mut artifacts);
    }
    let eval_dir = run_dir.join(RunDir::EVAL);
    for name in ["report.html", "metrics.json"] {
        if eval_dir.join(name).is_file() {
            artifacts.push((format!("{}/{name}", RunDir::EVAL), eval_dir.join(name)));
        }
    }
    files_under(&eval_dir.join("images"), "eval/images", &|n| n.ends_with("-overlay.png"), &mut artifacts);
    let start_ms = m.run.started_unix * 1000;
    let ended = m.outcome.status != Status::Running;
    Payload {
        params,
        tags,
        start_ms,
        eval,
        artifacts,
        status: status(m.outcome.status),
        end_ms: ended.then(|| m.outcome.updated_unix * 1000),
    }
}

/// Starts the live sink of a run whose manifest has just been written.
pub fn start(target: Option<Target>, run_dir: &Path, manifest: &Manifest) -> Option<Live> {
    let target = target?;
    tracing::info!("tracking to MLflow at {} (experiment {})", target.shown(), target.experiment);
    Some(Live::start(run_dir, target, payload(run_dir, manifest)))
}

/// Ends the live sink after the run's manifest is final: sends the rest, waits a bounded time, says
/// what did not reach the server. Never an error: the run itself is complete.
pub fn finish(live: Option<Live>, run_dir: &Path) {
    let Some(live) = live else { return };
    let manifest = match Manifest::read(run_dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("MLflow: {e}; `mammogan track push {}` sends the run later", run_dir.display());
            return;
        }
    };
    report(live.finish(payload(run_dir, &manifest), FINISH_WAIT), run_dir);
}

fn report(f: Finished, run_dir: &Path) {
    let state = mlflow::State::path(run_dir);
    match f {
        Finished::Complete(sent) => tracing::info!(
            "MLflow: run complete on the server ({} metric values, {} artifacts sent at the end)",
            sent.metrics,
            sent.artifacts
        ),
        Finished::Incomplete(left) => tracing::warn!(
            "MLflow: not sent: {}; recorded in {}; `mammogan track push {}` sends it",
            left.join(", "),
            state.display(),
            run_dir.display()
        ),
        Finished::TimedOut => tracing::warn!(
            "MLflow: the server did not take the run within {} s; what it confirmed is in {}; `mammogan track \
             push {}` sends the rest",
            FINISH_WAIT.as_secs(),
            state.display(),
            run_dir.display()
        ),
    }
}

/// After `evaluate` on a run tracked in MLflow: sends its numbers and report, best effort (a server
/// down costs a warning, the evaluation's files are written).
pub fn after_evaluate(run_dir: &Path) {
    let state = match State::read(run_dir) {
        Ok(Some(s)) if !s.run_id.is_empty() => s,
        Ok(_) => return,
        Err(e) => return tracing::warn!("MLflow: {e}"),
    };
    let opts = Mlflow { uri: Some(state.server.clone()), experiment: Some(state.experiment.clone()) };
    match push(run_dir, &opts) {
        Ok(()) => {}
        Err(e) => tracing::warn!(
            "MLflow: {}; the evaluation is in {}; `mammogan track push {}` sends it",
            crate::one_line(&e),
            run_dir.join(RunDir::EVAL).display(),
            run_dir.display()
        ),
    }
}

/// Sends everything of `run_dir` that its server has not confirmed (`RUN/mlflow.json` keeps the MLflow
/// run id, so pushing again duplicates nothing).
pub fn push(run_dir: &Path, opts: &Mlflow) -> Result<()> {
    let target = opts.target()?.context("no tracking server: pass --mlflow URI or set MLFLOW_TRACKING_URI")?;
    let manifest = Manifest::read(run_dir)?;
    let mut state = State::read(run_dir)?.unwrap_or_default();
    if !state.server.is_empty() && state.server != target.shown() {
        bail!(
            "{}: this run is tracked on {} as run {}; push it there (a second server would need a copy of the run \
             directory)",
            State::path(run_dir).display(),
            state.server,
            state.run_id
        );
    }
    let client = mlflow::Client::new(target);
    let result = mlflow::sync(run_dir, &client, &payload(run_dir, &manifest), &mut state);
    let sent = result.with_context(|| format!("{}: not everything was sent", run_dir.display()))?;
    tracing::info!(
        "MLflow: {} params and tags, {} metric values, {} artifacts sent; run {} complete",
        sent.params,
        sent.metrics,
        sent.artifacts,
        state.run_id
    );
    if !state.complete {
        bail!("{}: still not sent: {}", State::path(run_dir).display(), state.not_sent.join(", "));
    }
    Ok(())
}
