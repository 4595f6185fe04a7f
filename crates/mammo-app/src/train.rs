//! The run session of `train`: config, DATASET checks, `RUN/manifest.json`, the tracking sinks
//! (`metrics.jsonl`, TensorBoard, MLflow), checkpoints and signals, around `mammo_nn`'s two loops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use mammo_nn::{ModelKind, Outcome, PatchData, TrainConfig, TrainObserver};
use mammo_run::manifest::{DatasetRef, Inputs, RunInfo};
use mammo_run::{Environment, Manifest, ManifestWriter, Status};
use mammo_track::{GridOptions, MetricsJsonl, RunDir, TensorBoardWriter, TileScale, WallTime};

use crate::progress::{Bar, Progress};
use crate::tracking::Mlflow;

/// How to train, whatever the DATASET and RUN directory.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// A TOML config (else the defaults).
    pub config: Option<PathBuf>,
    /// `KEY=VALUE` overrides of config keys, applied after `config`.
    pub set: Vec<String>,
    /// Which model(s) to train, in training order.
    pub models: &'static [ModelKind],
    /// auto, cpu, cuda[:N] or wgpu[:N].
    pub device: String,
    /// CPU threads for the backend (0: the config's `train.threads`).
    pub threads: usize,
    /// Continue a killed or stopped run from its newest checkpoints, with its own config.toml.
    pub resume: bool,
    /// A `METRIC step=N train.MODEL.NAME=VALUE; ...` line on stdout per logged step (SageMaker).
    pub metric_lines: bool,
    /// The MLflow server to track to, if any.
    pub mlflow: Mlflow,
}

impl Default for TrainOptions {
    /// Both models, the rest as their types' defaults (`quickstart` sets what it needs).
    fn default() -> Self {
        TrainOptions {
            config: None,
            set: Vec::new(),
            models: &ModelKind::ALL,
            device: String::new(),
            threads: 0,
            resume: false,
            metric_lines: false,
            mlflow: Default::default(),
        }
    }
}

/// The resolved config: the run's own on --resume, else defaults <- --config <- --set.
pub fn resolve_config(opts: &TrainOptions, run: &Path) -> Result<TrainConfig> {
    let saved = run.join(RunDir::CONFIG);
    if opts.resume && saved.is_file() {
        if opts.config.is_some() || !opts.set.is_empty() {
            bail!("{}: --resume continues with the run's own config; drop --config/--set", run.display());
        }
        return Ok(TrainConfig::from_toml_file(&saved)?);
    }
    let mut config = match &opts.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::default(),
    };
    for kv in &opts.set {
        let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        config.set(k.trim(), v.trim())?;
    }
    config.validate()?;
    Ok(config)
}

/// SIGTERM and SIGINT set the flag; the training loop then saves a checkpoint and returns.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&flag)).context("installing the signal handler")?;
    }
    Ok(flag)
}

/// The error of a run stopped by SIGTERM/SIGINT (its checkpoint is saved), told apart from failures.
#[derive(Debug)]
pub struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stopped {}

/// What a finished training reports.
pub struct TrainSummary {
    /// The BLAKE3 of each trained model's weights, by model name.
    pub weights: std::collections::BTreeMap<String, String>,
    /// The steps each model was trained for.
    pub steps: std::collections::BTreeMap<String, u64>,
    pub device: mammo_nn::DeviceInfo,
}

impl TrainSummary {
    /// One line per trained model: its steps and weight hash (what `train` prints).
    pub fn lines(&self) -> Vec<String> {
        self.weights
            .iter()
            .map(|(model, hash)| format!("{model}: {} steps, weights blake3 {hash}", self.steps[model]))
            .collect()
    }
}

/// Trains the chosen models into `out`, keeping `RUN/manifest.json` current: written at the start
/// (running), after every checkpoint, and at the end (finished, failed with the error, or killed).
///
/// Everything that can be checked before training (the config, the DATASET and its hashes, whether
/// the models fit these patches and this machine's memory, the device) is checked before `out` is
/// touched. A start that fails there still leaves `RUN/manifest.json` saying `failed` and why (where
/// `out` is new or empty), and running the command again replaces it.
pub fn run(data: &Path, out: &Path, opts: &TrainOptions, progress: &dyn Progress) -> Result<TrainSummary> {
    let models = opts.models;
    let mlflow = opts.mlflow.target()?;
    let start = match check_start(data, out, opts, models) {
        Ok(s) => s,
        Err(e) => {
            if !opts.resume {
                record_failed_start(out, opts, models, &e);
            }
            return Err(e);
        }
    };
    let Start { config, dataset_info, patches, device, info } = start;
    if !opts.resume {
        mammo_run::manifest::clear_failed_start(out)?;
    }
    let run = if opts.resume { RunDir::resume(out)? } else { RunDir::create(out)? };
    let config_toml = config.to_toml();
    mammo_io::atomic::write_bytes(&run.config(), config_toml.as_bytes())?;
    // Which DATASET this run learns from, so `evaluate` can default to it.
    let data_abs = std::fs::canonicalize(data).map_err(|e| mammo_io::IoError::io(data, e))?;
    let data_ref = serde_json::json!({ "path": data_abs });
    mammo_io::atomic::write_bytes(
        &out.join(crate::evaluate::DATA_REF),
        serde_json::to_string_pretty(&data_ref)?.as_bytes(),
    )?;
    tracing::info!("device: {info}");
    let stop = stop_flag()?;

    let manifest = new_manifest(&config, &config_toml, models, data, &dataset_info, out, &info, opts.resume);
    let mut writer = ManifestWriter::start(out, manifest)?;
    let mlflow = crate::tracking::start(mlflow, out, writer.manifest());
    let mut stopped = false;
    let result = train_models(
        &run,
        &patches,
        &config,
        &device,
        &info,
        models,
        &stop,
        &mut writer,
        &mut stopped,
        progress,
        opts.metric_lines,
        mlflow.as_ref(),
    );
    let (status, error) = match &result {
        Ok(_) => (Status::Finished, None),
        Err(e) if stopped => (Status::Killed, Some(crate::one_line(e))),
        Err(e) => (Status::Failed, Some(crate::one_line(e))),
    };
    let ended = writer.end(status, error);
    crate::tracking::finish(mlflow, out);
    let summary = result?;
    ended?;
    Ok(summary)
}

/// What training needs, checked before the RUN directory is touched.
struct Start {
    config: TrainConfig,
    dataset_info: mammo_prep::DatasetInfo,
    patches: PatchData,
    device: mammo_nn::Device,
    info: mammo_nn::DeviceInfo,
}

fn check_start(data: &Path, out: &Path, opts: &TrainOptions, models: &[ModelKind]) -> Result<Start> {
    let config = resolve_config(opts, out)?;
    let store = mammo_prep::PatchStore::open(data)?;
    mammo_prep::PatchStore::verify(data, &store.info)?;
    let dataset_info = store.info.clone();
    let patch = dataset_info.patch_size;
    // Shapes that cannot exist on these patches, or would not fit in memory, fail now with the key to
    // change, not in the allocator minutes later.
    mammo_nn::budget::check(&config, models, patch, mammo_run::environment::available_memory_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", data.display()))?;
    let patches = PatchData::from_store(store)?;
    // --threads wins; else the config's train.threads (0 = one per usable CPU).
    let threads = if opts.threads > 0 { opts.threads } else { config.train.threads };
    // The allocator's settings for tensor work before the thread pool starts: its threads then share
    // one arena (a 60-step run of both models peaked at 380 MiB with the settings made later, 282 with
    // them made here).
    mammo_nn::alloc::keep_freed_buffers();
    let (device, info) = mammo_nn::select_device(&opts.device, threads)?;
    Ok(Start { config, dataset_info, patches, device, info })
}

/// Leaves `out/manifest.json` saying the start failed and why, where `out` is new, empty or holds an
/// earlier failed start; never in a directory with anything else (another run's files stay as they
/// are). Best effort: the error being reported matters more than this record of it.
fn record_failed_start(out: &Path, opts: &TrainOptions, models: &[ModelKind], error: &anyhow::Error) {
    let usable = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_none() || mammo_run::manifest::clear_failed_start(out).unwrap_or(false),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    if !usable {
        return;
    }
    let config = resolve_config(opts, out).ok().and_then(|c| serde_json::to_value(c).ok());
    let names: Vec<&str> = models.iter().map(|m| m.as_str()).collect();
    let manifest = mammo_run::Manifest::failed_start(config, &names, crate::one_line(error));
    if let Err(e) = std::fs::create_dir_all(out).map_err(anyhow::Error::from).and_then(|_| Ok(manifest.write(out)?)) {
        tracing::warn!("{}: could not record the failed start: {e}", out.display());
    }
}

/// The manifest of a run that starts now.
#[allow(clippy::too_many_arguments)]
fn new_manifest(
    config: &TrainConfig,
    config_toml: &str,
    models: &[ModelKind],
    data: &Path,
    dataset: &mammo_prep::DatasetInfo,
    out: &Path,
    device: &mammo_nn::DeviceInfo,
    resumed: bool,
) -> Manifest {
    let mut seeds = std::collections::BTreeMap::new();
    // Every random stream of training derives from train.seed by name (mammo_nn::rng).
    seeds.insert("train.seed".to_string(), config.train.seed);
    if let Some(s) = dataset.params.get("seed").and_then(|v| v.as_u64()) {
        seeds.insert("dataset.prepare_seed".to_string(), s);
    }
    let inputs = Inputs {
        config: serde_json::to_value(config).expect("a config serializes"),
        config_toml_blake3: blake3::hash(config_toml.as_bytes()).to_hex().to_string(),
        models: models.iter().map(|m| m.to_string()).collect(),
        seeds,
        dataset: Some(DatasetRef::new(data, dataset, config.data.split.as_str(), out)),
    };
    let mut run = RunInfo::this_process(&device.backend, device.index, device.threads, device.deterministic, resumed);
    run.adapter = device.adapter.clone();
    Manifest::new(inputs, run, Environment::detect(Some(device.threads)))
}

#[allow(clippy::too_many_arguments)]
fn train_models(
    run: &RunDir,
    patches: &PatchData,
    config: &TrainConfig,
    device: &mammo_nn::Device,
    info: &mammo_nn::DeviceInfo,
    models: &[ModelKind],
    stop: &AtomicBool,
    writer: &mut ManifestWriter,
    stopped: &mut bool,
    progress: &dyn Progress,
    metric_lines: bool,
    mlflow: Option<&mammo_track::mlflow::Live>,
) -> Result<TrainSummary> {
    let mut summary = TrainSummary { weights: Default::default(), steps: Default::default(), device: info.clone() };
    for &kind in models {
        let model = kind.as_str();
        let resumed_at = mammo_nn::checkpoint::latest(run.root(), model)?.map(|c| c.state.step).unwrap_or(0);
        let mut observer = RunObserver::open(run, model, resumed_at, progress, writer)?;
        observer.metric_lines = metric_lines;
        observer.mlflow = mlflow;
        let outcome = match kind {
            ModelKind::Classifier => {
                mammo_nn::train_classifier(run.root(), patches, config, device, &mut observer, stop)
            }
            ModelKind::Attribution => {
                mammo_nn::train_attribution(run.root(), patches, config, device, &mut observer, stop)
            }
        }
        .with_context(|| format!("training the {model}"))?;
        observer.finish()?;
        match outcome {
            Outcome::Completed { steps, weights_hash } => {
                writer.model_done(model, steps, &weights_hash)?;
                summary.steps.insert(model.to_string(), steps);
                summary.weights.insert(model.to_string(), weights_hash);
            }
            Outcome::Stopped { step } => {
                *stopped = true;
                return Err(Stopped(format!(
                    "{}: stopped by a signal at {model} step {step}; the checkpoint is saved, continue with --resume",
                    run.root().display()
                ))
                .into());
            }
        }
    }
    Ok(summary)
}

/// Progress bar + `metrics.jsonl` + TensorBoard + MLflow + the manifest.
struct RunObserver<'a> {
    model: String,
    manifest: &'a mut ManifestWriter,
    progress: &'a dyn Progress,
    bar: Box<dyn Bar>,
    jsonl: MetricsJsonl,
    tb: TensorBoardWriter,
    error: Option<anyhow::Error>,
    metric_lines: bool,
    mlflow: Option<&'a mammo_track::mlflow::Live>,
}

impl<'a> RunObserver<'a> {
    fn open(
        run: &RunDir,
        model: &str,
        resumed_at: u64,
        progress: &'a dyn Progress,
        manifest: &'a mut ManifestWriter,
    ) -> Result<Self> {
        // One metrics file for the run: on resume, drop only this model's records after its checkpoint.
        let path = run.metrics();
        let records = if path.is_file() { mammo_track::read_metrics(&path)? } else { Vec::new() };
        let keep: Vec<_> = records.into_iter().filter(|r| r.model != model || r.step <= resumed_at).collect();
        let mut jsonl = MetricsJsonl::create(&path)?;
        for r in &keep {
            jsonl.write(r)?;
        }
        let tb = if resumed_at > 0 {
            TensorBoardWriter::open_resume(run.tensorboard(), model, WallTime::System, resumed_at)?
        } else {
            TensorBoardWriter::create(run.tensorboard(), model, WallTime::System)?
        };
        let bar = progress.bar(0, model);
        Ok(RunObserver {
            model: model.to_string(),
            manifest,
            progress,
            bar,
            jsonl,
            tb,
            error: None,
            metric_lines: false,
            mlflow: None,
        })
    }

    fn keep<T, E: Into<anyhow::Error>>(&mut self, r: std::result::Result<T, E>) {
        if let Err(e) = r
            && self.error.is_none()
        {
            self.error = Some(e.into());
        }
    }

    fn finish(mut self) -> Result<()> {
        self.bar.finish();
        let r = self.tb.flush();
        self.keep(r);
        let r = self.jsonl.sync();
        self.keep(r);
        match self.error {
            Some(e) => Err(e.context(format!("writing the {} metrics", self.model))),
            None => Ok(()),
        }
    }
}

impl TrainObserver for RunObserver<'_> {
    fn scalars(&mut self, model: &str, step: u64, values: &[(&str, f64)]) {
        let r = self.jsonl.log(step, model, values);
        self.keep(r);
        if let Some(m) = self.mlflow {
            m.metrics(step, model, values);
        }
        if self.metric_lines {
            let named: Vec<(String, f64)> = values.iter().map(|(k, v)| (format!("train.{model}.{k}"), *v)).collect();
            let line = mammo_serve::sagemaker::metric_line(&format!("step={step}"), &named);
            self.progress.line(&line);
        }
        for (name, v) in values {
            self.manifest.metric(model, name, *v);
        }
        for (name, v) in values {
            let r = self.tb.scalar(step, &format!("{model}/{name}"), *v as f32);
            self.keep(r);
        }
    }

    fn images(&mut self, model: &str, step: u64, tag: &str, patches: &[Vec<f32>], size: usize) {
        let refs: Vec<&[f32]> = patches.iter().map(|p| p.as_slice()).collect();
        // Maps are signed; inputs are in [0, 1].
        let scale = if tag.contains("map") { TileScale::Symmetric } else { TileScale::Clamp };
        let options = GridOptions { scale, ..GridOptions::default() };
        let cols = refs.len().clamp(1, 8);
        match mammo_track::image_grid_png(&refs, size, size, cols, &options) {
            Ok((png, w, h)) => {
                let r = self.tb.image(step, &format!("{model}/{tag}"), &png, w, h, 1);
                self.keep(r);
            }
            Err(e) => self.keep::<(), _>(Err(e)),
        }
    }

    fn checkpoint_saved(&mut self, model: &str, step: u64, dir: &Path) {
        tracing::debug!("{model}: checkpoint at step {step} in {}", dir.display());
        // The manifest names the newest checkpoint, so a killed run says where it can resume.
        let r = self.manifest.checkpoint(model, step);
        self.keep(r);
    }

    fn progress(&mut self, model: &str, step: u64, total: u64, losses: &[(&str, f64)]) {
        self.manifest.step_done(model, step);
        self.bar.set_length(total);
        self.bar.set_position(step);
        let text: Vec<String> = losses.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        self.bar.set_message(format!("{} {}", self.model, text.join(" ")));
    }
}
