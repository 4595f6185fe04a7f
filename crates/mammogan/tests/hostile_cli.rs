//! Hostile and careless input through the binary (issue 11): physical sizes that would explode an
//! allocation, output paths that are special files, a closed stdout, special files and symlink loops
//! under `prepare --input`. Every hostile file is made here; each test asserts the exit code and the
//! one line the user gets.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{exe, run_ok, small_dataset};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary and asserts a clean failure: exit code 1, no panic, and one line on stderr that
/// contains each of `says`. Returns that line.
fn fails_with(args: &[&str], says: &[&str]) -> String {
    let out: Output = exe().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "mammogan {args:?}: want exit 1, got {:?}:\n{err}", out.status);
    assert!(!err.contains("panicked"), "mammogan {args:?} panicked:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "mammogan {args:?}: want one error line:\n{err}");
    for want in says {
        assert!(lines[0].contains(want), "mammogan {args:?}: want {want:?} in\n{err}");
    }
    lines[0].to_string()
}

/// A run with a classifier trained for a few steps on the shared small phantom (0.4 mm), made once.
fn tiny_run() -> &'static PathBuf {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let (tmp, _, ds) = small_dataset();
        let run = tmp.path().join("hostile-run");
        let mut args = vec!["train", "--data", s(ds), "--out", s(&run), "--threads", "2"];
        for kv in ["train.steps=4", "train.batch_size=8", "train.checkpoint_every=4", "attribution.gen_channels=4"] {
            args.extend(["--set", kv]);
        }
        args.extend(["--set", "attribution.critic_channels=4"]);
        run_ok(&args);
        run
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn png16(path: &Path, w: usize, h: usize) {
    let img = mammo_io::GrayImage::from_vec(w, h, vec![1000u16; w * h]);
    mammo_io::png_io::write_png16(path, &img).unwrap();
}

/// Row 3: a header spacing in the wrong unit, an absurd `--spacing`, and a spacing that would make the
/// resampled image too large are each one line naming the file, exit 1, never an abort (134).
#[test]
fn explain_refuses_spacings_that_would_explode_the_resampled_image() {
    let run = tiny_run();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("out");

    // A 64 x 64 DICOM whose ImagerPixelSpacing says 50 mm.
    let dcm = t.join("fifty.dcm");
    let spec = mammo_io::dicom::DicomWriteSpec {
        sop_instance_uid: "1.2.3.4".into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.5".into(),
        strings: vec![],
        bits_stored: 12,
        monochrome1: false,
        spacing_mm: Some(50.0),
        window: None,
    };
    let pixels = vec![1000u16; 64 * 64];
    mammo_io::dicom::write_dicom(&dcm, 64, 64, &pixels, &spec, mammo_io::dicom::WriteSyntax::ExplicitVrLittleEndian)
        .unwrap();
    fails_with(
        &["explain", s(run), s(&dcm), "--out", s(&out)],
        &["fifty.dcm", "source pixel spacing 50 mm is outside"],
    );

    // A PNG (no spacing of its own) with --spacing 1000 and 1e300.
    let png = t.join("small.png");
    png16(&png, 64, 64);
    for bad in ["1000", "1e300"] {
        fails_with(
            &["explain", s(run), s(&png), "--out", s(&out), "--spacing", bad],
            &["small.png", "requested pixel spacing", "is outside 0.01..=1 mm"],
        );
    }
    // Sane spacings, but 3000 x 3000 px at 1 mm resampled to the model's 0.4 mm is 7500 x 7500 px.
    let big = t.join("big.png");
    png16(&big, 3000, 3000);
    fails_with(
        &["explain", s(run), s(&big), "--out", s(&out), "--spacing", "1"],
        &["big.png", "would be 7500 x 7500 px (more than 33554432)"],
    );
    assert!(!out.join("result.json").exists(), "nothing written for a refused image");
}

/// Row 12: every physical or count parameter of `prepare` far out of range is a validation error
/// before any work, and so is a phantom.json whose spacing is 500 mm; `phantom` refuses the same.
#[test]
fn prepare_and_phantom_refuse_parameters_that_would_explode() {
    let (_, ph, _) = small_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("ds");
    let prepare = |extra: &[&str], input: &Path| {
        let mut args = vec!["prepare", "--format", "phantom", "--input", s(input), "--out", s(&out)];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (extra, says) in [
        (&["--patch-size", "100000"][..], "--patch-size 100000: must be in 8..=512"),
        (&["--spacing", "0.0001"][..], "--spacing: pixel spacing 0.0001 mm is outside 0.01..=1 mm"),
        (&["--per-lesion", "100000"][..], "--per-lesion 100000: must be in 0..=64"),
        (&["--normal-per-image", "100000"][..], "--normal-per-image 100000: must be in 0..=64"),
        (&["--default-spacing", "500"][..], "--default-spacing: pixel spacing 500 mm"),
    ] {
        let args = prepare(extra, ph);
        fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[says]);
        assert!(!out.exists());
    }

    // A phantom whose manifest says 500 mm per pixel.
    let edited = t.join("edited");
    copy_dir(ph, &edited);
    let manifest = edited.join("phantom.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"spacing_mm\": 0.4"), "the phantom's manifest records its spacing");
    std::fs::write(&manifest, text.replace("\"spacing_mm\": 0.4", "\"spacing_mm\": 500")).unwrap();
    let args = prepare(&[], &edited);
    fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), &["phantom.json", "pixel spacing 500 mm"]);
    assert!(!out.exists());

    // The phantom generator: a spacing no reader accepts, a blur-free but absurd lesion size.
    let pout = t.join("ph");
    fails_with(&["phantom", "--out", s(&pout), "--spacing-mm", "0.0001", "--width-mm", "1"], &["spacing_mm"]);
    fails_with(&["phantom", "--out", s(&pout), "--max-size", "1e9"], &["max_diameter_mm must be at most 100"]);
    assert!(!pout.exists() || std::fs::read_dir(&pout).unwrap().next().is_none());
}
