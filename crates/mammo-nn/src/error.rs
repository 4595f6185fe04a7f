//! `NnError`: one line that says what went wrong and where (the file, the model, the step).

use std::path::Path;

use crate::config::ConfigError;

/// Errors of training, checkpointing, export and inference.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A configuration problem (names the key, and the file if any).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read or written, or its content is not what was expected: the readers' own
    /// error, shared by every crate rather than copied.
    #[error(transparent)]
    File(#[from] mammo_io::IoError),
    /// An error from a lower crate whose message already names its file.
    #[error("{0}")]
    Named(String),
    /// The data cannot train this model (e.g. no patches of a class).
    #[error("data: {0}")]
    Data(String),
    /// The requested device is unavailable.
    #[error("device: {0}")]
    Device(String),
    /// Training diverged: a loss became NaN/infinite or left its bound. The last good checkpoint stays.
    #[error("{model} diverged at step {step}: {loss} = {value} ({reason}); the last good checkpoint is kept")]
    Diverged {
        /// The model (`classifier`, `attribution`).
        model: String,
        /// The step at which it happened.
        step: u64,
        /// The loss's name.
        loss: String,
        /// Its value.
        value: f64,
        /// Why it counts as divergence.
        reason: String,
    },
}

/// `Result` with [`NnError`].
pub type Result<T, E = NnError> = std::result::Result<T, E>;

impl NnError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        NnError::File(mammo_io::IoError::io(path, source))
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        NnError::File(mammo_io::IoError::format(path, message))
    }
}

impl From<mammo_prep::PrepError> for NnError {
    fn from(e: mammo_prep::PrepError) -> Self {
        NnError::Named(e.to_string())
    }
}
