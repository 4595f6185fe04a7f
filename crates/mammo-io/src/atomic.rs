//! Crash-safe output: write to a temporary sibling, flush, then rename. A killed process or a full disk
//! leaves either the old file or no file, never one that looks complete but is not.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoError, Result};

/// A temporary path beside `path` (same directory, so the rename is atomic on one filesystem).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes a file through `f`, atomically.
pub fn write_with(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        IoError::io(path, e)
    })
}

/// Writes a byte buffer atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |w| w.write_all(bytes))
}
