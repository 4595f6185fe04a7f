//! What `train` and `evaluate` check before they spend time or memory (issue 11): model shapes that
//! cannot fit, a DATASET that does not verify, patches edited or cut at another scale than the
//! models'. Each check answers with one line, and a run that fails to start says so in its manifest.

use std::path::Path;

mod common;
use common::{exe, run_ok, small_dataset};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one-line error of a command that must fail with exit code 1.
fn fails(args: &[&str]) -> String {
    let out = exe().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(1), "mammogan {args:?} should fail with 1: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn model_shapes_that_cannot_fit_are_refused_before_the_run_starts() {
    let (tmp, _, ds) = small_dataset();
    for (i, (set, key)) in [
        ("classifier.channels=100000", "classifier.channels"),
        ("train.batch_size=100000000", "train.batch_size"),
        ("classifier.blocks=40", "classifier.blocks"),
        // Within the static bounds, but 1024 channels at batch 65536 would need terabytes.
        ("classifier.channels=1024", "train.batch_size"),
    ]
    .into_iter()
    .enumerate()
    {
        let run = tmp.path().join(format!("too-big-{i}"));
        let mut args = vec!["train", "--data", s(ds), "--out", s(&run), "--model", "classifier", "--set", set];
        if i == 3 {
            args.extend(["--set", "train.batch_size=65536"]);
        }
        let err = fails(&args);
        assert!(err.contains(key), "{set}: {err}");
        // The manifest says failed and why; status does not suggest a --resume that cannot work.
        let m = manifest(&run);
        assert_eq!(m["outcome"]["status"], "failed", "{set}");
        assert!(m["outcome"]["error"].as_str().unwrap().contains(key), "{set}: {m}");
        let status = run_ok(&["status", s(&run)]);
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(text.contains("failed") && !text.contains("--resume"), "{text}");
    }
    // 40 halvings of a 32 px patch are refused with the number that fits, once the patch size is known.
    let run = tmp.path().join("too-deep");
    let err = fails(&["train", "--data", s(ds), "--out", s(&run), "--set", "classifier.blocks=6"]);
    assert!(err.contains("classifier.blocks=6") && err.contains("at most 5"), "{err}");
}

#[test]
fn a_failed_start_leaves_a_failed_manifest_and_a_rerun_replaces_it() {
    let (tmp, _, ds) = small_dataset();
    let run = tmp.path().join("failed-start");
    let bad = tmp.path().join("no-such-dataset");
    let err = fails(&["train", "--data", s(&bad), "--out", s(&run)]);
    assert!(err.contains("no-such-dataset"), "{err}");
    let m = manifest(&run);
    assert_eq!(m["outcome"]["status"], "failed");
    assert!(m["outcome"]["error"].as_str().unwrap().contains("dataset.json"), "{m}");
    let status = String::from_utf8_lossy(&run_ok(&["status", s(&run)]).stdout).to_string();
    assert!(status.contains("failed:") && status.contains("dataset.json"), "{status}");

    // The same command with the right data now just works (no "not empty"), and its log lines carry
    // no terminal colour codes when stderr is not a terminal (a log file, a scheduler's capture).
    let out = common::succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_mammogan"))
            .args(["train", "--data", s(ds), "--out", s(&run), "--model", "classifier", "--threads", "2"])
            .args(["--set", "train.steps=2", "--set", "train.batch_size=8"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .output()
            .unwrap(),
        &"train after a failed start",
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("device"), "the info log is there: {log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a captured log: {log:?}");
    assert_eq!(manifest(&run)["outcome"]["status"], "finished");

    // A directory holding anything else is never taken over, not even to record a failure.
    let other = tmp.path().join("someone-elses");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    fails(&["train", "--data", s(&bad), "--out", s(&other)]);
    assert!(!other.join("manifest.json").exists());
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "mine");
}

#[test]
fn evaluate_refuses_edited_patches_and_patches_of_another_scale() {
    let (tmp, ph, ds) = small_dataset();
    let run = tmp.path().join("eval-checks");
    run_ok(
        &["train", "--data", s(ds), "--out", s(&run), "--model", "classifier", "--threads", "2"]
            .into_iter()
            .chain(["--set", "train.steps=2", "--set", "train.batch_size=8"])
            .collect::<Vec<_>>(),
    );

    // One byte of the patches changed: named, not evaluated.
    let edited = tmp.path().join("dataset-edited");
    std::fs::create_dir_all(&edited).unwrap();
    for e in std::fs::read_dir(ds).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), edited.join(e.file_name())).unwrap();
    }
    let patches = edited.join("patches.u16");
    let mut bytes = std::fs::read(&patches).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&patches, bytes).unwrap();
    let err = fails(&["evaluate", s(&run), "--data", s(&edited)]);
    assert!(err.contains("patches.u16") && err.contains("differs"), "{err}");
    assert!(!run.join("eval/metrics.json").exists(), "no metrics from edited patches");

    // The same phantom prepared at 0.8 mm for models trained at 0.4 mm.
    let coarse = tmp.path().join("dataset-coarse");
    run_ok(
        &["prepare", "--format", "phantom", "--input", s(ph), "--out", s(&coarse), "--patch-size", "32"]
            .into_iter()
            .chain(["--spacing", "0.8"])
            .collect::<Vec<_>>(),
    );
    let err = fails(&["evaluate", s(&run), "--data", s(&coarse)]);
    assert!(err.contains("0.8 mm") && err.contains("--spacing 0.4"), "{err}");
    assert!(!run.join("eval/metrics.json").exists());
}
