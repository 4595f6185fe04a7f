//! `mammogan evaluate`: a run measured on a DATASET (metrics.json, report.html).

use std::path::PathBuf;

use anyhow::{Context, Result};
use mammo_app::evaluate::EvaluateRequest;
use mammo_prep::split::Split;
use mammo_track::RunDir;

#[derive(clap::Args)]
pub struct Args {
    /// A RUN directory written by `mammogan train`.
    run: PathBuf,
    /// The DATASET to evaluate on (default: the one the run was trained on).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The input directory the DATASET was prepared from (its layout's root). With it, every whole
    /// image of the split is explained as `explain` does and scored: image and breast AUC, the FROC of
    /// malignant-mass detection, where the highlight goes (the headline figures). Each image is checked
    /// against the hash `dataset.json` recorded for it.
    #[arg(long)]
    images: Option<PathBuf>,
    /// The pseudonym key the DATASET was prepared with, to find its images under --images (default:
    /// $MAMMOGAN_KEY_FILE, else ~/.config/mammogan/pseudonym.key).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The split to report on (the threshold is always chosen on val).
    #[arg(long, default_value = "test")]
    split: String,
    /// auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let split = Split::parse(&args.split).with_context(|| format!("--split {}: train, val or test", args.split))?;
    let request = EvaluateRequest {
        run: args.run.clone(),
        data: args.data,
        images: args.images,
        key_file: args.key_file,
        split,
        device: args.device,
        seed: args.seed,
    };
    let metrics = mammo_app::evaluate::run(&request)?;
    mammo_app::tracking::after_evaluate(&args.run);
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    println!("report: {}", args.run.join(RunDir::EVAL).join("report.html").display());
    Ok(())
}
