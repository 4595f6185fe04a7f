//! `mammogan prepare`: a dataset layout turned into a patient-split DATASET.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mammo_io::layouts::Format;
use mammo_prep::PrepParams;

use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// The layout of the input: cbis-ddsm, mini-mias, inbreast, vindr, csv or phantom.
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// The dataset directory in that layout.
    #[arg(long)]
    input: PathBuf,
    /// The DATASET directory to create (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// The secret key of the patient and path pseudonyms (default: $MAMMOGAN_KEY_FILE, else
    /// ~/.config/mammogan/pseudonym.key); created on first use. Keep it outside every dataset: with it
    /// the dataset maps back to the input, without it nobody can recompute a pseudonym.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Write input paths in index.csv and dataset.json as they are (relative to --input) instead of
    /// pseudonymised, for de-identified data you need to trace back by eye; recorded in dataset.json.
    #[arg(long)]
    keep_paths: bool,
    /// Prepare only the patients of shard I of N (counted from 0, e.g. $SLURM_ARRAY_TASK_ID/4) into a
    /// SHARD directory at --out; `mammogan dataset merge` joins the N shards into the DATASET the
    /// unsharded prepare writes, byte for byte. A woman's images stay in one shard.
    #[arg(long, value_parser = mammo_prep::ShardSpec::parse)]
    shard: Option<mammo_prep::ShardSpec>,
    #[command(flatten)]
    params: PrepArgs,
}

/// Preprocessing parameters shared with `quickstart`.
#[derive(clap::Args, Clone)]
pub struct PrepArgs {
    /// Target pixel spacing in mm.
    #[arg(long, default_value_t = 0.4)]
    pub spacing: f64,
    /// Spacing assumed for images without one (a warning names each such file).
    #[arg(long, default_value_t = 0.1)]
    pub default_spacing: f64,
    /// Patch side in pixels.
    #[arg(long, default_value_t = 64)]
    pub patch_size: usize,
    /// Patches per lesion.
    #[arg(long, default_value_t = 4)]
    pub per_lesion: usize,
    /// Normal-tissue patches per image.
    #[arg(long, default_value_t = 4)]
    pub normal_per_image: usize,
    /// Seed for jitter, normal-patch positions and the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (0 = all cores); the output does not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl PrepArgs {
    pub fn to_params(&self) -> PrepParams {
        let mut p =
            PrepParams { spacing_mm: self.spacing, default_spacing_mm: self.default_spacing, ..Default::default() };
        p.patch.size = self.patch_size;
        p.patch.per_lesion = self.per_lesion;
        p.patch.normal_per_image = self.normal_per_image;
        p.seed = self.seed;
        p.threads = self.threads;
        p
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format '{s}' (one of: {})", names.join(", "))
    })
}

pub fn run(args: Args, progress: &Progress) -> Result<()> {
    let mut params = args.params.to_params();
    params.keep_paths = args.keep_paths;
    params.key = mammo_app::key::for_prepare(args.key_file.as_deref(), &args.input)?;
    let bar = progress.bar(0, "preparing");
    if let Some(spec) = args.shard {
        let done = mammo_prep::prepare_shard(args.format, &args.input, &args.out, &params, spec, &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .with_context(|| format!("prepare --format {} --shard {spec}", args.format.name()))?;
        bar.finish_and_clear();
        println!(
            "prepared shard {spec}: {} patches from {} of {} images into {}",
            done.patches,
            done.images,
            done.images_total,
            args.out.display()
        );
        return Ok(());
    }
    let info = mammo_prep::prepare(args.format, &args.input, &args.out, &params, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("prepare --format {}", args.format.name()))?;
    bar.finish_and_clear();
    print!("{}", summary(&info, &args.out));
    Ok(())
}

/// A short, human summary of a prepared dataset.
pub fn summary(info: &mammo_prep::DatasetInfo, out: &std::path::Path) -> String {
    let mut s = format!(
        "prepared {} patches ({} px at {} mm) from {} images into {}\n",
        info.patches,
        info.patch_size,
        info.spacing_mm,
        info.images,
        out.display()
    );
    for (split, labels) in &info.counts {
        let parts: Vec<String> = labels.iter().map(|(l, n)| format!("{n} {l}")).collect();
        s += &format!(
            "  {split:>5}: {} patients, {}\n",
            info.patients.get(split).copied().unwrap_or(0),
            parts.join(", ")
        );
    }
    s += &format!("  content hash {}\n", info.content_hash);
    s
}
