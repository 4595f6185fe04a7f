//! Inline SVG charts for the report: line charts of training curves, the ROC curve and the FROC curve.
//!
//! The SVG is written by hand (no xmlns needed inside HTML5), with integer-ish coordinates and a fixed
//! palette, so the same data always gives the same bytes.

use std::fmt::Write;

use crate::html::{escape, fmt_tick};
use crate::report::{Chart, Series};

/// The Okabe–Ito palette without yellow (too pale on white) and black (kept for axes): distinguishable
/// with the common forms of colour blindness.
const PALETTE: [&str; 6] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];

/// The colour of the `i`-th series of a chart (cycling).
pub(crate) fn series_color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Series longer than this are thinned before drawing: beyond ~1,000 points a 500 px wide line gains
/// nothing but bytes.
const MAX_POINTS: usize = 1000;

/// Draws markers on series this short, where single points would otherwise be invisible.
const MARKER_POINTS: usize = 40;

/// A plot area inside an SVG: pixel box and data ranges.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }
    fn py(&self, y: f64) -> f64 {
        self.top + (1.0 - (y - self.y.0) / (self.y.1 - self.y.0)) * self.height
    }
    fn bottom(&self) -> f64 {
        self.top + self.height
    }
    fn right(&self) -> f64 {
        self.left + self.width
    }

    /// Grid lines, tick labels and the axis box.
    fn axes(&self, svg: &mut String, x_ticks: &[f64], x_step: f64, y_ticks: &[f64], y_step: f64) {
        for &t in y_ticks {
            let y = self.py(t);
            let _ = write!(
                svg,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
                self.left,
                self.right(),
                self.left - 6.0,
                y + 4.0,
                fmt_tick(t, y_step)
            );
        }
        for &t in x_ticks {
            let x = self.px(t);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e3e3e3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
                self.top,
                self.bottom(),
                self.bottom() + 16.0,
                fmt_tick(t, x_step)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
            self.left, self.top, self.width, self.height
        );
    }
}

/// Heckbert's "nice numbers": the closest of 1, 2, 5 × 10ᵏ to `x` (rounded, or at least `x`).
fn nice_number(x: f64, round: bool) -> f64 {
    let exp = x.log10().floor();
    let f = x / 10f64.powf(exp);
    let nf = if round {
        match f {
            f if f < 1.5 => 1.0,
            f if f < 3.0 => 2.0,
            f if f < 7.0 => 5.0,
            _ => 10.0,
        }
    } else {
        match f {
            f if f <= 1.0 => 1.0,
            f if f <= 2.0 => 2.0,
            f if f <= 5.0 => 5.0,
            _ => 10.0,
        }
    };
    nf * 10f64.powf(exp)
}

/// An axis range covering `[lo, hi]` that starts and ends on round ticks, about `target` of them.
/// Returns `(axis_lo, axis_hi, step, ticks)`. A degenerate range is widened so a flat line still gets an
/// axis.
fn nice_axis(lo: f64, hi: f64, target: usize) -> (f64, f64, f64, Vec<f64>) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else if lo == 0.0 {
        (-1.0, 1.0)
    } else {
        (lo - lo.abs() * 0.1, hi + hi.abs() * 0.1)
    };
    let step = nice_number(nice_number(hi - lo, false) / (target.max(2) - 1) as f64, true);
    let (axis_lo, axis_hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let count = ((axis_hi - axis_lo) / step).round() as usize;
    let ticks = (0..=count).map(|k| axis_lo + k as f64 * step).collect();
    (axis_lo, axis_hi, step, ticks)
}

/// The points of a series to draw, sorted by step, with long series thinned to the minimum and maximum
/// of each bucket (so spikes survive, unlike plain striding). Non-finite values are kept as NaN so the
/// line breaks there instead of jumping to a bogus value.
fn points_to_draw(series: &Series) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> =
        series.points.iter().map(|&(s, v)| (s as f64, if v.is_finite() { v } else { f64::NAN })).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    if points.len() <= MAX_POINTS {
        return points;
    }
    let bucket = points.len().div_ceil(MAX_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_POINTS);
    for chunk in points.chunks(bucket) {
        let finite = chunk.iter().enumerate().filter(|(_, p)| !p.1.is_nan());
        let lo = finite.clone().min_by(|a, b| a.1.1.total_cmp(&b.1.1));
        let hi = finite.max_by(|a, b| a.1.1.total_cmp(&b.1.1));
        match (lo, hi) {
            (Some((i, &a)), Some((j, _))) if i == j => out.push(a),
            (Some((i, &a)), Some((j, &b))) => {
                // Keep the two in step order so the line does not double back.
                if i < j {
                    out.extend([a, b]);
                } else {
                    out.extend([b, a]);
                }
            }
            _ => out.push((chunk[0].0, f64::NAN)),
        }
    }
    out
}

/// An SVG path through the points, broken (a new `M`) after every NaN value.
fn path_data(frame: &Frame, points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for &(x, y) in points {
        if y.is_nan() {
            pen_down = false;
            continue;
        }
        let _ = write!(d, "{}{:.1},{:.1}", if pen_down { "L" } else { "M" }, frame.px(x), frame.py(y));
        pen_down = true;
    }
    d
}

/// A line chart of the chart's series against training step, as an inline `<svg>` element.
pub(crate) fn line_chart(chart: &Chart) -> String {
    const W: f64 = 540.0;
    const H: f64 = 300.0;
    let drawn: Vec<Vec<(f64, f64)>> = chart.series.iter().map(points_to_draw).collect();
    let finite = || drawn.iter().flatten().filter(|p| p.1.is_finite());
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        escape(&chart.title)
    );
    if finite().next().is_none() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="tick">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let (x_lo, x_hi) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y_lo, y_hi) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1, x_step, x_ticks) = nice_axis(x_lo, x_hi, 6);
    let (y0, y1, y_step, y_ticks) = nice_axis(y_lo, y_hi, 6);
    let frame =
        Frame { left: 56.0, top: 10.0, width: W - 56.0 - 14.0, height: H - 10.0 - 40.0, x: (x0, x1), y: (y0, y1) };
    frame.axes(&mut svg, &x_ticks, x_step, &y_ticks, y_step);
    let _ =
        write!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="label">step</text>"#, frame.right(), H - 4.0);
    for (i, points) in drawn.iter().enumerate() {
        let color = series_color(i);
        let _ = write!(
            svg,
            r#"<path d="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"><title>{}</title></path>"#,
            path_data(&frame, points),
            escape(&chart.series[i].name)
        );
        let finite_count = points.iter().filter(|p| p.1.is_finite()).count();
        if finite_count <= MARKER_POINTS {
            for &(x, y) in points.iter().filter(|p| p.1.is_finite()) {
                let _ =
                    write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#, frame.px(x), frame.py(y));
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The ROC curve as an inline `<svg>`: the curve, the chance diagonal, and the operating point
/// `(fpr, tpr)` if given.
pub(crate) fn roc_chart(curve: &[(f64, f64, f64)], operating_point: Option<(f64, f64)>) -> String {
    const S: f64 = 380.0;
    let frame =
        Frame { left: 52.0, top: 12.0, width: S - 52.0 - 16.0, height: S - 12.0 - 52.0, x: (0.0, 1.0), y: (0.0, 1.0) };
    let ticks: Vec<f64> = (0..=5).map(|k| k as f64 * 0.2).collect();
    let mut svg = format!(r#"<svg viewBox="0 0 {S} {S}" width="{S}" height="{S}" role="img" aria-label="ROC curve">"#);
    frame.axes(&mut svg, &ticks, 0.2, &ticks, 0.2);
    let _ = write!(
        svg,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 4"/>"##,
        frame.px(0.0),
        frame.py(0.0),
        frame.px(1.0),
        frame.py(1.0)
    );
    let points: Vec<(f64, f64)> = curve.iter().map(|&(fpr, tpr, _)| (fpr, tpr)).collect();
    let _ = write!(
        svg,
        r#"<path d="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
        path_data(&frame, &points),
        series_color(0)
    );
    if let Some((fpr, tpr)) = operating_point.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}" stroke="#fff" stroke-width="1.5"><title>operating point</title></circle>"##,
            frame.px(fpr),
            frame.py(tpr),
            series_color(1)
        );
    }
    close_with_axis_labels(svg, &frame, "false positive rate (1 − specificity)", "true positive rate (sensitivity)")
}

/// The FROC curve of mass detection as an inline `<svg>`: sensitivity against false positives per image
/// (x from 0 to `x_max`), with dots at the reported rates `marks` (`(fp per image, sensitivity)`).
pub(crate) fn froc_chart(curve: &[(f64, f64)], x_max: f64, marks: &[(f64, f64)]) -> String {
    const S: f64 = 380.0;
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let frame = Frame {
        left: 52.0,
        top: 12.0,
        width: S - 52.0 - 16.0,
        height: S - 12.0 - 52.0,
        x: (0.0, x_max),
        y: (0.0, 1.0),
    };
    let (_, _, x_step, x_ticks) = nice_axis(0.0, x_max, 6);
    let y_ticks: Vec<f64> = (0..=5).map(|k| k as f64 * 0.2).collect();
    let mut svg = format!(r#"<svg viewBox="0 0 {S} {S}" width="{S}" height="{S}" role="img" aria-label="FROC curve">"#);
    frame.axes(&mut svg, &x_ticks, x_step, &y_ticks, 0.2);
    // A step curve: sensitivity holds until the next threshold adds false positives. Points beyond
    // the chart's right edge are cut there.
    let mut points: Vec<(f64, f64)> = Vec::new();
    for &(fp, s) in curve {
        if let Some(&(_, last)) = points.last() {
            points.push((fp.min(x_max), last));
        }
        if fp > x_max {
            break;
        }
        points.push((fp, s));
    }
    let _ = write!(
        svg,
        r#"<path d="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
        path_data(&frame, &points),
        series_color(0)
    );
    for &(fp, s) in marks.iter().filter(|m| m.0 <= x_max && m.1.is_finite()) {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}" stroke="#fff" stroke-width="1.5"><title>{} at {} FP/image</title></circle>"##,
            frame.px(fp),
            frame.py(s),
            series_color(1),
            fmt_tick(s, 0.001),
            fmt_tick(fp, 0.01)
        );
    }
    close_with_axis_labels(svg, &frame, "false positives per image", "sensitivity (malignant masses)")
}

/// Writes the x label under the plot and the y label, turned, left of it (both plain text, not
/// escaped), and closes the `<svg>`.
fn close_with_axis_labels(mut svg: String, frame: &Frame, x: &str, y: &str) -> String {
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="label">{x}</text>"#,
        frame.left + frame.width / 2.0,
        frame.bottom() + 36.0
    );
    let (cx, cy) = (14.0, frame.top + frame.height / 2.0);
    let _ = write!(
        svg,
        r#"<text x="{cx}" y="{cy:.1}" text-anchor="middle" transform="rotate(-90 {cx} {cy:.1})" class="label">{y}</text>"#
    );
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        let (lo, hi, step, ticks) = nice_axis(0.0, 2000.0, 6);
        assert_eq!((lo, hi, step), (0.0, 2000.0, 500.0));
        assert_eq!(ticks, [0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        // Range 0.575 → nice 1.0 → step 0.2 (the nearest nice number to 1.0 / 5).
        let (lo, hi, step, ticks) = nice_axis(0.137, 0.712, 6);
        assert_eq!((lo, step, ticks.len()), (0.0, 0.2, 5));
        assert!((hi - 0.8).abs() < 1e-12);
        // A flat series still gets an axis around it.
        let (lo, hi, _, _) = nice_axis(0.5, 0.5, 6);
        assert!(lo < 0.5 && hi > 0.5);
        let (lo, hi, _, _) = nice_axis(0.0, 0.0, 6);
        assert!(lo < 0.0 && hi > 0.0);
    }

    #[test]
    fn long_series_are_thinned_keeping_extremes() {
        let mut points: Vec<(u64, f64)> = (0..10_000).map(|s| (s, 1.0)).collect();
        points[5_000].1 = 50.0;
        let drawn = points_to_draw(&Series { name: "x".into(), points });
        assert!(drawn.len() <= MAX_POINTS);
        assert!(drawn.iter().any(|p| p.1 == 50.0), "the spike must survive thinning");
        assert!(drawn.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn nan_breaks_the_line() {
        let frame = Frame { left: 0.0, top: 0.0, width: 10.0, height: 10.0, x: (0.0, 1.0), y: (0.0, 1.0) };
        let d = path_data(&frame, &[(0.0, 0.0), (0.5, f64::NAN), (1.0, 1.0)]);
        assert_eq!(d, "M0.0,10.0M10.0,0.0");
    }

    #[test]
    fn series_names_are_escaped() {
        let chart = Chart {
            title: "<b>".into(),
            series: vec![Series { name: "a<b".into(), points: vec![(0, 1.0), (1, 2.0)] }],
        };
        let svg = line_chart(&chart);
        assert!(svg.contains("a&lt;b") && svg.contains("aria-label=\"&lt;b&gt;\"") && !svg.contains("a<b"));
        let empty = line_chart(&Chart { title: "t".into(), series: vec![] });
        assert!(empty.contains("no data"));
    }
}
