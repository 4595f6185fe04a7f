//! Small in-memory PNG makers for the report gallery: a grey-scale view of a raster, a colour-mapped
//! view, and a heat map blended over a patch; and the whole-image highlight overlay of `explain`, with
//! its boxes and scores drawn by [`crate::annotate`].
//!
//! Rasters are row-major `f32`, `w × h`. The PNG bytes go straight into the report as data URIs, so
//! nothing here touches the file system.
//!
//! The whole-image makers ([`highlight_overlay_png`], [`colormap_png`]) run on full-field mammograms of
//! 10-30 megapixels, so their per-pixel work is split over rows with rayon (every output pixel is
//! computed by the same operations whatever the thread count: the bytes do not change) and rounds
//! without a library call (see [`round_unit`]).

use rayon::prelude::*;

/// The "inferno" colour map (matplotlib) sampled at 17 evenly spaced points, as 8-bit sRGB.
///
/// Inferno is perceptually uniform and monotonic in lightness, so stronger attribution always reads as
/// brighter, also in grey-scale print and for colour-blind readers. Linear interpolation between these
/// 17 entries stays within 7/255 of the full 256-entry table.
const INFERNO: [[u8; 3]; 17] = [
    [0, 0, 4],
    [11, 7, 36],
    [33, 12, 74],
    [61, 9, 101],
    [87, 16, 110],
    [113, 25, 110],
    [138, 34, 106],
    [163, 44, 97],
    [188, 55, 84],
    [210, 70, 68],
    [228, 90, 49],
    [241, 115, 29],
    [249, 142, 9],
    [252, 172, 17],
    [249, 203, 53],
    [242, 234, 105],
    [252, 255, 164],
];

/// The inferno colour at `t` in [0, 1] (clamped; NaN maps to 0).
pub fn inferno(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (INFERNO.len() - 1) as f32;
    // x >= 0, so the truncating cast is the floor.
    let i = (x as usize).min(INFERNO.len() - 2);
    let f = x - i as f32;
    let (a, b) = (INFERNO[i], INFERNO[i + 1]);
    std::array::from_fn(|c| round_unit(f32::from(a[c]) + (f32::from(b[c]) - f32::from(a[c])) * f))
}

/// The `t` below which [`inferno`] gives its bottom colour, `inferno(0.0)`: there its first step moves
/// no channel by as much as half a level (0.49 of one, a margin for the rounding of the interpolation),
/// so every channel rounds back to the bottom colour's.
fn inferno_quiet() -> f32 {
    let steepest = (0..3).map(|c| (f32::from(INFERNO[1][c]) - f32::from(INFERNO[0][c])).abs()).fold(0.0, f32::max);
    0.49 / steepest / (INFERNO.len() - 1) as f32
}

/// `v.round() as u8` for `v` in [0, 255] (NaN gives 0, values above 255 give 255), halves away from
/// zero, without `roundf`: on x86-64 `f32::round` is a call into libm that the compiler can neither
/// inline nor vectorise, and it was a tenth of `explain`'s time on a 12-megapixel image. For
/// non-negative `v` below 2^23, `v - trunc(v)` is exact, so comparing it with 0.5 is exactly `round`.
fn round_unit(v: f32) -> u8 {
    let t = (v as u32).min(255); // truncates; NaN and negatives give 0
    (t + u32::from(v - t as f32 >= 0.5)).min(255) as u8
}

/// Maps `v` linearly from `[lo, hi]` to [0, 1], clamped. NaN and an empty range (`hi <= lo`) give 0, so
/// a constant raster renders black rather than failing.
fn unit(v: f32, lo: f32, hi: f32) -> f32 {
    if v.is_nan() || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return 0.0;
    }
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Rounds a value in [0, 1] to a byte.
fn byte(u: f32) -> u8 {
    round_unit(u * 255.0)
}

/// Asserts that a raster has `w × h` values.
fn check_size<T>(values: &[T], w: usize, h: usize, what: &str) {
    assert_eq!(values.len(), w * h, "{what} must have w × h = {w} × {h} values");
}

/// An 8-bit grey-scale PNG of `values`, with `lo` shown black and `hi` white (linear, clamped).
///
/// Pass the same `lo`/`hi` for x and x + m (e.g. 0 and 1 for normalised patches) so that the two can be
/// compared by eye. NaN renders black.
///
/// # Panics
/// If `values.len() != w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn gray_png(values: &[f32], w: usize, h: usize, lo: f32, hi: f32) -> Vec<u8> {
    check_size(values, w, h, "values");
    let pixels: Vec<u8> = values.iter().map(|&v| byte(unit(v, lo, hi))).collect();
    encode(w, h, ::png::ColorType::Grayscale, &pixels)
}

/// An RGB PNG of `values` through the inferno colour map, `lo` → black, `hi` → pale yellow.
///
/// Useful for the |m| column when absolute magnitude matters: pass the same `hi` for every row.
///
/// # Panics
/// If `values.len() != w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn colormap_png(values: &[f32], w: usize, h: usize, lo: f32, hi: f32) -> Vec<u8> {
    check_size(values, w, h, "values");
    // Most of a whole-image map is 0 or, P^4-weighted outside its hot spots, far below a colour level:
    // the bottom colour once, not interpolated per pixel (that was most of a 12-megapixel heatmap's
    // time).
    let (bottom, quiet) = (inferno(0.0), inferno_quiet());
    let mut pixels = vec![0u8; 3 * w * h];
    pixels.par_chunks_mut(3 * w).zip(values.par_chunks(w)).for_each(|(out, row)| {
        for (px, &v) in out.chunks_exact_mut(3).zip(row) {
            let t = unit(v, lo, hi);
            px.copy_from_slice(&if t < quiet { bottom } else { inferno(t) });
        }
    });
    encode(w, h, ::png::ColorType::Rgb, &pixels)
}

/// An RGB PNG of a heat map over a patch: `base` in grey (expected in [0, 1], the normalised patch;
/// clamped) with `heat` in inferno colours blended on top, each pixel's opacity proportional to its heat.
///
/// `heat` is scaled by its own maximum (pixels at the maximum get full colour at 85% opacity), so the
/// overlay shows *where* the map points within this patch; compare magnitudes across patches with
/// [`colormap_png`] instead. Zero heat leaves the patch untouched, so the anatomy stays readable. A map
/// that is all zero (or all NaN) yields the plain patch.
///
/// # Panics
/// If either raster's length is not `w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn heat_overlay_png(base: &[f32], heat: &[f32], w: usize, h: usize) -> Vec<u8> {
    /// The opacity at maximal heat: below 1 so the patch texture shows through even at the hot spot.
    const MAX_ALPHA: f32 = 0.85;
    check_size(base, w, h, "base");
    check_size(heat, w, h, "heat");
    let max = heat.iter().copied().filter(|v| !v.is_nan()).fold(0.0f32, f32::max);
    let pixels: Vec<u8> = base
        .iter()
        .zip(heat)
        .flat_map(|(&b, &v)| {
            let grey = unit(b, 0.0, 1.0);
            let t = unit(v, 0.0, max);
            let alpha = MAX_ALPHA * t;
            let color = inferno(t);
            color.map(|c| byte(grey * (1.0 - alpha) + f32::from(c) / 255.0 * alpha))
        })
        .collect();
    encode(w, h, ::png::ColorType::Rgb, &pixels)
}

/// A box to outline on [`highlight_overlay_png`], in pixels, with its score written beside it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredBox {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    /// Written as two decimals ("0.93").
    pub score: f64,
}

/// The outline and label colour of [`highlight_overlay_png`]: cyan, away from every inferno colour.
pub const BOX_COLOR: [u8; 3] = [0, 255, 255];

/// The radius of the display spread, the outline width and the font scale for a `w × h` image: all
/// grow with the image, so that they stay about as visible when the whole image is shown on a screen.
/// Returns (spread radius, line width, font scale), each at least 1.
pub fn display_scales(w: usize, h: usize) -> (usize, i64, i64) {
    let side = w.min(h) as f64;
    let at_least_1 = |v: f64| (v.round() as i64).max(1);
    (at_least_1(side / 150.0) as usize, at_least_1(side / 250.0), at_least_1(side / 250.0))
}

/// An RGB PNG of a whole-image highlight for a person: `base` in grey (the displayed image's bytes), `heat`
/// normalised by `max` (the value shown at full colour), spread for display, coloured with an opacity
/// that grows with the value, then the `boxes` outlined with their scores and `caption` (if any) in the
/// top-left corner.
///
/// The spread (a maximum filter then a box blur, both of radius [`display_scales`]'s first value; a
/// lone peak keeps its value and becomes a blob about 3% of the short side across) keeps thin or
/// point-like highlights visible when a large image is shown downscaled; it is for display only. Values
/// below 15% of `max` leave the mammogram untouched; the opacity then grows linearly to 85% at 75% of
/// `max` and above, and the colour runs from inferno's red to its pale yellow at `max`, so that weak,
/// diffuse highlight stays faint and peaks stand out. Boxes
/// are outlined first, then labelled from the last to the first, so no outline crosses a label and the
/// first box's label (the top region's) stays on top.
///
/// # Panics
/// If either raster's length is not `w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn highlight_overlay_png(
    base: &[u8],
    heat: &[f32],
    w: usize,
    h: usize,
    max: f32,
    boxes: &[ScoredBox],
    caption: Option<&str>,
) -> Vec<u8> {
    const LOW: f32 = 0.15;
    const FULL: f32 = 0.75;
    const MAX_ALPHA: f32 = 0.85;
    check_size(base, w, h, "base");
    check_size(heat, w, h, "heat");
    let (radius, line, scale) = display_scales(w, h);
    let t = ShownSpread::new(heat, w, h, max, LOW, radius);
    // Below LOW (most of the image) a pixel is its grey alone: the bits the blend gives at alpha 0
    // (grey * 1 + colour * 0), looked up instead of computed.
    let grey_byte: [u8; 256] = std::array::from_fn(|b| byte(b as f32 / 255.0));
    let mut rgb = vec![0u8; 3 * w * h];
    rgb.par_chunks_mut(3 * w).zip(base.par_chunks(w)).enumerate().for_each(|(y, (out, base))| {
        for (px, &b) in out.chunks_exact_mut(3).zip(base) {
            px.fill(grey_byte[usize::from(b)]);
        }
        let Some((x0, t)) = t.row(y) else { return };
        for ((px, &b), &u) in out[3 * x0..].chunks_exact_mut(3).zip(&base[x0..]).zip(t) {
            let alpha = MAX_ALPHA * ((u - LOW) / (FULL - LOW)).clamp(0.0, 1.0);
            if alpha == 0.0 {
                continue;
            }
            let grey = f32::from(b) / 255.0;
            let color = inferno(0.4 + 0.6 * u);
            for (o, c) in px.iter_mut().zip(color) {
                *o = byte(grey * (1.0 - alpha) + f32::from(c) / 255.0 * alpha);
            }
        }
    });
    let mut canvas = crate::annotate::Canvas::new(w, h, rgb);
    // Outlines first, then the labels, so that no outline crosses a label.
    for b in boxes.iter().rev() {
        canvas.stroke_rect(b.x, b.y, b.w, b.h, line, BOX_COLOR);
    }
    // Labels where they hide the least highlight and no other label, the top region's placed first and
    // drawn last (on top).
    let label_size = |text: &str| {
        let (tw, th) = crate::annotate::text_size(text, scale);
        (tw + 2 * scale, th + 2 * scale)
    };
    let mut placed: Vec<[i64; 4]> = Vec::new();
    if let Some(caption) = caption {
        let (lw, lh) = label_size(caption);
        placed.push([0, 0, lw, lh]);
    }
    let mut labels = Vec::new();
    for b in boxes {
        let text = format!("{:.2}", b.score);
        let (lw, lh) = label_size(&text);
        let (x, y) = label_position(b, lw, lh, w, h, &t, LOW, &placed);
        placed.push([x, y, lw, lh]);
        labels.push((x, y, text));
    }
    for (x, y, text) in labels.iter().rev() {
        canvas.label(*x, *y, text, scale, [0, 0, 0], BOX_COLOR);
    }
    if let Some(caption) = caption {
        canvas.label(0, 0, caption, scale, [255, 255, 255], [0, 0, 0]);
    }
    encode(w, h, ::png::ColorType::Rgb, &canvas.rgb)
}

/// [`spread`] of a highlight normalised by its `max`, over the only part of the image where it can
/// reach `low` and so be shown: within twice the spread's radius of a value at `low` or above (the
/// maximum filter and the blur each reach one radius, and neither raises a value above the largest
/// within its reach). It is computed on that box widened by two more radii, so that every value the box
/// holds sees all of its neighbourhood; elsewhere the spread counts as 0. On a whole mammogram the
/// highlight reaches `low` in a few small places: the full-size spread was about half the overlay's time
/// and 48 MB of fresh pages for values never shown.
///
/// The values shown are the full-size spread's but for the last bits of its blur: the blur's running
/// sums start at the box's edge instead of the image's.
struct ShownSpread {
    /// The computed box: left, top, width, height.
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    t: Vec<f32>,
}

impl ShownSpread {
    fn new(heat: &[f32], w: usize, h: usize, max: f32, low: f32, radius: usize) -> Self {
        let empty = ShownSpread { x0: 0, y0: 0, w: 0, h: 0, t: Vec::new() };
        // The rows' first and last columns at `low` or above, merged into one box.
        let hot = heat
            .par_chunks(w)
            .enumerate()
            .filter_map(|(y, row)| {
                let at_low = |v: &f32| unit(*v, 0.0, max) >= low;
                Some([row.iter().position(at_low)?, y, row.iter().rposition(at_low)? + 1, y + 1])
            })
            .reduce_with(|a, b| [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]);
        let Some([left, top, right, bottom]) = hot else { return empty };
        let widen = |reach: usize| {
            [left.saturating_sub(reach), top.saturating_sub(reach), (right + reach).min(w), (bottom + reach).min(h)]
        };
        let shown = widen(2 * radius);
        let [x0, y0, x1, y1] = widen(4 * radius);
        let (cw, ch) = (x1 - x0, y1 - y0);
        let mut t = vec![0f32; cw * ch];
        t.par_chunks_mut(cw).enumerate().for_each(|(y, out)| {
            let row = &heat[(y0 + y) * w + x0..][..cw];
            out.iter_mut().zip(row).for_each(|(o, &v)| *o = unit(v, 0.0, max));
        });
        let mut t = spread(t, cw, ch, radius);
        // Outside the shown box every value is below `low`; 0 keeps them from counting anywhere.
        t.par_chunks_mut(cw).enumerate().for_each(|(y, row)| {
            let y = y0 + y;
            if y < shown[1] || y >= shown[3] {
                row.fill(0.0);
            } else {
                row[..shown[0] - x0].fill(0.0);
                row[shown[2] - x0..].fill(0.0);
            }
        });
        ShownSpread { x0, y0, w: cw, h: ch, t }
    }

    /// Row `y`'s computed part: where it starts and its values (`None` if the row has none).
    fn row(&self, y: usize) -> Option<(usize, &[f32])> {
        (y >= self.y0 && y < self.y0 + self.h).then(|| (self.x0, &self.t[(y - self.y0) * self.w..][..self.w]))
    }
}

/// Where the `lw × lh` label of box `b` goes on a `w × h` image: of the places just above the box, just
/// below it, and inside its top then bottom edge (each left- then right-aligned, moved inside the image),
/// the first with the least cost: the highlight it hides (`t` above `low`, summed; counted twice, plus a
/// tenth of the label's area, inside the box, whose content the box is there to show) plus twice the
/// area it shares with the rectangles in `placed` ([x, y, w, h]: the caption and earlier labels).
#[allow(clippy::too_many_arguments)]
fn label_position(
    b: &ScoredBox,
    lw: i64,
    lh: i64,
    w: usize,
    h: usize,
    t: &ShownSpread,
    low: f32,
    placed: &[[i64; 4]],
) -> (i64, i64) {
    let (wi, hi) = (w as i64, h as i64);
    let (left, right) = (b.x, b.x + b.w - lw);
    let rows = [(b.y - lh, false), (b.y + b.h, false), (b.y, true), (b.y + b.h - lh, true)];
    let mut best: Option<(f64, (i64, i64))> = None;
    for (y, inside) in rows {
        for x in [left, right] {
            let (x, y) = (x.clamp(0, (wi - lw).max(0)), y.clamp(0, (hi - lh).max(0)));
            let shared: i64 = placed
                .iter()
                .map(|r| {
                    let ix = (x + lw).min(r[0] + r[2]) - x.max(r[0]);
                    let iy = (y + lh).min(r[1] + r[3]) - y.max(r[1]);
                    ix.max(0) * iy.max(0)
                })
                .sum();
            let mut hidden = 0.0f64;
            for yy in y.max(0)..(y + lh).min(hi) {
                let Some((x0, row)) = t.row(yy as usize) else { continue };
                let (from, to) = (x.max(0) as usize, (x + lw).min(wi) as usize);
                let (from, to) = (from.clamp(x0, x0 + row.len()), to.clamp(x0, x0 + row.len()));
                for &u in &row[from - x0..to - x0] {
                    hidden += f64::from((u - low).max(0.0));
                }
            }
            let hidden = if inside { 2.0 * hidden + 0.1 * (lw * lh) as f64 } else { hidden };
            let cost = hidden + 2.0 * shared as f64;
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, (x, y)));
            }
        }
    }
    best.map_or((b.x, b.y), |(_, at)| at)
}

/// The display spread of [`highlight_overlay_png`]: a square maximum filter then a square box blur, both
/// of `radius` (the blur averages over the part of its window inside the image). An isolated peak keeps
/// its value at its centre and becomes a `(4 radius + 1)`-wide blob; NaN counts as 0.
pub fn spread(mut v: Vec<f32>, w: usize, h: usize, radius: usize) -> Vec<f32> {
    check_size(&v, w, h, "values");
    // In place: on a 12-megapixel overlay a copy is 48 MB of fresh pages.
    v.par_iter_mut().filter(|x| x.is_nan()).for_each(|x| *x = 0.0);
    if radius == 0 {
        return v;
    }
    // Rows, then columns, for each filter; a row on its own and a strip of columns on its own, so in
    // parallel.
    v.par_chunks_exact_mut(w).for_each_init(Vec::new, |scratch, row| max_filter_line(row, radius, scratch));
    for_column_strips(&mut v, w, h, |rows| max_filter_columns(rows, radius));
    v.par_chunks_exact_mut(w).for_each_init(Vec::new, |scratch, row| box_blur_line(row, radius, scratch));
    for_column_strips(&mut v, w, h, |rows| box_blur_columns(rows, radius));
    v
}

/// Columns per strip of the column passes: a strip's row segments are 256 bytes, and the few rows of
/// them a pass keeps at a time stay in the cache.
const STRIP: usize = 64;

/// A strip of columns of a row-major image: row `y` of the strip is `n` floats at `base + y * w`.
/// Strips are disjoint, so several may be worked on at once.
struct ColumnStrip {
    base: *mut f32,
    w: usize,
    h: usize,
    n: usize,
}

impl ColumnStrip {
    /// Row `y` of the strip, to read.
    fn row(&self, y: usize) -> &[f32] {
        assert!(y < self.h);
        // SAFETY: in bounds (`for_column_strips` made the strip inside the image, and y < h); only the
        // task holding this strip touches these columns, and no pass holds a row it is writing.
        unsafe { std::slice::from_raw_parts(self.base.add(y * self.w), self.n) }
    }

    /// Row `y` of the strip, to write: the passes below hold no other slice of it meanwhile.
    #[allow(clippy::mut_from_ref)]
    fn row_mut(&self, y: usize) -> &mut [f32] {
        assert!(y < self.h);
        // SAFETY: as for `row`, and the caller holds no other slice of row y.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(y * self.w), self.n) }
    }
}

/// Runs `pass` on every strip of [`STRIP`] columns of the row-major `v` (`w × h`), strips in parallel.
/// A column pass works on whole rows of its strip, so it vectorises across the columns instead of
/// copying each column out (the copies in and out of a column-major scratch were the most expensive part
/// of a 12-megapixel overlay's spread).
fn for_column_strips(v: &mut [f32], w: usize, h: usize, pass: impl Fn(&ColumnStrip) + Sync) {
    /// `v`'s base pointer, shared by the strips' tasks.
    struct Base(*mut f32);
    // SAFETY: the tasks below touch disjoint columns (see `ColumnStrip`), and `v` outlives them.
    unsafe impl Sync for Base {}
    impl Base {
        fn get(&self) -> *mut f32 {
            self.0
        }
    }
    assert_eq!(v.len(), w * h);
    let base = Base(v.as_mut_ptr());
    (0..w.div_ceil(STRIP)).into_par_iter().for_each(|strip| {
        let x0 = strip * STRIP;
        // SAFETY: x0 < w, so the offset is inside `v`.
        let strip = ColumnStrip { base: unsafe { base.get().add(x0) }, w, h, n: STRIP.min(w - x0) };
        pass(&strip);
    });
}

/// [`max_filter_line`] down every column of a strip, with the same blocks, prefix and suffix maxima and
/// operand order, a row of the strip at a time: two blocks of `2 r + 1` rows of each are kept. Outputs
/// are written in place once nothing later reads their rows (the next block starts `r + 2` rows past the
/// last row written).
fn max_filter_columns(s: &ColumnStrip, r: usize) {
    let (h, n) = (s.h, s.n);
    let g = 2 * r + 1;
    let padded = h + 2 * r;
    let outside = vec![f32::NEG_INFINITY; n];
    // Padded row p is image row p - r, or -inf outside the image.
    let block = |b: usize, pre: &mut Vec<f32>, suf: &mut Vec<f32>| {
        let end = (b + g).min(padded);
        pre.resize(g * n, 0.0);
        suf.resize(g * n, 0.0);
        let x = |p: usize| -> &[f32] { if p >= r && p < h + r { s.row(p - r) } else { &outside } };
        pre[..n].copy_from_slice(x(b));
        for i in 1..end - b {
            let (done, rest) = pre.split_at_mut(i * n);
            for ((o, &p), &x) in rest[..n].iter_mut().zip(&done[(i - 1) * n..]).zip(x(b + i)) {
                *o = p.max(x);
            }
        }
        let last = end - b - 1;
        suf[last * n..(last + 1) * n].copy_from_slice(x(b + last));
        for i in (0..last).rev() {
            let (head, tail) = suf.split_at_mut((i + 1) * n);
            for ((o, &q), &x) in head[i * n..].iter_mut().zip(&tail[..n]).zip(x(b + i)) {
                *o = q.max(x);
            }
        }
    };
    let (mut pre, mut suf, mut pre_next, mut suf_next) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    block(0, &mut pre, &mut suf);
    for b in (0..h).step_by(g) {
        // Outputs b..b + g read this block's suffixes and the prefixes 2r further on: this block's for
        // i = b, the next block's for the others.
        if b + g < padded {
            block(b + g, &mut pre_next, &mut suf_next);
        }
        for i in b..(b + g).min(h) {
            let p = i + 2 * r;
            let prefix = if p < b + g { &pre[(p - b) * n..][..n] } else { &pre_next[(p - b - g) * n..][..n] };
            for ((o, &q), &m) in s.row_mut(i).iter_mut().zip(&suf[(i - b) * n..][..n]).zip(prefix) {
                *o = q.max(m);
            }
        }
        std::mem::swap(&mut pre, &mut pre_next);
        std::mem::swap(&mut suf, &mut suf_next);
    }
}

/// [`box_blur_line`] down every column of a strip: the same running sums in f64, in the same order, a
/// row of the strip at a time. The last `r + 1` original rows are kept, since their outputs overwrite
/// them before the sums let go of them.
fn box_blur_columns(s: &ColumnStrip, r: usize) {
    let (h, n) = (s.h, s.n);
    // -0.0, as `Iterator::sum` of f64 starts.
    let mut sum = vec![-0.0f64; n];
    for y in 0..r.min(h) {
        sum.iter_mut().zip(s.row(y).iter()).for_each(|(a, &x)| *a += f64::from(x));
    }
    let mut kept = vec![0f32; (r + 1) * n];
    for i in 0..h {
        if i + r < h {
            sum.iter_mut().zip(s.row(i + r).iter()).for_each(|(a, &x)| *a += f64::from(x));
        }
        // Row i - r - 1 and row i share a slot: the first leaves the sums before the second is kept.
        let slot = &mut kept[(i % (r + 1)) * n..][..n];
        if i > r {
            sum.iter_mut().zip(slot.iter()).for_each(|(a, &x)| *a -= f64::from(x));
        }
        let count = ((i + r).min(h - 1) + 1 - i.saturating_sub(r)) as f64;
        let row = s.row_mut(i);
        slot.copy_from_slice(row);
        row.iter_mut().zip(&sum).for_each(|(o, &a)| *o = (a / count) as f32);
    }
}

/// The maximum over `[i - r, i + r]` (clipped to the line) for each `i`, in place, in O(n) whatever
/// `r` (van Herk / Gil-Werman: block-wise prefix and suffix maxima). `-inf` pads the ends.
fn max_filter_line(line: &mut [f32], r: usize, scratch: &mut Vec<f32>) {
    let n = line.len();
    let g = 2 * r + 1;
    let padded = n + 2 * r;
    scratch.clear();
    scratch.resize(3 * padded, f32::NEG_INFINITY);
    let (x, rest) = scratch.split_at_mut(padded);
    let (pre, suf) = rest.split_at_mut(padded);
    x[r..r + n].copy_from_slice(line);
    // Block by block (blocks of g from the padded start): no division or bounds test per element.
    for b in (0..padded).step_by(g) {
        let end = (b + g).min(padded);
        pre[b] = x[b];
        for i in b + 1..end {
            pre[i] = pre[i - 1].max(x[i]);
        }
        suf[end - 1] = x[end - 1];
        for i in (b..end - 1).rev() {
            suf[i] = suf[i + 1].max(x[i]);
        }
    }
    // The window of output i is [i, i + 2r] in padded coordinates: exactly g long.
    for (i, out) in line.iter_mut().enumerate() {
        *out = suf[i].max(pre[i + 2 * r]);
    }
}

/// The mean over `[i - r, i + r]` clipped to the line, for each `i`, in place (running sums in f64).
fn box_blur_line(line: &mut [f32], r: usize, scratch: &mut Vec<f32>) {
    let n = line.len();
    scratch.clear();
    scratch.extend_from_slice(line);
    let mut sum: f64 = scratch[..r.min(n)].iter().map(|&v| f64::from(v)).sum();
    for (i, out) in line.iter_mut().enumerate() {
        if i + r < n {
            sum += f64::from(scratch[i + r]);
        }
        if i > r {
            sum -= f64::from(scratch[i - r - 1]);
        }
        let count = (i + r).min(n - 1) + 1 - i.saturating_sub(r);
        *out = (sum / count as f64) as f32;
    }
}

/// Encodes 8-bit pixels as a PNG in memory.
fn encode(w: usize, h: usize, color: ::png::ColorType, pixels: &[u8]) -> Vec<u8> {
    let dim = |d: usize| u32::try_from(d).ok().filter(|&d| d > 0).expect("image sides must be in 1..=u32::MAX");
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, dim(w), dim(h));
    encoder.set_color(color);
    encoder.set_depth(::png::BitDepth::Eight);
    // explain writes full-field overlays (tens of megapixels): the default deflate level took more than
    // half of its run time, for files a few per cent smaller.
    encoder.set_compression(::png::Compression::Fast);
    // Writing to a Vec cannot fail, and the sizes were checked above: an error here is a bug.
    let mut writer = encoder.write_header().expect("PNG header for a valid size");
    writer.write_image_data(pixels).expect("PNG data of the declared size");
    writer.finish().expect("PNG finish");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG into (width, height, colour type, pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, ::png::ColorType, Vec<u8>) {
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buf)
    }

    /// Below `inferno_quiet` the colour map gives its bottom colour (what `colormap_png`'s shortcut
    /// assumes), and a little above it, no longer.
    #[test]
    fn inferno_is_its_bottom_colour_below_quiet() {
        let quiet = inferno_quiet();
        let bottom = inferno(0.0);
        for k in 0..20_000 {
            let t = quiet * k as f32 / 20_000.0;
            assert_eq!(inferno(t), bottom, "t = {t:e}");
        }
        assert_eq!(inferno(quiet.next_down()), bottom);
        assert_ne!(inferno(quiet * 1.1), bottom, "the margin is small: the threshold is near where the colour moves");
    }

    #[test]
    fn inferno_endpoints_and_interpolation() {
        assert_eq!(inferno(0.0), [0, 0, 4]);
        assert_eq!(inferno(1.0), [252, 255, 164]);
        assert_eq!(inferno(2.0), [252, 255, 164]);
        assert_eq!(inferno(f32::NAN), [0, 0, 4]);
        assert_eq!(inferno(0.5), [188, 55, 84]);
        // Half-way between entries 0 and 1.
        assert_eq!(inferno(1.0 / 32.0), [6, 4, 20]);
        // Lightness grows monotonically (a luma proxy), which is why inferno was chosen.
        let luma = |c: [u8; 3]| 0.299 * f32::from(c[0]) + 0.587 * f32::from(c[1]) + 0.114 * f32::from(c[2]);
        for k in 0..100 {
            assert!(luma(inferno(k as f32 / 100.0)) <= luma(inferno((k + 1) as f32 / 100.0)) + 0.5);
        }
    }

    #[test]
    fn gray_png_round_trips() {
        let png = gray_png(&[0.0, 0.5, 1.0, 2.0, -1.0, f32::NAN], 3, 2, 0.0, 1.0);
        let (w, h, color, px) = decode(&png);
        assert_eq!((w, h, color), (3, 2, ::png::ColorType::Grayscale));
        assert_eq!(px, [0, 128, 255, 255, 0, 0]);
        // A window maps lo to black and hi to white; an empty window renders black.
        assert_eq!(decode(&gray_png(&[10.0, 20.0], 2, 1, 10.0, 20.0)).3, [0, 255]);
        assert_eq!(decode(&gray_png(&[10.0, 20.0], 2, 1, 5.0, 5.0)).3, [0, 0]);
    }

    #[test]
    fn colormap_png_uses_inferno() {
        let (_, _, color, px) = decode(&colormap_png(&[0.0, 2.0], 2, 1, 0.0, 2.0));
        assert_eq!(color, ::png::ColorType::Rgb);
        assert_eq!(px, [0, 0, 4, 252, 255, 164]);
    }

    #[test]
    fn overlay_blends_by_heat() {
        // Pixel 0: no heat → the plain grey patch. Pixel 1: maximal heat → 85% of the top colour over grey.
        let (_, _, color, px) = decode(&heat_overlay_png(&[0.4, 0.4], &[0.0, 3.0], 2, 1));
        assert_eq!(color, ::png::ColorType::Rgb);
        assert_eq!(&px[..3], &[102, 102, 102]);
        let expect = |c: f32| (0.4 * 255.0 * 0.15 + c * 0.85).round() as u8;
        assert_eq!(&px[3..], &[expect(252.0), expect(255.0), expect(164.0)]);
        // All-zero heat leaves the patch as it is.
        assert_eq!(decode(&heat_overlay_png(&[1.0, 0.0], &[0.0, 0.0], 2, 1)).3, [255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn round_unit_is_round_on_bytes() {
        // Every half (and its neighbours, where `v - trunc(v)` could round the wrong way), a dense grid,
        // the ends, out-of-range values and NaN.
        let mut values: Vec<f32> = (0..=256 * 1024).map(|i| i as f32 / 1024.0).collect();
        for k in 0..=256 {
            let half = k as f32 + 0.5;
            values.extend([half, half.next_up(), half.next_down(), (k as f32).next_up(), (k as f32).next_down()]);
        }
        values.extend([0.0, -0.0, -0.4, -3.0, 255.49998, 255.5, 1e9, f32::INFINITY, f32::NAN]);
        for v in values {
            assert_eq!(round_unit(v), v.round() as u8, "{v}");
        }
    }

    #[test]
    fn columns_are_filtered_as_the_rows_of_the_transpose() {
        type LineFilter = fn(&mut [f32], usize, &mut Vec<f32>);
        type ColumnPass = fn(&ColumnStrip, usize);
        let passes =
            [(max_filter_line as LineFilter, max_filter_columns as ColumnPass), (box_blur_line, box_blur_columns)];
        // Images narrower and wider than a strip, shorter than a window and than a block, and a ragged
        // last block.
        for (w, h) in [(1, 1), (3, 70), (70, 3), (33, 65), (16, 9), (17, 9), (130, 23), (65, 8)] {
            let v: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 101) as f32 / 7.0 - 3.0).collect();
            for r in [1, 3, 4, 11] {
                for (line, column) in passes {
                    let mut got = v.clone();
                    for_column_strips(&mut got, w, h, |strip| column(strip, r));
                    for x in 0..w {
                        let mut col: Vec<f32> = (0..h).map(|y| v[y * w + x]).collect();
                        line(&mut col, r, &mut Vec::new());
                        for y in 0..h {
                            assert_eq!(
                                got[y * w + x].to_bits(),
                                col[y].to_bits(),
                                "{w} x {h}, r {r}, column {x}, row {y}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn spread_keeps_a_peak_and_widens_it() {
        let (w, h) = (15, 11);
        let mut v = vec![0.0; w * h];
        v[5 * w + 7] = 2.0;
        let s = spread(v.clone(), w, h, 2);
        assert_eq!(s[5 * w + 7], 2.0, "a lone peak keeps its value");
        // Lit out to 2 r from the peak, not beyond.
        assert!(s[5 * w + 11] > 0.0 && s[5 * w + 12] == 0.0 && s[5 * w + 3] > 0.0 && s[5 * w + 2] == 0.0);
        assert!(s[w + 7] > 0.0 && s[7] == 0.0);
        // The max filter and the clipped box blur against brute force, on a ragged line.
        let line: Vec<f32> = (0..13).map(|i| ((i * 7) % 5) as f32 - 1.0).collect();
        for r in 1..4 {
            let (mut m, mut b, mut scratch) = (line.clone(), line.clone(), Vec::new());
            max_filter_line(&mut m, r, &mut scratch);
            box_blur_line(&mut b, r, &mut scratch);
            for i in 0..line.len() {
                let win = &line[i.saturating_sub(r)..(i + r + 1).min(line.len())];
                assert_eq!(m[i], win.iter().cloned().fold(f32::MIN, f32::max), "max r={r} i={i}");
                let mean = win.iter().sum::<f32>() / win.len() as f32;
                assert!((b[i] - mean).abs() < 1e-5, "blur r={r} i={i}");
            }
        }
        assert_eq!(spread(vec![f32::NAN, 1.0], 2, 1, 0), [0.0, 1.0]);
    }

    #[test]
    fn highlight_overlay_colours_the_highlight_and_outlines_boxes() {
        let (w, h) = (60, 50);
        let base = vec![128u8; w * h];
        let mut heat = vec![0.0; w * h];
        heat[40 * w + 45] = 4.0; // one hot pixel, far from the box
        heat[10 * w + 50] = 0.5; // 12.5% of the maximum: left alone
        let boxes = [ScoredBox { x: 10, y: 20, w: 40, h: 15, score: 0.934 }];
        let (_, _, color, px) = decode(&highlight_overlay_png(&base, &heat, w, h, 4.0, &boxes, None));
        assert_eq!(color, ::png::ColorType::Rgb);
        let at = |x: usize, y: usize| [px[(y * w + x) * 3], px[(y * w + x) * 3 + 1], px[(y * w + x) * 3 + 2]];
        let grey = [128, 128, 128];
        assert_eq!(at(2, 45), grey, "no heat: the mammogram as it is");
        assert_eq!(at(50, 10), grey, "low heat: the mammogram as it is");
        assert_ne!(at(45, 40), grey, "the hot pixel is coloured");
        assert_ne!(at(46, 41), grey, "and spread to its neighbours");
        // The box outline is cyan, its inside untouched; the label sits above the box in cyan.
        assert_eq!(at(20, 34), BOX_COLOR);
        assert_eq!(at(10, 27), BOX_COLOR);
        assert_eq!(at(20, 27), grey);
        assert_eq!(at(10, 19), BOX_COLOR, "label background just above the box");
        // A hot spot where that label would go: the label moves to the box's right end instead.
        let mut hot = heat.clone();
        hot[15 * w + 12] = 4.0;
        let (_, _, _, px) = decode(&highlight_overlay_png(&base, &hot, w, h, 4.0, &boxes, None));
        let at = |x: usize, y: usize| [px[(y * w + x) * 3], px[(y * w + x) * 3 + 1], px[(y * w + x) * 3 + 2]];
        assert_ne!(at(10, 19), BOX_COLOR, "not over the hot spot");
        assert_eq!(at(49, 19), BOX_COLOR, "above the box, flush with its right side");
        // A caption, and the same image without any boxes has none of that colour.
        let (_, _, _, captioned) = decode(&highlight_overlay_png(&base, &heat, w, h, 4.0, &[], Some("0.93")));
        assert_eq!(&captioned[..3], &[0, 0, 0]);
        assert!(!captioned.chunks(3).any(|c| c == BOX_COLOR));
        // Zero max: just the grey image.
        let (_, _, _, plain) = decode(&highlight_overlay_png(&base, &heat, w, h, 0.0, &[], None));
        assert!(plain.iter().all(|&v| v == 128));
        assert_eq!(display_scales(1000, 1200), (7, 4, 4));
        assert_eq!(display_scales(4000, 5000), (27, 16, 16));
        assert_eq!(display_scales(60, 50), (1, 1, 1));
    }

    /// The overlay spreads the highlight only around where it reaches LOW; the picture is the one the
    /// full-size spread gives: hot spots in the middle (a small box, so its margins are what is
    /// tested), at an edge, and at a corner, an edge and the middle at once (the whole image), over a
    /// faint highlight everywhere (which the full-size spread carried through every running sum).
    #[test]
    fn overlay_spreads_only_where_the_highlight_can_show() {
        let (w, h) = (480, 340);
        let (radius, _, _) = display_scales(w, h);
        assert_eq!(radius, 2);
        let base: Vec<u8> = (0..w * h).map(|i| (i * 37 % 251) as u8).collect();
        let faint: Vec<f32> = (0..w * h).map(|i| (i * 7919 % 1000) as f32 * 1e-5).collect();
        let max = 4.0;
        let spots: [&[(usize, usize, f32)]; 3] = [
            &[(240, 170, 2.5), (241, 171, 0.7), (246, 168, 4.0)],
            &[(0, 100, 4.0)],
            &[(0, 0, 4.0), (479, 170, 3.0), (240, 170, 2.5), (120, 339, 1.0)],
        ];
        for spots in spots {
            let mut heat = faint.clone();
            for &(x, y, v) in spots {
                heat[y * w + x] = v;
            }
            // The overlay as drawn from the full-size spread (no boxes, no caption).
            let t = spread(heat.iter().map(|&v| unit(v, 0.0, max)).collect(), w, h, radius);
            let expected: Vec<u8> = base
                .iter()
                .zip(&t)
                .flat_map(|(&b, &u)| {
                    let grey = f32::from(b) / 255.0;
                    let alpha = 0.85 * ((u - 0.15) / (0.75 - 0.15)).clamp(0.0, 1.0);
                    let color = inferno(0.4 + 0.6 * u);
                    color.map(|c| match alpha == 0.0 {
                        true => byte(grey),
                        false => byte(grey * (1.0 - alpha) + f32::from(c) / 255.0 * alpha),
                    })
                })
                .collect();
            let coloured = expected.chunks(3).zip(&base).filter(|(px, b)| px[0] != **b || px[1] != **b).count();
            assert!(coloured >= 20 * spots.len(), "{coloured}");
            let (_, _, _, got) = decode(&highlight_overlay_png(&base, &heat, w, h, max, &[], None));
            assert_eq!(got, expected, "{spots:?}");
        }
        // Nothing at LOW: nothing computed, the picture the grey image.
        let shown = ShownSpread::new(&faint, w, h, max, 0.15, radius);
        assert!(shown.t.is_empty() && (0..h).all(|y| shown.row(y).is_none()));
        let (_, _, _, plain) = decode(&highlight_overlay_png(&base, &faint, w, h, max, &[], None));
        assert!(plain.chunks(3).zip(&base).all(|(px, &b)| px == [b, b, b]));
    }

    #[test]
    #[should_panic(expected = "w × h")]
    fn wrong_size_panics() {
        gray_png(&[0.0; 5], 3, 2, 0.0, 1.0);
    }
}
