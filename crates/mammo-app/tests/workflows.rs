//! The workflows called as a library, without the command line: a tiny phantom prepared in a temporary
//! directory, trained for a few steps, evaluated, explained and reproduced, and quickstart's pieces.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mammo_app::evaluate::EvaluateRequest;
use mammo_app::explain::ManyRequest;
use mammo_app::quickstart::{self, QuickstartRequest};
use mammo_app::reproduce::ReproduceRequest;
use mammo_app::train::TrainOptions;
use mammo_app::{Bar, NoBar, Progress};
use mammo_io::layouts::Format;
use mammo_phantom::{OutputFormat, PhantomParams};
use mammo_prep::split::Split;

/// Records what a workflow shows: the bars it opens and the lines it prints.
#[derive(Default)]
struct Recorder {
    bars: Mutex<Vec<String>>,
    lines: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn bar(&self, _: usize, what: &str) -> Box<dyn Bar> {
        self.bars.lock().unwrap().push(what.to_string());
        Box::new(NoBar)
    }
    fn line(&self, text: &str) {
        self.lines.lock().unwrap().push(text.to_string());
    }
}

/// A small phantom (40 images, 80 mm wide at 0.4 mm) and its DATASET of 32 px patches, as the CLI
/// tests make it; returns (phantom, dataset, the key it was prepared with).
fn tiny_dataset(dir: &Path) -> (PathBuf, PathBuf, mammo_prep::PseudonymKey) {
    let phantom = dir.join("phantom");
    let dataset = dir.join("dataset");
    let params = PhantomParams { cases: 40, seed: 3, width_mm: 80.0, spacing_mm: 0.4, ..Default::default() };
    mammo_app::phantom::write(&phantom, &params, OutputFormat::Dicom, &mammo_app::Silent).unwrap();
    let mut prep = mammo_prep::PrepParams::default();
    prep.patch.size = 32;
    let key = prep.key.clone();
    mammo_prep::prepare(Format::Phantom, &phantom, &dataset, &prep, &|_, _| {}).unwrap();
    (phantom, dataset, key)
}

/// Six steps of both models at the smallest sizes.
fn tiny_options() -> TrainOptions {
    let set = ["train.steps=6", "train.batch_size=8", "train.checkpoint_every=6", "train.log_every=3"];
    let set = set.iter().chain(&["attribution.gen_channels=4", "attribution.critic_channels=4"]);
    TrainOptions { set: set.map(|s| s.to_string()).collect(), device: "cpu".into(), threads: 2, ..Default::default() }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn train_evaluate_explain_and_reproduce_without_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (phantom, dataset, _) = tiny_dataset(tmp.path());
    let run = tmp.path().join("run");

    // Train, with SageMaker's METRIC lines on: they reach the caller's Progress, not stdout.
    let progress = Recorder::default();
    let opts = TrainOptions { metric_lines: true, ..tiny_options() };
    let summary = mammo_app::train::run(&dataset, &run, &opts, &progress).unwrap();
    assert_eq!(summary.steps.keys().collect::<Vec<_>>(), ["attribution", "classifier"]);
    assert!(summary.steps.values().all(|&s| s == 6), "{:?}", summary.steps);
    assert!(summary.weights.values().all(|h| h.len() == 64), "{:?}", summary.weights);
    assert_eq!(summary.lines().len(), 2);
    assert_eq!(*progress.bars.lock().unwrap(), ["classifier", "attribution"]);
    let lines = progress.lines.lock().unwrap().clone();
    for step in [3, 6] {
        for model in ["classifier", "attribution"] {
            let prefix = format!("METRIC step={step} train.{model}.");
            assert!(lines.iter().any(|l| l.starts_with(&prefix)), "no {prefix} in {lines:?}");
        }
    }
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["outcome"]["status"], "finished", "{manifest}");
    assert!(run.join("metrics.jsonl").is_file() && run.join("data.json").is_file());

    // Evaluate on the DATASET recorded by train. Its key was this process's own and never written, so
    // with another key its whole images cannot be found, and the error says so.
    let other_key = tmp.path().join("other.key");
    mammo_prep::key_file::load_or_create(&other_key).unwrap();
    let request = EvaluateRequest {
        run: run.clone(),
        data: None,
        images: Some(phantom.clone()),
        key_file: Some(other_key),
        split: Split::Test,
        device: "cpu".into(),
        seed: 0,
    };
    let err = mammo_app::evaluate::run(&request).expect_err("a DATASET of another key");
    let shown = mammo_app::one_line(&err);
    assert!(shown.contains("is this the key the dataset was prepared with?"), "{shown}");
    let metrics = mammo_app::evaluate::run(&EvaluateRequest { images: None, ..request }).unwrap();
    assert_eq!(metrics["split"], "test");
    assert!(metrics.contains_key("classifier.auc") || metrics.contains_key("attribution.pointing_game"), "{metrics:?}");
    // What it returns is what it wrote (up to the last digit of a decimal read back).
    let written = json(&run.join("eval/metrics.json"));
    let written = written.as_object().unwrap();
    assert_eq!(written.keys().collect::<Vec<_>>(), metrics.keys().collect::<Vec<_>>());
    for (k, v) in &metrics {
        match (v.as_f64(), written[k].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{k}: {a} vs {b}"),
            _ => assert_eq!(v, &written[k], "{k}"),
        }
    }
    assert!(run.join("eval/report.html").is_file());

    // Explain several images with one model load; every image gets a folder and a row.
    let out = tmp.path().join("explained");
    let images = vec![phantom.join("images/case-00000.dcm"), phantom.join("images/case-00001.dcm")];
    let request = ManyRequest {
        run: run.clone(),
        images,
        out: out.clone(),
        spacing: None,
        stride: 0.5,
        device: "cpu".into(),
        shard: None,
    };
    let mut heard = Vec::new();
    let done =
        mammo_app::explain::run_many(&request, &mut |e| heard.push((e.label.to_string(), e.result.score))).unwrap();
    assert_eq!((done.total, done.failed), (2, 0));
    assert_eq!(heard.len(), 2);
    assert!(heard.iter().all(|(_, s)| (0.0..=1.0).contains(s)), "{heard:?}");
    let csv = std::fs::read_to_string(&done.scores).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(out.join("case-00000/overlay.png").is_file() && out.join("case-00001/result.json").is_file());
    let bad = mammo_app::explain::run_many(&ManyRequest { stride: 0.0, ..request }, &mut |_| {});
    assert!(mammo_app::one_line(&bad.err().unwrap()).contains("--stride 0"));

    // Reproduce: the same weights again, in process.
    let reproduction =
        mammo_app::reproduce::run(&ReproduceRequest { run: run.clone(), ..Default::default() }, &mammo_app::Silent)
            .unwrap();
    assert_eq!(reproduction.out, tmp.path().join("run-reproduce"));
    reproduction.verdict().unwrap();
}

#[test]
fn a_start_that_fails_says_why_in_the_manifest_and_touches_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let opts = TrainOptions { set: vec!["train.stpes=3".into()], ..tiny_options() };
    let err = mammo_app::train::run(&tmp.path().join("no-dataset"), &run, &opts, &mammo_app::Silent).err().unwrap();
    assert!(mammo_app::one_line(&err).contains("train.stpes"), "{}", mammo_app::one_line(&err));
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["outcome"]["status"], "failed", "{manifest}");
    // A directory holding something else is left alone.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    assert!(mammo_app::train::run(&tmp.path().join("no-dataset"), &other, &opts, &mammo_app::Silent).is_err());
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn quickstart_claims_only_an_empty_or_earlier_quickstart_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    quickstart::claim(&out).unwrap();
    std::fs::write(out.join("left.txt"), "x").unwrap();
    let err = quickstart::claim(&out).err().unwrap();
    assert!(err.to_string().contains("not an earlier quickstart"), "{err}");
    assert!(out.join("left.txt").is_file());
    std::fs::write(out.join(quickstart::MARKER), "{}").unwrap();
    quickstart::claim(&out).unwrap();
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    // A bad override fails before anything is written.
    let fresh = tmp.path().join("fresh");
    let req = QuickstartRequest {
        out: fresh.clone(),
        cases: 16,
        seed: 0,
        device: "cpu".into(),
        set: vec!["nokey".into()],
        key_file: None,
    };
    let err = quickstart::run(&req, &mammo_app::Silent, &mut |_| panic!("no step may run")).err().unwrap();
    assert!(mammo_app::one_line(&err).contains("expected KEY=VALUE"), "{}", mammo_app::one_line(&err));
    assert!(!fresh.exists());

    // The seed comes first, so an explicit train.seed wins.
    let req = QuickstartRequest { set: vec!["train.seed=7".into()], seed: 3, ..req };
    assert_eq!(quickstart::train_options(&req).set, ["train.seed=3", "train.seed=7"]);
    let p = quickstart::prep_params(5);
    assert_eq!((p.patch.size, p.patch.per_lesion, p.patch.normal_per_image, p.seed), (64, 8, 12, 5));
}

#[test]
fn quickstart_explains_a_malignant_image_of_the_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (phantom, dataset, key) = tiny_dataset(tmp.path());
    let namer = mammo_prep::Namer::new(key, Format::Phantom, false);
    let case = quickstart::test_image(&phantom, &dataset, &namer).unwrap();
    assert!(case.lesions.iter().any(|l| l.label == mammo_io::layouts::Label::Malignant), "{case:?}");
    let (_, rows) = mammo_prep::PatchStore::read_index(&dataset).unwrap();
    let name = namer.path(&phantom, &phantom.join(&case.image));
    assert!(rows.iter().any(|r| r.source == name && r.split == Split::Test), "{} is not in the test split", case.image);
}

#[test]
fn quickstart_runs_its_five_steps_in_order_and_marks_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let key = tmp.path().join("pseudonym.key");
    let set = ["train.steps=2", "train.batch_size=8", "attribution.gen_channels=4", "attribution.critic_channels=4"];
    let req = QuickstartRequest {
        out: out.clone(),
        cases: 16,
        seed: 0,
        device: "cpu".into(),
        set: set.iter().map(|s| s.to_string()).collect(),
        key_file: Some(key.clone()),
    };
    let mut steps = Vec::new();
    quickstart::run(&req, &mammo_app::Silent, &mut |step| {
        steps.push(match step {
            quickstart::Step::Phantom { cases, .. } => format!("phantom {cases}"),
            quickstart::Step::Prepared { info, .. } => format!("prepared {}", info.images),
            quickstart::Step::Trained(t) => format!("trained {:?}", t.steps.values().collect::<Vec<_>>()),
            quickstart::Step::Evaluated(m) => format!("evaluated {}", m["split"]),
            quickstart::Step::Explained { dir, .. } => format!("explained {}", dir.join("overlay.png").is_file()),
            quickstart::Step::Done { report, .. } => format!("done {}", report.is_file()),
        })
    })
    .unwrap();
    assert_eq!(
        steps,
        ["phantom 16", "prepared 16", "trained [2, 2]", "evaluated \"test\"", "explained true", "done true"]
    );
    assert!(key.is_file() && out.join(quickstart::MARKER).is_file());
    // A second run may replace it.
    quickstart::claim(&out).unwrap();
}
