//! The breast as the detector sees it: outline, pectoral muscle, compressed thickness.
//!
//! Orientation (documented in the crate root too): the chest wall of a **left** breast is on the
//! **left** edge of the image, that of a **right** breast on the **right** edge; the nipple points
//! into the image. Geometry is computed in a local frame in millimetres: `x` = distance from the chest
//! wall, `y` = distance from the top edge, so one set of formulas serves both sides.

use mammo_io::{Laterality, View};
use rand_chacha::ChaCha8Rng;

use crate::rng::uniform;

/// Per-woman anatomy, shared by her four images.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PatientAnatomy {
    /// Nipple depth as a fraction of the image width.
    pub depth_frac: f64,
    /// Half-height of the breast at the chest wall as a fraction of the room available.
    pub height_frac: f64,
    /// Compressed thickness in mm (CC; MLO a little more).
    pub thickness_mm: f64,
}

impl PatientAnatomy {
    pub(crate) fn draw(rng: &mut ChaCha8Rng) -> Self {
        PatientAnatomy {
            depth_frac: uniform(rng, 0.58, 0.82),
            height_frac: uniform(rng, 0.78, 0.92),
            thickness_mm: uniform(rng, 40.0, 65.0),
        }
    }
}

/// The pectoral muscle of an MLO view: a triangle in the upper chest-wall corner whose hypotenuse
/// bulges a little into the breast.
#[derive(Clone, Copy, Debug)]
struct Pectoral {
    /// Width along the top edge and height along the chest wall, mm.
    pw: f64,
    ph: f64,
    /// Outward bulge of the hypotenuse (0 = straight).
    bulge: f64,
}

/// One breast in one view.
#[derive(Clone, Debug)]
pub(crate) struct Breast {
    pub laterality: Laterality,
    pub w: usize,
    pub h: usize,
    pub spacing: f64,
    /// Where the nipple axis meets the chest wall (mm from the top).
    y0: f64,
    /// Nipple depth and the half-heights above and below the nipple axis, mm.
    a: f64,
    b_up: f64,
    b_lo: f64,
    /// The nipple axis points this far below the horizontal (radians): MLO views are oblique.
    pub tilt: f64,
    /// Its sine and cosine, needed for every pixel.
    tilt_sc: (f64, f64),
    /// Low-order wobble of the outline: (relative amplitude, phase) for harmonics 2, 3, 4.
    harmonics: [(f64, f64); 3],
    pectoral: Option<Pectoral>,
    /// Compressed thickness, the width of the rounded edge where it falls off, and the subcutaneous
    /// and retromammary fat layers, all mm.
    pub thickness_mm: f64,
    pub edge_mm: f64,
    pub fat_mm: f64,
    pub retro_mm: f64,
}

/// Per-pixel maps derived from a [`Breast`].
pub(crate) struct Anatomy {
    /// Inside the skin line (pectoral muscle included).
    pub breast: Vec<bool>,
    pub pectoral: Vec<bool>,
    /// Distance to the skin line (to air), mm. The image edges are not skin: the breast continues
    /// beyond the chest-wall edge and, in MLO, beyond the top edge into the axilla.
    pub d_skin: Vec<f32>,
    /// Distance to air or pectoral muscle, mm: where a lesion may go.
    pub d_free: Vec<f32>,
    /// Distance from the chest wall, mm.
    pub x_mm: Vec<f32>,
}

impl Breast {
    /// Draws the view-specific geometry around the woman's anatomy.
    pub(crate) fn draw(
        patient: &PatientAnatomy,
        laterality: Laterality,
        view: View,
        w: usize,
        h: usize,
        spacing: f64,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let (wm, hm) = (w as f64 * spacing, h as f64 * spacing);
        let mlo = view == View::MLO;
        let harmonics = [0; 3].map(|_| (uniform(rng, 0.0, 0.02), uniform(rng, 0.0, std::f64::consts::TAU)));
        let (y0, a, b_up, b_lo, tilt, thickness_mm);
        if mlo {
            // Oblique: the nipple axis points down and out; below it the breast reaches the
            // inframammary fold near the bottom edge, above it runs off the top edge into the axilla.
            tilt = uniform(rng, 0.17, 0.38);
            a = (wm * patient.depth_frac * uniform(rng, 1.0, 1.05)).min(0.93 * wm);
            let nipple_y = hm * uniform(rng, 0.55, 0.62);
            y0 = (nipple_y - a * tilt.sin()).max(0.2 * hm);
            // Choose b_lo so the outline meets the chest wall at `fold` below y0.
            let fold = hm * uniform(rng, 0.88, 0.95) - y0;
            let denom = (1.0 / (fold * fold) - (tilt.sin() / a).powi(2)).max(1e-9);
            b_lo = tilt.cos() / denom.sqrt();
            b_up = uniform(rng, 1.05, 1.25) * y0 / tilt.cos();
            thickness_mm = patient.thickness_mm * uniform(rng, 1.0, 1.1);
        } else {
            tilt = uniform(rng, -0.05, 0.05);
            a = wm * patient.depth_frac * uniform(rng, 0.95, 1.0);
            y0 = hm * uniform(rng, 0.46, 0.54);
            let room = y0.min(hm - y0);
            b_up = room * patient.height_frac * uniform(rng, 0.95, 1.0);
            b_lo = room * patient.height_frac * uniform(rng, 0.95, 1.0);
            thickness_mm = patient.thickness_mm;
        }
        let mut breast = Breast {
            laterality,
            w,
            h,
            spacing,
            y0,
            a,
            b_up,
            b_lo,
            tilt,
            tilt_sc: tilt.sin_cos(),
            harmonics,
            pectoral: None,
            thickness_mm,
            // The edge of a compressed breast is roughly a half-cylinder; its fall-off band is a fraction
            // of the thickness, limited in small phantoms so a breast is not all edge.
            edge_mm: (0.35 * thickness_mm).min(0.25 * a),
            fat_mm: (5.0f64).min(0.08 * a),
            retro_mm: (8.0f64).min(0.1 * a),
        };
        if mlo {
            // Size the muscle from how far the breast reaches along the top edge.
            let step = spacing.max(0.05);
            let mut top = 0.0;
            while top < wm && breast.inside_outline(top, 0.0) {
                top += step;
            }
            let pw = top.max(0.15 * a) * uniform(rng, 0.55, 0.85);
            let ph = hm * uniform(rng, 0.3, 0.5);
            breast.pectoral = Some(Pectoral { pw, ph, bulge: uniform(rng, 0.0, 0.12) });
        }
        breast
    }

    /// Local coordinates (mm) of a pixel centre.
    #[inline]
    pub(crate) fn local(&self, col: usize, row: usize) -> (f64, f64) {
        let c = col as f64 + 0.5;
        let x = match self.laterality {
            Laterality::Left => c * self.spacing,
            Laterality::Right => (self.w as f64 - c) * self.spacing,
        };
        (x, (row as f64 + 0.5) * self.spacing)
    }

    /// Image column (continuous, pixel centres at i + 0.5) of a local x.
    pub(crate) fn col_of(&self, x_mm: f64) -> f64 {
        match self.laterality {
            Laterality::Left => x_mm / self.spacing,
            Laterality::Right => self.w as f64 - x_mm / self.spacing,
        }
    }

    /// A point on the breast's own axes: `u` along the nipple axis (fraction of the nipple depth),
    /// `v` across it (fraction of the half-height on that side), in local mm.
    pub(crate) fn point_on_axes(&self, u: f64, v: f64) -> (f64, f64) {
        let b = if v < 0.0 { self.b_up } else { self.b_lo };
        let (pu, pv) = (u * self.a, v * b);
        let (s, c) = self.tilt_sc;
        (pu * c - pv * s, self.y0 + pu * s + pv * c)
    }

    fn inside_outline(&self, x: f64, y: f64) -> bool {
        if x < 0.0 {
            return false;
        }
        let dy = y - self.y0;
        let (s, c) = self.tilt_sc;
        let u = x * c + dy * s;
        let v = -x * s + dy * c;
        let b = if v < 0.0 { self.b_up } else { self.b_lo };
        let (nu, nv) = (u / self.a, v / b);
        let rho2 = nu * nu + nv * nv;
        // The wobble is at most 6 %: only evaluate it near the outline.
        if rho2 < 0.88 {
            return true;
        }
        if rho2 > 1.13 {
            return false;
        }
        let phi = nv.atan2(nu);
        let edge = 1.0
            + self
                .harmonics
                .iter()
                .enumerate()
                .map(|(i, (amp, ph))| amp * ((i + 2) as f64 * phi + ph).cos())
                .sum::<f64>();
        rho2.sqrt() < edge
    }

    fn inside_pectoral(&self, x: f64, y: f64) -> bool {
        let Some(p) = self.pectoral else { return false };
        let (fx, fy) = (x / p.pw, y / p.ph);
        (0.0..1.0).contains(&fx) && (0.0..1.0).contains(&fy) && fx + fy < 1.0 + 4.0 * p.bulge * fx * fy
    }

    /// Rasterises the outline and muscle and computes the distance maps.
    pub(crate) fn anatomy(&self) -> Anatomy {
        let (w, h) = (self.w, self.h);
        let mut breast = vec![false; w * h];
        let mut pectoral = vec![false; w * h];
        let mut x_mm = vec![0f32; w * h];
        for row in 0..h {
            for col in 0..w {
                let (x, y) = self.local(col, row);
                let i = row * w + col;
                breast[i] = self.inside_outline(x, y);
                pectoral[i] = breast[i] && self.inside_pectoral(x, y);
                x_mm[i] = x as f32;
            }
        }
        let s = self.spacing as f32;
        let d_skin = edt(&breast.iter().map(|&b| !b).collect::<Vec<_>>(), w, h).into_iter().map(|d| d * s).collect();
        let sites: Vec<bool> = breast.iter().zip(&pectoral).map(|(&b, &p)| !b || p).collect();
        let d_free = edt(&sites, w, h).into_iter().map(|d| d * s).collect();
        Anatomy { breast, pectoral, d_skin, d_free, x_mm }
    }
}

/// Exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): for every pixel, the distance
/// in pixels to the nearest `site` pixel; a very large value where there is none.
pub(crate) fn edt(site: &[bool], w: usize, h: usize) -> Vec<f32> {
    const FAR: f64 = 1e20;
    let n = w.max(h);
    let (mut f, mut d, mut v, mut z) = (vec![0.0; n], vec![0.0; n], vec![0usize; n], vec![0.0; n + 1]);
    // Columns, then rows: the squared distance separates into the two axes.
    let mut sq = column_distances(site, w, h, FAR);
    for row in 0..h {
        f[..w].copy_from_slice(&sq[row * w..(row + 1) * w]);
        edt_1d(&f[..w], &mut d[..w], &mut v, &mut z);
        sq[row * w..(row + 1) * w].copy_from_slice(&d[..w]);
    }
    sq.into_iter().map(|x| x.min(1e12).sqrt() as f32).collect()
}

/// The first pass of [`edt`]: the squared distance along each column to the nearest site in that column
/// (`far` where the column has none). For a binary input this is two scans over the rows, down and up,
/// instead of a lower envelope of parabolas per column read across the rows (about half of the
/// distance transform's time, and cache-hostile). The squares are exact integers, the envelope's answer
/// wherever a site exists; a column without one only ever meets finite values in the row pass, where its
/// `far` loses to them, so the transform's output is the same bits.
fn column_distances(site: &[bool], w: usize, h: usize, far: f64) -> Vec<f64> {
    const NONE: u32 = u32::MAX;
    let mut dist = vec![NONE; w * h];
    for row in 0..h {
        let (above, rest) = dist.split_at_mut(row * w);
        let here = &mut rest[..w];
        let sites = &site[row * w..(row + 1) * w];
        match row {
            0 => here.iter_mut().zip(sites).for_each(|(d, &s)| *d = if s { 0 } else { NONE }),
            _ => {
                let prev = &above[(row - 1) * w..];
                for ((d, &s), &p) in here.iter_mut().zip(sites).zip(prev) {
                    *d = if s { 0 } else { p.saturating_add(1) };
                }
            }
        }
    }
    for row in (0..h.saturating_sub(1)).rev() {
        let (upto, below) = dist.split_at_mut((row + 1) * w);
        for (d, &b) in upto[row * w..].iter_mut().zip(&below[..w]) {
            *d = (*d).min(b.saturating_add(1));
        }
    }
    dist.into_iter().map(|d| if d == NONE { far } else { d as f64 * d as f64 }).collect()
}

/// One-dimensional squared distance transform of the sampled function `f` (lower envelope of parabolas).
fn edt_1d(f: &[f64], d: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    if n == 0 {
        return;
    }
    let sq = |q: usize| (q * q) as f64;
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let intersect = |q: usize, p: usize| ((f[q] + sq(q)) - (f[p] + sq(p))) / (2.0 * (q - p) as f64);
    for q in 1..n {
        // z[0] = -inf ends the loop at k = 0 at the latest (f is finite, so s is never NaN).
        let mut s = intersect(q, v[k]);
        while s <= z[k] {
            k -= 1;
            s = intersect(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, out) in d.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let dq = q as f64 - v[k] as f64;
        *out = dq * dq + f[v[k]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, stream};

    #[test]
    fn edt_matches_brute_force() {
        let (w, h) = (23, 17);
        let site: Vec<bool> = (0..w * h).map(|i| (i * 7919) % 37 == 0).collect();
        let d = edt(&site, w, h);
        for y in 0..h {
            for x in 0..w {
                let mut best = f64::INFINITY;
                for yy in 0..h {
                    for xx in 0..w {
                        if site[yy * w + xx] {
                            best = best.min((((x as f64 - xx as f64).powi(2)) + (y as f64 - yy as f64).powi(2)).sqrt());
                        }
                    }
                }
                assert!((d[y * w + x] as f64 - best).abs() < 1e-4, "({x},{y}) {} vs {best}", d[y * w + x]);
            }
        }
    }

    #[test]
    fn chest_wall_side_follows_laterality_and_only_mlo_has_a_muscle() {
        let mut rng = stream(1, Purpose::Patient, 0, 0);
        let p = PatientAnatomy::draw(&mut rng);
        for (lat, view) in [(Laterality::Left, View::CC), (Laterality::Right, View::MLO)] {
            let b = Breast::draw(&p, lat, view, 100, 120, 1.0, &mut stream(1, Purpose::View, 0, 0));
            let an = b.anatomy();
            let (w, h) = (100, 120);
            let col_count = |c: usize| (0..h).filter(|&r| an.breast[r * w + c]).count();
            let (left, right) = (col_count(0), col_count(w - 1));
            match lat {
                Laterality::Left => assert!(left > 50 && right == 0, "{left} {right}"),
                Laterality::Right => assert!(right > 50 && left == 0, "{left} {right}"),
            }
            let muscle = an.pectoral.iter().filter(|&&m| m).count();
            assert_eq!(muscle > 0, view == View::MLO);
            if view == View::MLO {
                // The muscle is in the upper chest-wall corner.
                assert!(an.pectoral[w - 1] && !an.pectoral[(h - 1) * w + w - 1]);
            }
        }
    }
}
