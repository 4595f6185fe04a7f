//! `RUN/manifest.json`: what a run is (code, build, inputs), where it ran (environment) and how it
//! ended (outcome).
//!
//! Training writes it when it starts (status `running`), rewrites it after every checkpoint (the last
//! checkpoint and the timings so far) and completes it at the end (`finished`, `failed` with the
//! error, or `killed` by SIGTERM/SIGINT). Every write is atomic (temporary sibling + rename), so a
//! run killed with SIGKILL still leaves a valid manifest: it says `running`, with its last checkpoint,
//! and `mammogan status` tells that its process is gone.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::build_info::BuildInfo;
use crate::environment::{Environment, peak_memory_bytes};
use crate::error::{Result, RunError};

/// Bumped on any incompatible change of the manifest.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The manifest's file name in RUN.
pub const MANIFEST_FILE: &str = "manifest.json";

/// `RUN/manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// The code and its build.
    pub build: BuildInfo,
    /// Config, seeds and data.
    pub inputs: Inputs,
    /// How this process ran it: backend, device, threads.
    pub run: RunInfo,
    /// The machine.
    pub environment: Environment,
    /// How it ended (or how far it got).
    pub outcome: Outcome,
}

/// What went into a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// The fully resolved config (the same as `RUN/config.toml`).
    pub config: serde_json::Value,
    /// BLAKE3 of `RUN/config.toml`, so an edited config is noticed.
    pub config_toml_blake3: String,
    /// The models trained, in order (`classifier`, `attribution`).
    pub models: Vec<String>,
    /// Every seed: `train.seed` (every random stream of training derives from it) and the dataset's
    /// preparation seed.
    pub seeds: BTreeMap<String, u64>,
    /// The DATASET; None in the manifest of a run that failed before it could read one
    /// ([`Manifest::failed_start`]).
    pub dataset: Option<DatasetRef>,
}

/// The DATASET a run trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// Relative to the run directory where possible, else absolute with the home directory as `~`.
    pub path: String,
    /// `content_hash` of its `dataset.json`, verified against the files when the run started.
    pub content_hash: String,
    /// The split trained on.
    pub split: String,
    /// The layout it was prepared from.
    pub source_format: String,
    /// BLAKE3 of each data file, so a changed file can be named.
    pub files: BTreeMap<String, String>,
}

/// How a run was executed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `flex` (CPU), `cuda` or `wgpu`.
    pub backend: String,
    /// The GPU index (0 on CPU): the CUDA ordinal or the N of `wgpu:N`.
    pub device_index: usize,
    /// The wgpu adapter in words: name, type, API, driver and its version (None on other backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The worker threads of the CPU pool.
    pub threads: usize,
    /// Whether the backend promises bit-identical results.
    pub deterministic: bool,
    /// Whether this process resumed from checkpoints.
    pub resumed: bool,
    /// Seconds since the Unix epoch when this process started the run.
    pub started_unix: u64,
    /// The process id, with its start time in clock ticks since boot: together they tell whether a
    /// `running` run's process still exists (pids are reused).
    pub pid: u32,
    /// Field 22 of `/proc/self/stat`.
    pub process_start_ticks: Option<u64>,
}

/// The state of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started and not (yet) ended; also what a SIGKILLed run leaves.
    Running,
    /// Every model trained to the end.
    Finished,
    /// Stopped by an error (see `outcome.error`).
    Failed,
    /// Stopped by SIGTERM/SIGINT after saving a checkpoint.
    Killed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Killed => "killed",
        })
    }
}

/// A checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// The model.
    pub model: String,
    /// Its step.
    pub step: u64,
}

/// How a run ended, or how far it got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// running, finished, failed, killed.
    pub status: Status,
    /// The one-line error of a failed run.
    pub error: Option<String>,
    /// Seconds this process has trained.
    pub wall_time_s: f64,
    /// Steps done per model.
    pub steps: BTreeMap<String, u64>,
    /// Training steps per second in this process (all models).
    pub steps_per_s: Option<f64>,
    /// Peak resident memory of the process (VmHWM).
    pub peak_memory_bytes: Option<u64>,
    /// The newest checkpoint written.
    pub last_checkpoint: Option<CheckpointRef>,
    /// Model name -> BLAKE3 (hex) of its final weights (`mammo_nn::weights_hash`).
    pub weights: BTreeMap<String, String>,
    /// The last value of each training scalar, as `model.name` (e.g. `classifier.val_auc`).
    pub metrics: BTreeMap<String, f64>,
    /// Seconds since the Unix epoch of this write.
    pub updated_unix: u64,
    /// The numeric metrics of `mammogan evaluate`, as `SPLIT.key` (e.g. `test.classifier.auc`), once
    /// it has run on this run.
    #[serde(default)]
    pub eval: BTreeMap<String, f64>,
}

/// Seconds since the Unix epoch.
fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Field 22 (starttime) of `/proc/<pid>/stat`.
pub fn process_start_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Manifest {
    /// A new manifest with status `running` for this binary and this machine.
    pub fn new(inputs: Inputs, run: RunInfo, environment: Environment) -> Self {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            build: BuildInfo::current(),
            inputs,
            run,
            environment,
            outcome: Outcome {
                status: Status::Running,
                error: None,
                wall_time_s: 0.0,
                steps: BTreeMap::new(),
                steps_per_s: None,
                peak_memory_bytes: None,
                last_checkpoint: None,
                weights: BTreeMap::new(),
                metrics: BTreeMap::new(),
                updated_unix: now_unix(),
                eval: BTreeMap::new(),
            },
        }
    }

    /// The manifest of a run that failed before training began (a bad config, a DATASET that does not
    /// verify, a model too large for the machine): status `failed` with the error, and whatever inputs
    /// were known, so `status` can say why and a rerun into the same directory can replace it
    /// ([`clear_failed_start`]).
    pub fn failed_start(config: Option<serde_json::Value>, models: &[&str], error: String) -> Self {
        let inputs = Inputs {
            config: config.unwrap_or(serde_json::Value::Null),
            config_toml_blake3: String::new(),
            models: models.iter().map(|m| m.to_string()).collect(),
            seeds: BTreeMap::new(),
            dataset: None,
        };
        let mut m = Manifest::new(inputs, RunInfo::this_process("none", 0, 0, false, false), Environment::detect(None));
        m.outcome.status = Status::Failed;
        m.outcome.error = Some(error);
        m
    }

    /// Whether this manifest records a start that failed before any training step.
    pub fn is_failed_start(&self) -> bool {
        self.outcome.status == Status::Failed
            && self.outcome.steps.is_empty()
            && self.outcome.weights.is_empty()
            && self.outcome.last_checkpoint.is_none()
    }

    /// Reads `RUN/manifest.json`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| RunError::io(&path, e))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RunError::invalid(&path, format!("not a valid manifest: {e}")))?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(MANIFEST_FORMAT_VERSION as u64) {
            return Err(RunError::invalid(
                &path,
                format!("manifest format {version:?} (this build reads {MANIFEST_FORMAT_VERSION})"),
            ));
        }
        serde_json::from_value(value).map_err(|e| RunError::invalid(&path, format!("not a valid manifest: {e}")))
    }

    /// Writes `RUN/manifest.json` atomically.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        mammo_io::atomic::write_bytes(&run_dir.join(MANIFEST_FILE), &json)?;
        Ok(())
    }

    /// Records `evaluate`'s numeric metrics on `split` in `RUN/manifest.json`, replacing those of an
    /// earlier evaluation of that split. A run without a manifest (made before manifests) is left alone.
    pub fn record_eval(run_dir: &Path, split: &str, metrics: &BTreeMap<String, f64>) -> Result<()> {
        if !run_dir.join(MANIFEST_FILE).is_file() {
            return Ok(());
        }
        let mut m = Manifest::read(run_dir)?;
        let prefix = format!("{split}.");
        m.outcome.eval.retain(|k, _| !k.starts_with(&prefix));
        m.outcome.eval.extend(metrics.iter().map(|(k, v)| (format!("{prefix}{k}"), *v)));
        m.write(run_dir)
    }

    /// The backend's word for reproduce: bit-exactness is only promised on deterministic backends.
    pub fn deterministic(&self) -> bool {
        self.run.deterministic
    }
}

impl RunInfo {
    /// This process, on `backend` with `threads` workers.
    pub fn this_process(
        backend: &str,
        device_index: usize,
        threads: usize,
        deterministic: bool,
        resumed: bool,
    ) -> Self {
        RunInfo {
            backend: backend.to_string(),
            device_index,
            adapter: None,
            threads,
            deterministic,
            resumed,
            started_unix: now_unix(),
            pid: std::process::id(),
            process_start_ticks: process_start_ticks("self"),
        }
    }

    /// The `--device` that names this run's device again (`cpu`, `cuda:N`, `wgpu:N`): what
    /// `reproduce` uses when not told otherwise.
    pub fn device_spec(&self) -> String {
        match self.backend.as_str() {
            b @ ("cuda" | "wgpu") => format!("{b}:{}", self.device_index),
            _ => "cpu".into(),
        }
    }

    /// Whether the process that wrote this still runs (on this host: `same_host`); None if unknown.
    pub fn process_alive(&self, same_host: bool) -> Option<bool> {
        if !same_host || !Path::new("/proc/self/stat").exists() {
            return None;
        }
        match process_start_ticks(&self.pid.to_string()) {
            None => Some(false),
            Some(t) => Some(self.process_start_ticks.is_none_or(|s| s == t)),
        }
    }
}

impl DatasetRef {
    /// Describes the DATASET in `dataset_dir` for a run in `run_dir`.
    pub fn new(dataset_dir: &Path, info: &mammo_prep::DatasetInfo, split: &str, run_dir: &Path) -> Self {
        DatasetRef {
            path: portable_path(dataset_dir, run_dir),
            content_hash: info.content_hash.clone(),
            split: split.to_string(),
            source_format: info.source_format.clone(),
            files: info.outputs.iter().map(|f| (f.path.clone(), f.blake3.clone())).collect(),
        }
    }

    /// The DATASET directory, resolved against the run directory.
    pub fn resolve(&self, run_dir: &Path) -> PathBuf {
        if let Some(rest) = self.path.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        let p = PathBuf::from(&self.path);
        if p.is_absolute() { p } else { run_dir.join(p) }
    }
}

/// `target` relative to `base` when both resolve (e.g. `../dataset`); otherwise absolute with the
/// home directory replaced by `~`, so a user name in a home path never reaches the manifest.
pub fn portable_path(target: &Path, base: &Path) -> String {
    let (Ok(t), Ok(b)) = (std::fs::canonicalize(target), std::fs::canonicalize(base)) else {
        return home_to_tilde(target);
    };
    let tc: Vec<Component> = t.components().collect();
    let bc: Vec<Component> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    // Only the root in common: a relative path would climb to "/" anyway.
    if common <= 1 {
        return home_to_tilde(&t);
    }
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c.as_os_str());
    }
    if rel.as_os_str().is_empty() { ".".into() } else { rel.to_string_lossy().into_owned() }
}

fn home_to_tilde(p: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.components().count() > 1
        && let Ok(rest) = p.strip_prefix(&home)
    {
        return format!("~/{}", rest.display());
    }
    p.display().to_string()
}

/// Empties `run_dir` if all it holds is a start that failed before training (its manifest, and what
/// that start wrote: the config, the data reference, empty `checkpoints/` and `tb/`), so the command
/// can be rerun as it was. Returns whether it did; anything else in the directory leaves it untouched.
pub fn clear_failed_start(run_dir: &Path) -> Result<bool> {
    let Ok(m) = Manifest::read(run_dir) else { return Ok(false) };
    if !m.is_failed_start() {
        return Ok(false);
    }
    const FILES: [&str; 3] = [MANIFEST_FILE, "config.toml", "data.json"];
    const DIRS: [&str; 2] = ["checkpoints", "tb"];
    let entries = std::fs::read_dir(run_dir).map_err(|e| RunError::io(run_dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RunError::io(run_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(|e| RunError::io(&entry.path(), e))?;
        let expected = (kind.is_file() && FILES.contains(&name.as_str()))
            || (kind.is_dir()
                && DIRS.contains(&name.as_str())
                && std::fs::read_dir(entry.path()).map(|mut d| d.next().is_none()).unwrap_or(false));
        if !expected {
            return Ok(false);
        }
        found.push((entry.path(), kind.is_dir()));
    }
    // The manifest last: interrupted here, the directory still explains itself.
    found.sort_by_key(|(p, _)| p.file_name().is_some_and(|n| n == MANIFEST_FILE));
    for (path, dir) in found {
        let r = if dir { std::fs::remove_dir(&path) } else { std::fs::remove_file(&path) };
        r.map_err(|e| RunError::io(&path, e))?;
    }
    Ok(true)
}

/// Keeps a run's manifest current while it trains. Each update rewrites the file atomically.
pub struct ManifestWriter {
    run_dir: PathBuf,
    manifest: Manifest,
    started: Instant,
    steps_here: u64,
}

impl ManifestWriter {
    /// Writes `manifest` (status `running`) into `run_dir`.
    pub fn start(run_dir: &Path, manifest: Manifest) -> Result<Self> {
        let mut w = ManifestWriter { run_dir: run_dir.to_path_buf(), manifest, started: Instant::now(), steps_here: 0 };
        w.write()?;
        Ok(w)
    }

    /// The manifest as it stands.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// One training step done (counted for steps/s; not written).
    pub fn step_done(&mut self, model: &str, step: u64) {
        self.steps_here += 1;
        self.manifest.outcome.steps.insert(model.to_string(), step);
    }

    /// The latest value of a training scalar (not written until the next update).
    pub fn metric(&mut self, model: &str, name: &str, value: f64) {
        self.manifest.outcome.metrics.insert(format!("{model}.{name}"), value);
    }

    /// A checkpoint is complete: records it and writes.
    pub fn checkpoint(&mut self, model: &str, step: u64) -> Result<()> {
        self.manifest.outcome.last_checkpoint = Some(CheckpointRef { model: model.to_string(), step });
        self.write()
    }

    /// A model finished: records its weights and step count and writes.
    pub fn model_done(&mut self, model: &str, steps: u64, weights_hash: &str) -> Result<()> {
        self.manifest.outcome.steps.insert(model.to_string(), steps);
        self.manifest.outcome.weights.insert(model.to_string(), weights_hash.to_string());
        self.write()
    }

    /// The run ended with `status` (and `error` for a failure); writes.
    pub fn end(&mut self, status: Status, error: Option<String>) -> Result<()> {
        self.manifest.outcome.status = status;
        self.manifest.outcome.error = error;
        self.write()
    }

    fn write(&mut self) -> Result<()> {
        let o = &mut self.manifest.outcome;
        let secs = self.started.elapsed().as_secs_f64();
        o.wall_time_s = (secs * 1000.0).round() / 1000.0;
        o.steps_per_s = (self.steps_here > 0 && secs > 0.0).then(|| self.steps_here as f64 / secs);
        o.peak_memory_bytes = peak_memory_bytes();
        o.updated_unix = now_unix();
        self.manifest.write(&self.run_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let inputs = Inputs {
            config: serde_json::json!({"train": {"seed": 42, "lr": 0.001}}),
            config_toml_blake3: "c".into(),
            models: vec!["classifier".into()],
            seeds: [("train.seed".to_string(), 42u64)].into(),
            dataset: Some(DatasetRef {
                path: "../dataset".into(),
                content_hash: "d".into(),
                split: "train".into(),
                source_format: "phantom".into(),
                files: [("patches.u16".to_string(), "p".to_string())].into(),
            }),
        };
        Manifest::new(inputs, RunInfo::this_process("flex", 0, 2, true, false), Environment::default())
    }

    #[test]
    fn the_writer_keeps_a_valid_manifest_through_a_run() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::start(tmp.path(), sample()).unwrap();
        let m = Manifest::read(tmp.path()).unwrap();
        assert_eq!(m.outcome.status, Status::Running);
        // This process is alive, and a recorded dead pid is not.
        assert_eq!(m.run.process_alive(true), Some(true));
        let mut dead = m.run.clone();
        dead.process_start_ticks = dead.process_start_ticks.map(|t| t + 1);
        assert_eq!(dead.process_alive(true), Some(false));
        w.step_done("classifier", 1);
        w.metric("classifier", "loss", 0.5);
        w.checkpoint("classifier", 1).unwrap();
        let m = Manifest::read(tmp.path()).unwrap();
        assert_eq!(m.outcome.last_checkpoint, Some(CheckpointRef { model: "classifier".into(), step: 1 }));
        w.model_done("classifier", 1, "abc").unwrap();
        w.end(Status::Finished, None).unwrap();
        let m = Manifest::read(tmp.path()).unwrap();
        assert_eq!(m.outcome.status, Status::Finished);
        assert_eq!(m.outcome.weights["classifier"], "abc");
        assert_eq!(m.outcome.metrics["classifier.loss"], 0.5);
        assert_eq!(m, serde_json::from_slice(&std::fs::read(tmp.path().join(MANIFEST_FILE)).unwrap()).unwrap());
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        // evaluate's metrics join it, per split.
        Manifest::record_eval(tmp.path(), "test", &[("classifier.auc".to_string(), 0.75)].into()).unwrap();
        Manifest::record_eval(tmp.path(), "test", &[("classifier.auc".to_string(), 0.8)].into()).unwrap();
        let m = Manifest::read(tmp.path()).unwrap();
        assert_eq!(m.outcome.eval, [("test.classifier.auc".to_string(), 0.8)].into());
    }

    #[test]
    fn a_failed_start_says_why_and_is_cleared_by_a_rerun_but_nothing_else_is() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        let m = Manifest::failed_start(None, &["classifier"], "data: no dataset.json".into());
        m.write(run).unwrap();
        let back = Manifest::read(run).unwrap();
        assert_eq!(back.outcome.status, Status::Failed);
        assert_eq!(back.outcome.error.as_deref(), Some("data: no dataset.json"));
        assert!(back.is_failed_start() && back.inputs.dataset.is_none());
        assert!(clear_failed_start(run).unwrap());
        assert_eq!(std::fs::read_dir(run).unwrap().count(), 0);

        // A failed run that trained (it has steps), or a failed start beside other files, stays.
        let mut trained = sample();
        trained.outcome.status = Status::Failed;
        trained.outcome.steps.insert("classifier".into(), 10);
        trained.write(run).unwrap();
        assert!(!clear_failed_start(run).unwrap());
        m.write(run).unwrap();
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        assert!(!clear_failed_start(run).unwrap());
        assert!(run.join(MANIFEST_FILE).is_file() && run.join("notes.txt").is_file());
    }

    #[test]
    fn a_broken_manifest_is_one_line_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(MANIFEST_FILE), "{\"format_version\": 1, \"build\": 3}").unwrap();
        let e = Manifest::read(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("manifest.json") && e.contains("not a valid manifest") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn paths_are_relative_to_the_run_or_free_of_the_home_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (ds, run) = (tmp.path().join("dataset"), tmp.path().join("runs/a"));
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        assert_eq!(portable_path(&ds, &run), "../../dataset");
        let r = DatasetRef { path: "../../dataset".into(), ..sample().inputs.dataset.unwrap() };
        assert_eq!(std::fs::canonicalize(r.resolve(&run)).unwrap(), std::fs::canonicalize(&ds).unwrap());
        if let Some(home) = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.components().count() > 1) {
            assert_eq!(home_to_tilde(&home.join("x/y")), "~/x/y");
        }
    }
}
