//! Shared by the metrics and TensorBoard writers: cutting an append-only log back to a checkpoint, so that
//! a resumed run's files equal an uninterrupted run's.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, TrackError};

/// One complete entry (line or record) of a log file: its byte range and its training step.
pub(crate) struct Entry {
    pub start: usize,
    pub end: usize,
    pub step: u64,
}

/// Rewrites the log at `path` (whose content is `bytes`) to hold only the entries with
/// `step <= last_step` plus the `header` bytes before the first entry; a partial tail after
/// `complete_len` goes too.
pub(crate) fn keep_up_to(
    path: &Path,
    bytes: &[u8],
    entries: &[Entry],
    complete_len: usize,
    last_step: u64,
) -> Result<()> {
    let first_dropped = entries.iter().position(|e| e.step > last_step);
    let tail_only = first_dropped.is_none_or(|i| entries[i..].iter().all(|e| e.step > last_step));
    if tail_only {
        // The usual case: entries are in step order, so cutting the file is enough. One syscall: a crash
        // leaves the old or the cut file, and either resumes to the same result.
        let cut = first_dropped.map_or(complete_len, |i| entries[i].start);
        if cut < bytes.len() {
            let file = OpenOptions::new().write(true).open(path).map_err(|e| TrackError::io(path, e))?;
            file.set_len(cut as u64).and_then(|()| file.sync_all()).map_err(|e| TrackError::io(path, e))?;
        }
        Ok(())
    } else {
        // Steps out of order (something logged an earlier step after a later one): keep the kept
        // entries' exact bytes, in order, and replace the file atomically.
        let header_end = entries.first().map_or(complete_len, |e| e.start);
        let mut kept = bytes[..header_end].to_vec();
        for e in entries.iter().filter(|e| e.step <= last_step) {
            kept.extend_from_slice(&bytes[e.start..e.end]);
        }
        replace_file(path, &kept)
    }
}

/// Reads a file, or nothing if it does not exist.
pub(crate) fn read_or_empty(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(TrackError::io(path, e)),
    }
}

/// Replaces `path` with `bytes` through a synced temporary sibling and a rename.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrackError::io(path, e)
    })
}
