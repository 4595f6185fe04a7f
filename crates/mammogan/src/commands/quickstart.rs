//! `mammogan quickstart`: phantom, prepare, train, evaluate and explain in one directory.

use std::path::PathBuf;

use anyhow::Result;
use mammo_app::quickstart::{self, QuickstartRequest, Step};

use crate::commands::prepare;
use crate::progress::Progress;

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
    let request = QuickstartRequest {
        out: args.out,
        cases: args.cases,
        seed: args.seed,
        device: args.device,
        set: args.set,
        key_file: None,
    };
    quickstart::run(&request, progress, &mut print_step)
}

/// What each step prints as it ends.
fn print_step(step: Step<'_>) {
    match step {
        Step::Phantom { dir, cases } => {
            println!("1/5 phantom: {cases} synthetic DICOM mammograms with exact masks in {}", dir.display())
        }
        Step::Prepared { dir, info } => {
            println!("2/5 prepare:");
            print!("{}", prepare::summary(info, dir));
        }
        Step::Trained(trained) => {
            println!("3/5 train on {} ({} threads):", trained.device.backend, trained.device.threads);
            for (model, hash) in &trained.weights {
                println!("  {model:>11}: {} steps, weights blake3 {}", trained.steps[model], &hash[..16]);
            }
        }
        Step::Evaluated(metrics) => print_metrics(metrics),
        Step::Explained { image, dir, result: r } => {
            let top = match r.regions.first() {
                Some(g) => format!("top region at ({}, {}), {}x{} px, P(malignant) {:.3}", g.x, g.y, g.w, g.h, g.score),
                None => "no region".to_string(),
            };
            println!("5/5 explain {image} (a test-split image): image score {:.3}, {top}", r.score);
            println!("  overlay: {}", dir.join("overlay.png").display());
        }
        Step::Done { report, seconds } => println!("report: {}  ({seconds:.0} s)", report.display()),
    }
}

fn print_metrics(metrics: &mammo_app::evaluate::Metrics) {
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
}
