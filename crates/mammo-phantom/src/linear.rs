//! Normal linear structures: lactiferous ducts and Cooper's ligaments.
//!
//! Every breast, normal or not, shows thin bright lines: ducts converging on the nipple (many of them
//! just behind it, in the retroareolar region, fewer and thinner towards the chest wall) and Cooper's
//! ligaments, the curvilinear septa of the subcutaneous fat that roughly follow the skin line. They are
//! drawn with the same profile as a malignant lesion's spicules (`lesion.rs`): a half-width of 0.12 to
//! 0.5 mm tapering along the line, a flat-topped cross-section that falls to half at the half-width,
//! and a peak contrast a little below that of spicules at the default lesion contrast. At the working
//! resolution of 0.4 mm a spicule is then one thin bright line among many; what gives it away is only its
//! arrangement, radiating from a mass. Being normal anatomy, the lines enter no mask, and their contrast
//! does not follow `lesion_contrast`: a phantom made easy with a higher lesion contrast has spicules
//! that stand out from the lines as its masses stand out from the texture, and one with a lesion
//! contrast of 0 is exactly the same image without its lesions.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::anatomy::{Anatomy, Breast};
use crate::rng::uniform;

/// What a line is, anatomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Duct,
    Ligament,
}

/// One structure: a polyline in pixel coordinates (top-left origin, pixel centres at i + 0.5) with a
/// half-width and a peak profile at each vertex.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the tests"))]
    pub kind: Kind,
    pub points: Vec<(f64, f64)>,
    /// Half-width at each vertex, mm.
    pub half_width_mm: Vec<f64>,
    /// Peak of the profile at each vertex, as a fraction of [`LINE_CONTRAST`] (fading out at the ends).
    pub weight: Vec<f64>,
}

#[cfg(test)]
impl Line {
    /// Length in mm.
    pub(crate) fn length_mm(&self, spacing: f64) -> f64 {
        self.points.windows(2).map(|p| (p[1].0 - p[0].0).hypot(p[1].1 - p[0].1)).sum::<f64>() * spacing
    }
}

/// The contrast the lines are scaled to: the default `lesion_contrast`.
pub(crate) const LINE_CONTRAST: f64 = 0.04;
/// Range of a line's peak contrast relative to [`LINE_CONTRAST`]. Spicules have `strength` 0.55-0.8
/// times a lesion contrast of `lesion_contrast * (1 +- contrast_jitter)`, by default about 0.4-1.0
/// times 0.04, 0.68 on average; lines are 0.4-0.75 times, 0.58 on average: similar, a little fainter.
const STRENGTH: (f64, f64) = (0.4, 0.75);
/// Length over which a line fades in and out at its ends, mm.
const FADE_MM: f64 = 2.0;
/// Lines fade out over this distance inside the skin line, mm.
const SKIN_FADE_MM: f64 = 1.0;

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Samples `path` (t in 0..=1 to local mm) into a line with half-width `hw(t)` and peak `strength`,
/// fading at both ends.
fn sample(
    breast: &Breast,
    kind: Kind,
    strength: f64,
    path: impl Fn(f64) -> (f64, f64),
    hw: impl Fn(f64) -> f64,
) -> Line {
    const PROBE: usize = 32;
    let probe: Vec<(f64, f64)> = (0..=PROBE).map(|j| path(j as f64 / PROBE as f64)).collect();
    let length: f64 = probe.windows(2).map(|p| (p[1].0 - p[0].0).hypot(p[1].1 - p[0].1)).sum();
    // Vertices every 2 mm or so: the curves are gentle, and the bounding boxes per segment stay small.
    let n = ((length / 2.0).ceil() as usize).clamp(4, 64);
    let fade = FADE_MM.min(0.25 * length).max(1e-6);
    let s = breast.spacing;
    let (mut points, mut half_width_mm, mut weight) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..=n {
        let t = j as f64 / n as f64;
        let (x, y) = path(t);
        points.push((breast.col_of(x), y / s));
        half_width_mm.push(hw(t));
        let arc = t * length;
        weight.push(strength * smoothstep(arc / fade) * smoothstep((length - arc) / fade));
    }
    Line { kind, points, half_width_mm, weight }
}

/// Draws the ducts and ligaments of one view: 6-14 ducts (with 0-2 branches each) and 4-12 ligaments,
/// about 10-50 lines in all.
pub(crate) fn draw(breast: &Breast, rng: &mut ChaCha8Rng) -> Vec<Line> {
    let origin = breast.point_on_axes(0.0, 0.0);
    let dist = |p: (f64, f64)| (p.0 - origin.0).hypot(p.1 - origin.1);
    let mut lines = Vec::new();

    // Ducts, on the breast's own axes (u towards the nipple, v across): from just behind the nipple
    // back towards the chest wall, fanning out, gently curved, tapering away from the nipple.
    for _ in 0..rng.random_range(6..=14) {
        let (u0, v0) = (uniform(rng, 0.86, 0.96), uniform(rng, -0.1, 0.1));
        let (u1, v1) = (uniform(rng, 0.3, 0.7), (v0 + uniform(rng, -0.5, 0.5)).clamp(-0.8, 0.8));
        let (bend, wiggle) = (uniform(rng, -0.06, 0.06), uniform(rng, -0.02, 0.02));
        let (hw0, hw1) = (uniform(rng, 0.3, 0.5), uniform(rng, 0.12, 0.22));
        let strength = uniform(rng, STRENGTH.0, STRENGTH.1);
        let axes =
            move |t: f64| (lerp(u0, u1, t), lerp(v0, v1, t) + bend * (PI * t).sin() + wiggle * (2.0 * PI * t).sin());
        let path = |t: f64| {
            let (u, v) = axes(t);
            breast.point_on_axes(u, v)
        };
        lines.push(sample(breast, Kind::Duct, strength, path, |t| lerp(hw0, hw1, t)));
        for _ in 0..rng.random_range(0..=2u32) {
            let tb = uniform(rng, 0.3, 0.7);
            let (ub, vb) = axes(tb);
            let side = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let (ue, ve) = (ub - uniform(rng, 0.1, 0.25), (vb + side * uniform(rng, 0.08, 0.25)).clamp(-0.9, 0.9));
            let curve = uniform(rng, -0.03, 0.03);
            let hwb = 0.85 * lerp(hw0, hw1, tb);
            let sb = strength * uniform(rng, 0.8, 1.0);
            let path = |t: f64| breast.point_on_axes(lerp(ub, ue, t), lerp(vb, ve, t) + curve * (PI * t).sin());
            lines.push(sample(breast, Kind::Duct, sb, path, |t| lerp(hwb, hw1, t)));
        }
    }

    // Cooper's ligaments: arcs a few mm inside the skin line, roughly parallel to it, scalloped towards
    // the skin.
    for _ in 0..rng.random_range(4..=12) {
        let phi_c = uniform(rng, -1.35, 1.35);
        let radius = dist(breast.point_on_axes(phi_c.cos(), phi_c.sin())).max(1.0);
        let depth = uniform(rng, 2.0, 12.0).min(0.3 * radius);
        let rho0 = 1.0 - depth / radius;
        let length = uniform(rng, 12.0, 40.0);
        let span = (length / (radius * rho0)).min(1.0);
        let slant = uniform(rng, -0.03, 0.03);
        let scallop = uniform(rng, 0.0, 0.05).min(0.5 * depth / radius);
        let hw = uniform(rng, 0.22, 0.42);
        let strength = uniform(rng, STRENGTH.0, STRENGTH.1);
        let path = |t: f64| {
            let phi = phi_c + (t - 0.5) * span;
            let rho = rho0 + slant * (2.0 * t - 1.0) + scallop * (PI * t).sin();
            breast.point_on_axes(rho * phi.cos(), rho * phi.sin())
        };
        lines.push(sample(breast, Kind::Ligament, strength, path, |t| hw * (0.7 + 0.3 * (PI * t).sin())));
    }
    lines
}

/// The lines' profile (peak 1 per unit weight) on the image grid, combined by maximum as spicules are
/// in `lesion.rs`; zero outside every line.
pub(crate) fn profile(lines: &[Line], spacing: f64, w: usize, h: usize) -> Vec<f32> {
    let mut prof = vec![0f32; w * h];
    // Lines are never drawn thinner than about a pixel (as spicules): a thinner one keeps its
    // integrated signal, so it is fainter, not wider.
    let min_hw = 0.55 * spacing;
    for line in lines {
        for j in 0..line.points.len() - 1 {
            let (a, b) = (line.points[j], line.points[j + 1]);
            let (hwa, hwb) = (line.half_width_mm[j], line.half_width_mm[j + 1]);
            let (wa, wb) = (line.weight[j], line.weight[j + 1]);
            if wa <= 0.0 && wb <= 0.0 {
                continue;
            }
            let reach = 1.5 * hwa.max(hwb).max(min_hw) / spacing + 1.0;
            let x0 = (a.0.min(b.0) - reach).floor().max(0.0) as usize;
            let x1 = ((a.0.max(b.0) + reach).ceil().max(0.0) as usize).min(w);
            let y0 = (a.1.min(b.1) - reach).floor().max(0.0) as usize;
            let y1 = ((a.1.max(b.1) + reach).ceil().max(0.0) as usize).min(h);
            let (ex, ey) = (b.0 - a.0, b.1 - a.1);
            let len2 = ex * ex + ey * ey;
            for row in y0..y1 {
                let py = row as f64 + 0.5;
                for col in x0..x1 {
                    let px = col as f64 + 0.5;
                    let t = if len2 > 0.0 { (((px - a.0) * ex + (py - a.1) * ey) / len2).clamp(0.0, 1.0) } else { 0.0 };
                    let d = (a.0 + t * ex - px).hypot(a.1 + t * ey - py) * spacing;
                    let hw = lerp(hwa, hwb, t);
                    let hw_eff = hw.max(min_hw);
                    let q = d / hw_eff;
                    if q >= 1.5 {
                        continue;
                    }
                    let v = (lerp(wa, wb, t) * (hw / hw_eff) * smoothstep(1.5 - q)) as f32;
                    let i = row * w + col;
                    if v > prof[i] {
                        prof[i] = v;
                    }
                }
            }
        }
    }
    prof
}

/// Multiplies `signal` by `1 + LINE_CONTRAST * profile` inside the breast (not in the pectoral muscle),
/// fading out at the skin line.
pub(crate) fn render(lines: &[Line], breast: &Breast, an: &Anatomy, signal: &mut [f32]) {
    let contrast = LINE_CONTRAST;
    let prof = profile(lines, breast.spacing, breast.w, breast.h);
    for (i, &p) in prof.iter().enumerate() {
        if p > 0.0 && an.breast[i] && !an.pectoral[i] {
            let fade = smoothstep(an.d_skin[i] as f64 / SKIN_FADE_MM);
            signal[i] *= (1.0 + contrast * p as f64 * fade) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use mammo_io::layouts::Label;
    use mammo_io::{Laterality, View};

    use super::*;
    use crate::PhantomParams;
    use crate::anatomy::PatientAnatomy;
    use crate::lesion::{LesionShape, Placed};
    use crate::rng::{Purpose, stream};

    fn breast(view: View, lat: Laterality, k: u64) -> Breast {
        let p = PatientAnatomy::draw(&mut stream(k, Purpose::Patient, 0, 0));
        Breast::draw(&p, lat, view, 500, 600, 0.4, &mut stream(k, Purpose::View, 0, 0))
    }

    #[test]
    fn every_view_gets_ducts_near_the_nipple_and_ligaments_near_the_skin() {
        for k in 0..12 {
            let (view, lat) = [(View::CC, Laterality::Left), (View::MLO, Laterality::Right)][k as usize % 2];
            let b = breast(view, lat, k);
            let an = b.anatomy();
            let lines = draw(&b, &mut stream(k, Purpose::Lines, 0, 0));
            let n = |kind| lines.iter().filter(|l| l.kind == kind).count();
            assert!((6..=42).contains(&n(Kind::Duct)) && (4..=12).contains(&n(Kind::Ligament)), "{k}");
            // Ducts start within a couple of centimetres of the nipple; ligaments lie within 15 mm of the
            // skin line wherever they are inside the breast.
            let nipple = b.point_on_axes(1.0, 0.0);
            let nipple = (b.col_of(nipple.0), nipple.1 / b.spacing);
            let starts_near = lines
                .iter()
                .filter(|l| l.kind == Kind::Duct)
                .filter(|l| (l.points[0].0 - nipple.0).hypot(l.points[0].1 - nipple.1) * b.spacing < 25.0)
                .count();
            assert!(starts_near >= 6, "{k}: {starts_near}");
            for l in lines.iter().filter(|l| l.kind == Kind::Ligament) {
                for &(c, r) in &l.points {
                    let (c, r) = (c as usize, r as usize);
                    if c < b.w && r < b.h && an.breast[r * b.w + c] {
                        assert!(an.d_skin[r * b.w + c] < 15.0 + 6.0, "{k}: {}", an.d_skin[r * b.w + c]);
                    }
                }
            }
            // Deterministic.
            let again = draw(&b, &mut stream(k, Purpose::Lines, 0, 0));
            assert_eq!(format!("{lines:?}"), format!("{again:?}"));
        }
    }

    /// 2 x 2 mean: 0.2 mm -> the working resolution of 0.4 mm.
    fn bin2(v: &[f32], w: usize, h: usize) -> Vec<f64> {
        let (w2, h2) = (w / 2, h / 2);
        let mut out = vec![0.0; w2 * h2];
        for r in 0..h2 {
            for c in 0..w2 {
                let i = 2 * r * w + 2 * c;
                out[r * w2 + c] = (v[i] + v[i + 1] + v[i + w] + v[i + w + 1]) as f64 / 4.0;
            }
        }
        out
    }

    /// Peak (95th percentile) of the elevation above 1 and the area above half that peak per mm of
    /// length (an effective width), at 0.4 mm.
    fn peak_and_width(elevation: &[f64], length_mm: f64) -> (f64, f64) {
        let mut v: Vec<f64> = elevation.iter().copied().filter(|&x| x > 1e-4).collect();
        v.sort_by(f64::total_cmp);
        let peak = v[v.len() * 95 / 100];
        let area = v.iter().filter(|&&x| x >= 0.5 * peak).count() as f64 * 0.4 * 0.4;
        (peak, area / length_mm)
    }

    #[test]
    fn at_the_working_resolution_lines_are_as_thin_as_spicules_and_a_little_fainter() {
        let params = PhantomParams::default();
        let (w, h, s) = (600, 600, 0.2);
        assert_eq!(LINE_CONTRAST, params.lesion_contrast);
        let c = LINE_CONTRAST;
        // Lines of a few breasts, alone on a flat signal.
        let (mut line_peak, mut line_width) = (Vec::new(), Vec::new());
        for k in 0..6 {
            let p = PatientAnatomy::draw(&mut stream(k, Purpose::Patient, 0, 0));
            let b = Breast::draw(&p, Laterality::Left, View::CC, w, h, s, &mut stream(k, Purpose::View, 0, 0));
            let lines = draw(&b, &mut stream(k, Purpose::Lines, 0, 0));
            let prof = profile(&lines, s, w, h);
            let elevated: Vec<f32> = prof.iter().map(|&p| (c * p as f64) as f32).collect();
            let length: f64 = lines.iter().map(|l| l.length_mm(s)).sum();
            let (pk, wd) = peak_and_width(&bin2(&elevated, w, h), length);
            line_peak.push(pk);
            line_width.push(wd);
        }
        // Spicules of malignant lesions, alone: the body (and its soft edge) is cut out.
        let (mut sp_peak, mut sp_width) = (Vec::new(), Vec::new());
        for k in 0..6 {
            let shape = LesionShape::draw(Label::Malignant, &params, &mut stream(k, Purpose::Breast, 0, 0));
            let r_max = shape.max_radius_mm();
            let length = shape.spicule_length_beyond_mm(r_max + 1.0);
            let placed = Placed { shape, cx: 300.0, cy: 300.0, rotation: 0.0 };
            let mut signal = vec![1.0f32; w * h];
            placed.render(s, w, h, &mut signal);
            for r in 0..h {
                for col in 0..w {
                    let rho = (col as f64 + 0.5 - 300.0).hypot(r as f64 + 0.5 - 300.0) * s;
                    let i = r * w + col;
                    signal[i] = if rho > r_max + 1.0 { signal[i] - 1.0 } else { 0.0 };
                }
            }
            let (pk, wd) = peak_and_width(&bin2(&signal, w, h), length.max(1.0));
            sp_peak.push(pk);
            sp_width.push(wd);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (lp, sp, lw, sw) = (mean(&line_peak), mean(&sp_peak), mean(&line_width), mean(&sp_width));
        println!(
            "peak contrast at 0.4 mm: lines {lp:.4}, spicules {sp:.4}; width: lines {lw:.2} mm, spicules {sw:.2} mm"
        );
        assert!(lp > 0.6 * sp && lp <= 1.05 * sp, "peak: lines {lp} vs spicules {sp}");
        assert!(lw > 0.6 * sw && lw < 1.6 * sw, "width: lines {lw} vs spicules {sw}");
    }
}
