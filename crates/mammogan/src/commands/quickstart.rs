//! `mammogan quickstart`: phantom, prepare, train, evaluate and explain in one directory.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use mammo_io::layouts::Format;
use mammo_phantom::{OutputFormat, PhantomParams};

use crate::commands::{evaluate, explain, phantom, prepare, train};
use crate::progress::Progress;
use mammo_prep::split::Split;

/// Marks a directory as quickstart's own, so a second run may replace it without risking user data.
const MARKER: &str = "quickstart.json";

#[derive(clap::Args)]
pub struct Args {
    /// Where to put everything (replaced if it holds an earlier quickstart; refused if it holds anything else).
    #[arg(long, default_value = "mammogan-quickstart")]
    out: PathBuf,
    /// Synthetic images to generate (four per synthetic woman). 512 gives the classifier about 110
    /// malignant training lesions and the held-out test split 19 women (about 200 malignant patches):
    /// with 256, the training set was too small for the classifier to generalise reliably and the
    /// test split too small for its AUC to mean much.
    #[arg(long, default_value_t = 512)]
    cases: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Override one training config key, e.g. `--set train.steps=100` for a quick look (repeatable;
    /// the quality targets hold only for the defaults).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn run(args: Args, progress: &Progress) -> Result<()> {
    let started = std::time::Instant::now();
    let opts = train::TrainOpts {
        set: std::iter::once(format!("train.seed={}", args.seed)).chain(args.set.iter().cloned()).collect(),
        device: args.device.clone(),
        ..Default::default()
    };
    // A bad --set fails now, not after minutes of phantom and preparation.
    train::resolve_config(&opts, &args.out.join("run"))?;
    claim(&args.out)?;
    let phantom_dir = args.out.join("phantom");
    let dataset_dir = args.out.join("dataset");
    let run_dir = args.out.join("run");
    let params = PhantomParams { cases: args.cases, seed: args.seed, ..Default::default() };
    phantom::write(&phantom_dir, &params, OutputFormat::Dicom, progress)?;
    println!("1/5 phantom: {} synthetic DICOM mammograms with exact masks in {}", args.cases, phantom_dir.display());

    let prep = prepare::PrepArgs {
        spacing: 0.4,
        default_spacing: 0.1,
        patch_size: 64,
        per_lesion: 8,
        // Normal tissue the way explain meets it (tiles anywhere in the breast, its edges included):
        // most tiles of a whole mammogram are normal, and each can raise the image's score.
        normal_per_image: 12,
        seed: args.seed,
        threads: 0,
    };
    let mut prep_params = prep.to_params();
    prep_params.key = super::pseudonym_key::for_prepare(None, &phantom_dir)?;
    let namer = mammo_prep::Namer::new(prep_params.key.clone(), Format::Phantom, prep_params.keep_paths);
    let bar = progress.bar(args.cases, "preparing");
    let info = mammo_prep::prepare(Format::Phantom, &phantom_dir, &dataset_dir, &prep_params, &|d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    println!("2/5 prepare:");
    print!("{}", prepare::summary(&info, &dataset_dir));

    let trained = train::train(&dataset_dir, &run_dir, &opts, progress)?;
    println!("3/5 train on {} ({} threads):", trained.device.backend, trained.device.threads);
    for (model, hash) in &trained.weights {
        println!("  {model:>11}: {} steps, weights blake3 {}", trained.steps[model], &hash[..16]);
    }

    let metrics = evaluate::evaluate(
        &run_dir,
        Some(&dataset_dir),
        Some(&phantom_dir),
        None,
        Split::Test,
        &args.device,
        args.seed,
    )?;
    println!("4/5 evaluate on the held-out test split:");
    let show = |key: &str| {
        let v = metrics.get(key).and_then(|v| v.as_f64()).map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        println!("  {key:>36}: {v}");
    };
    println!("  whole mammograms (what explain and serve answer):");
    for key in [
        "image.auc",
        "breast.auc",
        "detection.sensitivity_at_1fpi",
        "image_attribution.pointing_game",
        "image_saliency.pointing_game",
        "image_form_only.pointing_game",
        "image_attribution.energy_in_lesion",
        "image_saliency.energy_in_lesion",
        "image_form_only.energy_in_lesion",
        "image_attribution.normal_to_malignant_mass",
    ] {
        show(key);
    }
    println!("  patches (diagnostics):");
    for key in [
        "classifier.auc",
        "classifier.sensitivity",
        "classifier.specificity",
        "attribution.pointing_game",
        "saliency.pointing_game",
        "form_only.pointing_game",
        "attribution.pxap",
        "saliency.pxap",
        "form_only.pxap",
        "attribution.ncc",
        "saliency.ncc",
        "form_only.ncc",
        "attribution.counterfactual_drop",
    ] {
        show(key);
    }

    // Explain the first malignant image of the held-out test split, whole: an image no model saw. The
    // index names images by their pseudonymised paths: each phantom image's is recomputed to match.
    let manifest: mammo_io::layouts::PhantomManifest =
        serde_json::from_slice(&std::fs::read(phantom_dir.join(mammo_io::layouts::PHANTOM_MANIFEST))?)?;
    let (_, rows) = mammo_prep::PatchStore::read_index(&dataset_dir)?;
    let test: std::collections::BTreeSet<&str> =
        rows.iter().filter(|r| r.split == Split::Test).map(|r| r.source.as_str()).collect();
    let malignant =
        |c: &&mammo_io::layouts::PhantomCase| c.lesions.iter().any(|l| l.label == mammo_io::layouts::Label::Malignant);
    let case = manifest
        .cases
        .iter()
        .filter(malignant)
        .find(|c| test.contains(namer.path(&phantom_dir, &phantom_dir.join(&c.image)).as_str()))
        .or_else(|| manifest.cases.iter().find(malignant))
        .or(manifest.cases.first())
        .expect("the phantom has cases");
    let explain_dir = args.out.join("explain");
    let r = explain::explain(&run_dir, &phantom_dir.join(&case.image), &explain_dir, None, 0.5, &args.device)?;
    let top = match r.regions.first() {
        Some(g) => format!("top region at ({}, {}), {}x{} px, P(malignant) {:.3}", g.x, g.y, g.w, g.h, g.score),
        None => "no region".to_string(),
    };
    println!("5/5 explain {} (a test-split image): image score {:.3}, {top}", case.image, r.score);
    println!("  overlay: {}", explain_dir.join("overlay.png").display());

    let marker =
        serde_json::json!({ "cases": args.cases, "seed": args.seed, "dataset_content_hash": info.content_hash });
    mammo_io::atomic::write_bytes(&args.out.join(MARKER), serde_json::to_string_pretty(&marker)?.as_bytes())?;
    println!(
        "report: {}  ({:.0} s)",
        run_dir.join(mammo_track::RunDir::EVAL).join("report.html").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates `out`, or empties it when it is an earlier quickstart's; refuses any other non-empty directory.
fn claim(out: &Path) -> Result<()> {
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
