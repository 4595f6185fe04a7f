//! What the end-to-end tests of the binary share: the binary, a small prepared phantom, and waiting on
//! a training child process.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The binary, quiet, with its pseudonym key in the build's scratch folder rather than the user's home.
pub fn exe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mammogan"));
    c.arg("--quiet").env("MAMMOGAN_KEY_FILE", key_file());
    c
}

/// The pseudonym key every test's `prepare` uses (created by the first one; test processes racing to
/// create it agree on one key).
pub fn key_file() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("pseudonym.key")
}

/// `out`, after asserting that it exited 0 (else the panic shows `what` ran, with its stdout and stderr).
pub fn succeeded(out: Output, what: &dyn std::fmt::Debug) -> Output {
    assert!(
        out.status.success(),
        "mammogan {what:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the binary with `args` and asserts that it succeeded.
pub fn run_ok(args: &[&str]) -> Output {
    succeeded(exe().args(args).output().unwrap(), &args)
}

/// A small phantom (40 images) and its prepared 32 px DATASET, made once per test process:
/// (the directory holding both, the phantom, the dataset).
pub fn small_dataset() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static DATA: std::sync::OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ph = tmp.path().join("phantom");
        let ds = tmp.path().join("dataset");
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let run = |args: &[&str]| {
            let out = exe().args(args).output().unwrap();
            assert!(out.status.success(), "mammogan {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["phantom", "--out", &s(&ph), "--cases", "40", "--seed", "3", "--width-mm", "80", "--spacing-mm", "0.4"]);
        run(&["prepare", "--format", "phantom", "--input", &s(&ph), "--out", &s(&ds), "--patch-size", "32"]);
        (tmp, ph, ds)
    })
}

/// Polls `done` until it holds; panics if `child` ends first or after 120 s. `what` names the wait.
pub fn wait_until(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training ended ({status}) before {what}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no {what} after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `checkpoints_dir/model` holds a complete checkpoint (`step-*`).
pub fn wait_for_checkpoint(checkpoints_dir: &Path, model: &str, child: &mut Child) {
    let dir = checkpoints_dir.join(model);
    wait_until(child, "its first checkpoint", || {
        std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false)
    });
}
