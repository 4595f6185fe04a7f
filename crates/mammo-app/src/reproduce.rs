//! `reproduce`: a finished run re-run from its manifest, and the weights compared.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mammo_run::{Manifest, Status};

use crate::progress::Progress;
use crate::train::{self, TrainOptions};

/// A finished run to re-run, and how.
#[derive(Clone, Debug, Default)]
pub struct ReproduceRequest {
    /// A finished RUN directory.
    pub run: PathBuf,
    /// Where to re-run it (`None`: RUN-reproduce beside it).
    pub out: Option<PathBuf>,
    /// The DATASET, when it is no longer where the manifest says.
    pub data: Option<PathBuf>,
    /// CPU threads (`None`: the run's own).
    pub threads: Option<usize>,
    /// auto, cpu, cuda[:N] or wgpu[:N] (`None`: the run's own backend and device).
    pub device: Option<String>,
}

/// A re-run and how it compares with the original.
pub struct Reproduction {
    /// The original run.
    pub run: PathBuf,
    /// Where it was re-run.
    pub out: PathBuf,
    pub comparison: mammo_run::reproduce::Comparison,
}

impl Reproduction {
    /// An error unless the weights came out the same, naming the first difference that explains it.
    pub fn verdict(&self) -> Result<()> {
        if !self.comparison.reproduced() {
            let why = self
                .comparison
                .causes
                .first()
                .map(|c| format!("first difference: {} {}", c.group, c.key))
                .unwrap_or_else(|| "no input or environment difference explains it".into());
            bail!("{}: not reproduced ({why})", self.run.display());
        }
        Ok(())
    }
}

/// Re-runs a finished run from its config and manifest (the DATASET checked first against the hashes
/// it recorded) and compares the two.
pub fn run(args: &ReproduceRequest, progress: &dyn Progress) -> Result<Reproduction> {
    let run = &args.run;
    let original = Manifest::read(run)?;
    if original.outcome.status != Status::Finished {
        bail!(
            "{}: the run is {}, not finished; only a finished run can be reproduced",
            run.join(mammo_run::manifest::MANIFEST_FILE).display(),
            original.outcome.status
        );
    }
    // The run's own config.toml, as long as it is the one the manifest recorded; without it, the
    // manifest's copy (the same resolved config, so the same TOML).
    let mut config = run.join(mammo_track::RunDir::CONFIG);
    let mut from_manifest = None;
    if config.is_file() {
        let bytes = std::fs::read(&config).map_err(|e| mammo_io::IoError::io(&config, e))?;
        if blake3::hash(&bytes).to_hex().as_str() != original.inputs.config_toml_blake3 {
            bail!("{}: changed since the run (its BLAKE3 differs from manifest.json)", config.display());
        }
    } else {
        let manifest_path = run.join(mammo_run::manifest::MANIFEST_FILE);
        let c: mammo_nn::TrainConfig = serde_json::from_value(original.inputs.config.clone())
            .with_context(|| format!("{}: inputs.config is not a valid config", manifest_path.display()))?;
        config = std::env::temp_dir().join(format!("mammogan-reproduce-{}.toml", std::process::id()));
        mammo_io::atomic::write_bytes(&config, c.to_toml().as_bytes())?;
        from_manifest = Some(TempFile(config.clone()));
    }
    // The data first: a changed file is named before any time is spent training.
    let Some(recorded) = &original.inputs.dataset else {
        bail!("{}: the run failed before it read a DATASET; there is nothing to reproduce", run.display());
    };
    let data = args.data.clone().unwrap_or_else(|| recorded.resolve(run));
    mammo_run::reproduce::check_dataset(&data, recorded)?;

    let out = args.out.clone().unwrap_or_else(|| sibling(run, "-reproduce"));
    // The manifest lists the models trained, in order: one of them, or both (`all`).
    let model = match original.inputs.models.as_slice() {
        [one] => mammo_nn::ModelKind::choice(one)?,
        _ => &mammo_nn::ModelKind::ALL,
    };
    let device = args.device.clone().unwrap_or_else(|| original.run.device_spec());
    let opts = TrainOptions {
        config: Some(config),
        set: Vec::new(),
        models: model,
        device,
        threads: args.threads.unwrap_or(original.run.threads),
        resume: false,
        metric_lines: false,
        mlflow: Default::default(),
    };
    train::run(&data, &out, &opts, progress).with_context(|| format!("reproducing {}", run.display()))?;
    drop(from_manifest);
    let again = Manifest::read(&out)?;
    let comparison = mammo_run::reproduce::compare(&original, &again);
    Ok(Reproduction { run: run.clone(), out, comparison })
}

/// `dir` with `suffix` added to its last component.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    dir.with_file_name(format!("{name}{suffix}"))
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
