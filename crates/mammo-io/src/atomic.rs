//! Crash-safe output: write to a temporary sibling, flush, then rename. A killed process or a full disk
//! leaves either the old file or no file, never one that looks complete but is not.
//!
//! What the user names as an output is looked at first (without following it), because temp + rename
//! *replaces* whatever the name points to:
//! - nothing, or a regular file: temp + rename, as above;
//! - a symbolic link: resolved, and its target gets the same treatment. The link is where the user
//!   wants the output (a `latest.png` pointing into an archive, `/dev/stdout`); replacing the link by a
//!   file would silently detach it. A dangling link is refused: there is nothing to write through to,
//!   and creating its target somewhere else is a surprise;
//! - a FIFO or a character device (`/dev/stdout`, `/dev/null`, a terminal): written straight through,
//!   opened without creating or truncating. Renaming over it would replace the device node (as root,
//!   `/dev/full` became a regular file). Atomicity means nothing for a stream, and a FIFO's open waits
//!   for its reader, as with any writer;
//! - a directory, a block device or a socket: refused with one line. Writing an image onto a disk is
//!   never what was meant.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoError, Result};

/// A temporary path beside `path` (same directory, so the rename is atomic on one filesystem).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// How an output name is written (see the module's documentation).
#[derive(Debug, PartialEq)]
enum Target {
    /// Temp + rename onto this path (the name itself, or a symbolic link's resolved target).
    Replace(PathBuf),
    /// Opened and written in place: a FIFO or a character device.
    Through,
}

fn refuse(what: &str) -> std::io::Error {
    std::io::Error::other(what.to_string())
}

fn target(path: &Path) -> std::io::Result<Target> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Replace(path.to_path_buf())),
        Err(e) => return Err(e),
        Ok(m) => m,
    };
    let link = meta.file_type().is_symlink();
    let meta = if link {
        std::fs::metadata(path)
            .map_err(|_| refuse("is a symbolic link to nothing (or a loop); refusing to write through it"))?
    } else {
        meta
    };
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(Target::Replace(if link { std::fs::canonicalize(path)? } else { path.to_path_buf() }));
    }
    if kind.is_dir() {
        return Err(refuse("is a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() || kind.is_char_device() {
            return Ok(Target::Through);
        }
        if kind.is_block_device() {
            return Err(refuse("is a block device; refusing to write onto it"));
        }
    }
    Err(refuse("is not a regular file, FIFO or character device (a socket?); refusing to write to it"))
}

/// Creates `tmp` for writing, never through an existing name: a leftover of a killed process with the
/// same id is removed first, and `create_new` refuses to follow a symbolic link planted in its place.
fn create_temp(tmp: &Path) -> std::io::Result<std::fs::File> {
    let new = || std::fs::OpenOptions::new().write(true).create_new(true).open(tmp);
    match new() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(tmp)?;
            new()
        }
        r => r,
    }
}

/// Writes a file through `f`, atomically where the target is a file (see the module's documentation
/// for links, FIFOs and devices). Errors name `path` as given.
pub fn write_with(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dest = match target(path).map_err(|e| IoError::io(path, e))? {
        Target::Through => {
            let result = (|| {
                let file = std::fs::OpenOptions::new().write(true).open(path)?;
                let mut w = std::io::BufWriter::new(file);
                f(&mut w)?;
                w.flush()
            })();
            return result.map_err(|e| IoError::io(path, e));
        }
        Target::Replace(dest) => dest,
    };
    let tmp = temp_sibling(&dest);
    let result = (|| {
        let file = create_temp(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &dest)
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn files_are_replaced_and_links_keep_pointing_at_the_new_content() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.txt");
        write_bytes(&file, b"one").unwrap();
        write_bytes(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");

        // A link to a file: the link stays a link, its target gets the content.
        let archive = tmp.path().join("archive");
        std::fs::create_dir(&archive).unwrap();
        std::fs::write(archive.join("real.txt"), b"old").unwrap();
        let link = tmp.path().join("latest.txt");
        std::os::unix::fs::symlink(archive.join("real.txt"), &link).unwrap();
        write_bytes(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(archive.join("real.txt")).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3, "no temporary file left");

        // A dangling link is refused and left as it was.
        let dangling = tmp.path().join("dangling.txt");
        std::os::unix::fs::symlink(tmp.path().join("nowhere/x.txt"), &dangling).unwrap();
        let e = write_bytes(&dangling, b"x").unwrap_err().to_string();
        assert!(e.starts_with(&dangling.display().to_string()) && e.contains("symbolic link to nothing"), "{e}");
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());

        // A directory.
        let e = write_bytes(&archive, b"x").unwrap_err().to_string();
        assert!(e.ends_with("is a directory"), "{e}");
    }

    #[test]
    fn a_temporary_name_planted_as_a_link_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.txt");
        let victim = tmp.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, temp_sibling(&out)).unwrap();
        write_bytes(&out, b"data").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"data");
    }

    #[test]
    fn devices_and_fifos_are_written_through_never_replaced() {
        let null = Path::new("/dev/null");
        write_bytes(null, b"discarded").unwrap();
        assert!(std::fs::symlink_metadata(null).unwrap().file_type().is_char_device());

        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_bytes(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no temporary file beside it");

        // A link to a device is written through too (/dev/stdout is one).
        let link = tmp.path().join("null-link");
        std::os::unix::fs::symlink(null, &link).unwrap();
        write_bytes(&link, b"discarded").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

        // /dev/full: the error is one line naming the path, and the device is still a device.
        let full = Path::new("/dev/full");
        if full.exists() {
            let e = write_bytes(full, &[0u8; 100_000]).unwrap_err().to_string();
            assert!(e.starts_with("/dev/full: ") && !e.contains('\n'), "{e}");
            assert!(std::fs::symlink_metadata(full).unwrap().file_type().is_char_device());
        }
    }
}
