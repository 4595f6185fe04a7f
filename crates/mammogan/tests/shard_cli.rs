//! Scaling out through the binary: `prepare --shard I/N` + `dataset merge` gives the DATASET of the
//! unsharded `prepare` (every file's bytes), and `explain --shard I/N` + `scores merge` the scores.csv
//! (and image folders) of the unsharded `explain`; bad shard specs and incomplete sets are refused.

use std::path::{Path, PathBuf};

mod common;
use common::{exe, run_ok, small_dataset};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Runs the binary expecting failure; its stderr.
fn run_err(args: &[&str]) -> String {
    let out = exe().args(args).output().unwrap();
    assert!(!out.status.success(), "mammogan {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sharded_prepare_merges_into_the_unsharded_dataset() {
    let (_, ph, ds) = small_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    for i in 0..2 {
        let out = tmp.path().join(format!("shard{i}"));
        let spec = format!("{i}/2");
        let args = ["prepare", "--format", "phantom", "--input", &s(ph), "--out", &s(&out), "--patch-size", "32"];
        run_ok(&[&args[..], &["--shard", &spec]].concat());
        shards.push(s(&out));
    }
    let merged = tmp.path().join("merged");
    let out = run_ok(&["dataset", "merge", &shards[1], &shards[0], "--out", &s(&merged)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("content hash"));
    for f in ["dataset.json", "index.csv", "patches.u16", "masks.u8"] {
        assert!(std::fs::read(merged.join(f)).unwrap() == std::fs::read(ds.join(f)).unwrap(), "{f} differs");
    }
    let err = run_err(&["dataset", "merge", &shards[0], "--out", &s(&tmp.path().join("half"))]);
    assert!(err.contains("shards missing: 1/2") && err.lines().count() == 1, "{err}");
    assert!(!tmp.path().join("half").exists());
    let err = run_err(&["prepare", "--format", "phantom", "--input", &s(ph), "--out", "x", "--shard", "2/2"]);
    assert!(err.contains("--shard 2/2: I must be below N"), "{err}");
}

/// A run with both models trained for a few steps on the shared small phantom.
fn tiny_run(tmp: &Path, ds: &Path) -> PathBuf {
    let run = tmp.join("run");
    let mut args = vec!["train".to_string(), "--data".into(), s(ds), "--out".into(), s(&run)];
    for kv in [
        "train.steps=4",
        "train.batch_size=8",
        "train.checkpoint_every=4",
        "attribution.gen_channels=4",
        "attribution.critic_channels=4",
    ] {
        args.extend(["--set".to_string(), kv.to_string()]);
    }
    args.extend(["--threads".to_string(), "2".to_string()]);
    run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    run
}

#[test]
fn sharded_explain_merges_into_the_unsharded_scores() {
    let (_, ph, ds) = small_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path(), ds);
    let mut images: Vec<PathBuf> = std::fs::read_dir(ph.join("images")).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for src in &images[..5] {
        std::fs::copy(src, input.join(src.file_name().unwrap())).unwrap();
    }
    let whole = tmp.path().join("whole");
    run_ok(&["explain", &s(&run), &s(&input), "--out", &s(&whole)]);
    // Both shards into one OUT, as an array job on a shared file system does.
    let sharded = tmp.path().join("sharded");
    for spec in ["0/2", "1/2"] {
        run_ok(&["explain", &s(&run), &s(&input), "--out", &s(&sharded), "--shard", spec]);
    }
    let rows = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count() - 1;
    assert_eq!((rows(&sharded.join("scores.0-of-2.csv")), rows(&sharded.join("scores.1-of-2.csv"))), (3, 2));
    let merged = sharded.join("scores.csv");
    run_ok(&[
        "scores",
        "merge",
        &s(&sharded.join("scores.1-of-2.csv")),
        &s(&sharded.join("scores.0-of-2.csv")),
        "--out",
        &s(&merged),
    ]);
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), std::fs::read_to_string(whole.join("scores.csv")).unwrap());
    for src in &images[..5] {
        let folder = src.file_stem().unwrap();
        let a = std::fs::read(whole.join(folder).join("result.json")).unwrap();
        assert!(a == std::fs::read(sharded.join(folder).join("result.json")).unwrap(), "{folder:?}");
    }
    let err =
        run_err(&["scores", "merge", &s(&sharded.join("scores.0-of-2.csv")), "--out", &s(&tmp.path().join("x.csv"))]);
    assert!(err.contains("shards missing: 1/2"), "{err}");
    // The same images listed in a CSV (prepare's csv layout: paths relative to it, a row per lesion):
    // sharded the same way, merged into the scores of the unsharded CSV.
    let mut table = String::from("path,label,patient_id\n");
    for src in &images[..5] {
        let name = src.file_name().unwrap().to_string_lossy();
        table += &format!("in/{name},normal,p1\nin/{name},normal,p1\n");
    }
    let list = tmp.path().join("images.csv");
    std::fs::write(&list, table).unwrap();
    let whole_csv = tmp.path().join("whole-csv");
    run_ok(&["explain", &s(&run), &s(&list), "--out", &s(&whole_csv)]);
    let rows_of = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count() - 1;
    assert_eq!(rows_of(&whole_csv.join("scores.csv")), 5, "an image listed twice is explained once");
    let sharded_csv = tmp.path().join("sharded-csv");
    for spec in ["0/2", "1/2"] {
        run_ok(&["explain", &s(&run), &s(&list), "--out", &s(&sharded_csv), "--shard", spec]);
    }
    let merged_csv = sharded_csv.join("scores.csv");
    run_ok(&[
        "scores",
        "merge",
        &s(&sharded_csv.join("scores.0-of-2.csv")),
        &s(&sharded_csv.join("scores.1-of-2.csv")),
        "--out",
        &s(&merged_csv),
    ]);
    assert_eq!(
        std::fs::read_to_string(&merged_csv).unwrap(),
        std::fs::read_to_string(whole_csv.join("scores.csv")).unwrap()
    );
    std::fs::write(&list, "file,label\nin/x.png,normal\n").unwrap();
    let err = run_err(&["explain", &s(&run), &s(&list), "--out", &s(&tmp.path().join("bad"))]);
    assert!(err.contains("no `path` column"), "{err}");
}
