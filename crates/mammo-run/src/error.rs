//! `RunError`: one line naming the file and what is wrong with it.

use std::path::{Path, PathBuf};

/// Errors of manifests, reproduce and diff.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file exists but its content is not what was expected.
    #[error("{path}: {message}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An error from a lower crate whose message already names its file.
    #[error("{0}")]
    Named(String),
}

/// `Result` with [`RunError`].
pub type Result<T, E = RunError> = std::result::Result<T, E>;

impl RunError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RunError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        RunError::Invalid { path: path.to_path_buf(), message: message.into() }
    }
}

impl From<mammo_io::IoError> for RunError {
    fn from(e: mammo_io::IoError) -> Self {
        RunError::Named(e.to_string())
    }
}

impl From<mammo_prep::PrepError> for RunError {
    fn from(e: mammo_prep::PrepError) -> Self {
        RunError::Named(e.to_string())
    }
}
