//! The evaluation report: one self-contained HTML page (inline CSS and SVG, images as data URIs, no
//! JavaScript, no external requests).
//!
//! The page shows only what the [`Report`] holds. It adds no host name, user, path, clock time or
//! version of its own, so two renders of the same report are byte-identical and a report can be shared
//! without leaking where or when it was made. A Content-Security-Policy in the page forbids fetching
//! anything, so even a future edit that slips in an external URL would not phone home.

use std::fmt::Write;

use crate::charts::{froc_chart, line_chart, roc_chart, series_color};
use crate::html::{escape, fmt3, png_data_uri};
use crate::metrics::{ClassifierMetrics, MapMetrics};
use crate::whole_image::{ImageMapMetrics, WholeImageMetrics};

/// One named training curve: `(step, value)` points, e.g. `classifier/loss`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// The metric's name, shown in the legend.
    pub name: String,
    /// `(training step, value)`; need not be sorted. Non-finite values break the line.
    pub points: Vec<(u64, f64)>,
}

/// One line chart: several series that share an axis (a metric family, e.g. the GAN's critic, generator
/// and L1 losses).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    /// The chart's heading.
    pub title: String,
    /// The curves, drawn in this order with the palette's colours.
    pub series: Vec<Series>,
}

impl Chart {
    /// Groups series into one chart per family, the family being the name up to its last `/` or `.`
    /// (`classifier/loss` and `classifier/accuracy` share the chart `classifier`; a name without a
    /// separator is its own family). Charts and series keep the order in which they first appear.
    pub fn group_by_family(series: Vec<Series>) -> Vec<Chart> {
        let mut charts: Vec<Chart> = Vec::new();
        for s in series {
            let family = s.name.rfind(['/', '.']).map_or(s.name.as_str(), |i| &s.name[..i]).to_string();
            match charts.iter_mut().find(|c| c.title == family) {
                Some(chart) => chart.series.push(s),
                None => charts.push(Chart { title: family, series: vec![s] }),
            }
        }
        charts
    }
}

/// The column headings of the standard gallery: the input, the map, the counterfactual and the overlay.
pub const STANDARD_COLUMNS: [&str; 4] = ["input x", "map |m|", "x + m", "overlay"];

/// One gallery row: a patch's images side by side, with a caption.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GalleryRow {
    /// The patch's id in the DATASET.
    pub patch_id: String,
    /// P(malignant | x), if known.
    pub p_before: Option<f64>,
    /// P(malignant | x + m), if known.
    pub p_after: Option<f64>,
    /// NCC between this patch's map and its mask, if defined.
    pub ncc: Option<f64>,
    /// Any further caption text, shown as given (may be empty).
    pub note: String,
    /// Encoded PNG images, one per column of the section (see [`crate::gray_png`],
    /// [`crate::heat_overlay_png`]).
    pub images: Vec<Vec<u8>>,
}

/// A titled block of gallery rows, e.g. "Best" or "Worst".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GallerySection {
    /// The heading, e.g. `Best (highest NCC)`.
    pub title: String,
    /// A sentence under the heading (how the rows were chosen); may be empty.
    pub description: String,
    /// Column headings for the images, usually [`STANDARD_COLUMNS`].
    pub columns: Vec<String>,
    /// The rows, in display order.
    pub rows: Vec<GalleryRow>,
}

/// The whole-image part of the report: what explain gives on the split's whole mammograms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WholeImageReport {
    /// The headline figures.
    pub metrics: WholeImageMetrics,
    /// The image-level ROC curve from [`crate::roc_curve`].
    pub roc_curve: Vec<(f64, f64, f64)>,
    /// The FROC curve from [`crate::froc`].
    pub froc_curve: Vec<(f64, f64)>,
    /// Where each kind of whole-image map puts its weight, by the map's name.
    pub maps: Vec<(String, ImageMapMetrics)>,
}

/// Everything the report shows. Empty parts are left out of the page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The page title, e.g. the run's name.
    pub title: String,
    /// Key–value lines under the title (run id, dataset hash, date...), shown as given and in order.
    pub details: Vec<(String, String)>,
    /// The headline: whole mammograms, through the code explain and serve use.
    pub whole_image: Option<WholeImageReport>,
    /// Classifier metrics on the test split's patches.
    pub classifier: Option<ClassifierMetrics>,
    /// The test ROC curve from [`crate::roc_curve`].
    pub roc_curve: Vec<(f64, f64, f64)>,
    /// Metrics of the attribution GAN's maps.
    pub attribution: Option<MapMetrics>,
    /// Metrics of the saliency baseline's maps.
    pub saliency: Option<MapMetrics>,
    /// Metrics of the map the generator's form alone gives (a deletion map with its gate on
    /// everywhere), when it has such a form.
    pub form_only: Option<MapMetrics>,
    /// Training curves, one chart per metric family.
    pub charts: Vec<Chart>,
    /// Gallery sections, e.g. best and worst patches.
    pub gallery: Vec<GallerySection>,
}

/// The page's style sheet: system fonts, a readable width, thumbnails drawn with hard pixel edges (a
/// 64 px patch blurred by upscaling would hide exactly the fine spicules the maps are about).
const STYLE: &str = "
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1d1d1f; margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin: 20px 0 6px; }
nav a { margin-right: 14px; color: #0b5cad; text-decoration: none; }
table { border-collapse: collapse; }
th, td { padding: 4px 12px; text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.details th { font-weight: 600; color: #555; }
.row { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; }
figure { margin: 0; }
figcaption { font-size: 13px; color: #444; max-width: 540px; }
figure.roc figcaption { max-width: 380px; }
svg { max-width: 100%; height: auto; font-size: 11px; }
svg .tick { fill: #555; }
svg .label { fill: #333; font-size: 12px; }
ul.legend { list-style: none; padding: 0; margin: 4px 0 0; font-size: 13px; }
ul.legend li { display: inline-block; margin-right: 16px; }
ul.legend span { display: inline-block; width: 18px; height: 3px; margin: 0 6px 3px 0; vertical-align: middle; }
table.gallery td { border-bottom: 1px solid #eee; padding: 6px 8px; }
table.gallery img { width: 144px; height: auto; image-rendering: pixelated; display: block; border: 1px solid #ccc; }
td.caption { font-size: 13px; min-width: 170px; max-width: 240px; overflow-wrap: anywhere; }
p.note { color: #555; font-size: 13px; margin: 0 0 8px; }
";

/// Renders the report as one self-contained HTML document (write it to `eval/report.html`).
///
/// Deterministic: the same report gives the same bytes. All text from the report is escaped.
pub fn render_report(report: &Report) -> String {
    let mut body = String::new();
    let mut nav = Vec::new();
    let title = escape(&report.title);
    let _ = writeln!(body, "<h1>{title}</h1>");
    if !report.details.is_empty() {
        body.push_str("<table class=\"details\">\n");
        for (k, v) in &report.details {
            let _ = writeln!(body, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
        }
        body.push_str("</table>\n");
    }
    if let Some(w) = &report.whole_image {
        nav.push(("whole", "Whole mammograms"));
        whole_image_section(&mut body, w);
    }
    if report.classifier.is_some() || !report.roc_curve.is_empty() {
        nav.push(("classifier", "Classifier (patches)"));
        classifier_section(&mut body, report);
    }
    if report.attribution.is_some() || report.saliency.is_some() {
        nav.push(("maps", "Maps"));
        maps_section(&mut body, report.attribution.as_ref(), report.saliency.as_ref(), report.form_only.as_ref());
    }
    if !report.charts.is_empty() {
        nav.push(("training", "Training curves"));
        charts_section(&mut body, &report.charts);
    }
    if !report.gallery.is_empty() {
        nav.push(("gallery", "Gallery"));
        gallery_section(&mut body, &report.gallery);
    }
    let nav: String = nav.iter().map(|(id, label)| format!("<a href=\"#{id}\">{label}</a>")).collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<nav>{nav}</nav>\n{body}</main>\n</body>\n</html>\n"
    )
}

/// The headline section: image and breast AUC, the image ROC, the FROC of malignant-mass detection and
/// the whole-image map metrics.
fn whole_image_section(out: &mut String, w: &WholeImageReport) {
    let m = &w.metrics;
    out.push_str("<section id=\"whole\">\n<h2>Whole mammograms</h2>\n");
    out.push_str(
        "<p class=\"note\">What a user of <code>explain</code> and <code>serve</code> gets: each whole image of the \
         split tiled, scored and mapped by the same code. The image score is the most suspicious tile's \
         P(malignant); a region hits a malignant mass when its box overlaps the mass's mask, and every other \
         region is a false positive (one on a benign mass included).</p>\n<div class=\"row\">\n",
    );
    if !w.roc_curve.is_empty() {
        let _ = writeln!(
            out,
            "<figure class=\"roc\">{}<figcaption>Image-level ROC: {} malignant of {} images. AUC {} \
             (95% bootstrap CI {}–{}). Dashed: chance.</figcaption></figure>",
            roc_chart(&w.roc_curve, None),
            m.n_malignant,
            m.n_images,
            fmt3(m.image_auc),
            fmt3(m.image_auc_ci95[0]),
            fmt3(m.image_auc_ci95[1])
        );
    }
    if !w.froc_curve.is_empty() {
        let x_max = m.froc.iter().map(|p| p.0).fold(1.0, f64::max) * 1.5;
        let _ = writeln!(
            out,
            "<figure class=\"roc\">{}<figcaption>FROC: sensitivity for the {} malignant masses against false \
             positives per image; dots at the reported rates.</figcaption></figure>",
            froc_chart(&w.froc_curve, x_max, &m.froc),
            m.n_masses
        );
    }
    out.push_str("<table>\n<tr><th>metric</th><th class=\"num\">value</th></tr>\n");
    let mut rows = vec![
        ("image.auc", "Image AUC (malignant vs rest)".to_string(), fmt3(m.image_auc)),
        (
            "image.auc_ci95",
            "95% CI (bootstrap)".to_string(),
            format!("{} – {}", fmt3(m.image_auc_ci95[0]), fmt3(m.image_auc_ci95[1])),
        ),
        ("breast.auc", "Breast AUC (most suspicious view)".to_string(), fmt3(m.breast_auc)),
        (
            "image.n",
            "Images (malignant / normal)".to_string(),
            format!("{} ({} / {})", m.n_images, m.n_malignant, m.n_normal),
        ),
        ("breast.n", "Breasts".to_string(), m.n_breasts.to_string()),
    ];
    for &(fp, s) in &m.froc {
        rows.push(("detection.froc", format!("Sensitivity at {fp} FP/image"), fmt3(s)));
    }
    for (key, label, value) in rows {
        let _ = writeln!(out, "<tr><td title=\"{key}\">{}</td><td class=\"num\">{value}</td></tr>", escape(&label));
    }
    out.push_str("</table>\n</div>\n");
    if !w.maps.is_empty() {
        out.push_str(
            "<h3>Where the highlight goes on whole images</h3>\n<p class=\"note\">Each map is stitched from its \
             tiles, each weighted by the tile's P(malignant)^4, as explain draws it. Pointing: the whole image's \
             maximum lies on a malignant mass. Energy in lesion: the map's mass inside the malignant masses over \
             its mass in the breast. Normal / malignant mass: the map's total on normal images over that on \
             malignant ones (lower is better).</p>\n<table>\n<tr><th>metric</th>",
        );
        let columns: Vec<(&str, &ImageMapMetrics)> = w.maps.iter().map(|(n, m)| (n.as_str(), m)).collect();
        let rows: [MetricRow<ImageMapMetrics>; 5] = [
            ("pointing_game", "Pointing game (malignant images)", |m| fmt3(m.pointing_game)),
            ("energy_in_lesion", "Energy in lesion (mean share)", |m| fmt3(m.energy_in_lesion)),
            ("ncc", "NCC with the feature mask", |m| fmt3(m.ncc)),
            ("normal_to_malignant_mass", "Normal / malignant map mass", |m| fmt3(m.normal_to_malignant_mass)),
            ("n_malignant", "Malignant images (n)", |m| m.n_malignant.to_string()),
        ];
        metrics_by_column(out, "image_*", &columns, &rows);
    }
    out.push_str("</section>\n");
}

/// The ROC curve with its caption, beside the classifier metrics table.
fn classifier_section(out: &mut String, report: &Report) {
    out.push_str("<section id=\"classifier\">\n<h2>Classifier (patches)</h2>\n<div class=\"row\">\n");
    let c = report.classifier.as_ref();
    if !report.roc_curve.is_empty() {
        // The operating point is (1 − specificity, sensitivity) at the chosen threshold: the same numbers
        // as the table, so the dot and the table cannot disagree.
        let operating_point = c.map(|c| (1.0 - c.specificity, c.sensitivity));
        let _ = write!(out, "<figure class=\"roc\">{}<figcaption>", roc_chart(&report.roc_curve, operating_point));
        match c {
            Some(c) => {
                let _ = write!(
                    out,
                    "ROC curve on the test split ({} malignant, {} benign). AUC {} (95% bootstrap CI {}–{}). \
                     The dot is the operating point at threshold {}: sensitivity {}, specificity {}.",
                    c.n_pos,
                    c.n_neg,
                    fmt3(c.auc),
                    fmt3(c.auc_ci95[0]),
                    fmt3(c.auc_ci95[1]),
                    fmt3(c.threshold),
                    fmt3(c.sensitivity),
                    fmt3(c.specificity)
                );
            }
            None => out.push_str("ROC curve on the test split."),
        }
        out.push_str(" Dashed: chance.</figcaption></figure>\n");
    }
    if let Some(c) = c {
        out.push_str("<table>\n<tr><th>metric</th><th class=\"num\">value</th></tr>\n");
        let rows = [
            ("classifier.auc", "ROC AUC", fmt3(c.auc)),
            ("classifier.auc_ci95", "95% CI (bootstrap)", format!("{} – {}", fmt3(c.auc_ci95[0]), fmt3(c.auc_ci95[1]))),
            ("classifier.sensitivity", "Sensitivity", fmt3(c.sensitivity)),
            ("classifier.specificity", "Specificity", fmt3(c.specificity)),
            ("classifier.threshold", "Threshold", fmt3(c.threshold)),
            ("classifier.n_pos", "Malignant (n)", c.n_pos.to_string()),
            ("classifier.n_neg", "Benign (n)", c.n_neg.to_string()),
        ];
        for (key, label, value) in rows {
            let _ = writeln!(out, "<tr><td title=\"{key}\">{label}</td><td class=\"num\">{value}</td></tr>");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// The map metrics, attribution and its baselines side by side.
fn maps_section(
    out: &mut String,
    attribution: Option<&MapMetrics>,
    saliency: Option<&MapMetrics>,
    form_only: Option<&MapMetrics>,
) {
    let columns: Vec<(&str, &MapMetrics)> = [
        ("Attribution |m|", attribution),
        ("Saliency baseline", saliency),
        ("Map form only (untrained gate)", form_only),
    ]
    .into_iter()
    .filter_map(|(n, m)| Some((n, m?)))
    .collect();
    out.push_str("<section id=\"maps\">\n<h2>Attribution maps</h2>\n");
    out.push_str(
        "<p class=\"note\">Agreement of each kind of map with the ground-truth mask on the test patches. \
         PxAP is computed inside the breast only, over all patches pooled. \"Map form only\" is the \
         deletion map with its gate on everywhere: what the attribution map gets before any training.</p>\n<table>\n<tr><th>metric</th>",
    );
    let rows: [MetricRow<MapMetrics>; 6] = [
        ("pxap", "PxAP (pixel average precision)", |m| fmt3(m.pxap)),
        ("ncc", "NCC (map vs. mask, mean)", |m| fmt3(m.ncc)),
        ("pointing_game", "Pointing game (hit rate)", |m| fmt3(m.pointing_game)),
        ("energy_in_mask", "Energy in mask (mean share)", |m| fmt3(m.energy_in_mask)),
        ("counterfactual_drop", "Counterfactual drop of P(malignant)", |m| fmt3(m.counterfactual_drop)),
        ("n", "Patches (n)", |m| m.n.to_string()),
    ];
    metrics_by_column(out, "*", &columns, &rows);
    out.push_str("</section>\n");
}

/// One row of [`metrics_by_column`]: the key, its label, and how to show a column's value.
type MetricRow<M> = (&'static str, &'static str, fn(&M) -> String);

/// The rest of a table whose `<table><tr><th>metric</th>` the caller opened: a heading per column (a
/// map's name, escaped), then one row per metric (`key` shown as `prefix.key` on hover), and `</table>`.
fn metrics_by_column<M>(out: &mut String, prefix: &str, columns: &[(&str, &M)], rows: &[MetricRow<M>]) {
    for (name, _) in columns {
        let _ = write!(out, "<th class=\"num\">{}</th>", escape(name));
    }
    out.push_str("</tr>\n");
    for (key, label, value) in rows {
        let _ = write!(out, "<tr><td title=\"{prefix}.{key}\">{label}</td>");
        for (_, m) in columns {
            let _ = write!(out, "<td class=\"num\">{}</td>", value(m));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The training curves, one figure per chart with an HTML legend (it wraps, unlike SVG text).
fn charts_section(out: &mut String, charts: &[Chart]) {
    out.push_str("<section id=\"training\">\n<h2>Training curves</h2>\n<div class=\"charts\">\n");
    for chart in charts {
        let _ = write!(out, "<figure><h3>{}</h3>{}<ul class=\"legend\">", escape(&chart.title), line_chart(chart));
        for (i, s) in chart.series.iter().enumerate() {
            let _ = write!(out, "<li><span style=\"background:{}\"></span>{}</li>", series_color(i), escape(&s.name));
        }
        out.push_str("</ul></figure>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// The gallery sections: a caption cell and one image cell per column for each row.
fn gallery_section(out: &mut String, sections: &[GallerySection]) {
    out.push_str("<section id=\"gallery\">\n<h2>Gallery</h2>\n");
    for section in sections {
        let _ = writeln!(out, "<h3>{}</h3>", escape(&section.title));
        if !section.description.is_empty() {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(&section.description));
        }
        out.push_str("<table class=\"gallery\">\n<tr><th>patch</th>");
        let n_columns = section.columns.len().max(section.rows.iter().map(|r| r.images.len()).max().unwrap_or(0));
        for k in 0..n_columns {
            let _ = write!(out, "<th>{}</th>", section.columns.get(k).map_or(String::new(), |c| escape(c)));
        }
        out.push_str("</tr>\n");
        for row in &section.rows {
            let _ = write!(out, "<tr><td class=\"caption\">{}</td>", caption(row));
            for k in 0..n_columns {
                match row.images.get(k) {
                    Some(png) => {
                        let column = section.columns.get(k).map_or("", String::as_str);
                        let alt = escape(&format!("{} {column}", row.patch_id));
                        let _ = write!(out, "<td><img src=\"{}\" alt=\"{alt}\"></td>", png_data_uri(png));
                    }
                    None => out.push_str("<td></td>"),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

/// A gallery row's caption: the patch id, then whichever of the probabilities, NCC and note are given.
fn caption(row: &GalleryRow) -> String {
    let mut lines = vec![format!("<b>{}</b>", escape(&row.patch_id))];
    match (row.p_before, row.p_after) {
        (Some(b), Some(a)) => lines.push(format!("P(malignant) {} → {}", fmt3(b), fmt3(a))),
        (Some(b), None) => lines.push(format!("P(malignant) {}", fmt3(b))),
        (None, Some(a)) => lines.push(format!("P(malignant | x + m) {}", fmt3(a))),
        (None, None) => {}
    }
    if let Some(r) = row.ncc {
        lines.push(format!("NCC {}", fmt3(r)));
    }
    if !row.note.is_empty() {
        lines.push(escape(&row.note));
    }
    lines.join("<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Report {
        Report {
            title: "<script>alert(1)</script>".into(),
            details: vec![("run & id".into(), "\"x\"".into())],
            charts: vec![Chart {
                title: "t".into(),
                series: vec![Series { name: "<i>".into(), points: vec![(0, 1.0)] }],
            }],
            gallery: vec![GallerySection {
                title: "Best <1>".into(),
                description: "a'b".into(),
                columns: STANDARD_COLUMNS.iter().map(|s| s.to_string()).collect(),
                rows: vec![GalleryRow {
                    patch_id: "p<1>".into(),
                    p_before: Some(0.9),
                    p_after: Some(0.1),
                    ncc: None,
                    note: "<b>".into(),
                    images: vec![vec![1, 2, 3]],
                }],
            }],
            whole_image: Some(WholeImageReport {
                metrics: WholeImageMetrics {
                    image_auc: 0.9,
                    froc: vec![(0.5, 0.75), (1.0, 0.875)],
                    n_images: 8,
                    n_malignant: 4,
                    n_masses: 4,
                    ..WholeImageMetrics::default()
                },
                roc_curve: vec![(0.0, 0.0, 1.0), (0.5, 1.0, 0.5), (1.0, 1.0, 0.0)],
                froc_curve: vec![(0.0, 0.0), (0.25, 0.75), (1.0, 0.875), (3.0, 1.0)],
                maps: vec![("<u>".into(), ImageMapMetrics { pointing_game: 0.75, ..ImageMapMetrics::default() })],
            }),
            ..Report::default()
        }
    }

    #[test]
    fn the_whole_image_section_leads_with_its_figures() {
        let html = render_report(&hostile());
        let whole = html.find("id=\"whole\"").expect("a whole-image section");
        assert!(whole < html.find("id=\"gallery\"").unwrap());
        assert!(html.contains("Sensitivity at 1 FP/image</td><td class=\"num\">0.875"));
        assert!(html.contains("aria-label=\"FROC curve\""));
        assert!(html.contains("<th class=\"num\">&lt;u&gt;</th>"));
    }

    #[test]
    fn all_text_is_escaped() {
        let html = render_report(&hostile());
        for raw in ["<script>", "<i>", "<u>", "p<1>", "Best <1>", "\"x\"", "run & id", "a'b"] {
            assert!(!html.contains(raw), "unescaped {raw:?}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("P(malignant) 0.900 → 0.100"));
        assert!(html.contains("data:image/png;base64,AQID"));
    }

    #[test]
    fn nothing_external_and_deterministic() {
        let report = hostile();
        let html = render_report(&report);
        assert_eq!(html, render_report(&report));
        // No URL of any kind (not even the SVG namespace; base64 has no ':'), no script.
        assert!(!html.contains("://"), "the page must not reference anything outside itself");
        assert!(!html.contains("<script") && !html.contains("src=\"/") && !html.contains("url("));
    }

    #[test]
    fn empty_parts_are_left_out() {
        let html = render_report(&Report { title: "only a title".into(), ..Report::default() });
        assert!(!html.contains("id=\"classifier\"") && !html.contains("id=\"gallery\"") && !html.contains("<svg"));
        let one_column = render_report(&Report {
            saliency: Some(MapMetrics {
                pxap: 0.3,
                ncc: f64::NAN,
                pointing_game: 0.5,
                energy_in_mask: 0.2,
                counterfactual_drop: f64::NAN,
                n: 4,
            }),
            ..Report::default()
        });
        assert!(one_column.contains("Saliency baseline") && !one_column.contains("Attribution |m|"));
        assert!(one_column.contains("—"), "undefined metrics show a dash");
    }

    #[test]
    fn grouping_by_family() {
        let s = |n: &str| Series { name: n.into(), points: vec![] };
        let charts = Chart::group_by_family(vec![
            s("classifier/loss"),
            s("gan/critic"),
            s("classifier/accuracy"),
            s("gan.l1"),
            s("lr"),
        ]);
        let titles: Vec<&str> = charts.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, ["classifier", "gan", "lr"]);
        assert_eq!(charts[0].series.len(), 2);
        assert_eq!(charts[1].series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["gan/critic", "gan.l1"]);
    }
}
