//! One error type for the crate. Every variant names the file or directory it is about, in one line,
//! because that line is what the user sees when a run cannot start or resume.

use std::path::{Path, PathBuf};

/// The crate's result type.
pub type Result<T, E = TrackError> = std::result::Result<T, E>;

/// Why a run-output operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// A file or directory could not be created, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file was read but a complete record in it is not what the format promises.
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line (JSONL) or record (TFRecord) number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A new run was asked for in a directory that already holds something.
    #[error("{}: directory is not empty; resume the run in it or choose another directory", path.display())]
    NotEmpty {
        /// The run directory.
        path: PathBuf,
    },
    /// The caller passed something the writer cannot represent (a reserved metric name, a wrong tile size).
    #[error("{0}")]
    InvalidInput(String),
}

impl TrackError {
    /// An I/O error about `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrackError::Io { path: path.to_path_buf(), source }
    }

    /// A malformed record at 1-based `line` of `path`.
    pub fn malformed(path: &Path, line: usize, message: impl Into<String>) -> Self {
        TrackError::Malformed { path: path.to_path_buf(), line, message: message.into() }
    }
}
