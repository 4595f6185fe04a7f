//! Errors of preparation: every one names the file or directory concerned.

use std::path::PathBuf;

pub type Result<T, E = PrepError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error(transparent)]
    Io(#[from] mammo_io::IoError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl PrepError {
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        PrepError::Invalid { path: path.into(), message: message.into() }
    }
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        PrepError::Io(mammo_io::IoError::io(path, e))
    }
}
