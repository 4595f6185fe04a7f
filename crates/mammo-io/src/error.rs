//! One error type for every reader: each error names the file and says what is wrong with it, in one
//! line, because that line is what the user sees.

use std::path::{Path, PathBuf};

pub type Result<T, E = IoError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file was read but its content is not what its format promises.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// The file is valid but uses something we do not decode (say which, so the user can convert it).
    #[error("{}: unsupported: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
}

impl IoError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        IoError::Io { path: path.to_path_buf(), source }
    }
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        IoError::Format { path: path.to_path_buf(), message: flatten(message.into()) }
    }
    pub fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        IoError::Unsupported { path: path.to_path_buf(), message: flatten(message.into()) }
    }
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            IoError::Io { path, .. } | IoError::Format { path, .. } | IoError::Unsupported { path, .. } => path,
        }
    }
}

/// Library errors (dicom-rs in particular) sometimes span several lines; the user gets one.
fn flatten(s: String) -> String {
    if s.contains('\n') { s.split_whitespace().collect::<Vec<_>>().join(" ") } else { s }
}
