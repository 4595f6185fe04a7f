//! Masses with BI-RADS descriptors and their exact ground truth.
//!
//! - **Benign**: round or oval, circumscribed (a smooth, sharp edge).
//! - **Malignant**: irregular (radius modulated by low-order harmonics) and spiculated (thin tapered lines
//!   radiating from the body).
//!
//! Both classes draw size and contrast from the same distributions, deliberately: the only thing that
//! tells them apart is the malignancy features, so a classifier (and the attribution map explaining it)
//! can only succeed by finding those, which is what the feature masks measure.
//!
//! A lesion multiplies the local signal by `1 + contrast * P`, where the profile P is 1 in the body
//! (peak contrast = `contrast`, relative to the surrounding tissue) and falls to 0.5 exactly on the mask
//! boundary, so mask and appearance agree.

use std::f64::consts::{PI, TAU};

use mammo_io::layouts::Label;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::PhantomParams;
use crate::rng::{truncated_lognormal, uniform};

/// Median of the lesion diameter distribution, mm.
///
/// Where the numbers come from (approximately; they fix a plausible shape, not a fitted one): the masses
/// annotated in public datasets such as INbreast (Moreira et al., Academic Radiology 2012) and CBIS-DDSM
/// (Lee et al., Scientific Data 2017) are mostly about 8-25 mm across, and screen-detected invasive
/// cancers have a typical diameter of about 13-15 mm (in the NHS Breast Screening Programme's 2009/10
/// statistics, for example, about 42 % of the cancers detected were invasive and under 15 mm).
pub(crate) const DIAMETER_MEDIAN_MM: f64 = 14.0;
/// Log-space standard deviation of the diameter: with the median above, about 75 % of an untruncated
/// draw falls within 8-25 mm, about 81 % once truncated to the default 5-30 mm (median then about
/// 13.6 mm, mean about 14.5 mm).
pub(crate) const DIAMETER_SIGMA: f64 = 0.5;

/// BI-RADS mass shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Round,
    Oval,
    Irregular,
}

impl Shape {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::Round => "round",
            Shape::Oval => "oval",
            Shape::Irregular => "irregular",
        }
    }
}

#[derive(Clone, Debug)]
struct Spicule {
    /// Direction in the lesion frame, radians.
    angle: f64,
    length_mm: f64,
    /// Half-width at the base, mm; tapers to nothing at the tip.
    half_width_mm: f64,
    /// Sideways bend of the tip as a fraction of the length (real spicules are rarely straight).
    bend: f64,
    /// Peak profile relative to the body's (spicules are fainter than the mass).
    strength: f64,
}

/// A lesion's shape in its own frame (mm, origin at the centre), before projection into a view.
#[derive(Clone, Debug)]
pub(crate) struct LesionShape {
    pub label: Label,
    pub shape: Shape,
    /// Equivalent diameter (that of the disc with the body's area, for ellipses; twice the mean radius
    /// for irregular bodies), mm.
    pub diameter_mm: f64,
    /// Peak contrast relative to the surrounding tissue.
    pub contrast: f64,
    /// Ellipse axis ratio (minor/major) and orientation, for round and oval bodies.
    axis_ratio: f64,
    orientation: f64,
    /// (order, relative amplitude, phase) of the radius modulation of irregular bodies.
    harmonics: Vec<(f64, f64, f64)>,
    spicules: Vec<Spicule>,
    /// Width over which the body's edge rises, mm: sharp for circumscribed, softer for irregular.
    edge_mm: f64,
}

impl LesionShape {
    /// Draws a lesion of class `label` (benign or malignant).
    ///
    /// The diameter is log-normal ([`DIAMETER_MEDIAN_MM`], [`DIAMETER_SIGMA`]) truncated to
    /// `[min_diameter_mm, max_diameter_mm]` by inverting its CDF (the same distribution as re-drawing
    /// until it fits, never clamped onto a bound), so bounds pinned by the user are always honoured.
    pub(crate) fn draw(label: Label, params: &PhantomParams, rng: &mut ChaCha8Rng) -> Self {
        let diameter_mm = truncated_lognormal(
            rng,
            DIAMETER_MEDIAN_MM,
            DIAMETER_SIGMA,
            params.min_diameter_mm,
            params.max_diameter_mm,
        );
        let j = params.contrast_jitter;
        let contrast = params.lesion_contrast * uniform(rng, 1.0 - j, 1.0 + j);
        if label == Label::Malignant {
            // Low orders give the lobulated, irregular body; a little of orders 6-9 roughens the margin.
            let mut harmonics: Vec<(f64, f64, f64)> =
                (2..=5).map(|k| (k as f64, uniform(rng, 0.04, 0.12), uniform(rng, 0.0, TAU))).collect();
            harmonics.extend((6..=9).map(|k| (k as f64, uniform(rng, 0.0, 0.03), uniform(rng, 0.0, TAU))));
            let (lo, hi) = params.spicule_count;
            let n = rng.random_range(lo..=hi) as usize;
            let start = uniform(rng, 0.0, TAU);
            let spicules = (0..n)
                .map(|i| Spicule {
                    angle: start + TAU * (i as f64 + uniform(rng, -0.3, 0.3)) / n as f64,
                    length_mm: uniform(rng, params.spicule_length_mm.0, params.spicule_length_mm.1),
                    half_width_mm: uniform(rng, 0.3, 0.5),
                    bend: uniform(rng, -0.25, 0.25),
                    strength: uniform(rng, 0.55, 0.8),
                })
                .collect();
            LesionShape {
                label,
                shape: Shape::Irregular,
                diameter_mm,
                contrast,
                axis_ratio: 1.0,
                orientation: 0.0,
                harmonics,
                spicules,
                edge_mm: 0.6,
            }
        } else {
            let round = rng.random::<bool>();
            let axis_ratio = if round { uniform(rng, 0.9, 1.0) } else { uniform(rng, 0.55, 0.8) };
            LesionShape {
                label,
                shape: if round { Shape::Round } else { Shape::Oval },
                diameter_mm,
                contrast,
                axis_ratio,
                orientation: uniform(rng, 0.0, PI),
                harmonics: Vec::new(),
                spicules: Vec::new(),
                edge_mm: 0.3,
            }
        }
    }

    /// BI-RADS margin descriptor.
    pub(crate) fn margin(&self) -> &'static str {
        if self.spicules.is_empty() { "circumscribed" } else { "spiculated" }
    }

    /// The same lesion scaled by `f` (to fit a small breast); widths are kept, they are near the pixel
    /// size already.
    pub(crate) fn scaled(&self, f: f64) -> Self {
        let mut s = self.clone();
        s.diameter_mm *= f;
        for sp in &mut s.spicules {
            sp.length_mm *= f;
        }
        s
    }

    /// Body radius (mm) in direction `theta` of the lesion frame.
    fn radius_at(&self, theta: f64) -> f64 {
        let r0 = self.diameter_mm / 2.0;
        match self.shape {
            Shape::Irregular => {
                let m: f64 = self.harmonics.iter().map(|(k, a, p)| a * (k * theta + p).cos()).sum();
                r0 * (1.0 + m).max(0.4)
            }
            _ => {
                // Semi-axes with the area of the disc of radius r0.
                let (major, minor) = (r0 / self.axis_ratio.sqrt(), r0 * self.axis_ratio.sqrt());
                let t = theta - self.orientation;
                major * minor / ((minor * t.cos()).powi(2) + (major * t.sin()).powi(2)).sqrt()
            }
        }
    }

    /// Tabulated geometry used for rendering (a table lookup per pixel instead of a sum of cosines).
    fn geometry(&self, spacing: f64) -> Geometry {
        let radius: Vec<f64> = (0..TABLE).map(|i| self.radius_at(TAU * i as f64 / TABLE as f64)).collect();
        let r_min = radius.iter().copied().fold(f64::INFINITY, f64::min);
        let r_max = radius.iter().copied().fold(0.0, f64::max);
        let min_half_width = 0.55 * spacing;
        let spicules: Vec<Polyline> = self
            .spicules
            .iter()
            .map(|sp| {
                let (dir, perp) = ((sp.angle.cos(), sp.angle.sin()), (-sp.angle.sin(), sp.angle.cos()));
                // Start inside the body so the spicule grows out of it without a gap.
                let base = 0.85 * self.radius_at(sp.angle.rem_euclid(TAU));
                let points: Vec<(f64, f64)> = (0..=SEGMENTS)
                    .map(|j| {
                        let s = j as f64 / SEGMENTS as f64;
                        let along = base + s * sp.length_mm;
                        let side = sp.bend * sp.length_mm * s * s;
                        (along * dir.0 + side * perp.0, along * dir.1 + side * perp.1)
                    })
                    .collect();
                let mut cum = vec![0.0];
                for p in points.windows(2) {
                    cum.push(cum.last().unwrap() + ((p[1].0 - p[0].0).powi(2) + (p[1].1 - p[0].1).powi(2)).sqrt());
                }
                let reach = points.iter().map(|p| p.0.hypot(p.1)).fold(0.0, f64::max)
                    + sp.half_width_mm.max(min_half_width) * 1.5;
                Polyline { points, cum, half_width_mm: sp.half_width_mm, strength: sp.strength, reach }
            })
            .collect();
        let reach = spicules.iter().map(|p| p.reach).fold(r_max + self.edge_mm, f64::max);
        Geometry { radius, r_min, spicules, reach, min_half_width }
    }

    /// Radius (mm) of a circle about the centre that holds the whole lesion, spicules included.
    pub(crate) fn reach_mm(&self, spacing: f64) -> f64 {
        self.geometry(spacing).reach
    }
}

#[cfg(test)]
impl LesionShape {
    /// Largest body radius, mm.
    pub(crate) fn max_radius_mm(&self) -> f64 {
        (0..TABLE).map(|i| self.radius_at(TAU * i as f64 / TABLE as f64)).fold(0.0, f64::max)
    }

    /// Total length of the spicules' centre lines farther than `cut` mm from the centre.
    pub(crate) fn spicule_length_beyond_mm(&self, cut: f64) -> f64 {
        let mut total = 0.0;
        for sp in self.geometry(0.2).spicules {
            for seg in sp.points.windows(2) {
                const STEPS: usize = 64;
                for k in 0..STEPS {
                    let t = (k as f64 + 0.5) / STEPS as f64;
                    let (x, y) = (lerp(seg[0].0, seg[1].0, t), lerp(seg[0].1, seg[1].1, t));
                    if x.hypot(y) > cut {
                        total += (seg[1].0 - seg[0].0).hypot(seg[1].1 - seg[0].1) / STEPS as f64;
                    }
                }
            }
        }
        total
    }
}

#[cfg(test)]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

const TABLE: usize = 1024;
const SEGMENTS: usize = 6;

struct Polyline {
    points: Vec<(f64, f64)>,
    /// Arc length at each point.
    cum: Vec<f64>,
    half_width_mm: f64,
    strength: f64,
    /// Distance from the lesion centre beyond which the spicule contributes nothing.
    reach: f64,
}

impl Polyline {
    /// Distance from `p` to the centre line and the arc-length fraction (0 at the base, 1 at the tip)
    /// of the nearest point.
    fn nearest(&self, p: (f64, f64)) -> (f64, f64) {
        let mut best = (f64::INFINITY, 0.0);
        for (i, seg) in self.points.windows(2).enumerate() {
            let (a, b) = (seg[0], seg[1]);
            let (ex, ey) = (b.0 - a.0, b.1 - a.1);
            let len2 = ex * ex + ey * ey;
            let t = if len2 > 0.0 { (((p.0 - a.0) * ex + (p.1 - a.1) * ey) / len2).clamp(0.0, 1.0) } else { 0.0 };
            let (qx, qy) = (a.0 + t * ex - p.0, a.1 + t * ey - p.1);
            let d = (qx * qx + qy * qy).sqrt();
            if d < best.0 {
                let total = *self.cum.last().unwrap();
                let arc = self.cum[i] + t * (self.cum[i + 1] - self.cum[i]);
                best = (d, if total > 0.0 { arc / total } else { 0.0 });
            }
        }
        best
    }
}

struct Geometry {
    radius: Vec<f64>,
    r_min: f64,
    spicules: Vec<Polyline>,
    reach: f64,
    /// Spicules are never drawn thinner than about a pixel, or they would break up in the mask.
    min_half_width: f64,
}

impl Geometry {
    fn radius(&self, theta: f64) -> f64 {
        let f = theta.rem_euclid(TAU) / TAU * TABLE as f64;
        let i = f.floor() as usize % TABLE;
        let t = f - f.floor();
        self.radius[i] * (1.0 - t) + self.radius[(i + 1) % TABLE] * t
    }
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// A lesion projected into one view.
pub(crate) struct Placed {
    pub shape: LesionShape,
    /// Centre in pixels, top-left origin, pixel centres at i + 0.5.
    pub cx: f64,
    pub cy: f64,
    /// In-plane rotation of the lesion frame (each view projects the lesion differently).
    pub rotation: f64,
}

/// What rendering a lesion produced.
pub(crate) struct Rendered {
    /// 0/255: body and spicules.
    pub mask: Vec<u8>,
    /// 0/255: spicules and the irregular margin band (empty for benign lesions).
    pub features: Vec<u8>,
}

impl Placed {
    /// Multiplies `signal` (w x h, row-major) by the lesion's contrast profile and returns its masks.
    pub(crate) fn render(&self, spacing: f64, w: usize, h: usize, signal: &mut [f32]) -> Rendered {
        let g = self.shape.geometry(spacing);
        let mut mask = vec![0u8; w * h];
        let mut features = vec![0u8; w * h];
        let malignant = self.shape.label == Label::Malignant;
        // Features: the spicules, and the part of the body outside its largest centred inscribed circle,
        // widened to a band along the whole margin so that "irregular margin" is never zero pixels thick.
        let band = (0.6f64).max(spacing);
        let reach_px = g.reach / spacing + 2.0;
        let x0 = (self.cx - reach_px).floor().max(0.0) as usize;
        let x1 = ((self.cx + reach_px).ceil().max(0.0) as usize).min(w);
        let y0 = (self.cy - reach_px).floor().max(0.0) as usize;
        let y1 = ((self.cy + reach_px).ceil().max(0.0) as usize).min(h);
        let (sin, cos) = self.rotation.sin_cos();
        let c = self.shape.contrast;
        for row in y0..y1 {
            for col in x0..x1 {
                let dx = (col as f64 + 0.5 - self.cx) * spacing;
                let dy = (row as f64 + 0.5 - self.cy) * spacing;
                let (sx, sy) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                let rho = sx.hypot(sy);
                if rho > g.reach {
                    continue;
                }
                let r = g.radius(sy.atan2(sx));
                let in_body = rho <= r;
                let mut profile = smoothstep(0.5 + (r - rho) / self.shape.edge_mm);
                let mut in_spicule = false;
                for sp in &g.spicules {
                    if rho > sp.reach {
                        continue;
                    }
                    let (d, t) = sp.nearest((sx, sy));
                    let hw = sp.half_width_mm * (1.0 - t).powf(0.7);
                    let hw_eff = hw.max(g.min_half_width);
                    let q = d / hw_eff;
                    if q <= 1.0 {
                        in_spicule = true;
                    }
                    // A line thinner than its drawn width keeps its integrated signal: fainter, not wider.
                    profile = profile.max(sp.strength * (hw / hw_eff) * smoothstep(1.5 - q));
                }
                let i = row * w + col;
                if profile > 0.0 {
                    signal[i] *= (1.0 + c * profile) as f32;
                }
                if in_body || in_spicule {
                    mask[i] = 255;
                    if malignant && ((in_spicule && !in_body) || rho > g.r_min.min(r - band)) {
                        features[i] = 255;
                    }
                }
            }
        }
        Rendered { mask, features }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, stream};

    fn count(v: &[u8]) -> usize {
        v.iter().filter(|&&x| x != 0).count()
    }

    #[test]
    fn benign_is_smooth_and_featureless_malignant_has_features_inside_its_mask() {
        let params = PhantomParams { min_diameter_mm: 8.0, max_diameter_mm: 8.0, ..Default::default() };
        let (w, h, s) = (200, 200, 0.2);
        for (i, label) in [Label::Benign, Label::Malignant].into_iter().enumerate() {
            let shape = LesionShape::draw(label, &params, &mut stream(9, Purpose::Breast, i as u64, 0));
            let placed = Placed { shape, cx: 100.0, cy: 100.0, rotation: 0.3 };
            let mut signal = vec![1.0f32; w * h];
            let r = placed.render(s, w, h, &mut signal);
            let area = count(&r.mask) as f64 * s * s;
            let disc = PI * 16.0;
            match label {
                Label::Benign => {
                    assert_eq!(count(&r.features), 0);
                    assert!((area - disc).abs() < 0.1 * disc, "{area} vs {disc}");
                }
                _ => {
                    assert!(count(&r.features) > 0);
                    assert!(r.features.iter().zip(&r.mask).all(|(&f, &m)| f == 0 || m != 0));
                    assert!(area > disc * 0.8, "{area}");
                }
            }
            // Peak contrast at the centre, none far away.
            let centre = signal[100 * w + 100] as f64 - 1.0;
            assert!((centre - placed.shape.contrast).abs() < 1e-6, "{centre}");
            assert_eq!(signal[0], 1.0);
        }
    }

    fn diameters(params: &PhantomParams, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let label = if i % 2 == 0 { Label::Benign } else { Label::Malignant };
                LesionShape::draw(label, params, &mut stream(4, Purpose::Breast, i as u64, 0)).diameter_mm
            })
            .collect()
    }

    #[test]
    fn default_diameters_follow_the_literature() {
        let mut d = diameters(&PhantomParams::default(), 20_000);
        d.sort_by(f64::total_cmp);
        let median = d[d.len() / 2];
        let within = d.iter().filter(|&&x| (8.0..=25.0).contains(&x)).count() as f64 / d.len() as f64;
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        println!("diameters: median {median:.2} mm, mean {mean:.2} mm, {:.1} % within 8-25 mm", 100.0 * within);
        assert!((11.0..=17.0).contains(&median), "median {median}");
        assert!((0.70..=0.90).contains(&within), "{within} within 8-25 mm");
        assert!(d[0] >= 5.0 && d[d.len() - 1] <= 30.0);
        assert!((12.0..=17.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn pinned_diameter_bounds_are_respected() {
        for (lo, hi) in [(8.0, 25.0), (3.0, 6.0), (20.0, 22.0), (40.0, 60.0), (12.0, 12.0)] {
            let params = PhantomParams { min_diameter_mm: lo, max_diameter_mm: hi, ..Default::default() };
            let d = diameters(&params, 2000);
            assert!(
                d.iter().all(|&x| x >= lo && x <= hi),
                "{lo}..{hi}: {:?}",
                (d.iter().fold(f64::MAX, |a, &b| a.min(b)), d.iter().fold(0.0f64, |a, &b| a.max(b)))
            );
            // Truncated, not clamped: no pile-up on a bound.
            if hi > lo {
                let on_bound = d.iter().filter(|&&x| x == lo || x == hi).count();
                assert!(on_bound < 5, "{lo}..{hi}: {on_bound} on a bound");
            }
        }
    }
}
