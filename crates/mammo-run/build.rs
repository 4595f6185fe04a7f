//! Build-time facts for the manifest: git commit and dirtiness, rustc version, profile, target and
//! the BLAKE3 of `Cargo.lock`. Anything unavailable (no `.git` in a container build, no git binary)
//! is "unknown" rather than a build failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..");

    let commit = git(&root, &["rev-parse", "HEAD"]);
    // Tracked files only: untracked scratch files do not make the build differ.
    let dirty = commit.as_ref().and_then(|_| git(&root, &["status", "--porcelain", "--untracked-files=no"]));
    println!("cargo:rustc-env=MAMMOGAN_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!(
        "cargo:rustc-env=MAMMOGAN_GIT_DIRTY={}",
        match &dirty {
            Some(s) if s.is_empty() => "false",
            Some(_) => "true",
            None => "unknown",
        }
    );
    // Keep the commit right: rerun when HEAD moves (checkout, commit) or the index changes (add,
    // commit), and when any source changes (a clean tree becoming dirty touches no git file).
    if let (Some(git_dir), Some(common)) =
        (git(&root, &["rev-parse", "--absolute-git-dir"]), git(&root, &["rev-parse", "--git-common-dir"]))
    {
        let git_dir = PathBuf::from(git_dir);
        let common = if Path::new(&common).is_absolute() { PathBuf::from(common) } else { root.join(common) };
        for p in [git_dir.join("HEAD"), git_dir.join("index"), common.join("packed-refs")] {
            println!("cargo:rerun-if-changed={}", p.display());
        }
        if let Some(r) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", common.join(r).display());
        }
        println!("cargo:rerun-if-changed={}", root.join("crates").display());
    }
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let lock_hash = std::fs::read(&lock).map(|b| blake3::hash(&b).to_hex().to_string());
    println!("cargo:rustc-env=MAMMOGAN_CARGO_LOCK_BLAKE3={}", lock_hash.as_deref().unwrap_or("unknown"));

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    println!("cargo:rustc-env=MAMMOGAN_RUSTC_VERSION={}", version.as_deref().unwrap_or("unknown"));
    println!("cargo:rustc-env=MAMMOGAN_BUILD_PROFILE={}", std::env::var("PROFILE").unwrap_or_default());
    println!("cargo:rustc-env=MAMMOGAN_BUILD_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=MAMMOGAN_OPT_LEVEL={}", std::env::var("OPT_LEVEL").unwrap_or_default());
}
