//! Evaluation for mammogan: classifier metrics, attribution-map metrics, the `metrics.json` records and
//! the self-contained HTML report.
//!
//! Everything here is a pure function of numbers and rasters: this crate knows nothing about the model
//! or the deep-learning framework, so the metrics can be tested against hand-computed values and
//! reused on any map (the attribution GAN's |m| and the saliency baseline go through the same code).
//!
//! Where to look:
//! - [`classifier`]: ROC AUC (rank formula), its bootstrap CI, the ROC curve, Youden's threshold,
//!   sensitivity/specificity.
//! - [`maps`]: PxAP (pooled, exact), NCC, pointing game, energy in mask, counterfactual drop, and the
//!   accumulator that aggregates them over a split.
//! - [`metrics`]: the serde records and their flat `classifier.*` / `attribution.*` / `saliency.*` form.
//! - [`whole_image`]: what explain gives for whole mammograms, scored: FROC of mass detection, breast
//!   scores, where the whole-image highlight map puts its weight.
//! - [`images`]: in-memory PNGs for the gallery (grey, inferno, heat overlay) and explain's whole-image
//!   highlight overlay; [`annotate`] draws its boxes and text (a built-in 5×7 bitmap font).
//! - [`report`]: the HTML page; `charts` draws its inline SVG and `html` escapes its text.

pub mod annotate;
pub mod classifier;
pub mod images;
pub mod maps;
pub mod metrics;
pub mod report;
pub mod whole_image;

mod charts;
mod html;

pub use classifier::{
    DEFAULT_BOOTSTRAP_REPLICATES, FALLBACK_THRESHOLD, bootstrap_auc_ci, choose_threshold, roc_auc, roc_curve,
    sensitivity_specificity,
};
pub use html::{escape as escape_html, png_data_uri};
pub use images::{ScoredBox, colormap_png, gray_png, heat_overlay_png, highlight_overlay_png, inferno};
pub use maps::{
    MapMetricsAccumulator, PxapAccumulator, average_precision, counterfactual_drop, energy_in_mask, ncc, pointing_game,
    pxap,
};
pub use metrics::{ClassifierMetrics, MapMetrics, flatten_metrics};
pub use report::{
    Chart, GalleryRow, GallerySection, Report, STANDARD_COLUMNS, Series, WholeImageReport, render_report,
};
pub use whole_image::{
    FROC_FP_RATES, ImageMapAccumulator, ImageMapMetrics, ScoredRegion, WholeImageMetrics, box_overlaps_mask,
    breast_scores, froc, sensitivity_at,
};
