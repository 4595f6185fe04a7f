//! Training, evaluation and explain through the binary, at toy sizes: a real SIGKILL then `--resume`
//! ends with the weights of an uninterrupted run, SIGTERM saves a checkpoint, TensorBoard's own reader
//! reads our event files, and no identifying attribute of the phantom reaches any output.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{exe, run_ok, small_dataset, wait_for_checkpoint};

const TINY: [&str; 12] = [
    "--set",
    "train.batch_size=8",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.log_every=1",
    "--set",
    "train.image_every=2",
    "--set",
    "attribution.gen_channels=4",
    "--set",
    "attribution.critic_channels=4",
];

fn train_args<'a>(ds: &'a str, run: &'a str, steps: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["train", "--data", ds, "--out", run, "--threads", "2", "--set"].iter().map(|s| s.to_string()).collect();
    v.push(format!("train.steps={steps}"));
    v.extend(TINY.iter().map(|s| s.to_string()));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn hashes(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout).lines().filter(|l| l.contains("weights blake3")).map(|l| l.to_string()).collect()
}

#[test]
fn sigkill_then_resume_equals_an_uninterrupted_run() {
    let (tmp, _, ds) = small_dataset();
    let ds = ds.to_str().unwrap();
    let full = tmp.path().join("run-full");
    let args = train_args(ds, full.to_str().unwrap(), "40", &["--model", "attribution"]);
    let reference = run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());

    let killed = tmp.path().join("run-killed");
    let args = train_args(ds, killed.to_str().unwrap(), "40", &["--model", "attribution"]);
    let mut child = exe().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_checkpoint(&killed.join("checkpoints"), "attribution", &mut child);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was meant to be killed mid-way");
    assert!(!killed.join("model").join("attribution.safetensors").exists());

    let mut resume = args.clone();
    resume.retain(|a| !a.starts_with("train.") && !a.starts_with("attribution.") && a != "--set");
    resume.push("--resume".into());
    let resumed = run_ok(&resume.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(hashes(&resumed.stdout), hashes(&reference.stdout), "resume after SIGKILL must reproduce the weights");
    assert!(!hashes(&reference.stdout).is_empty());

    // The metrics file of the resumed run holds each step once, like the uninterrupted one.
    let steps = |run: &Path| -> Vec<u64> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(steps(&killed), steps(&full));
}

#[test]
fn sigterm_saves_a_checkpoint_and_exits() {
    let (tmp, _, ds) = small_dataset();
    let run = tmp.path().join("run-term");
    let args = train_args(ds.to_str().unwrap(), run.to_str().unwrap(), "400", &["--model", "attribution"]);
    let mut child = exe().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_checkpoint(&run.join("checkpoints"), "attribution", &mut child);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped by a signal") && stderr.contains("--resume"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // The manifest records the stop and where to resume.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["outcome"]["status"], "killed", "{manifest}");
    assert!(manifest["outcome"]["last_checkpoint"]["step"].as_u64().unwrap() > 0, "{manifest}");
}

#[test]
fn train_evaluate_explain_write_what_they_promise_and_nothing_identifying() {
    let (tmp, ph, ds) = small_dataset();
    let run = tmp.path().join("run-all");
    let args = train_args(ds.to_str().unwrap(), run.to_str().unwrap(), "6", &[]);
    let out = run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(hashes(&out.stdout).len(), 2, "both models trained");
    for f in [
        "config.toml",
        "data.json",
        "metrics.jsonl",
        "model/model.json",
        "model/classifier.safetensors",
        "model/attribution.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }

    let out = run_ok(&["evaluate", run.to_str().unwrap(), "--images", ph.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stdout).is_empty());
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval/metrics.json")).unwrap()).unwrap();
    // The whole-image headline: every test image explained and scored against its masks.
    for key in [
        "image.auc",
        "image.auc_ci95",
        "breast.auc",
        "detection.sensitivity_at_1fpi",
        "image_attribution.pointing_game",
        "image_attribution.energy_in_lesion",
        "image_attribution.ncc",
        "image_attribution.normal_to_malignant_mass",
        "image_saliency.pointing_game",
        "image_form_only.energy_in_lesion",
    ] {
        assert!(metrics.get(key).is_some(), "{key} missing from metrics.json: {metrics}");
    }
    let froc = metrics["detection.froc"].as_object().expect("detection.froc is an object");
    assert_eq!(froc.keys().map(String::as_str).collect::<Vec<_>>(), ["0.25", "0.5", "1", "2"].to_vec(), "{froc:?}");
    let (_, rows) = mammo_prep::PatchStore::read_index(ds).unwrap();
    let test_images: std::collections::BTreeSet<&str> =
        rows.iter().filter(|r| r.split == mammo_prep::split::Split::Test).map(|r| r.source.as_str()).collect();
    assert_eq!(metrics["image.n"].as_u64(), Some(test_images.len() as u64), "every test image once");
    let images_csv = std::fs::read_to_string(run.join("eval/images.csv")).unwrap();
    assert_eq!(images_csv.lines().count(), 1 + test_images.len(), "{images_csv}");
    for (source, line) in test_images.iter().zip(images_csv.lines().skip(1)) {
        assert!(line.starts_with(&format!("{source},")), "{line} for {source}");
    }
    for key in [
        "image.auc",
        "detection.sensitivity_at_1fpi",
        "image_attribution.pointing_game",
        "image_saliency.pointing_game",
    ] {
        let v = metrics[key].as_f64();
        assert!(v.is_none_or(|v| (0.0..=1.0).contains(&v)), "{key}: {v:?}");
    }
    let report = std::fs::read_to_string(run.join("eval/report.html")).unwrap();
    assert!(report.contains("id=\"whole\"") && report.contains("aria-label=\"FROC curve\""));

    // An image that is not the one the dataset was prepared from is refused, naming it.
    let copy = tmp.path().join("phantom-edited");
    let mut dirs = vec![ph.clone()];
    while let Some(d) = dirs.pop() {
        std::fs::create_dir_all(copy.join(d.strip_prefix(ph).unwrap())).unwrap();
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            match p.is_dir() {
                true => dirs.push(p),
                false => drop(std::fs::copy(&p, copy.join(p.strip_prefix(ph).unwrap())).unwrap()),
            }
        }
    }
    // The index names images by pseudonymised path: the test image's file is found by recomputing
    // each phantom image's name with the key the tests prepare with.
    let key = mammo_prep::key_file::load(&common::key_file()).unwrap();
    let namer = mammo_prep::Namer::new(key, mammo_io::layouts::Format::Phantom, false);
    let manifest: mammo_io::layouts::PhantomManifest =
        serde_json::from_slice(&std::fs::read(ph.join(mammo_io::layouts::PHANTOM_MANIFEST)).unwrap()).unwrap();
    let first_test = manifest
        .cases
        .iter()
        .map(|c| c.image.clone())
        .find(|image| namer.path(ph, &ph.join(image)) == **test_images.first().unwrap())
        .expect("a test image of the index is a phantom image");
    assert!(!test_images.contains(first_test.as_str()), "the index does not show the path as it is");
    let edited = copy.join(&first_test);
    let mut bytes = std::fs::read(&edited).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&edited, bytes).unwrap();
    let out =
        common::exe().args(["evaluate", run.to_str().unwrap(), "--images", copy.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&first_test) && err.contains("BLAKE3"), "{err}");

    // Another key finds none of the dataset's images, and says the key is the likely cause; no key
    // file at all is named as such.
    let wrong = tmp.path().join("wrong.key");
    mammo_prep::key_file::load_or_create(&wrong).unwrap();
    let evaluate_with = |key: &Path| {
        let args = ["evaluate", run.to_str().unwrap(), "--images", ph.to_str().unwrap(), "--key-file"];
        common::exe().args(args).arg(key).output().unwrap()
    };
    let out = evaluate_with(&wrong);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "no input matches the dataset's pseudonymised paths: is this the key the dataset was prepared with?"
            )
            && err.trim().lines().count() == 1,
        "{err}"
    );
    let out = evaluate_with(&tmp.path().join("missing.key"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("missing.key") && err.contains("no pseudonym key"), "{err}");

    for key in [
        "classifier.auc",
        "classifier.sensitivity",
        "classifier.specificity",
        "attribution.pxap",
        "attribution.ncc",
        "attribution.pointing_game",
        "attribution.energy_in_mask",
        "attribution.counterfactual_drop",
        "saliency.pxap",
        "saliency.ncc",
        "saliency.pointing_game",
    ] {
        assert!(metrics.get(key).is_some(), "{key} missing from metrics.json");
    }
    let auc = metrics["classifier.auc"].as_f64().expect("the test split has both classes");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["outcome"]["eval"]["test.classifier.auc"].as_f64(),
        Some(auc),
        "evaluate records into the manifest"
    );
    assert!((0.0..=1.0).contains(&auc));
    let ci = metrics["classifier.auc_ci95"].as_array().expect("auc_ci95 is [low, high]");
    assert_eq!(ci.len(), 2);
    assert!(metrics["attribution.pointing_game"].as_f64().is_some(), "{metrics}");
    assert!(report.contains("<svg") && report.contains("data:image/png;base64"));

    // Explain a whole phantom mammogram.
    let image = std::fs::read_dir(ph.join("images")).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let ex = tmp.path().join("explain");
    run_ok(&["explain", run.to_str().unwrap(), image.to_str().unwrap(), "--out", ex.to_str().unwrap()]);
    let original = mammo_io::read_image(&image).unwrap();
    for f in ["overlay.png", "heatmap.png"] {
        // RGB overlays are not grayscale mammograms: read their size from the PNG header (IHDR).
        let bytes = std::fs::read(ex.join(f)).unwrap();
        let (w, h) = (
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        );
        assert_eq!((w as usize, h as usize), (original.width, original.height), "{f} at the original size");
    }
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(ex.join("result.json")).unwrap()).unwrap();
    assert!(result["score"].as_f64().unwrap() >= 0.0 && result["regions"].as_array().is_some());

    // TensorBoard's own reader sees our scalars and image grids.
    let script = "import sys, json\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\nea = EventAccumulator(sys.argv[1], size_guidance={'images': 0, 'scalars': 0})\nea.Reload()\nt = ea.Tags()\nprint(json.dumps({'scalars': t['scalars'], 'images': t['images']}))";
    let py = Command::new("python3").args(["-c", script, run.join("tb").to_str().unwrap()]).output();
    match py {
        Ok(o) if o.status.success() => {
            let tags: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let scalars: Vec<&str> = tags["scalars"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
            assert!(scalars.iter().any(|t| t.starts_with("classifier/")), "{scalars:?}");
            assert!(scalars.iter().any(|t| t.starts_with("attribution/")), "{scalars:?}");
            assert!(!tags["images"].as_array().unwrap().is_empty(), "{tags}");
        }
        other => {
            let msg = format!("python3 with the tensorboard package is needed (scripts/test installs it): {other:?}");
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("skipping the TensorBoard check outside CI: {msg}");
        }
    }

    // Privacy: the fake identifying values in the phantom's DICOM headers reach no output, nor does the
    // pseudonym key (in the dataset, the run, its evaluation or explain's output).
    let mut needles: Vec<String> = (0..6).flat_map(|p| mammo_phantom::fake_identity(p).values()).collect();
    needles.push(std::fs::read_to_string(common::key_file()).unwrap().trim().to_string());
    for dir in [&run, &ex, ds] {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let bytes = std::fs::read(&p).unwrap();
                for n in &needles {
                    assert!(!bytes.windows(n.len()).any(|w| w == n.as_bytes()), "{n} leaked into {}", p.display());
                }
            }
        }
    }
}
