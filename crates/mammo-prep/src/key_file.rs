//! Where the pseudonym key lives: a file outside every dataset, created on first use.
//!
//! `--key-file PATH`, else `$MAMMOGAN_KEY_FILE`, else `${XDG_CONFIG_HOME:-~/.config}/mammogan/pseudonym.key`.
//! The file holds the key as 64 hexadecimal digits and a newline (easy to back up, or to mount as a
//! secret); it is created with mode 0600 in a 0700 folder, written under a temporary name and
//! hard-linked into place, so two processes starting at once agree on one key and a reader never
//! sees half a key.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{PrepError, Result};
use crate::pseudonym::PseudonymKey;

/// The environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "MAMMOGAN_KEY_FILE";

/// The key file to use: `explicit` (`--key-file`), else the environment's choice.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    default_path(|name| std::env::var_os(name)).ok_or_else(|| {
        PrepError::invalid(
            format!("${KEY_FILE_ENV}"),
            "no place for the pseudonym key: neither it, XDG_CONFIG_HOME nor HOME is set (pass --key-file)",
        )
    })
}

/// `$MAMMOGAN_KEY_FILE`, else `$XDG_CONFIG_HOME/mammogan/pseudonym.key` (an absolute value only, as
/// the XDG specification says), else `$HOME/.config/mammogan/pseudonym.key`. `env` reads a variable.
pub fn default_path(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(KEY_FILE_ENV) {
        return Some(p);
    }
    let config =
        set("XDG_CONFIG_HOME").filter(|p| p.is_absolute()).or_else(|| set("HOME").map(|h| h.join(".config")))?;
    Some(config.join("mammogan").join("pseudonym.key"))
}

/// Reads the key at `path`. A missing file is an error: whoever maps a dataset back to its input
/// needs the key it was prepared with, and a new one would match nothing.
pub fn load(path: &Path) -> Result<PseudonymKey> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PrepError::invalid(
            path,
            format!(
                "no pseudonym key there; pass the key the dataset was prepared with (--key-file or ${KEY_FILE_ENV})"
            ),
        ),
        _ => PrepError::io(path, e),
    })?;
    // A FIFO would block the open, a device could be endless: only a regular file is read.
    if !meta.is_file() {
        return Err(PrepError::invalid(path, "the pseudonym key file is not a regular file"));
    }
    warn_if_shared(path, &meta);
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_string(&mut text))
        .map_err(|e| PrepError::io(path, e))?;
    PseudonymKey::from_hex(&text)
        .ok_or_else(|| PrepError::invalid(path, "not a pseudonym key (64 hexadecimal digits expected)"))
}

/// Reads the key at `path`, creating a new random one there when there is none. Returns the key and
/// whether it was created now.
pub fn load_or_create(path: &Path) -> Result<(PseudonymKey, bool)> {
    match std::fs::metadata(path) {
        Ok(_) => Ok((load(path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(PrepError::io(path, e)),
    }
}

/// Refuses a key file inside `dir` (the input), where `prepare` would hash it into the dataset's
/// inputs and a copy of the input would carry the key along. Checked before the key is created, so
/// the key file need not exist yet: its nearest existing folder is resolved (symbolic links included).
pub fn check_outside(key_file: &Path, dir: &Path) -> Result<()> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(());
    };
    let absolute = std::path::absolute(key_file).map_err(|e| PrepError::io(key_file, e))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let key = loop {
        match std::fs::canonicalize(existing) {
            Ok(c) => break rest.iter().rev().fold(c, |p: PathBuf, name| p.join(name)),
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return Ok(()),
            },
        }
    };
    if key.starts_with(&dir) {
        return Err(PrepError::invalid(
            key_file,
            format!("the pseudonym key must be kept outside the input {}", dir.display()),
        ));
    }
    Ok(())
}

fn create(path: &Path) -> Result<(PseudonymKey, bool)> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
    dirs.create(parent).map_err(|e| PrepError::io(parent, e))?;
    let key = PseudonymKey::generate().map_err(|e| PrepError::io(path, e))?;
    let contents = format!("{}\n", key.to_hex());

    static SERIAL: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "key".into());
    let tmp = parent.join(format!(".{name}.tmp-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed)));
    write_new(&tmp, &contents).map_err(|e| PrepError::io(&tmp, e))?;
    // A hard link never replaces a file: of two processes creating the key at once, one wins and the
    // other reads the winner's key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(path)?, false)),
        // A file system without hard links: create the file in place, still never replacing one.
        Err(_) => match write_new(path, &contents) {
            Ok(()) => Ok((key, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(path)?, false)),
            Err(e) => Err(PrepError::io(path, e)),
        },
    }
}

/// Writes a new file with mode 0600 (never replacing one) and syncs it.
fn write_new(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// A key readable by other users is no secret: say so (it still works).
fn warn_if_shared(path: &Path, meta: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!("{}: the pseudonym key is readable by others (mode {mode:o}); chmod 600 it", path.display());
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cfg/mammogan/pseudonym.key");
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o077, 0);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", key.to_hex()));
        assert_eq!(load_or_create(&path).unwrap(), (key.clone(), false));
        assert_eq!(load(&path).unwrap(), key);
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn processes_racing_to_create_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pseudonym.key");
        let keys: Vec<PseudonymKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| load_or_create(&path).unwrap().0)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(load(&path).unwrap(), keys[0]);
    }

    #[test]
    fn a_missing_bad_or_special_key_file_is_one_line_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("none.key");
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.contains("none.key") && e.contains("no pseudonym key") && !e.contains('\n'), "{e}");
        assert!(!missing.exists(), "load never creates");
        let bad = tmp.path().join("bad.key");
        std::fs::write(&bad, "secret words that are not a key\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.key") && e.contains("64 hexadecimal") && !e.contains("secret"), "{e}");
        let e = load_or_create(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn the_default_place_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(default_path(env(&[(KEY_FILE_ENV, "/k/key"), ("HOME", "/h")])), Some(PathBuf::from("/k/key")));
        assert_eq!(
            default_path(env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/mammogan/pseudonym.key"))
        );
        assert_eq!(
            default_path(env(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.config/mammogan/pseudonym.key"))
        );
        assert_eq!(default_path(env(&[(KEY_FILE_ENV, "")])), None);
    }

    #[test]
    fn a_key_inside_the_input_is_refused_whether_or_not_it_exists_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir(&input).unwrap();
        // Not there yet (nor its folder): refused all the same, so it is never created inside.
        let e = check_outside(&input.join("sub/pseudonym.key"), &input).unwrap_err().to_string();
        assert!(e.contains("outside the input"), "{e}");
        let key = input.join("pseudonym.key");
        load_or_create(&key).unwrap();
        assert!(check_outside(&key, &input).is_err());
        // Through a link to the input, too.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&input, tmp.path().join("link")).unwrap();
            assert!(check_outside(&tmp.path().join("link/new.key"), &input).is_err());
        }
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        check_outside(&key, &tmp.path().join("other")).unwrap();
        check_outside(&tmp.path().join("other/x/y.key"), &input).unwrap();
    }
}
