use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use mammo_nn::Models;
use mammo_serve::explain::{ExplainResult, explain_image};

#[derive(clap::Args)]
pub struct Args {
    /// A RUN directory with trained models.
    run: PathBuf,
    /// A whole mammogram: DICOM, PGM or PNG.
    image: PathBuf,
    /// Output directory (created; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Pixel spacing in mm for images that carry none (default 0.1, with a warning).
    #[arg(long)]
    spacing: Option<f64>,
    /// Tile stride as a fraction of the patch size.
    #[arg(long, default_value_t = 0.5)]
    stride: f64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(args: Args) -> Result<()> {
    let r = explain(&args.run, &args.image, &args.out, args.spacing, args.stride, &args.device)?;
    println!("score {:.4} over {} tiles; {} regions; wrote {}", r.score, r.tiles, r.regions.len(), args.out.display());
    Ok(())
}

pub fn explain(
    run: &Path,
    image: &Path,
    out: &Path,
    spacing: Option<f64>,
    stride: f64,
    device: &str,
) -> Result<ExplainResult> {
    if !(stride > 0.0 && stride <= 1.0) {
        bail!("--stride {stride}: must be in (0, 1]");
    }
    let m = mammo_io::read_image(image)?;
    let (dev, _) = mammo_nn::select_device(device, 0)?;
    let models = Models::load_on(run, &dev)?;
    let explained = explain_image(&models, &m, &image.display().to_string(), spacing, stride)?;

    std::fs::create_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
    mammo_io::atomic::write_bytes(&out.join("overlay.png"), &explained.overlay_png())?;
    mammo_io::atomic::write_bytes(&out.join("heatmap.png"), &explained.heatmap_png())?;
    let result = explained.result;
    mammo_io::atomic::write_bytes(&out.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(result)
}
