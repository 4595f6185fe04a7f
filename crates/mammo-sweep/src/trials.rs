//! A sweep's directory and the state of its trials, from files alone (so every scheduler's workers,
//! `sweep status` and `sweep collect` agree without talking to each other).
//!
//! ```text
//! DIR/sweep.toml            the sweep file, as given
//! DIR/sweep.json            the DATASET and threads per trial the trials use
//! DIR/trials.json           every trial: id, values, seed (file order)
//! DIR/trials/<id>/config.toml   the trial's full `train --config`
//! DIR/trials/<id>/started   written when an attempt starts (its pid and host hash are not kept)
//! DIR/trials/<id>/failed    the one-line reason an attempt failed
//! DIR/trials/<id>/run/      the RUN; run/eval/metrics.json marks the trial finished
//! DIR/trials/<id>/log.txt   the attempt's output
//! ```
//! A trial is finished only when `evaluate` wrote its metrics; a killed attempt leaves `started`
//! without either, and the next `sweep run` starts it again from scratch.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{Sweep, Trial};

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SweepError {
    pub path: PathBuf,
    pub message: String,
}

pub fn err(path: &Path, message: impl Into<String>) -> SweepError {
    SweepError { path: path.to_path_buf(), message: message.into() }
}

pub const SWEEP_TOML: &str = "sweep.toml";
pub const SWEEP_JSON: &str = "sweep.json";
pub const TRIALS_JSON: &str = "trials.json";

/// `sweep.json`: what every trial of this directory trains on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The DATASET (absolute, so a worker in any directory or a container mounting it at the same
    /// path finds it).
    pub data: PathBuf,
    pub threads: usize,
    /// The whole images the DATASET was prepared from (`sweep run --images`, absolute), for
    /// `evaluate --images`: with them every trial also reports the whole-image figures (`image.auc`,
    /// `detection.*`, `image_attribution.*`), which can then be the objective. Absent from sweep.json
    /// written without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
}

impl Settings {
    /// What every trial reads and never writes, named as the options that gave them: the routes mount
    /// these read-only at the same paths (Slurm's container route) or check that the volume holds them
    /// (Kubernetes).
    pub fn inputs(&self) -> Vec<(&'static str, &Path)> {
        let mut v = vec![("the DATASET (--data)", self.data.as_path())];
        if let Some(images) = &self.images {
            v.push(("the images (--images)", images.as_path()));
        }
        v
    }
}

/// Whether `key` of eval/metrics.json is measured on whole images, so that only `evaluate --images`
/// (a sweep run with `--images`) writes it.
pub fn whole_image_key(key: &str) -> bool {
    ["image.", "image_", "breast.", "detection."].iter().any(|p| key.starts_with(p))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Finished,
    Running,
    Failed,
    Pending,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Finished => "finished",
            State::Running => "running or killed",
            State::Failed => "failed",
            State::Pending => "pending",
        }
    }
}

/// A sweep directory.
pub struct SweepDir {
    pub dir: PathBuf,
}

impl SweepDir {
    pub fn new(dir: &Path) -> SweepDir {
        SweepDir { dir: dir.to_path_buf() }
    }
    pub fn trial_dir(&self, id: &str) -> PathBuf {
        self.dir.join("trials").join(id)
    }
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.trial_dir(id).join("run")
    }
    pub fn metrics(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("eval").join("metrics.json")
    }

    /// Writes the sweep file, settings, trial list and every trial's config (each atomically). Trials
    /// already in the directory keep their runs: a trial's id fixes its config.
    pub fn write(&self, sweep_text: &str, sweep: &Sweep, settings: &Settings) -> Result<Vec<Trial>, SweepError> {
        let trials = sweep.trials();
        std::fs::create_dir_all(self.dir.join("trials")).map_err(|e| err(&self.dir, e.to_string()))?;
        write_atomic(&self.dir.join(SWEEP_TOML), sweep_text.as_bytes())?;
        write_atomic(&self.dir.join(SWEEP_JSON), &serde_json::to_vec_pretty(settings).expect("serialises"))?;
        write_atomic(&self.dir.join(TRIALS_JSON), &serde_json::to_vec_pretty(&trials).expect("serialises"))?;
        for t in &trials {
            let config = sweep.trial_config(t).map_err(|e| err(&self.dir.join(SWEEP_TOML), e.to_string()))?;
            let d = self.trial_dir(&t.id);
            std::fs::create_dir_all(&d).map_err(|e| err(&d, e.to_string()))?;
            write_atomic(&d.join("config.toml"), config.as_bytes())?;
        }
        Ok(trials)
    }

    pub fn sweep(&self) -> Result<Sweep, SweepError> {
        Sweep::from_file(&self.dir.join(SWEEP_TOML)).map_err(|e| err(&self.dir, e.to_string()))
    }

    pub fn settings(&self) -> Result<Settings, SweepError> {
        read_json(&self.dir.join(SWEEP_JSON))
    }

    pub fn trials(&self) -> Result<Vec<Trial>, SweepError> {
        read_json(&self.dir.join(TRIALS_JSON))
    }

    pub fn state(&self, id: &str) -> State {
        let d = self.trial_dir(id);
        if self.metrics(id).is_file() {
            State::Finished
        } else if d.join("failed").is_file() {
            State::Failed
        } else if d.join("started").is_file() {
            State::Running
        } else {
            State::Pending
        }
    }

    /// The reason the last attempt of `id` failed.
    pub fn failure(&self, id: &str) -> Option<String> {
        std::fs::read_to_string(self.trial_dir(id).join("failed")).ok().map(|s| s.trim().to_string())
    }

    /// Starts an attempt at `id`: the leftovers of an earlier one (a killed or failed run) removed.
    pub fn begin(&self, id: &str) -> Result<(), SweepError> {
        let d = self.trial_dir(id);
        if !d.join("config.toml").is_file() {
            return Err(err(&d, "no such trial in this sweep (its config.toml is missing)"));
        }
        let run = self.run_dir(id);
        if run.exists() {
            std::fs::remove_dir_all(&run).map_err(|e| err(&run, e.to_string()))?;
        }
        let _ = std::fs::remove_file(d.join("failed"));
        write_atomic(&d.join("started"), b"started\n")
    }

    pub fn fail(&self, id: &str, message: &str) -> Result<(), SweepError> {
        write_atomic(&self.trial_dir(id).join("failed"), format!("{}\n", message.replace('\n', " ")).as_bytes())
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, SweepError> {
    let bytes =
        std::fs::read(path).map_err(|e| err(path, format!("{e} (not a sweep directory written by `sweep run`?)")))?;
    serde_json::from_slice(&bytes).map_err(|e| err(path, e.to_string()))
}

/// `bytes` into `path` through a temporary sibling renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| err(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(path, e.to_string())
    })
}
