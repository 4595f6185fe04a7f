//! End-to-end tests of the `mammogan` binary: the phantom through prepare, determinism, patient
//! separation, privacy, and the promise that bad input gives one clear line and leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mammogan(args: &[&str]) -> Output {
    // The pseudonym key in the build's scratch folder, not the user's home.
    Command::new(env!("CARGO_BIN_EXE_mammogan"))
        .args(args)
        .arg("--quiet")
        .env("MAMMOGAN_KEY_FILE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("pseudonym.key"))
        .output()
        .expect("binary runs")
}

fn ok(args: &[&str]) -> Output {
    let out = mammogan(args);
    assert!(
        out.status.success(),
        "mammogan {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail: non-zero exit, exactly one line on stderr naming `names`, no panic.
fn fails(args: &[&str], names: &str, says: &str) -> String {
    let out = mammogan(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "mammogan {args:?} should fail");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].contains(names), "error should name {names}: {stderr}");
    assert!(lines[0].to_lowercase().contains(&says.to_lowercase()), "error should say '{says}': {stderr}");
    stderr
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

fn tree_hash(dir: &Path) -> BTreeMap<String, String> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            (rel, blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string())
        })
        .collect()
}

fn phantom(dir: &Path, format: &str, cases: usize, seed: u64) {
    ok(&[
        "phantom",
        "--out",
        dir.to_str().unwrap(),
        "--cases",
        &cases.to_string(),
        "--seed",
        &seed.to_string(),
        "--format",
        format,
        "--width-mm",
        "40",
        "--spacing-mm",
        "0.2",
    ]);
}

fn prepare(format: &str, input: &Path, out: &Path) -> Output {
    mammogan(&[
        "prepare",
        "--format",
        format,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--patch-size",
        "32",
    ])
}

#[test]
fn phantom_prepares_deterministically_with_patients_in_one_split_and_no_identifiers() {
    let tmp = tempfile::tempdir().unwrap();
    let (ph, ph2) = (tmp.path().join("ph"), tmp.path().join("ph2"));
    phantom(&ph, "dicom", 24, 5);
    phantom(&ph2, "dicom", 24, 5);
    assert_eq!(tree_hash(&ph), tree_hash(&ph2), "same seed, same phantom bytes");

    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out_a = prepare("phantom", &ph, &a);
    assert!(out_a.status.success(), "{}", String::from_utf8_lossy(&out_a.stderr));
    assert!(prepare("phantom", &ph, &b).status.success());
    assert_eq!(tree_hash(&a), tree_hash(&b), "preparing twice gives byte-identical output");

    // index.csv: every patient in exactly one split, all three splits and labels present.
    let index = std::fs::read_to_string(a.join("index.csv")).unwrap();
    let mut lines = index.lines();
    assert_eq!(lines.next().unwrap(), "id,patient_id,split,label,source,x,y,w,h");
    let mut split_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut labels = BTreeSet::new();
    let mut n = 0;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 9, "{l}");
        split_of.entry(f[1].to_string()).or_default().insert(f[2].to_string());
        labels.insert(f[3].to_string());
        n += 1;
    }
    for (patient, splits) in &split_of {
        assert_eq!(splits.len(), 1, "patient {patient} appears in {splits:?}");
    }
    let all_splits: BTreeSet<String> = split_of.values().flatten().cloned().collect();
    assert_eq!(all_splits.len(), 3, "{all_splits:?}");
    assert!(labels.contains("malignant") && labels.contains("benign") && labels.contains("normal"), "{labels:?}");

    // dataset.json: hashes of every input and output; sizes consistent.
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(info["patches"].as_u64().unwrap() as usize, n);
    assert_eq!(std::fs::metadata(a.join("patches.u16")).unwrap().len() as usize, n * 32 * 32 * 2);
    assert_eq!(std::fs::metadata(a.join("masks.u8")).unwrap().len() as usize, n * 32 * 32);
    let inputs = info["inputs"].as_array().unwrap();
    assert!(inputs.iter().any(|f| f["path"] == "phantom.json"));
    assert!(inputs.iter().filter(|f| f["path"].as_str().unwrap().ends_with(".dcm")).count() == 24);

    // Privacy: the phantom's fake identifying attributes never reach the dataset or the console.
    let console = format!("{}{}", String::from_utf8_lossy(&out_a.stdout), String::from_utf8_lossy(&out_a.stderr));
    for needle in mammo_phantom_identifiers() {
        for f in files_under(&a) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!contains(&bytes, needle.as_bytes()), "{needle} leaked into {}", f.display());
        }
        assert!(!console.contains(&needle), "{needle} leaked to the console");
    }
    // ...but they are in the phantom's DICOM files, so the check above can fail.
    let dcm = files_under(&ph).into_iter().find(|p| p.extension().is_some_and(|e| e == "dcm")).unwrap();
    let bytes = std::fs::read(&dcm).unwrap();
    assert!(mammo_phantom_identifiers().iter().any(|n| contains(&bytes, n.as_bytes())));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The recognisable fake identifying values the phantom writes for its first synthetic patients.
fn mammo_phantom_identifiers() -> Vec<String> {
    (0..6).flat_map(|p| mammo_phantom::fake_identity(p).values()).collect()
}

#[test]
fn convert_writes_the_stored_values_and_inspect_reports_without_identifiers() {
    let tmp = tempfile::tempdir().unwrap();
    let ph = tmp.path().join("ph");
    phantom(&ph, "dicom", 4, 1);
    let dcm = files_under(&ph).into_iter().find(|p| p.extension().is_some_and(|e| e == "dcm")).unwrap();
    let png = tmp.path().join("out.png");
    ok(&["convert", dcm.to_str().unwrap(), png.to_str().unwrap()]);
    let original = mammo_io::read_image(&dcm).unwrap();
    let converted = mammo_io::read_image(&png).unwrap();
    assert_eq!((converted.width, converted.height), (original.width, original.height));
    assert_eq!(converted.samples, original.samples);

    let view = tmp.path().join("view.png");
    ok(&["convert", dcm.to_str().unwrap(), view.to_str().unwrap(), "--voi"]);
    assert_eq!(mammo_io::read_image(&view).unwrap().info.bits_stored, 8);

    let out = ok(&["inspect", dcm.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["width"].as_u64().unwrap() as usize, original.width);
    assert_eq!(v["info"]["modality"], "MG");
    assert!(v["info"]["laterality"].is_string() && v["info"]["view"].is_string());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in mammo_phantom_identifiers() {
        assert!(!text.contains(&needle), "{needle} in inspect output");
    }
    let out = ok(&["inspect", dcm.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("transfer")
            || String::from_utf8_lossy(&out.stdout).contains("DICOM")
    );
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_file_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ph = t.join("ph");
    phantom(&ph, "dicom", 4, 2);
    let dcm = files_under(&ph).into_iter().find(|p| p.extension().is_some_and(|e| e == "dcm")).unwrap();

    // A truncated DICOM: convert and prepare both refuse it.
    let bytes = std::fs::read(&dcm).unwrap();
    let trunc = t.join("truncated.dcm");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["convert", trunc.to_str().unwrap(), t.join("x.png").to_str().unwrap()], "truncated.dcm", "");
    assert!(!t.join("x.png").exists());
    // Garbage that is no image at all.
    let junk = t.join("junk.bin");
    std::fs::write(&junk, b"hello").unwrap();
    fails(&["inspect", junk.to_str().unwrap()], "junk.bin", "not a DICOM");

    // A colour PNG.
    let rgb = t.join("colour.png");
    mammo_io::png_io::write_png_rgb(&rgb, 2, 2, &[0; 12]).unwrap();
    fails(&["convert", rgb.to_str().unwrap(), t.join("y.png").to_str().unwrap()], "colour.png", "grayscale");

    // The phantom with one image truncated: prepare fails naming it and leaves no dataset.
    let broken = t.join("broken");
    copy_dir(&ph, &broken);
    let victim = files_under(&broken).into_iter().find(|p| p.extension().is_some_and(|e| e == "dcm")).unwrap();
    let b = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &b[..b.len() - 1000]).unwrap();
    let out = t.join("ds");
    fails(
        &["prepare", "--format", "phantom", "--input", broken.to_str().unwrap(), "--out", out.to_str().unwrap()],
        victim.file_name().unwrap().to_str().unwrap(),
        "",
    );
    assert_no_dataset(t, &out);

    // A missing referenced file.
    std::fs::remove_file(&victim).unwrap();
    fails(
        &["prepare", "--format", "phantom", "--input", broken.to_str().unwrap(), "--out", out.to_str().unwrap()],
        victim.file_name().unwrap().to_str().unwrap(),
        "does not exist",
    );
    assert_no_dataset(t, &out);

    // A CSV with a missing column.
    let csvdir = t.join("csvdata");
    std::fs::create_dir(&csvdir).unwrap();
    std::fs::write(csvdir.join("dataset.csv"), "path,label\na.png,benign\n").unwrap();
    fails(
        &["prepare", "--format", "csv", "--input", csvdir.to_str().unwrap(), "--out", out.to_str().unwrap()],
        "dataset.csv",
        "patient_id",
    );
    assert_no_dataset(t, &out);

    // An empty directory.
    let empty = t.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for format in ["cbis-ddsm", "mini-mias", "inbreast", "vindr", "csv", "phantom"] {
        fails(
            &["prepare", "--format", format, "--input", empty.to_str().unwrap(), "--out", out.to_str().unwrap()],
            "empty",
            "",
        );
        assert_no_dataset(t, &out);
    }

    // An existing output is never overwritten.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "precious").unwrap();
    fails(
        &["prepare", "--format", "phantom", "--input", ph.to_str().unwrap(), "--out", out.to_str().unwrap()],
        "ds",
        "exists",
    );
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "precious");
}

fn assert_no_dataset(parent: &Path, out: &Path) {
    assert!(!out.exists(), "{} left behind", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("partial") || n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files_under(from) {
        let dest = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["quickstart", "phantom", "prepare", "convert", "inspect"] {
        let out = ok(&[sub, "--help"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{sub}");
    }
}

#[test]
fn quickstart_refuses_a_bad_override_before_doing_any_work() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("qs");
    let o = out.to_str().unwrap();
    fails(&["quickstart", "--out", o, "--cases", "16", "--set", "train.stpes=3"], "train.stpes", "unknown key");
    fails(&["quickstart", "--out", o, "--cases", "16", "--set", "nokey"], "nokey", "expected KEY=VALUE");
    assert!(!out.exists(), "nothing is written before the overrides are checked");
}
