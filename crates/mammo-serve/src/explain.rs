//! Whole-mammogram inference, shared by `mammogan explain` and the HTTP server: segment, orient, resample,
//! slide the classifier and the map generator over the breast, stitch, and map everything back to the
//! original image's pixels.

use mammo_io::Mammogram;
use mammo_nn::Models;
use mammo_prep::PreparedImage;
use mammo_prep::tiling::{self, Stitcher};
use serde::Serialize;

/// Spacing assumed for files that carry none (digitised film often has none): a typical full-field
/// digital mammography detector pitch.
pub const DEFAULT_SPACING_MM: f64 = 0.1;

/// What can go wrong explaining an image: the input's fault (HTTP 400) or ours (HTTP 500).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The image cannot be explained as given (no breast tissue, a bad parameter).
    #[error("{0}")]
    Input(String),
    /// The models failed.
    #[error(transparent)]
    Model(#[from] mammo_nn::NnError),
}

/// `result.json` (and the JSON of `POST /invocations`): image geometry, the case score and the top
/// regions in the original image's pixels. It holds nothing from the file's header but its size and
/// spacing.
#[derive(Clone, Debug, Serialize)]
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

/// A top region: a tile's box in original pixels and its P(malignant).
#[derive(Clone, Debug, Serialize)]
pub struct RegionOut {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub score: f64,
}

/// The result plus the highlight map and the displayed image, both at the original size.
pub struct Explanation {
    pub result: ExplainResult,
    /// The highlight (|m| weighted by the tile's P(malignant)), row-major, `width * height`.
    pub heat: Vec<f32>,
    /// The original as a viewer shows it (VOI LUT, MONOCHROME1 inverted), in [0, 1].
    pub display: Vec<f32>,
}

impl Explanation {
    /// The top of the heatmap's colour scale: the largest highlight value (at least 1e-6).
    pub fn heat_max(&self) -> f32 {
        self.heat.iter().cloned().fold(1e-6f32, f32::max)
    }

    /// `heatmap.png`: the highlight through the colour map, from 0 to [`Explanation::heat_max`].
    pub fn heatmap_png(&self) -> Vec<u8> {
        mammo_eval::colormap_png(&self.heat, self.result.width, self.result.height, 0.0, self.heat_max())
    }

    /// `overlay.png`: the highlight over the displayed mammogram.
    pub fn overlay_png(&self) -> Vec<u8> {
        mammo_eval::heat_overlay_png(&self.display, &self.heat, self.result.width, self.result.height)
    }
}

/// Explains one whole mammogram. `spacing` is used when the file carries no pixel spacing (else
/// [`DEFAULT_SPACING_MM`], with a warning naming `source`); `stride` is the tile stride as a fraction of
/// the patch size.
pub fn explain_image(
    models: &Models,
    m: &Mammogram,
    source: &str,
    spacing: Option<f64>,
    stride: f64,
) -> Result<Explanation, ExplainError> {
    if !(stride > 0.0 && stride <= 1.0) {
        return Err(ExplainError::Input(format!("stride {stride}: must be in (0, 1]")));
    }
    if let Some(s) = spacing
        && !(s.is_finite() && s > 0.0)
    {
        return Err(ExplainError::Input(format!("spacing {s}: must be a positive number of mm")));
    }
    let (spacing_mm, spacing_source) = match (m.info.spacing_mm, spacing) {
        (Some((r, c)), _) => ((r + c) / 2.0, m.info.spacing_source.clone().unwrap_or_default()),
        (None, Some(s)) => (s, "--spacing".to_string()),
        (None, None) => {
            tracing::warn!("{source}: no pixel spacing in the file; assuming {DEFAULT_SPACING_MM} mm");
            (DEFAULT_SPACING_MM, "default".to_string())
        }
    };
    let size = models.patch_size();
    let prepared = PreparedImage::new(m, spacing_mm, models.info.spacing_mm);
    let (w, h) = (prepared.image.width, prepared.image.height);

    let step = ((size as f64 * stride).round() as usize).max(1);
    let tiles = tiling::breast_tiles(&prepared.breast, size, step, 0.25);
    if tiles.is_empty() {
        return Err(ExplainError::Input(format!("{source}: no breast tissue found to explain")));
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
    let display = m.to_display_u8(0).data.iter().map(|&v| v as f32 / 255.0).collect();
    Ok(Explanation { result, heat: heat.data, display })
}
