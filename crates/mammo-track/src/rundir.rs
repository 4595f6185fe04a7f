//! The RUN directory: the names of its parts, its creation, and atomic
//! directory writes for checkpoints and the exported model.
//!
//! ```text
//! RUN/
//!   config.toml        the fully resolved configuration
//!   manifest.json      code, build, data hash, seeds, environment, timings, weight hashes
//!   checkpoints/       step-000100/, step-000200/, ... (each written atomically)
//!   metrics.jsonl      see crate::jsonl
//!   tb/                TensorBoard event files
//!   eval/              metrics.json, report.html, images
//!   model/             what serve and explain load (written atomically)
//! ```
//!
//! Atomic directory writes build into a hidden temporary sibling (`.NAME.tmp-*`) and rename it into
//! place, so a directory with its final name is always complete: a reader never needs a "done" marker,
//! and [`latest_checkpoint`] can trust names alone. They assume one writer per run directory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, TrackError};

/// A run directory: its path and the paths of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The fully resolved configuration.
    pub const CONFIG: &'static str = "config.toml";
    /// Code, build, data hash, seeds, environment, timings, weight hashes.
    pub const MANIFEST: &'static str = "manifest.json";
    /// Training checkpoints, one `step-NNNNNN/` directory each.
    pub const CHECKPOINTS: &'static str = "checkpoints";
    /// Scalar metrics, one JSON object per line ([`crate::MetricsJsonl`]).
    pub const METRICS: &'static str = "metrics.jsonl";
    /// TensorBoard event files ([`crate::TensorBoardWriter`]).
    pub const TENSORBOARD: &'static str = "tb";
    /// Evaluation output: metrics.json, report.html, images.
    pub const EVAL: &'static str = "eval";
    /// The exported model that serve and explain load.
    pub const MODEL: &'static str = "model";

    /// Starts a new run in `path`: creates it (and its parents) with `checkpoints/` and `tb/`, which
    /// training writes into. An existing empty directory is fine (a scheduler may create it); a non-empty
    /// one is refused, so a new run never mixes its files with an old one's. `eval/` and `model/` are
    /// left to the steps that write them, so that their existence means something.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        match std::fs::read_dir(&root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(TrackError::NotEmpty { path: root });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrackError::io(&root, e)),
        }
        Self::make(root)
    }

    /// Continues the run in `path` (or starts it there, if it does not exist, so that a job restarted
    /// with the same command line works either way). Finishes or undoes atomic directory writes that a
    /// crash interrupted (see [`recover_interrupted`]); call it before any writer of the run starts.
    pub fn resume(path: impl AsRef<Path>) -> Result<Self> {
        let run = Self::make(path.as_ref().to_path_buf())?;
        recover_interrupted(&run.root)?;
        recover_interrupted(&run.checkpoints())?;
        Ok(run)
    }

    /// An existing run directory, for reading (evaluate, explain, report); creates nothing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&root).map_err(|e| TrackError::io(&root, e))?;
        if !meta.is_dir() {
            return Err(TrackError::io(&root, io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
        }
        Ok(RunDir { root })
    }

    fn make(root: PathBuf) -> Result<Self> {
        let run = RunDir { root };
        for dir in [run.checkpoints(), run.tensorboard()] {
            std::fs::create_dir_all(&dir).map_err(|e| TrackError::io(&dir, e))?;
        }
        Ok(run)
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `RUN/config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join(Self::CONFIG)
    }

    /// `RUN/manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join(Self::MANIFEST)
    }

    /// `RUN/checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINTS)
    }

    /// `RUN/checkpoints/step-NNNNNN/` for `step`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(checkpoint_name(step))
    }

    /// The newest complete checkpoint; see [`latest_checkpoint`].
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>> {
        latest_checkpoint(&self.checkpoints())
    }

    /// `RUN/metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join(Self::METRICS)
    }

    /// `RUN/tb/`.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join(Self::TENSORBOARD)
    }

    /// `RUN/eval/`.
    pub fn eval(&self) -> PathBuf {
        self.root.join(Self::EVAL)
    }

    /// `RUN/model/`.
    pub fn model(&self) -> PathBuf {
        self.root.join(Self::MODEL)
    }
}

/// The directory name of the checkpoint at `step`: `step-` and at least six digits, so that names sort
/// by step up to 999,999 (parsing does not rely on that).
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// The step of a checkpoint directory name, or `None` for any other name (temporaries included).
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checkpoint with the highest step in `dir` (a `checkpoints/` directory): its step and path.
/// Only directories named exactly `step-<digits>` count, so the hidden temporaries of an interrupted
/// [`write_dir_atomically`] are ignored. `Ok(None)` if there is none or `dir` does not exist; an
/// unreadable `dir` is an error, because a resume must not quietly start over.
pub fn latest_checkpoint(dir: impl AsRef<Path>) -> Result<Option<(u64, PathBuf)>> {
    let dir = dir.as_ref();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrackError::io(dir, e)),
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| TrackError::io(dir, e))?;
        let Some(step) = entry.file_name().to_str().and_then(parse_checkpoint_name) else { continue };
        let is_dir = entry.file_type().map_err(|e| TrackError::io(&entry.path(), e))?.is_dir();
        if is_dir && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, entry.path()));
        }
    }
    Ok(best)
}

/// Distinguishes temporaries of one process (several writes may be in flight on different threads).
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn hidden_sibling(dest: &Path, kind: &str) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.{kind}-{}-{n}", std::process::id()))
}

/// Writes the directory `dest` atomically: `f` fills a fresh temporary sibling, whose files are then
/// synced and which is renamed to `dest`. An existing `dest` is replaced: it is renamed aside to
/// `.NAME.old-*`, the new one renamed into place, and the old one removed. A crash leaves `dest`
/// either absent, old or new, never half written; between the two renames only the `.old-*` copy
/// exists, and [`recover_interrupted`] (run by [`RunDir::resume`]) puts it back. On an error from `f`
/// the temporary is removed and `dest` is untouched. The parent directory is created if missing.
pub fn write_dir_atomically(dest: &Path, f: impl FnOnce(&Path) -> io::Result<()>) -> Result<()> {
    let err = |e| TrackError::io(dest, e);
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if dest.file_name().is_none() {
        return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory name")));
    }
    std::fs::create_dir_all(parent).map_err(|e| TrackError::io(parent, e))?;
    let tmp = hidden_sibling(dest, "tmp");
    let built = std::fs::create_dir(&tmp).and_then(|()| f(&tmp)).and_then(|()| sync_tree(&tmp));
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err(e));
    }
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::rename(&tmp, dest).map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                err(e)
            })?;
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(err(e));
        }
        Ok(_) => {
            // rename(2) cannot replace a non-empty directory, hence the detour through `.old-*`.
            let old = hidden_sibling(dest, "old");
            if let Err(e) = std::fs::rename(dest, &old) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(err(e));
            }
            if let Err(e) = std::fs::rename(&tmp, dest) {
                let _ = std::fs::rename(&old, dest);
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(err(e));
            }
            // The new directory is in place; failing to delete the old copy is not the caller's failure
            // (recover_interrupted removes it on the next resume).
            let _ = remove_any(&old);
        }
    }
    sync_dir(parent).map_err(|e| TrackError::io(parent, e))
}

/// Cleans up after atomic writes that a crash interrupted, in the directory `parent`: removes hidden
/// `.NAME.tmp-*` temporaries (never complete, or they would have been renamed), and for each
/// `.NAME.old-*` restores it as `NAME` where `NAME` is missing (the crash fell between the two renames)
/// or removes it where `NAME` exists. Only safe while nothing else writes into `parent`.
pub fn recover_interrupted(parent: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrackError::io(parent, e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrackError::io(parent, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort(); // deterministic choice when several old copies exist
    for name in names {
        let Some(hidden) = name.strip_prefix('.') else { continue };
        let path = parent.join(&name);
        // (let chains would read better but need Rust 1.88; the workspace promises 1.85.)
        let temp_of = |kind: &str| hidden.rsplit_once(kind).filter(|(_, suffix)| is_temp_suffix(suffix));
        if temp_of(".tmp-").is_some() {
            remove_any(&path).map_err(|e| TrackError::io(&path, e))?;
        } else if let Some((original, _)) = temp_of(".old-") {
            let original = parent.join(original);
            let restored = match std::fs::symlink_metadata(&original) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(&path, &original),
                _ => remove_any(&path),
            };
            restored.map_err(|e| TrackError::io(&path, e))?;
        }
    }
    Ok(())
}

/// `<digits>` or `<digits>-<digits>`: the pid (and counter) of our temporaries, so that a user's own
/// hidden files with `.tmp-` in their names are left alone.
fn is_temp_suffix(suffix: &str) -> bool {
    !suffix.is_empty() && suffix.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

fn remove_any(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
}

/// Syncs every file and directory under `dir` to the disk, so that the rename that publishes it is not
/// reordered before the data on a power loss.
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

/// Syncs a directory's entries (where the platform can: on Unix, a directory opens like a file).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_checkpoint(dest: &Path, content: &str) -> Result<()> {
        write_dir_atomically(dest, |tmp| {
            std::fs::create_dir(tmp.join("weights"))?;
            std::fs::write(tmp.join("weights/model.bin"), content)?;
            std::fs::write(tmp.join("state.json"), content)
        })
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn create_refuses_a_non_empty_directory_and_resume_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let run = RunDir::create(&path).unwrap();
        assert_eq!(listing(run.root()), ["checkpoints", "tb"]);
        assert_eq!(run.metrics(), path.join("metrics.jsonl"));
        assert_eq!(run.checkpoint(100), path.join("checkpoints/step-000100"));

        let err = RunDir::create(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("not empty"), "{err}");
        assert_eq!(RunDir::resume(&path).unwrap(), run);
        assert_eq!(RunDir::open(&path).unwrap(), run);
        assert!(RunDir::open(dir.path().join("missing")).is_err());

        // An empty directory made beforehand (by a scheduler, say) is accepted.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        RunDir::create(&empty).unwrap();
    }

    #[test]
    fn atomic_write_creates_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("run")).unwrap();
        let dest = run.checkpoint(100);
        write_checkpoint(&dest, "old").unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("weights/model.bin")).unwrap(), "old");
        write_checkpoint(&dest, "new").unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("weights/model.bin")).unwrap(), "new");
        assert_eq!(listing(&run.checkpoints()), ["step-000100"], "no temporaries left");
    }

    #[test]
    fn failed_write_leaves_the_old_directory() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model");
        write_checkpoint(&dest, "good").unwrap();
        let err = write_dir_atomically(&dest, |tmp| {
            std::fs::write(tmp.join("state.json"), "half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("model") && err.contains("disk full"), "{err}");
        assert_eq!(std::fs::read_to_string(dest.join("state.json")).unwrap(), "good");
        assert_eq!(listing(dir.path()), ["model"]);
    }

    #[test]
    fn latest_checkpoint_ignores_temporaries_and_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("run")).unwrap();
        assert_eq!(run.latest_checkpoint().unwrap(), None);
        for step in [100, 999_999, 1_000_000, 200] {
            write_checkpoint(&run.checkpoint(step), "x").unwrap();
        }
        let ckpts = run.checkpoints();
        // An interrupted write of a later checkpoint, and things that only look like checkpoints.
        std::fs::create_dir(ckpts.join(".step-2000000.tmp-123-0")).unwrap();
        std::fs::create_dir(ckpts.join("step-3000000.partial")).unwrap();
        std::fs::create_dir(ckpts.join("step-")).unwrap();
        std::fs::write(ckpts.join("step-4000000"), "a file, not a checkpoint").unwrap();
        assert_eq!(run.latest_checkpoint().unwrap(), Some((1_000_000, run.checkpoint(1_000_000))));
        assert_eq!(parse_checkpoint_name("step-000100"), Some(100));
        assert_eq!(latest_checkpoint(dir.path().join("missing")).unwrap(), None);
    }

    #[test]
    fn resume_recovers_interrupted_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path().join("run")).unwrap();
        // A crash between the two renames of replacing model/: only the old copy and the new temporary.
        write_checkpoint(&run.model(), "old").unwrap();
        std::fs::rename(run.model(), run.root().join(".model.old-42-0")).unwrap();
        std::fs::create_dir(run.root().join(".model.tmp-42-1")).unwrap();
        // A crash after the second rename: the new one in place, the old copy left over.
        write_checkpoint(&run.checkpoint(5), "new").unwrap();
        std::fs::create_dir(run.checkpoints().join(".step-000005.old-42-2")).unwrap();
        // A user's hidden file that merely resembles ours.
        std::fs::write(run.root().join(".notes.tmp-draft"), "keep").unwrap();

        RunDir::resume(run.root()).unwrap();
        assert_eq!(std::fs::read_to_string(run.model().join("state.json")).unwrap(), "old");
        assert_eq!(listing(run.root()), [".notes.tmp-draft", "checkpoints", "model", "tb"]);
        assert_eq!(listing(&run.checkpoints()), ["step-000005"]);
    }
}
