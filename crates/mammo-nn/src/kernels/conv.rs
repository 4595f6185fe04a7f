//! The flex convolution ("same" padding, square odd kernel, any stride) and its gradients on float32:
//! one channels-first matrix product per sample (`matmul.rs`). See the module above for why.

use std::mem::MaybeUninit;

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::matmul::{self, Start, Strided};
use super::{contiguous, f32s, tensor};

/// `x [n, c, h, w]`, `w [o, c, k, k]`, `b [o]` -> `[n, o, h', w']`.
pub(super) fn forward(x: FlexTensor, w: FlexTensor, b: FlexTensor, stride: usize) -> FlexTensor {
    forward_keeping(x, w, b, stride, false).0
}

/// [`forward`], and with `keep` the column matrix `[n, c*k*k, h'*w']` it built, if it built one (at
/// stride 2 and on narrow planes), for [`w_grad`] to reuse instead of building it again.
pub(super) fn forward_keeping(
    x: FlexTensor,
    w: FlexTensor,
    b: FlexTensor,
    stride: usize,
    keep: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    #[cfg(test)]
    super::tests::FLEX_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
    let (x, w, b) = (contiguous(x), contiguous(w), contiguous(b));
    let (xs, ws, bs) = (f32s(&x), f32s(&w), f32s(&b));
    let (hw, ckk) = (g.plane_out(), g.ckk());
    // Where each row of the column matrix starts (im2col path), once for every sample.
    let rows = matmul::row_starts(ckk, hw);
    let mut out = vec![0f32; g.n * g.o * hw];
    // y [o, HW'] = b + w [o, ckk] x cols [ckk, HW']
    let wm = Strided { data: ws, rs: ckk, cs: 1 };
    let sample = |i: usize| &xs[i * g.c * g.plane_in()..(i + 1) * g.c * g.plane_in()];
    if keep && g.builds_columns() {
        let len = ckk * hw;
        let mut cols: Vec<f32> = Vec::with_capacity(g.n * len);
        let spare = &mut cols.spare_capacity_mut()[..g.n * len];
        out.par_chunks_mut(g.o * hw).zip(spare.par_chunks_mut(len)).enumerate().for_each(|(i, (y, c))| {
            let c = g.im2col_into(sample(i), c);
            matmul::nn(g.o, hw, ckk, wm, c, &rows, y, hw, Start::Row(bs));
        });
        // SAFETY: `im2col_into` wrote every element of every sample's part (it checks), and a panic
        // in a task would have unwound past this line.
        unsafe { cols.set_len(g.n * len) };
        return (tensor(out, [g.n, g.o, g.h_out, g.w_out]), Some(tensor(cols, [g.n, ckk, hw])));
    }
    out.par_chunks_mut(g.o * hw).enumerate().for_each(|(i, y)| {
        let xi = sample(i);
        if g.is_shifted() {
            shifted_product(g.o, wm, g.c, g.h, g.w, g.k, xi, y, Start::Row(bs));
        } else {
            let cols = g.im2col(xi);
            matmul::nn(g.o, hw, ckk, wm, cols.as_deref().unwrap_or(xi), &rows, y, hw, Start::Row(bs));
        }
    });
    (tensor(out, [g.n, g.o, g.h_out, g.w_out]), None)
}

/// The gradient with respect to `x`: per sample, `w^T x dy`, then col2im; at stride 1 (k > 1), the
/// convolution of `dy` with the flipped, transposed kernel instead (no column matrix at all).
pub(super) fn x_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
    let (w, dy) = (contiguous(w), contiguous(dy));
    let (ws, dys) = (f32s(&w), f32s(&dy));
    let (hw, ckk) = (g.plane_out(), g.ckk());
    // For the stride-1 path: flipped[c, (o, ky, kx)] = w[o, c, k-1-ky, k-1-kx].
    let kk = g.k * g.k;
    let flipped: Vec<f32> = if g.is_shifted() {
        (0..g.c * g.o * kk)
            .map(|e| (e / (g.o * kk), (e / kk) % g.o, e % kk))
            .map(|(c, o, t)| ws[(o * g.c + c) * kk + kk - 1 - t])
            .collect()
    } else {
        Vec::new()
    };
    let rows = matmul::row_starts(g.o, hw);
    let mut dx = vec![0f32; g.n * g.c * g.plane_in()];
    dx.par_chunks_mut(g.c * g.plane_in()).enumerate().for_each(|(i, dxi)| {
        let dyi = &dys[i * g.o * hw..(i + 1) * g.o * hw];
        // w^T: element (r, o) of the [ckk, o] matrix is w[o, r].
        let wt = Strided { data: ws, rs: 1, cs: ckk };
        if g.is_shifted() {
            let f = Strided { data: &flipped, rs: g.o * kk, cs: 1 };
            shifted_product(g.c, f, g.o, g.h, g.w, g.k, dyi, dxi, Start::Zero);
        } else if g.is_pointwise() {
            // dx [c, HW] = w^T [c, o] x dy [o, HW]
            matmul::nn(g.c, hw, g.o, wt, dyi, &rows, dxi, hw, Start::Zero);
        } else {
            let mut cols = vec![0f32; ckk * hw];
            matmul::nn(ckk, hw, g.o, wt, dyi, &rows, &mut cols, hw, Start::Zero);
            g.col2im_add(&cols, dxi);
        }
    });
    tensor(dx, [g.n, g.c, g.h, g.w])
}

/// The gradient with respect to `w`: per sample `dy x cols^T`, summed in sample order. `kept` is the
/// column matrix [`forward_keeping`] built for this `x`, if it kept one.
pub(super) fn w_grad(
    x: FlexTensor,
    w: FlexTensor,
    dy: FlexTensor,
    stride: usize,
    kept: Option<FlexTensor>,
) -> FlexTensor {
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
    let kept = kept.map(contiguous);
    let kept = kept.as_ref().map(f32s);
    if let Some(k) = kept {
        assert!(g.builds_columns() && k.len() == g.n * g.ckk() * g.plane_out(), "w_grad: kept columns do not fit");
    }
    let (x, dy) = (contiguous(x), contiguous(dy));
    let (xs, dys) = (f32s(&x), f32s(&dy));
    let (hw, ckk) = (g.plane_out(), g.ckk());
    let size = g.o * ckk;
    let rows = matmul::row_starts(ckk, hw);
    // One partial product per sample, in parallel; summed below in sample order.
    let partials: Vec<Vec<f32>> = (0..g.n)
        .into_par_iter()
        .map(|i| {
            let xi = &xs[i * g.c * g.plane_in()..(i + 1) * g.c * g.plane_in()];
            let dyi = &dys[i * g.o * hw..(i + 1) * g.o * hw];
            let mut dw = vec![0f32; size];
            // dw [o, ckk] = dy [o, HW'] x cols^T [HW', ckk]: dot products of rows
            if g.is_shifted() {
                // On the padded grid: dy with zeros in the columns past the image's edge, against
                // the shifted views of the padded input.
                let p = Padded::new(g.c, g.h, g.w, g.k, xi);
                let mut dy_wide = vec![0f32; g.o * p.n_out()];
                for (dst, src) in dy_wide.chunks_mut(p.wp).zip(dyi.chunks(g.w)) {
                    dst[..g.w].copy_from_slice(src);
                }
                matmul::nt(g.o, ckk, p.n_valid(), &dy_wide, p.n_out(), &p.data, &p.rows(), &mut dw, ckk);
            } else if let Some(k) = kept {
                matmul::nt(g.o, ckk, hw, dyi, hw, &k[i * ckk * hw..(i + 1) * ckk * hw], &rows, &mut dw, ckk);
            } else {
                let cols = g.im2col(xi);
                matmul::nt(g.o, ckk, hw, dyi, hw, cols.as_deref().unwrap_or(xi), &rows, &mut dw, ckk);
            }
            dw
        })
        .collect();
    let mut dw = vec![0f32; size];
    for p in &partials {
        dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    tensor(dw, [g.o, g.c, g.k, g.k])
}

/// `y [m, h*w] = start + a [m, ch*k*k] x cols(x)` for a stride-1 "same" convolution of `x [ch, h, w]`,
/// without the column matrix: row `(c, ky, kx)` of the columns is the zero-padded input shifted by
/// `(ky, kx)`, read in place. The product is taken on the padded grid (`w + k - 1` columns per row; the
/// extra `k - 1` are thrown away), so every row of the columns is one contiguous run.
#[allow(clippy::too_many_arguments)]
fn shifted_product(
    m: usize,
    a: Strided,
    ch: usize,
    h: usize,
    w: usize,
    k: usize,
    x: &[f32],
    y: &mut [f32],
    start: Start,
) {
    let p = Padded::new(ch, h, w, k, x);
    let mut wide = vec![0f32; m * p.n_out()];
    matmul::nn(m, p.n_valid(), ch * k * k, a, &p.data, &p.rows(), &mut wide, p.n_out(), start);
    for (src, dst) in wide.chunks(p.n_out()).zip(y.chunks_mut(h * w)) {
        for (s, d) in src.chunks(p.wp).zip(dst.chunks_mut(w)) {
            d.copy_from_slice(&s[..w]);
        }
    }
}

/// `x [ch, h, w]` with `k / 2` zeros around each plane, for the stride-1 path.
struct Padded {
    data: Vec<f32>,
    ch: usize,
    h: usize,
    w: usize,
    k: usize,
    /// Padded width and height.
    wp: usize,
    hp: usize,
}

impl Padded {
    fn new(ch: usize, h: usize, w: usize, k: usize, x: &[f32]) -> Self {
        let pad = k / 2;
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        let mut data = vec![0f32; ch * hp * wp];
        for (plane, src) in data.chunks_mut(hp * wp).zip(x.chunks(h * w)) {
            for (row, s) in plane[pad * wp..].chunks_mut(wp).zip(src.chunks(w)) {
                row[pad..pad + w].copy_from_slice(s);
            }
        }
        Padded { data, ch, h, w, k, wp, hp }
    }

    /// Outputs per plane on the padded grid: `h` rows of `wp`.
    fn n_out(&self) -> usize {
        self.h * self.wp
    }

    /// The outputs computed: up to the last real pixel of the last row (the rest would read past the
    /// padded input).
    fn n_valid(&self) -> usize {
        (self.h - 1) * self.wp + self.w
    }

    /// Where row `(c, ky, kx)` of the columns starts in `data`.
    fn rows(&self) -> Vec<usize> {
        let kk = self.k * self.k;
        (0..self.ch * kk).map(|r| (r / kk) * self.hp * self.wp + (r % kk / self.k) * self.wp + r % self.k).collect()
    }
}

/// The gradient with respect to `b`: `dy` summed over samples and pixels, per channel.
///
/// Each (sample, channel) plane is summed in pixel order, then the planes in sample order (the bits
/// every earlier version gave). One plane's sum is a chain of dependent additions, bound by the adder's
/// latency; [`plane_sums`] runs the chains of `LANES` samples side by side, so the adder is kept busy
/// without changing any chain's order.
pub(super) fn b_grad(dy: FlexTensor) -> FlexTensor {
    let s = dy.shape();
    let (n, o, plane) = (s[0], s[1], s[2] * s[3]);
    let dy = contiguous(dy);
    let dys = f32s(&dy);
    let db: Vec<f32> = (0..o)
        .into_par_iter()
        .map(|j| {
            // From -0.0, as `Sum` for floats starts.
            let mut total = -0.0f32;
            for first in (0..n).step_by(LANES) {
                let planes: Vec<&[f32]> =
                    (first..n.min(first + LANES)).map(|i| &dys[(i * o + j) * plane..(i * o + j + 1) * plane]).collect();
                plane_sums(&planes).iter().take(planes.len()).for_each(|v| total += v);
            }
            total
        })
        .collect();
    tensor(db, [o])
}

/// Samples whose planes [`b_grad`] sums side by side.
const LANES: usize = 8;

/// The sum of each plane (up to [`LANES`] of equal length), each in element order from zero: `p[0] +
/// p[1] + ...`, as `iter().sum()` would give it.
fn plane_sums(planes: &[&[f32]]) -> [f32; LANES] {
    let mut acc = [-0.0f32; LANES];
    let len = planes.first().map_or(0, |p| p.len());
    if planes.len() == LANES {
        let p: [&[f32]; LANES] = std::array::from_fn(|l| &planes[l][..len]);
        for e in 0..len {
            for l in 0..LANES {
                acc[l] += p[l][e];
            }
        }
    } else {
        for (a, p) in acc.iter_mut().zip(planes) {
            *a = p.iter().sum();
        }
    }
    acc
}

/// Writes a slice of uninitialised floats front to back, then hands it over initialised.
struct Writer<'a> {
    out: &'a mut [MaybeUninit<f32>],
    at: usize,
}

impl<'a> Writer<'a> {
    fn zeros(&mut self, n: usize) {
        // Mostly a few floats at a row's ends: a loop, not a call to memset.
        self.out[self.at..self.at + n].iter_mut().for_each(|v| {
            v.write(0.0);
        });
        self.at += n;
    }

    fn copy(&mut self, src: &[f32]) {
        let dst = &mut self.out[self.at..self.at + src.len()];
        // SAFETY: `dst` is `src.len()` floats of our own slice, which `src` (borrowed shared) cannot
        // overlap; `MaybeUninit<f32>` has the layout of `f32`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), src.len()) };
        self.at += src.len();
    }

    /// The whole slice, every element written (checked).
    fn done(self) -> &'a mut [f32] {
        assert_eq!(self.at, self.out.len(), "im2col: wrote {} of {} elements", self.at, self.out.len());
        // SAFETY: all `out.len()` elements were written, front to back, and `MaybeUninit<f32>` has the
        // layout of `f32`.
        unsafe { &mut *(self.out as *mut [MaybeUninit<f32>] as *mut [f32]) }
    }
}

/// The sizes of one convolution.
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    h_out: usize,
    w_out: usize,
}

impl Geometry {
    fn new(x: &Shape, w: &Shape, stride: usize) -> Self {
        let (n, c, h, wd) = (x[0], x[1], x[2], x[3]);
        let (o, k) = (w[0], w[2]);
        assert!(w[1] == c && w[3] == k && k % 2 == 1, "conv_same: weight {w:?} does not fit input {x:?}");
        let pad = k / 2;
        let out = |len: usize| (len + 2 * pad - k) / stride + 1;
        Geometry { n, c, h, w: wd, o, k, stride, pad, h_out: out(h), w_out: out(wd) }
    }

    fn plane_in(&self) -> usize {
        self.h * self.w
    }

    fn plane_out(&self) -> usize {
        self.h_out * self.w_out
    }

    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    /// A 1x1 convolution at stride 1 needs no im2col: the input is its own column matrix.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1
    }

    /// A larger kernel at stride 1 on a plane at least 16 wide reads its columns as shifted views of the
    /// padded input ([`shifted_product`]). On narrower planes the padded grid's extra columns (25 % at
    /// 8 wide) and the short rows cost more than writing the columns out (measured at batch 32: at
    /// 64 x 64 x 8 channels the shifted product takes 0.6x the time of im2col; at 8 x 8 x 64, 1.0-1.4x).
    fn is_shifted(&self) -> bool {
        self.k > 1 && self.stride == 1 && self.w >= 16
    }

    /// The outputs `o` (along one axis) whose input `o * stride + d - pad`, for kernel offset `d`, lies
    /// inside the image (of `len_in`; `len_out` outputs).
    fn valid(&self, d: usize, len_in: usize, len_out: usize) -> std::ops::Range<usize> {
        let s = self.stride as isize;
        let off = d as isize - self.pad as isize;
        // smallest ox with ox*s + off >= 0; largest with ox*s + off <= len_in - 1
        let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
        let hi = ((len_in as isize - 1 - off).div_euclid(s) + 1).clamp(0, len_out as isize);
        (lo.min(hi) as usize)..(hi as usize)
    }

    /// Whether the product reads a column matrix written out by [`Geometry::im2col`] (neither the
    /// shifted views of the stride-1 path nor a pointwise convolution's own input).
    fn builds_columns(&self) -> bool {
        !self.is_shifted() && !self.is_pointwise()
    }

    /// `[c, h, w]` -> `[c*k*k, h'*w']` (row `(ch*k + ky)*k + kx`), zero where the window leaves the
    /// image; `None` for a pointwise convolution (the input is the matrix).
    fn im2col(&self, x: &[f32]) -> Option<Vec<f32>> {
        if self.is_pointwise() {
            return None;
        }
        let len = self.ckk() * self.plane_out();
        let mut cols = Vec::with_capacity(len);
        self.im2col_into(x, &mut cols.spare_capacity_mut()[..len]);
        // SAFETY: `im2col_into` wrote all `len` elements (it checks).
        unsafe { cols.set_len(len) };
        Some(cols)
    }

    /// [`Geometry::im2col`] into `out` (exactly `c*k*k * h'*w'` long), which it returns initialised.
    /// Every element is written once, in order (no zero-filling first: that was a third of this
    /// function's time).
    fn im2col_into<'a>(&self, x: &[f32], out: &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] {
        let (wo, ho, s) = (self.w_out, self.h_out, self.stride);
        // At stride s > 1 each input row is first split into its s phases (columns congruent mod s,
        // each `ws` long): a window's columns `ix0, ix0 + s, ...` are then one contiguous run of phase
        // `ix0 % s`. Gathering them one float at a time was 70 % of this function.
        let ws = self.w.div_ceil(s);
        let phases: Vec<f32> = if s > 1 {
            let mut p = vec![0f32; self.c * self.h * s * ws];
            for (src, dst) in x.chunks(self.w).zip(p.chunks_mut(s * ws)) {
                if s == 2 {
                    let (even, odd) = dst.split_at_mut(ws);
                    let (pairs, last) = src.as_chunks::<2>();
                    for ((e, o), &[a, b]) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                        (*e, *o) = (a, b);
                    }
                    if let [v] = last {
                        even[pairs.len()] = *v;
                    }
                } else {
                    for (ix, &v) in src.iter().enumerate() {
                        dst[(ix % s) * ws + ix / s] = v;
                    }
                }
            }
            p
        } else {
            Vec::new()
        };
        let mut cols = Writer { out, at: 0 };
        for r in 0..self.ckk() {
            let (ch, ky, kx) = (r / (self.k * self.k), (r / self.k) % self.k, r % self.k);
            let xs = self.valid(kx, self.w, wo);
            let ys = self.valid(ky, self.h, ho);
            cols.zeros(ys.start * wo);
            for oy in ys.clone() {
                let iy = oy * s + ky - self.pad;
                let ix0 = xs.start * s + kx - self.pad;
                cols.zeros(xs.start);
                if s == 1 {
                    let src = &x[(ch * self.h + iy) * self.w..];
                    cols.copy(&src[ix0..ix0 + xs.len()]);
                } else {
                    let row = &phases[(ch * self.h + iy) * s * ws..];
                    let start = (ix0 % s) * ws + ix0 / s;
                    cols.copy(&row[start..start + xs.len()]);
                }
                cols.zeros(wo - xs.end);
            }
            cols.zeros((ho - ys.end) * wo);
        }
        cols.done()
    }

    /// The adjoint of [`Geometry::im2col`]: adds each column entry back onto its input pixel.
    fn col2im_add(&self, cols: &[f32], dx: &mut [f32]) {
        let (wo, ho) = (self.w_out, self.h_out);
        for (r, row) in cols.chunks(self.plane_out()).enumerate() {
            let (ch, ky, kx) = (r / (self.k * self.k), (r / self.k) % self.k, r % self.k);
            let plane = &mut dx[ch * self.plane_in()..(ch + 1) * self.plane_in()];
            let xs = self.valid(kx, self.w, wo);
            for oy in self.valid(ky, self.h, ho) {
                let iy = oy * self.stride + ky - self.pad;
                let dst = &mut plane[iy * self.w..(iy + 1) * self.w];
                let src = &row[oy * wo..(oy + 1) * wo];
                let ix0 = xs.start * self.stride + kx - self.pad;
                if self.stride == 1 {
                    dst[ix0..ix0 + xs.len()].iter_mut().zip(&src[xs.clone()]).for_each(|(a, b)| *a += b);
                } else {
                    for (j, ox) in xs.clone().enumerate() {
                        dst[ix0 + j * self.stride] += src[ox];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000).map(|v| v as f32 / 500.0 - 1.0).collect()
    }

    /// The columns the forward pass keeps give the weight gradient it would have built itself, bit for
    /// bit, and keeping them leaves the output as it was; where no columns are built, none are kept.
    #[test]
    fn kept_columns_give_the_same_weight_gradient() {
        for (xs, o, k, stride, builds) in [
            ([3, 8, 16, 16], 16, 3, 2, true),
            ([2, 3, 7, 5], 4, 3, 2, true),
            ([2, 16, 8, 8], 16, 3, 1, true),
            ([2, 8, 9, 9], 4, 1, 2, true),
            ([2, 4, 16, 16], 4, 3, 1, false),
            ([2, 4, 8, 8], 4, 1, 1, false),
        ] {
            let ws = [o, xs[1], k, k];
            let x = tensor(values(xs.iter().product(), 1), xs);
            let w = tensor(values(ws.iter().product(), 2), ws);
            let b = tensor(values(o, 3), [o]);
            let plain = forward(x.clone(), w.clone(), b.clone(), stride);
            let (y, kept) = forward_keeping(x.clone(), w.clone(), b.clone(), stride, true);
            let bits = |t: &FlexTensor| f32s(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&plain), "{xs:?} k {k} s {stride}: output");
            assert_eq!(kept.is_some(), builds, "{xs:?} k {k} s {stride}: columns kept");
            let ys = y.shape();
            let dy = tensor(values(ys.num_elements(), 4), [ys[0], ys[1], ys[2], ys[3]]);
            let rebuilt = w_grad(x.clone(), w.clone(), dy.clone(), stride, None);
            let reused = w_grad(x, w, dy, stride, kept);
            assert_eq!(bits(&reused), bits(&rebuilt), "{xs:?} k {k} s {stride}: weight gradient");
        }
    }

    /// `b_grad` against the plain nested sums it replaced, bit for bit: sample counts below, at and
    /// past a multiple of the lanes, and planes of negative zeros (whose sum keeps its sign).
    #[test]
    fn bias_gradient_is_the_plain_sum_bit_for_bit() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10f32.powi((state % 7) as i32 - 3)
        };
        for (n, o, side) in [(1, 3, 5), (7, 2, 4), (8, 4, 3), (13, 5, 6), (32, 8, 8)] {
            let plane = side * side;
            let mut values: Vec<f32> = (0..n * o * plane).map(|_| next()).collect();
            // One channel all negative zeros.
            for i in 0..n {
                values[i * o * plane..(i * o + 1) * plane].fill(-0.0);
            }
            let want: Vec<f32> = (0..o)
                .map(|j| (0..n).map(|i| values[(i * o + j) * plane..(i * o + j + 1) * plane].iter().sum::<f32>()).sum())
                .collect();
            let got = b_grad(tensor(values, [n, o, side, side]));
            let got = f32s(&got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got), bits(&want), "n {n}, o {o}, {side}x{side}");
        }
    }
}
