use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use mammo_nn::{ModelInfo, Models};
use mammo_prep::PreparedImage;
use mammo_prep::tiling::{self, Stitcher};
use serde::Serialize;

/// Spacing assumed for files that carry none (digitised film often has none): a typical full-field
/// digital mammography detector pitch.
pub const DEFAULT_SPACING_MM: f64 = 0.1;

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

/// `result.json`: image geometry, the case score and the top regions in the original image's pixels.
/// It holds nothing from the file's header but its size and spacing.
#[derive(Serialize)]
pub struct ExplainResult {
    pub width: usize,
    pub height: usize,
    pub spacing_mm: f64,
    pub spacing_source: String,
    /// The highest tile P(malignant) in the breast.
    pub score: f64,
    pub tiles: usize,
    pub regions: Vec<RegionOut>,
}

#[derive(Serialize)]
pub struct RegionOut {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub score: f64,
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
    let (spacing_mm, spacing_source) = match (m.info.spacing_mm, spacing) {
        (Some((r, c)), _) => ((r + c) / 2.0, m.info.spacing_source.clone().unwrap_or_default()),
        (None, Some(s)) => (s, "--spacing".to_string()),
        (None, None) => {
            tracing::warn!(
                "{}: no pixel spacing in the file; assuming {DEFAULT_SPACING_MM} mm (pass --spacing MM)",
                image.display()
            );
            (DEFAULT_SPACING_MM, "default".to_string())
        }
    };
    let info = ModelInfo::read(run)?;
    let (dev, _) = mammo_nn::select_device(device, 0)?;
    let models = Models::load_on(run, &dev)?;
    let size = models.patch_size();
    let prepared = PreparedImage::new(&m, spacing_mm, info.spacing_mm);
    let (w, h) = (prepared.image.width, prepared.image.height);

    let step = ((size as f64 * stride).round() as usize).max(1);
    let tiles = tiling::breast_tiles(&prepared.breast, size, step, 0.25);
    if tiles.is_empty() {
        bail!("{}: no breast tissue found to explain", image.display());
    }
    let batch: Vec<f32> = tiles.iter().flat_map(|&t| tiling::cut(&prepared.image, t, size)).collect();
    let scores = models.predict(&batch, tiles.len())?;
    let maps = if models.has_attribution() { Some(models.attribution_maps(&batch)?) } else { None };

    // The highlight: |m| weighted by its tile's P(malignant), so tissue the classifier finds benign is
    // not lit up by whatever small change the generator makes there.
    let s2 = size * size;
    let mut highlight = Stitcher::new(w, h, size);
    for (k, &t) in tiles.iter().enumerate() {
        match &maps {
            Some(maps) => {
                let v: Vec<f32> = maps[k * s2..(k + 1) * s2].iter().map(|x| x.abs() * scores[k]).collect();
                highlight.add(t, &v);
            }
            None => highlight.add_constant(t, scores[k]),
        }
    }
    let mut highlight = highlight.finish();
    for (v, b) in highlight.data.iter_mut().zip(&prepared.breast.data) {
        if *b == 0 {
            *v = 0.0;
        }
    }
    let heat = prepared.map_to_source(&highlight);

    let regions = tiling::top_regions(&tiles, &scores, size, 5, 0.25)
        .into_iter()
        .map(|r| {
            let [x, y, w, h] = prepared.box_to_source(r.tile.x, r.tile.y, size as i64, size as i64);
            RegionOut { x, y, w, h, score: r.score as f64 }
        })
        .collect();
    let result = ExplainResult {
        width: m.width,
        height: m.height,
        spacing_mm,
        spacing_source,
        score: scores.iter().cloned().fold(0.0f32, f32::max) as f64,
        tiles: tiles.len(),
        regions,
    };

    std::fs::create_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
    // The original as a viewer would show it (VOI LUT, MONOCHROME1 inverted), at its own size.
    let base = m.to_display_u8(0).map(|v| v as f32 / 255.0);
    let hi = heat.data.iter().cloned().fold(1e-6f32, f32::max);
    mammo_io::atomic::write_bytes(
        &out.join("overlay.png"),
        &mammo_eval::heat_overlay_png(&base.data, &heat.data, m.width, m.height),
    )?;
    mammo_io::atomic::write_bytes(
        &out.join("heatmap.png"),
        &mammo_eval::colormap_png(&heat.data, m.width, m.height, 0.0, hi),
    )?;
    mammo_io::atomic::write_bytes(&out.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(result)
}
