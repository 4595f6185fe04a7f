//! `RunError`: one line naming the file and what is wrong with it.

use std::path::Path;

/// Errors of manifests, reproduce and diff.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or written, or its content is not what was expected: the readers' own
    /// error, shared by every crate rather than copied.
    #[error(transparent)]
    File(#[from] mammo_io::IoError),
    /// An error from a lower crate whose message already names its file.
    #[error("{0}")]
    Named(String),
}

/// `Result` with [`RunError`].
pub type Result<T, E = RunError> = std::result::Result<T, E>;

impl RunError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RunError::File(mammo_io::IoError::io(path, source))
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        RunError::File(mammo_io::IoError::format(path, message))
    }
}

impl From<mammo_prep::PrepError> for RunError {
    fn from(e: mammo_prep::PrepError) -> Self {
        RunError::Named(e.to_string())
    }
}
