//! `quickstart`: phantom, prepare, train, evaluate and explain in one directory, each step reported to
//! the caller as it ends (the binary prints them).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use mammo_io::layouts::{Format, Label, PhantomCase, PhantomManifest};
use mammo_phantom::{OutputFormat, PhantomParams};
use mammo_prep::split::Split;
use mammo_prep::{DatasetInfo, Namer, PrepParams};
use mammo_serve::explain::ExplainResult;

use crate::evaluate::{EvaluateRequest, Metrics};
use crate::progress::Progress;
use crate::train::{TrainOptions, TrainSummary};

/// Marks a directory as quickstart's own, so a second run may replace it without risking user data.
pub const MARKER: &str = "quickstart.json";

/// Where and how big.
#[derive(Clone, Debug)]
pub struct QuickstartRequest {
    /// Where to put everything (replaced if it holds an earlier quickstart; refused if it holds
    /// anything else).
    pub out: PathBuf,
    /// Synthetic images to generate (four per synthetic woman).
    pub cases: usize,
    /// The seed of the phantom, the preparation and training.
    pub seed: u64,
    /// auto, cpu, cuda[:N] or wgpu[:N].
    pub device: String,
    /// `KEY=VALUE` overrides of training config keys.
    pub set: Vec<String>,
    /// The pseudonym key's file (`None`: $MAMMOGAN_KEY_FILE, else the user's config folder), created
    /// on first use.
    pub key_file: Option<PathBuf>,
}

/// A step done, with what it made.
pub enum Step<'a> {
    /// The phantom is written into `dir`.
    Phantom {
        dir: &'a Path,
        cases: usize,
    },
    /// The DATASET is prepared into `dir`.
    Prepared {
        dir: &'a Path,
        info: &'a DatasetInfo,
    },
    Trained(&'a TrainSummary),
    /// Evaluated on the held-out test split.
    Evaluated(&'a Metrics),
    /// `image` (relative to the phantom) explained into `dir`.
    Explained {
        image: &'a str,
        dir: &'a Path,
        result: &'a ExplainResult,
    },
    /// All done: the evaluation's report, and the seconds it all took.
    Done {
        report: PathBuf,
        seconds: f64,
    },
}

/// Runs the five steps into `req.out`, telling `on_step` of each as it ends.
pub fn run(req: &QuickstartRequest, progress: &dyn Progress, on_step: &mut dyn FnMut(Step<'_>)) -> Result<()> {
    let started = std::time::Instant::now();
    // The allocator's settings for tensor work before any of the pool's threads first allocates (the
    // phantom's do): they then share one arena through training and evaluation (`alloc.rs`).
    mammo_nn::alloc::keep_freed_buffers();
    let opts = train_options(req);
    let run_dir = req.out.join("run");
    // A bad --set fails now, not after minutes of phantom and preparation.
    crate::train::resolve_config(&opts, &run_dir)?;
    claim(&req.out)?;
    let phantom_dir = req.out.join("phantom");
    let dataset_dir = req.out.join("dataset");
    let params = PhantomParams { cases: req.cases, seed: req.seed, ..Default::default() };
    crate::phantom::write(&phantom_dir, &params, OutputFormat::Dicom, progress)?;
    on_step(Step::Phantom { dir: &phantom_dir, cases: req.cases });

    let mut prep_params = prep_params(req.seed);
    prep_params.key = crate::key::for_prepare(req.key_file.as_deref(), &phantom_dir)?;
    let namer = Namer::new(prep_params.key.clone(), Format::Phantom, prep_params.keep_paths);
    let bar = progress.bar(req.cases, "preparing");
    let info = mammo_prep::prepare(Format::Phantom, &phantom_dir, &dataset_dir, &prep_params, &|d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish();
    on_step(Step::Prepared { dir: &dataset_dir, info: &info });

    let trained = crate::train::run(&dataset_dir, &run_dir, &opts, progress)?;
    on_step(Step::Trained(&trained));

    let metrics = crate::evaluate::run(&EvaluateRequest {
        run: run_dir.clone(),
        data: Some(dataset_dir.clone()),
        images: Some(phantom_dir.clone()),
        key_file: req.key_file.clone(),
        split: Split::Test,
        device: req.device.clone(),
        seed: req.seed,
    })?;
    on_step(Step::Evaluated(&metrics));

    let case = test_image(&phantom_dir, &dataset_dir, &namer)?;
    let explain_dir = req.out.join("explain");
    let r = crate::explain::image(&run_dir, &phantom_dir.join(&case.image), &explain_dir, None, 0.5, &req.device)?;
    on_step(Step::Explained { image: &case.image, dir: &explain_dir, result: &r });

    let marker = serde_json::json!({ "cases": req.cases, "seed": req.seed, "dataset_content_hash": info.content_hash });
    mammo_io::atomic::write_bytes(&req.out.join(MARKER), serde_json::to_string_pretty(&marker)?.as_bytes())?;
    on_step(Step::Done {
        report: run_dir.join(mammo_track::RunDir::EVAL).join("report.html"),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// Training as quickstart runs it: both models, `train.seed` = the seed, then the overrides.
pub fn train_options(req: &QuickstartRequest) -> TrainOptions {
    TrainOptions {
        set: std::iter::once(format!("train.seed={}", req.seed)).chain(req.set.iter().cloned()).collect(),
        device: req.device.clone(),
        ..Default::default()
    }
}

/// Preparation as quickstart runs it (the key is set by the caller).
pub fn prep_params(seed: u64) -> PrepParams {
    let mut p = PrepParams { spacing_mm: 0.4, default_spacing_mm: 0.1, ..Default::default() };
    p.patch.size = 64;
    p.patch.per_lesion = 8;
    // Normal tissue the way explain meets it (tiles anywhere in the breast, its edges included): most
    // tiles of a whole mammogram are normal, and each can raise the image's score.
    p.patch.normal_per_image = 12;
    p.seed = seed;
    p.threads = 0;
    p
}

/// The image to explain: the first malignant image of the held-out test split, whole (an image no
/// model saw); else the first malignant one, else the first. The index names images by their
/// pseudonymised paths: each phantom image's is recomputed with `namer` to match.
pub fn test_image(phantom_dir: &Path, dataset_dir: &Path, namer: &Namer) -> Result<PhantomCase> {
    let path = phantom_dir.join(mammo_io::layouts::PHANTOM_MANIFEST);
    let manifest: PhantomManifest =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| mammo_io::IoError::io(&path, e))?)?;
    let (_, rows) = mammo_prep::PatchStore::read_index(dataset_dir)?;
    let test: std::collections::BTreeSet<&str> =
        rows.iter().filter(|r| r.split == Split::Test).map(|r| r.source.as_str()).collect();
    let malignant = |c: &&PhantomCase| c.lesions.iter().any(|l| l.label == Label::Malignant);
    let case = manifest
        .cases
        .iter()
        .filter(malignant)
        .find(|c| test.contains(namer.path(phantom_dir, &phantom_dir.join(&c.image)).as_str()))
        .or_else(|| manifest.cases.iter().find(malignant))
        .or(manifest.cases.first());
    match case {
        Some(c) => Ok(c.clone()),
        None => bail!("{}: the phantom has no cases", path.display()),
    }
}

/// Creates `out`, or empties it when it is an earlier quickstart's; refuses any other non-empty directory.
pub fn claim(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = out.read_dir().map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty {
            if !out.join(MARKER).is_file() {
                bail!("{}: exists and is not an earlier quickstart; choose another --out", out.display());
            }
            std::fs::remove_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
    Ok(())
}
