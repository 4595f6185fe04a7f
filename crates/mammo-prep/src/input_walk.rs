//! Listing the files under an input directory without hanging or looping on what a careless or hostile
//! tree can hold.
//!
//! - Special files (FIFOs, devices, sockets) are skipped with a warning: reading a FIFO waits forever
//!   for a writer, and a device may never end.
//! - Symbolic links are followed (a dataset folder linked in from elsewhere is common), but every real
//!   directory is entered once, by its canonical path: a link back up the tree (`loop -> ..`) or a
//!   second link to the same folder is skipped with a warning, instead of being walked until the path is
//!   too long (a link loop went 40 levels deep into `dataset.json` before).
//! - Dangling links are skipped with a warning.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{PrepError, Result};

/// Every regular file under `dir` (following links as above), in no particular order; paths are
/// `dir` joined with the names as walked.
pub fn regular_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    let root = std::fs::canonicalize(dir).map_err(|e| PrepError::io(dir, e))?;
    visited.insert(root);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| PrepError::io(&d, e))?;
        for entry in entries {
            let path = entry.map_err(|e| PrepError::io(&d, e))?.path();
            // `metadata` follows links; the kind is that of what the link points to.
            let Ok(meta) = std::fs::metadata(&path) else {
                tracing::warn!("{}: a symbolic link to nothing (or a link loop); skipped", path.display());
                continue;
            };
            if meta.is_dir() {
                let canonical = std::fs::canonicalize(&path).map_err(|e| PrepError::io(&path, e))?;
                if visited.insert(canonical) {
                    stack.push(path);
                } else {
                    tracing::warn!(
                        "{}: a directory already listed (a symbolic link loop or a second link to it); skipped",
                        path.display()
                    );
                }
            } else if meta.is_file() {
                out.push(path);
            } else {
                tracing::warn!("{}: not a regular file (a FIFO, device or socket); skipped", path.display());
            }
        }
    }
    Ok(out)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn fifos_are_skipped_and_link_loops_are_entered_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("in");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.csv"), b"x").unwrap();
        std::fs::write(d.join("sub/b.xml"), b"x").unwrap();
        assert!(std::process::Command::new("mkfifo").arg(d.join("sub/pipe.csv")).status().unwrap().success());
        std::os::unix::fs::symlink("..", d.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(".", d.join("self")).unwrap();
        std::os::unix::fs::symlink("nowhere", d.join("dangling.csv")).unwrap();
        // A folder linked in from outside the input is walked.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("c.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, d.join("linked")).unwrap();

        let mut found: Vec<String> = regular_files(&d)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(&d).unwrap().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(found, ["a.csv", "linked/c.txt", "sub/b.xml"]);
    }
}
