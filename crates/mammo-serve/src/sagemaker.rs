//! The SageMaker container contract: where SageMaker puts things (`/opt/ml/...`, or `$SAGEMAKER_BASE_DIR`
//! for local use), reading `hyperparameters.json`, `inputdataconfig.json` and `resourceconfig.json`,
//! choosing the data channel, the failure file, the stable metric lines a tuning job's regexes read,
//! and exporting a run's model into `/opt/ml/model`.
//!
//! ```text
//! /opt/ml/input/config/hyperparameters.json   {"train.steps": "20", "model": "all", ...} (string values)
//! /opt/ml/input/config/inputdataconfig.json   {"training": {"TrainingInputMode": "File", ...}}
//! /opt/ml/input/config/resourceconfig.json    {"current_host": "algo-1", "hosts": ["algo-1"]}
//! /opt/ml/input/data/<channel>/               a prepared DATASET (dataset.json) or raw data + `format`
//! /opt/ml/checkpoints/                        the RUN directory itself (synced to S3; resumed when not empty)
//! /opt/ml/model/                              the exported model, RUN-shaped (model/, config.toml, ...)
//! /opt/ml/output/failure                      the one-line reason a training failed
//! /opt/ml/output/dataset/                     raw channel data prepared here (not uploaded)
//! ```
//! The orchestration (prepare, train, evaluate) lives in the binary's `train` command; everything here
//! is plain data and files, so it is tested without training anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mammo_io::layouts::Format;
use mammo_nn::{ModelKind, TrainConfig};
use mammo_prep::PrepParams;

/// Where SageMaker mounts everything in its containers.
pub const DEFAULT_BASE_DIR: &str = "/opt/ml";
/// Overrides [`DEFAULT_BASE_DIR`], to run the contract locally (or in tests) on a directory tree.
pub const BASE_DIR_ENV: &str = "SAGEMAKER_BASE_DIR";
/// SageMaker's default channel name.
pub const DEFAULT_CHANNEL: &str = "training";
/// The port SageMaker sends requests to; `SAGEMAKER_BIND_TO_PORT` overrides it (inference pipelines).
pub const DEFAULT_PORT: u16 = 8080;

/// The SageMaker directory tree, rooted at `/opt/ml` or `$SAGEMAKER_BASE_DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub base: PathBuf,
}

impl Paths {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Paths { base: base.into() }
    }

    /// `$SAGEMAKER_BASE_DIR` when set (and not empty), else `/opt/ml`.
    pub fn from_env() -> Self {
        match std::env::var_os(BASE_DIR_ENV) {
            Some(v) if !v.is_empty() => Paths::new(v),
            _ => Paths::new(DEFAULT_BASE_DIR),
        }
    }

    /// Whether the base directory was chosen explicitly through the environment.
    pub fn env_set() -> bool {
        std::env::var_os(BASE_DIR_ENV).is_some_and(|v| !v.is_empty())
    }

    pub fn config_dir(&self) -> PathBuf {
        self.base.join("input").join("config")
    }
    pub fn hyperparameters(&self) -> PathBuf {
        self.config_dir().join("hyperparameters.json")
    }
    pub fn input_data_config(&self) -> PathBuf {
        self.config_dir().join("inputdataconfig.json")
    }
    pub fn resource_config(&self) -> PathBuf {
        self.config_dir().join("resourceconfig.json")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("input").join("data")
    }
    pub fn channel(&self, name: &str) -> PathBuf {
        self.data_dir().join(name)
    }
    pub fn model(&self) -> PathBuf {
        self.base.join("model")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.base.join("checkpoints")
    }
    pub fn output(&self) -> PathBuf {
        self.base.join("output")
    }
    pub fn failure(&self) -> PathBuf {
        self.output().join("failure")
    }
    /// Where raw channel data is prepared into a DATASET: on the job's volume, outside `output/data`
    /// (which SageMaker would upload).
    pub fn prepared_dataset(&self) -> PathBuf {
        self.output().join("dataset")
    }

    /// `train` without `--data`/`--out` runs the contract when asked to (`--sagemaker`), when
    /// `$SAGEMAKER_BASE_DIR` is set, or when SageMaker's `hyperparameters.json` is there.
    pub fn training_requested(explicit: bool) -> Option<Paths> {
        let paths = Paths::from_env();
        (explicit || Paths::env_set() || paths.hyperparameters().is_file()).then_some(paths)
    }

    /// `serve` without a RUN serves `/opt/ml/model` when asked to (`--sagemaker`), when
    /// `$SAGEMAKER_BASE_DIR` is set, or when `/opt/ml/model` exists (SageMaker extracts the model there).
    pub fn serving_requested(explicit: bool) -> Option<Paths> {
        let paths = Paths::from_env();
        (explicit || Paths::env_set() || paths.model().is_dir()).then_some(paths)
    }

    /// Writes the one-line `reason` to `output/failure` (atomically), where SageMaker reads it as the
    /// job's FailureReason. Best effort: a failure to write it is logged, not returned.
    pub fn write_failure(&self, reason: &str) {
        let one_line = reason.replace(['\n', '\r'], " ");
        let path = self.failure();
        let r = std::fs::create_dir_all(self.output())
            .map_err(anyhow::Error::from)
            .and_then(|_| Ok(mammo_io::atomic::write_bytes(&path, one_line.as_bytes())?));
        if let Err(e) = r {
            tracing::error!("{}: could not write the failure reason: {e}", path.display());
        }
    }
}

/// What `hyperparameters.json` asks for.
#[derive(Clone, Debug)]
pub struct Hyperparameters {
    /// Config keys and their values, in the file's order, for [`TrainConfig::set`].
    pub config: Vec<(String, String)>,
    /// `format`: the layout of raw data in the channel (no `dataset.json` there).
    pub format: Option<Format>,
    /// `model`: classifier, attribution or all (default: `train --model`, itself all by default).
    pub models: Option<&'static [ModelKind]>,
    /// `channel`: the input channel to train on (default `training`, or the only one).
    pub channel: Option<String>,
    /// `device`: auto (default), cpu, cuda[:N] or wgpu[:N].
    pub device: Option<String>,
    /// `threads`: CPU threads (0 = all usable cores).
    pub threads: Option<usize>,
    /// `prepare.*`: how raw data is prepared.
    pub prep: PrepParams,
    /// Keys ignored (SageMaker's own `_*` / `sagemaker_*`, and unknown ones), for the log.
    pub ignored: Vec<String>,
}

/// The keys of [`Hyperparameters`] that are not config keys.
pub const SPECIAL_KEYS: &[&str] = &[
    "format",
    "model",
    "channel",
    "device",
    "threads",
    "prepare.spacing",
    "prepare.default_spacing",
    "prepare.patch_size",
    "prepare.per_lesion",
    "prepare.normal_per_image",
    "prepare.seed",
];

impl Hyperparameters {
    /// Reads `hyperparameters.json` (a missing file means no hyperparameters).
    pub fn read(path: &Path) -> Result<Self> {
        let value = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).with_context(|| format!("{}: not valid JSON", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => return Err(mammo_io::IoError::io(path, e).into()),
        };
        Self::parse(&value).with_context(|| format!("{}", path.display()))
    }

    /// Parses the JSON object. SageMaker passes every value as a string; numbers and booleans (local
    /// use) are taken as their text, and a JSON-encoded string (`"\"phantom\""`, as framework estimators
    /// write them) is unwrapped. Keys of a config section (`train.`, `classifier.`, ...) go to
    /// [`TrainConfig::set`], so a misspelt config key is an error; keys starting with `_` or
    /// `sagemaker_` and any other unknown key are ignored.
    pub fn parse(value: &serde_json::Value) -> Result<Self> {
        let obj = value.as_object().context("hyperparameters must be a JSON object")?;
        let sections: Vec<String> = TrainConfig::default()
            .keys()
            .iter()
            .filter_map(|k| k.split_once('.').map(|(s, _)| s.to_string()))
            .collect();
        let mut hp = Hyperparameters {
            config: Vec::new(),
            format: None,
            models: None,
            channel: None,
            device: None,
            threads: None,
            prep: PrepParams::default(),
            ignored: Vec::new(),
        };
        let mut probe = TrainConfig::default();
        for (key, raw) in obj {
            let value = match raw {
                serde_json::Value::String(s) => unquote(s),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => bail!("hyperparameter {key}: expected a string, got {other}"),
            };
            let bad = |what: &str| anyhow::anyhow!("hyperparameter {key}={value}: {what}");
            match key.as_str() {
                k if k.starts_with('_') || k.starts_with("sagemaker_") => hp.ignored.push(key.clone()),
                "format" => {
                    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                    hp.format =
                        Some(Format::parse(value.trim()).ok_or_else(|| bad(&format!("one of {}", names.join(", "))))?)
                }
                "model" => {
                    hp.models =
                        Some(ModelKind::choice(value.trim()).map_err(|_| bad("one of classifier, attribution, all"))?)
                }
                "channel" => hp.channel = Some(value.trim().to_string()),
                "device" => hp.device = Some(value.trim().to_string()),
                "threads" => hp.threads = Some(value.trim().parse().map_err(|_| bad("a whole number"))?),
                "prepare.spacing" => hp.prep.spacing_mm = positive(&value).ok_or_else(|| bad("a positive number"))?,
                "prepare.default_spacing" => {
                    hp.prep.default_spacing_mm = positive(&value).ok_or_else(|| bad("a positive number"))?
                }
                "prepare.patch_size" => hp.prep.patch.size = count(&value).ok_or_else(|| bad("a whole number >= 1"))?,
                "prepare.per_lesion" => {
                    hp.prep.patch.per_lesion = value.trim().parse().map_err(|_| bad("a whole number"))?
                }
                "prepare.normal_per_image" => {
                    hp.prep.patch.normal_per_image = value.trim().parse().map_err(|_| bad("a whole number"))?
                }
                "prepare.seed" => hp.prep.seed = value.trim().parse().map_err(|_| bad("a whole number"))?,
                k if k.split_once('.').is_some_and(|(s, _)| sections.iter().any(|x| x == s)) => {
                    // Checked now, so a bad value fails before any data is read.
                    probe.set(k, value.trim()).map_err(|e| anyhow::anyhow!("hyperparameter {e}"))?;
                    hp.config.push((key.clone(), value.trim().to_string()));
                }
                _ => hp.ignored.push(key.clone()),
            }
        }
        probe.validate().map_err(|e| anyhow::anyhow!("hyperparameters: {e}"))?;
        Ok(hp)
    }

    /// The training config: defaults with the config hyperparameters applied.
    pub fn train_config(&self) -> Result<TrainConfig> {
        let mut config = TrainConfig::default();
        for (k, v) in &self.config {
            config.set(k, v).map_err(|e| anyhow::anyhow!("hyperparameter {e}"))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// `--set KEY=VALUE` arguments equivalent to the config hyperparameters.
    pub fn as_set_args(&self) -> Vec<String> {
        self.config.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

fn unquote(s: &str) -> String {
    if s.len() >= 2
        && s.starts_with('"')
        && s.ends_with('"')
        && let Ok(inner) = serde_json::from_str::<String>(s)
    {
        return inner;
    }
    s.to_string()
}

fn positive(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
}

fn count(s: &str) -> Option<usize> {
    s.trim().parse::<usize>().ok().filter(|v| *v >= 1)
}

/// The channels `inputdataconfig.json` declares, with their `TrainingInputMode` (`File` when absent).
/// A missing file (local use) yields the directories under `input/data/`. Pipe mode is refused: the
/// trainer reads files.
pub fn channels(paths: &Paths) -> Result<BTreeMap<String, String>> {
    let path = paths.input_data_config();
    let mut out = BTreeMap::new();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).with_context(|| format!("{}: not valid JSON", path.display()))?;
            let obj = v.as_object().with_context(|| format!("{}: not a JSON object", path.display()))?;
            for (name, cfg) in obj {
                let mode = cfg.get("TrainingInputMode").and_then(|m| m.as_str()).unwrap_or("File").to_string();
                out.insert(name.clone(), mode);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Ok(dir) = std::fs::read_dir(paths.data_dir()) {
                for e in dir.flatten() {
                    if e.path().is_dir() {
                        out.insert(e.file_name().to_string_lossy().into_owned(), "File".to_string());
                    }
                }
            }
        }
        Err(e) => return Err(mammo_io::IoError::io(&path, e).into()),
    }
    Ok(out)
}

/// The channel to train on: the `channel` hyperparameter, else `training`, else the only channel.
/// Returns its name and directory; the directory must exist and hold something.
pub fn choose_channel(paths: &Paths, wanted: Option<&str>) -> Result<(String, PathBuf)> {
    let channels = channels(paths)?;
    let names = || channels.keys().cloned().collect::<Vec<_>>().join(", ");
    let name = match wanted {
        Some(w) => {
            if !channels.is_empty() && !channels.contains_key(w) {
                bail!(
                    "channel {w} (hyperparameter `channel`) is not an input channel of this job (channels: {})",
                    names()
                );
            }
            w.to_string()
        }
        None if channels.contains_key(DEFAULT_CHANNEL) => DEFAULT_CHANNEL.to_string(),
        None if channels.len() == 1 => channels.keys().next().unwrap().clone(),
        None if channels.is_empty() => {
            bail!("no input channel: give the job a `{DEFAULT_CHANNEL}` channel with a DATASET or raw data")
        }
        None => bail!(
            "several input channels and none named `{DEFAULT_CHANNEL}` ({}): set the `channel` hyperparameter",
            names()
        ),
    };
    let mode = channels.get(&name).map(|s| s.as_str()).unwrap_or("File");
    if !matches!(mode, "File" | "FastFile") {
        bail!("channel {name}: TrainingInputMode {mode} is not supported; use File (or FastFile)");
    }
    let dir = paths.channel(&name);
    let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(true);
    if empty {
        bail!("{}: channel {name} is empty or missing", dir.display());
    }
    Ok((name, dir))
}

/// The prepared DATASET in a channel: the channel itself when it holds `dataset.json`, or its only
/// subdirectory that does (an S3 prefix copied one level deep).
pub fn find_dataset(channel_dir: &Path) -> Option<PathBuf> {
    if channel_dir.join(mammo_prep::dataset::DATASET_JSON).is_file() {
        return Some(channel_dir.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(channel_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    match subdirs.as_slice() {
        [one] if one.join(mammo_prep::dataset::DATASET_JSON).is_file() => Some(one.clone()),
        _ => None,
    }
}

/// `resourceconfig.json`: this host and all hosts of the job. Training runs on one instance: a job with
/// several hosts is refused (each host would train the same model and race to upload it).
pub fn check_resources(paths: &Paths) -> Result<Option<(String, Vec<String>)>> {
    let path = paths.resource_config();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(mammo_io::IoError::io(&path, e).into()),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let current = v.get("current_host").and_then(|h| h.as_str()).unwrap_or("").to_string();
    let hosts: Vec<String> = v
        .get("hosts")
        .and_then(|h| h.as_array())
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str())
        .map(String::from)
        .collect();
    if hosts.len() > 1 {
        bail!(
            "{}: {} hosts ({}); mammogan trains on one instance: set instance_count=1 (InstanceCount 1)",
            path.display(),
            hosts.len(),
            hosts.join(", ")
        );
    }
    Ok(Some((current, hosts)))
}

/// One stable, regex-friendly line of metrics: `METRIC <head> key=value; key=value;` with values as
/// fixed-point decimals (`-0.431200`, never exponents). Non-finite values are left out.
pub fn metric_line(head: &str, values: &[(String, f64)]) -> String {
    let mut line = String::from("METRIC");
    if !head.is_empty() {
        line.push(' ');
        line.push_str(head);
    }
    for (k, v) in values {
        if v.is_finite() {
            line.push_str(&format!(" {k}={v:.6};"));
        }
    }
    line
}

/// Copies what `serve` and `explain` need from a RUN into `dest` (`/opt/ml/model`), RUN-shaped:
/// `model/` (weights + model.json, built aside and renamed into place), `config.toml`, `manifest.json`,
/// `metrics.jsonl` and `eval/metrics.json` where present, each file written atomically.
pub fn export_model(run: &Path, dest: &Path) -> Result<()> {
    use mammo_track::RunDir;
    let src_model = run.join(RunDir::MODEL);
    if !src_model.join(mammo_nn::export::MODEL_JSON).is_file() {
        bail!("{}: no exported model to copy (training wrote none)", src_model.display());
    }
    let final_dir = dest.join(RunDir::MODEL);
    // Built beside `model/`, synced and renamed over it whole (a retried export replaces it).
    mammo_io::partial::build_dir(&final_dir, mammo_io::partial::Existing::Replace, |tmp| -> Result<()> {
        for entry in std::fs::read_dir(&src_model).map_err(|e| mammo_io::IoError::io(&src_model, e))? {
            let entry = entry.map_err(|e| mammo_io::IoError::io(&src_model, e))?;
            let p = entry.path();
            if p.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
                let bytes = std::fs::read(&p).map_err(|e| mammo_io::IoError::io(&p, e))?;
                std::fs::write(tmp.join(entry.file_name()), bytes).map_err(|e| mammo_io::IoError::io(tmp, e))?;
            }
        }
        Ok(())
    })?;
    for rel in [RunDir::CONFIG, RunDir::MANIFEST, RunDir::METRICS, "eval/metrics.json", "eval/report.html"] {
        let p = run.join(rel);
        if p.is_file() {
            let bytes = std::fs::read(&p).map_err(|e| mammo_io::IoError::io(&p, e))?;
            let to = dest.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| mammo_io::IoError::io(parent, e))?;
            }
            mammo_io::atomic::write_bytes(&to, &bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_are_strings_and_sagemaker_keys_are_ignored() {
        let v = serde_json::json!({
            "train.steps": "20",
            "train.seed": 7,
            "_tuning_objective_metric": "val.classifier.auc",
            "sagemaker_program": "x",
            "something_else": "1",
            "format": "\"phantom\"",
            "model": "classifier",
            "prepare.patch_size": "32",
        });
        let hp = Hyperparameters::parse(&v).unwrap();
        let c = hp.train_config().unwrap();
        assert_eq!(c.train.steps, Some(20));
        assert_eq!(c.train.seed, 7);
        assert_eq!(hp.format, Some(Format::Phantom));
        assert_eq!(hp.models, Some(&[ModelKind::Classifier][..]));
        assert_eq!(hp.prep.patch.size, 32);
        assert_eq!(hp.ignored.len(), 3, "{:?}", hp.ignored);
    }

    #[test]
    fn bad_hyperparameters_name_the_key() {
        for (k, v) in [("train.steps", "many"), ("train.stepz", "3"), ("model", "gan"), ("format", "tiff")] {
            let e = Hyperparameters::parse(&serde_json::json!({ k: v })).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        assert!(Hyperparameters::parse(&serde_json::json!({"train.steps": ["1"]})).is_err());
    }

    #[test]
    fn channel_choice_and_input_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        assert!(choose_channel(&paths, None).unwrap_err().to_string().contains("no input channel"));
        for c in ["train2", "other"] {
            std::fs::create_dir_all(paths.channel(c)).unwrap();
            std::fs::write(paths.channel(c).join("f"), "x").unwrap();
        }
        assert!(choose_channel(&paths, None).unwrap_err().to_string().contains("set the `channel`"));
        assert_eq!(choose_channel(&paths, Some("other")).unwrap().0, "other");
        std::fs::create_dir_all(paths.config_dir()).unwrap();
        std::fs::write(paths.input_data_config(), r#"{"train2": {"TrainingInputMode": "Pipe"}}"#).unwrap();
        assert!(choose_channel(&paths, None).unwrap_err().to_string().contains("Pipe"));
        std::fs::write(paths.input_data_config(), r#"{"training": {"TrainingInputMode": "File"}}"#).unwrap();
        assert!(choose_channel(&paths, None).unwrap_err().to_string().contains("empty or missing"));
    }

    #[test]
    fn several_hosts_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        assert_eq!(check_resources(&paths).unwrap(), None);
        std::fs::create_dir_all(paths.config_dir()).unwrap();
        std::fs::write(paths.resource_config(), r#"{"current_host": "algo-1", "hosts": ["algo-1"]}"#).unwrap();
        assert_eq!(check_resources(&paths).unwrap(), Some(("algo-1".into(), vec!["algo-1".into()])));
        std::fs::write(paths.resource_config(), r#"{"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}"#)
            .unwrap();
        assert!(check_resources(&paths).unwrap_err().to_string().contains("instance_count=1"));
    }

    #[test]
    fn metric_lines_are_fixed_point() {
        let l = metric_line("step=3", &[("train.classifier.loss".into(), -0.5), ("x".into(), f64::NAN)]);
        assert_eq!(l, "METRIC step=3 train.classifier.loss=-0.500000;");
        assert_eq!(metric_line("", &[("a".into(), 1e-9)]), "METRIC a=0.000000;");
    }

    #[test]
    fn failure_is_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        paths.write_failure("bad\nthing");
        assert_eq!(std::fs::read_to_string(paths.failure()).unwrap(), "bad thing");
    }

    /// The request document in docs/sagemaker (checked against botocore's service model by
    /// tests/aws/check_sagemaker_requests.py) asks for what this contract accepts: its hyperparameters
    /// are all mammogan's and make a valid config, and its channels, as SageMaker writes them into
    /// inputdataconfig.json, give the `training` channel in a mode that is read.
    #[test]
    fn the_documented_training_job_is_accepted() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/sagemaker/create-training-job.json");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let hp = Hyperparameters::parse(&doc["HyperParameters"]).unwrap();
        assert!(hp.ignored.is_empty(), "{}: hyperparameters mammogan ignores: {:?}", path.display(), hp.ignored);
        hp.train_config().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        let mut channels = serde_json::Map::new();
        for ch in doc["InputDataConfig"].as_array().unwrap() {
            let name = ch["ChannelName"].as_str().unwrap();
            let mode = ch.get("InputMode").unwrap_or(&doc["AlgorithmSpecification"]["TrainingInputMode"]);
            channels.insert(
                name.into(),
                serde_json::json!({"TrainingInputMode": mode, "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}),
            );
            std::fs::create_dir_all(paths.channel(name)).unwrap();
            std::fs::write(paths.channel(name).join("dataset.json"), "{}").unwrap();
        }
        std::fs::create_dir_all(paths.config_dir()).unwrap();
        std::fs::write(paths.input_data_config(), serde_json::Value::Object(channels).to_string()).unwrap();
        let (name, dir) = choose_channel(&paths, hp.channel.as_deref()).unwrap();
        assert_eq!((name.as_str(), dir), ("training", paths.channel("training")));
    }
}
