//! Directory outputs (a DATASET, a phantom) are built under a hidden sibling `.NAME.partial-PID` and
//! renamed into place when complete, so an error or a kill never leaves a directory that looks done.
//!
//! A kill leaves the partial directory behind. The next run that builds beside it removes it, but only
//! when it is certainly stale: its name is exactly `.NAME.partial-PID` for the output being built, it is
//! a real directory (not a link), and process PID is no longer alive (checked in `/proc`; where there is
//! no `/proc` nothing is removed). Limitation, documented: a process in another PID namespace (another
//! container) sharing the folder is not visible in our `/proc`; run concurrent builds of one output in one
//! namespace.

use std::path::{Path, PathBuf};

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

/// Whether process `pid` is alive, where that can be known.
fn alive(pid: u32) -> Option<bool> {
    Path::new("/proc/self").exists().then(|| Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the partial directories of `out` left by processes that are no longer alive (see the
/// module's documentation for what counts as certainly stale); returns what was removed. Errors are
/// warnings: a leftover that cannot be removed must not stop a new build.
pub fn remove_stale(out: &Path) -> Vec<PathBuf> {
    let (parent, name) = parent_and_name(out);
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(&parent) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().ok()).flatten()
        }) else {
            continue;
        };
        let path = entry.path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
        if !is_dir || pid == std::process::id() || alive(pid) != Some(false) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!("{}: removed, left by process {pid} which is gone", path.display());
                removed.push(path);
            }
            Err(e) => {
                tracing::warn!("{}: left by process {pid} which is gone, but cannot remove it: {e}", path.display())
            }
        }
    }
    removed
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
}
