//! `mammogan explain`: one whole mammogram into `--out`, or several (files and directories, searched
//! recursively) with one model load, a folder each and `scores.csv`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use mammo_app::explain;

#[derive(clap::Args)]
pub struct Args {
    /// A RUN directory with trained models.
    run: PathBuf,
    /// Whole mammograms (DICOM, PGM or PNG), or directories searched recursively for .dcm, .dicom,
    /// .png and .pgm files and DICOM files without an extension, or CSV files (`*.csv`) with a `path`
    /// column (relative to the CSV, as prepare's csv layout has it). One image file: its results go
    /// straight into --out. Otherwise: a folder per image (named after the file) and scores.csv.
    #[arg(required = true)]
    image: Vec<PathBuf>,
    /// Output directory (created; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Pixel spacing in mm for images that carry none (default 0.1, with a warning).
    #[arg(long)]
    spacing: Option<f64>,
    /// Tile stride as a fraction of the patch size.
    #[arg(long, default_value_t = 0.5)]
    stride: f64,
    /// auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Explain only shard I of N of the images (counted from 0; every N-th image of the sorted list,
    /// from the I-th), writing OUT/scores.I-of-N.csv; `mammogan scores merge` joins the N files into
    /// the scores.csv of the unsharded run. Shards may share OUT: the image folders do not collide.
    #[arg(long, value_parser = mammo_prep::ShardSpec::parse)]
    shard: Option<mammo_prep::ShardSpec>,
}

pub fn run(args: Args) -> Result<()> {
    if let [image] = args.image.as_slice()
        && !image.is_dir()
        && !explain::is_csv(image)
        && args.shard.is_none()
    {
        let r = explain::image(&args.run, image, &args.out, args.spacing, args.stride, &args.device)?;
        println!(
            "score {:.4} over {} tiles; {} regions; wrote {}",
            r.score,
            r.tiles,
            r.regions.len(),
            args.out.display()
        );
        return Ok(());
    }
    let request = explain::ManyRequest {
        run: args.run,
        images: args.image,
        out: args.out,
        spacing: args.spacing,
        stride: args.stride,
        device: args.device,
        shard: args.shard,
    };
    let done = explain::run_many(&request, &mut |e| {
        println!(
            "{}: score {:.4} over {} tiles; {} regions; wrote {}",
            e.label,
            e.result.score,
            e.result.tiles,
            e.result.regions.len(),
            e.dir.display()
        )
    })?;
    println!("{} of {} images explained; wrote {}", done.total - done.failed, done.total, done.scores.display());
    if done.failed > 0 {
        bail!("{} of {} images could not be explained (see the warnings above)", done.failed, done.total);
    }
    Ok(())
}
