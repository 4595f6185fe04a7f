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
//! - [`images`]: in-memory PNGs for the gallery (grey, inferno, heat overlay).
//! - [`report`]: the HTML page; `charts` draws its inline SVG and `html` escapes its text.

pub mod classifier;
pub mod images;
pub mod maps;
pub mod metrics;
pub mod report;

mod charts;
mod html;

pub use classifier::{
    DEFAULT_BOOTSTRAP_REPLICATES, FALLBACK_THRESHOLD, bootstrap_auc_ci, choose_threshold, roc_auc, roc_curve,
    sensitivity_specificity,
};
pub use html::{escape as escape_html, png_data_uri};
pub use images::{colormap_png, gray_png, heat_overlay_png, inferno};
pub use maps::{
    MapMetricsAccumulator, PxapAccumulator, average_precision, counterfactual_drop, energy_in_mask, ncc, pointing_game,
    pxap,
};
pub use metrics::{ClassifierMetrics, MapMetrics, flatten_metrics};
pub use report::{Chart, GalleryRow, GallerySection, Report, STANDARD_COLUMNS, Series, render_report};
