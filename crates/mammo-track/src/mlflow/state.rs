//! `RUN/mlflow.json`: which MLflow run a RUN directory is tracked as, and what has reached it, so that
//! `mammogan track push` sends only what is missing and never makes a second MLflow run.
//!
//! Written (temporary sibling + rename) after every request the server accepted, by one thread at a
//! time: a kill at any moment leaves the last confirmed state, and sending again from it duplicates
//! nothing (metrics go by step above the last one confirmed per key; artifacts by content hash; params
//! once, and log-batch accepts an identical param again anyway).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrackError};

/// The file's name in the RUN directory.
pub const STATE_FILE: &str = "mlflow.json";

/// What `RUN/mlflow.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The tracking server, without credentials.
    pub server: String,
    /// The experiment's name and id.
    pub experiment: String,
    /// See `experiment`.
    pub experiment_id: String,
    /// The MLflow run this RUN directory is.
    pub run_id: String,
    /// Where its artifacts go (`mlflow-artifacts:/...`).
    pub artifact_uri: String,
    /// The config's params were accepted.
    pub params_sent: bool,
    /// Metric key -> the last step the server accepted for it.
    pub metric_steps: BTreeMap<String, u64>,
    /// Evaluation metric key -> the value sent (as text: NaN has no JSON number).
    pub eval_sent: BTreeMap<String, String>,
    /// Artifact path -> BLAKE3 of the content the server accepted.
    pub artifacts_sent: BTreeMap<String, String>,
    /// The last status the server accepted (`FINISHED`, ...).
    pub status_sent: Option<String>,
    /// What is still to be sent, in words (empty when `complete`).
    pub not_sent: Vec<String>,
    /// Everything the RUN directory holds was sent at the last attempt.
    pub complete: bool,
}

impl State {
    /// The file of `run_dir`.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(STATE_FILE)
    }

    /// The recorded state; `None` when the run was never tracked.
    pub fn read(run_dir: &Path) -> Result<Option<State>> {
        let path = Self::path(run_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| TrackError::Malformed {
                path,
                line: e.line(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TrackError::Io { path, source }),
        }
    }

    /// Writes the state: temporary sibling, fsync, rename.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let path = Self::path(run_dir);
        let tmp = run_dir.join(format!(".{STATE_FILE}.tmp-{}", std::process::id()));
        let io = |source| TrackError::Io { path: path.clone(), source };
        let text = serde_json::to_string_pretty(self).expect("the state serializes") + "\n";
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), None);
        let mut s = State { server: "http://127.0.0.1:5000".into(), run_id: "abc".into(), ..State::default() };
        s.metric_steps.insert("classifier/loss".into(), 20);
        s.write(dir.path()).unwrap();
        assert_eq!(State::read(dir.path()).unwrap(), Some(s));
        std::fs::write(State::path(dir.path()), "{").unwrap();
        let e = State::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("mlflow.json"), "{e}");
    }
}
