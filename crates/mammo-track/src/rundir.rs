//! The RUN directory: the names of its parts and its creation.
//!
//! ```text
//! RUN/
//!   config.toml        the fully resolved configuration
//!   manifest.json      code, build, data hash, seeds, environment, timings, weight hashes
//!   checkpoints/       <model>/step-000100/, ... (written by mammo-nn's checkpoint module)
//!   metrics.jsonl      see crate::jsonl
//!   tb/                TensorBoard event files
//!   eval/              metrics.json, report.html, images
//!   model/             what serve and explain load
//! ```
//!
//! Directories are written whole through `mammo_io::partial::build_dir` by the crates that fill them;
//! this crate only names them.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrackError};

/// A run directory: its path and the paths of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The fully resolved configuration.
    pub const CONFIG: &'static str = "config.toml";
    /// Code, build, data hash, seeds, environment, timings, weight hashes.
    pub const MANIFEST: &'static str = "manifest.json";
    /// Training checkpoints, `<model>/step-NNNNNN/` (mammo-nn's checkpoint module).
    pub const CHECKPOINTS: &'static str = "checkpoints";
    /// Scalar metrics, one JSON object per line ([`crate::MetricsJsonl`]).
    pub const METRICS: &'static str = "metrics.jsonl";
    /// TensorBoard event files ([`crate::TensorBoardWriter`]).
    pub const TENSORBOARD: &'static str = "tb";
    /// Evaluation output: metrics.json, report.html, images.
    pub const EVAL: &'static str = "eval";
    /// The exported model that serve and explain load.
    pub const MODEL: &'static str = "model";

    /// Starts a new run in `path`: creates it (and its parents) with `checkpoints/` and `tb/`, which
    /// training writes into. An existing empty directory is fine (a scheduler may create it); a non-empty
    /// one is refused, so a new run never mixes its files with an old one's. `eval/` and `model/` are
    /// left to the steps that write them, so that their existence means something.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        match std::fs::read_dir(&root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(TrackError::NotEmpty { path: root });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrackError::io(&root, e)),
        }
        Self::make(root)
    }

    /// Continues the run in `path` (or starts it there, if it does not exist, so that a job restarted
    /// with the same command line works either way). What a kill interrupted is recovered by the
    /// writers themselves (mammo-nn's `checkpoint::latest`).
    pub fn resume(path: impl AsRef<Path>) -> Result<Self> {
        Self::make(path.as_ref().to_path_buf())
    }

    /// An existing run directory, for reading (evaluate, explain, report); creates nothing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&root).map_err(|e| TrackError::io(&root, e))?;
        if !meta.is_dir() {
            return Err(TrackError::io(&root, io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
        }
        Ok(RunDir { root })
    }

    fn make(root: PathBuf) -> Result<Self> {
        let run = RunDir { root };
        for dir in [run.checkpoints(), run.tensorboard()] {
            std::fs::create_dir_all(&dir).map_err(|e| TrackError::io(&dir, e))?;
        }
        Ok(run)
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `RUN/config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join(Self::CONFIG)
    }

    /// `RUN/manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join(Self::MANIFEST)
    }

    /// `RUN/checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINTS)
    }

    /// `RUN/metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join(Self::METRICS)
    }

    /// `RUN/tb/`.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join(Self::TENSORBOARD)
    }

    /// `RUN/eval/`.
    pub fn eval(&self) -> PathBuf {
        self.root.join(Self::EVAL)
    }

    /// `RUN/model/`.
    pub fn model(&self) -> PathBuf {
        self.root.join(Self::MODEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn create_refuses_a_non_empty_directory_and_resume_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let run = RunDir::create(&path).unwrap();
        assert_eq!(listing(run.root()), ["checkpoints", "tb"]);
        assert_eq!(run.metrics(), path.join("metrics.jsonl"));
        assert_eq!(run.checkpoints(), path.join("checkpoints"));

        let err = RunDir::create(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("not empty"), "{err}");
        assert_eq!(RunDir::resume(&path).unwrap(), run);
        assert_eq!(RunDir::open(&path).unwrap(), run);
        assert!(RunDir::open(dir.path().join("missing")).is_err());

        // An empty directory made beforehand (by a scheduler, say) is accepted.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        RunDir::create(&empty).unwrap();
    }
}
