//! Directory outputs (a DATASET, a phantom, a checkpoint, the exported model, `eval/`) are built under a
//! hidden sibling `.NAME.partial-PID` and renamed into place when complete ([`build_dir`]), so an error
//! or a kill never leaves a directory that looks done: a directory with its final name is complete, and
//! readers need no "done" marker.
//!
//! [`build_dir`] syncs every file and directory of the build to the disk before the rename and the
//! parent after it, so a power loss cannot publish the name before the data. It never replaces a symbolic
//! link, a file, a FIFO or a device: only nothing, an empty directory, or (where the caller asks for it,
//! [`Existing::Replace`]) a directory. rename(2) cannot replace a non-empty directory, so a replacement
//! goes through `.NAME.old-PID`: the old directory is renamed aside, the new one into place, the old one
//! removed.
//!
//! A kill leaves the partial directory behind, or, between the two renames of a replacement, only the
//! `.old-PID` copy. The next build of the same output ([`remove_stale`]) or a resume that scans the
//! whole folder first ([`recover`]) cleans up, but only what is certainly stale: a name exactly
//! `.NAME.partial-PID` or `.NAME.old-PID`, a real directory (not a link), process PID no longer alive
//! (checked in `/proc`; where there is no `/proc` nothing is touched). A stale partial is removed; a
//! stale old copy is renamed back to `NAME` where `NAME` is missing (the kill fell between the renames),
//! and removed otherwise. Limitation, documented: a process in another PID namespace (another container)
//! sharing the folder is not visible in our `/proc`; run concurrent builds of one output in one
//! namespace.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::IoError;

/// The folder holding `out`'s partial siblings ("." for a bare name) and `out`'s file name.
fn parent_and_name(out: &Path) -> (PathBuf, String) {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    (parent, name)
}

/// Where `out` is built by this process: `.NAME.partial-PID` beside it.
pub fn partial_dir(out: &Path) -> PathBuf {
    let (parent, name) = parent_and_name(out);
    parent.join(format!(".{name}.partial-{}", std::process::id()))
}

/// Where this process moves an existing `out` aside while replacing it: `.NAME.old-PID` beside it.
fn old_dir(out: &Path) -> PathBuf {
    let (parent, name) = parent_and_name(out);
    parent.join(format!(".{name}.old-{}", std::process::id()))
}

/// Whether process `pid` is alive, where that can be known.
fn alive(pid: u32) -> Option<bool> {
    Path::new("/proc/self").exists().then(|| Path::new(&format!("/proc/{pid}")).exists())
}

/// What an existing name may be when [`build_dir`] puts the new directory there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Nothing or an empty directory (which the rename replaces): a DATASET, a phantom.
    EmptyOnly,
    /// Also a directory with content, replaced whole: a checkpoint written again at its step, the
    /// exported model, `eval/`.
    Replace,
}

/// Builds the directory `out`: `build` fills a fresh `.NAME.partial-PID` beside it (the parent is
/// created if missing; stale partials of `out` are removed first, see [`remove_stale`]), every file and
/// directory under it is synced, it is renamed to `out`, and the parent is synced. On an error from
/// `build` or from any of these steps the partial directory is removed and `out` is as it was. What may
/// already be at `out` is said by `existing`; a symbolic link, file, FIFO or device there is refused
/// (and checked before `build` runs, so that nothing is built in vain).
pub fn build_dir<T, E: From<IoError>>(
    out: &Path,
    existing: Existing,
    build: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    check_replaceable(out, existing)?;
    let (parent, _) = parent_and_name(out);
    std::fs::create_dir_all(&parent).map_err(|e| IoError::io(&parent, e))?;
    remove_stale(out);
    let tmp = partial_dir(out);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        // Ours by name: a leftover of an earlier process with our PID (another container's).
        remove_any(&tmp).map_err(|e| IoError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| IoError::io(&tmp, e))?;
    let result = build(&tmp).and_then(|value| {
        sync_tree(&tmp).map_err(|e| IoError::io(&tmp, e))?;
        commit(&tmp, out, existing)?;
        sync_dir(&parent).map_err(|e| IoError::io(&parent, e))?;
        Ok(value)
    });
    if result.is_err() && std::fs::symlink_metadata(&tmp).is_ok() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Refuses an `out` that [`build_dir`] must not replace (see [`Existing`]).
fn check_replaceable(out: &Path, existing: Existing) -> Result<(), IoError> {
    let refuse = |what: &str| IoError::io(out, io::Error::new(io::ErrorKind::AlreadyExists, what.to_string()));
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IoError::io(out, e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link; refusing to replace it with a directory"));
    }
    if !meta.is_dir() {
        return Err(refuse("exists and is not a directory; refusing to replace it"));
    }
    if existing == Existing::EmptyOnly {
        let mut entries = std::fs::read_dir(out).map_err(|e| IoError::io(out, e))?;
        if entries.next().is_some() {
            return Err(refuse("already exists and is not empty"));
        }
    }
    Ok(())
}

/// Renames the complete `tmp` to `out`, moving a directory at `out` aside first where `existing` allows.
fn commit(tmp: &Path, out: &Path, existing: Existing) -> Result<(), IoError> {
    check_replaceable(out, existing)?;
    let is_dir = std::fs::symlink_metadata(out).is_ok_and(|m| m.is_dir());
    if !is_dir || existing == Existing::EmptyOnly {
        // Nothing there, or an empty directory, which rename(2) replaces.
        return std::fs::rename(tmp, out).map_err(|e| IoError::io(out, e));
    }
    let old = old_dir(out);
    if std::fs::symlink_metadata(&old).is_ok() {
        remove_any(&old).map_err(|e| IoError::io(&old, e))?;
    }
    std::fs::rename(out, &old).map_err(|e| IoError::io(out, e))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&old, out);
        return Err(IoError::io(out, e));
    }
    // The new directory is in place; an old copy that cannot be removed now is stale for the next run.
    if let Err(e) = std::fs::remove_dir_all(&old) {
        tracing::warn!("{}: the replaced directory could not be removed: {e}", old.display());
    }
    Ok(())
}

/// A leftover of ours in a folder: `.NAME.partial-PID` or `.NAME.old-PID`.
struct Leftover {
    name: String,
    old: bool,
    pid: u32,
}

fn leftover(file_name: &str) -> Option<Leftover> {
    let hidden = file_name.strip_prefix('.')?;
    for (kind, old) in [(".partial-", false), (".old-", true)] {
        if let Some((name, pid)) = hidden.rsplit_once(kind) {
            if name.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(pid) = pid.parse() else { continue };
            return Some(Leftover { name: name.to_string(), old, pid });
        }
    }
    None
}

/// Cleans up the leftovers in `parent` (of the output named `only`, or of every output) whose
/// processes are gone. `strict` (a resume) counts this process's PID as gone too and stops at the first
/// leftover it cannot clean up; otherwise that is a warning. Returns what was removed or restored.
fn clean(parent: &Path, only: Option<&str>, strict: bool) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found: Vec<(String, Leftover)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let l = leftover(&file_name)?;
            Some((file_name, l))
        })
        .filter(|(_, l)| only.is_none_or(|n| n == l.name))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0)); // a deterministic choice where several old copies exist
    let mut done = Vec::new();
    for (file_name, l) in found {
        let path = parent.join(&file_name);
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
        let stale = if l.pid == std::process::id() { strict } else { alive(l.pid) == Some(false) };
        if !is_dir || !stale || alive(l.pid).is_none() {
            continue;
        }
        let original = parent.join(&l.name);
        let restore = l.old && std::fs::symlink_metadata(&original).is_err();
        let result = if restore { std::fs::rename(&path, &original) } else { std::fs::remove_dir_all(&path) };
        match result {
            Ok(()) if restore => {
                tracing::info!(
                    "{}: restored from {file_name}, left by process {} which is gone",
                    original.display(),
                    l.pid
                )
            }
            Ok(()) => tracing::info!("{}: removed, left by process {} which is gone", path.display(), l.pid),
            Err(e) if strict => return Err(e),
            Err(e) => {
                tracing::warn!(
                    "{}: left by process {} which is gone, but cannot clean it up: {e}",
                    path.display(),
                    l.pid
                );
                continue;
            }
        }
        done.push(path);
    }
    Ok(done)
}

/// Removes the partial directories of `out` left by processes that are no longer alive, and puts back
/// an old copy of `out` that a killed replacement left where `out` is missing (see the module's
/// documentation for what counts as certainly stale); returns what was removed or restored. Errors are
/// warnings: a leftover that cannot be removed must not stop a new build.
pub fn remove_stale(out: &Path) -> Vec<PathBuf> {
    let (parent, name) = parent_and_name(out);
    clean(&parent, Some(&name), false).unwrap_or_else(|e| {
        tracing::warn!("{}: cannot clean up what killed builds left: {e}", parent.display());
        Vec::new()
    })
}

/// Before resuming work in `dir`: finishes or undoes every build that a killed process left in it (old
/// copies restored where their output is missing, partials removed), counting this process's PID as
/// gone too, since nothing of this process writes there yet (a leftover with our PID comes from another
/// container that had the same one). An error here is the caller's: a resume must not quietly miss a
/// checkpoint.
pub fn recover(dir: &Path) -> Result<Vec<PathBuf>, IoError> {
    clean(dir, None, true).map_err(|e| IoError::io(dir, e))
}

fn remove_any(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
}

/// Syncs every file and directory under `dir` to the disk (links are not followed).
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            sync_tree(&entry.path())?;
        } else if file_type.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// Syncs a directory's entries, where the platform can open a directory (Unix); elsewhere the rename
/// is still atomic, only not yet durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) if cfg!(not(unix)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partials_of_dead_processes_for_this_output_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("ds");
        assert_eq!(partial_dir(&out), tmp.path().join(format!(".ds.partial-{}", std::process::id())));
        if alive(1).is_none() {
            return; // no /proc: nothing is ever removed, as documented
        }
        // A PID that cannot be alive (above the kernel's pid_max of 2^22).
        let dead = tmp.path().join(".ds.partial-4999999");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        std::fs::write(dead.join("sub/patches.bin"), b"x").unwrap();
        // Ours, a live process's (PID 1), another output's, a file, a link, a malformed name: all kept.
        let keep = [".ds.partial-1", ".other.partial-4999998", ".ds.partial-12x", ".ds.partial-"];
        for k in keep {
            std::fs::create_dir(tmp.path().join(k)).unwrap();
        }
        std::fs::create_dir(partial_dir(&out)).unwrap();
        std::fs::write(tmp.path().join(".ds.partial-4999997"), b"a file").unwrap();
        let target = tmp.path().join("precious");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep.txt"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, tmp.path().join(".ds.partial-4999996")).unwrap();

        assert_eq!(remove_stale(&out), vec![dead.clone()]);
        assert!(!dead.exists());
        for k in keep {
            assert!(tmp.path().join(k).is_dir(), "{k}");
        }
        assert!(partial_dir(&out).is_dir());
        assert!(tmp.path().join(".ds.partial-4999997").is_file());
        assert!(target.join("keep.txt").is_file());
    }

    fn build(out: &Path, existing: Existing, content: &str) -> Result<(), IoError> {
        build_dir(out, existing, |tmp| {
            std::fs::create_dir(tmp.join("sub")).map_err(|e| IoError::io(tmp, e))?;
            std::fs::write(tmp.join("sub/a.bin"), content).map_err(|e| IoError::io(tmp, e))?;
            std::fs::write(tmp.join("state.json"), content).map_err(|e| IoError::io(tmp, e))
        })
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn build_dir_creates_replaces_and_leaves_nothing_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("deep/step-000100");
        build(&out, Existing::Replace, "old").unwrap();
        assert_eq!(std::fs::read_to_string(out.join("sub/a.bin")).unwrap(), "old");
        build(&out, Existing::Replace, "new").unwrap();
        assert_eq!(std::fs::read_to_string(out.join("sub/a.bin")).unwrap(), "new");
        assert_eq!(listing(&tmp.path().join("deep")), ["step-000100"], "no partial or old copy left");

        // A failing build leaves the output as it was, and no partial.
        let err = build_dir(&out, Existing::Replace, |tmp| -> Result<(), IoError> {
            std::fs::write(tmp.join("state.json"), "half").unwrap();
            Err(IoError::io(tmp, io::Error::other("disk full")))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read_to_string(out.join("state.json")).unwrap(), "new");
        assert_eq!(listing(&tmp.path().join("deep")), ["step-000100"]);

        // EmptyOnly: an empty directory is replaced, a non-empty one refused before anything is built.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        build(&empty, Existing::EmptyOnly, "x").unwrap();
        assert_eq!(std::fs::read_to_string(empty.join("state.json")).unwrap(), "x");
        let err = build_dir(&empty, Existing::EmptyOnly, |_| -> Result<(), IoError> { panic!("built in vain") });
        assert!(err.unwrap_err().to_string().contains("not empty"));
    }

    #[cfg(unix)]
    #[test]
    fn build_dir_never_replaces_a_link_a_file_or_a_fifo() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        build(&target, Existing::Replace, "keep").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        let fifo = tmp.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        for out in [&link, &file, &fifo] {
            let err = build(out, Existing::Replace, "new").unwrap_err().to_string();
            assert!(err.contains(&out.display().to_string()), "{err}");
        }
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(target.join("state.json")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(listing(tmp.path()), ["fifo", "file", "link", "precious"]);
    }

    #[test]
    fn recover_restores_an_interrupted_replacement_and_removes_partials() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        if alive(1).is_none() {
            return; // no /proc: nothing is ever touched, as documented
        }
        // Killed between the two renames of replacing `a`: only the old copy and the new partial.
        build(&dir.join(".a.old-4999999"), Existing::Replace, "a").unwrap();
        std::fs::create_dir(dir.join(".a.partial-4999999")).unwrap();
        // Killed after the second rename: the new `b` in place, the old copy left over.
        build(&dir.join("b"), Existing::Replace, "new b").unwrap();
        build(&dir.join(".b.old-4999998"), Existing::Replace, "old b").unwrap();
        // Ours by PID (another container's process had it) and a live process's: the first counts as
        // gone for a resume, the second is kept; so is a user's hidden file that merely resembles ours.
        std::fs::create_dir(dir.join(format!(".c.partial-{}", std::process::id()))).unwrap();
        std::fs::create_dir(dir.join(".d.partial-1")).unwrap();
        std::fs::write(dir.join(".notes.old-draft"), "keep").unwrap();

        let done = recover(dir).unwrap();
        assert_eq!(done.len(), 4, "{done:?}");
        assert_eq!(std::fs::read_to_string(dir.join("a/state.json")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(dir.join("b/state.json")).unwrap(), "new b");
        assert_eq!(listing(dir), [".d.partial-1", ".notes.old-draft", "a", "b"]);
        assert!(recover(&dir.join("missing")).unwrap().is_empty());
    }
}
