//! The flex convolution ("same" padding, square odd kernel, any stride) and its gradients on float32:
//! one channels-first matrix product per sample (`matmul.rs`). See the module above for why.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::matmul::{self, Start, Strided};
use super::{contiguous, f32s, tensor};

/// `x [n, c, h, w]`, `w [o, c, k, k]`, `b [o]` -> `[n, o, h', w']`.
pub(super) fn forward(x: FlexTensor, w: FlexTensor, b: FlexTensor, stride: usize) -> FlexTensor {
    #[cfg(test)]
    super::tests::FLEX_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
    let (x, w, b) = (contiguous(x), contiguous(w), contiguous(b));
    let (xs, ws, bs) = (f32s(&x), f32s(&w), f32s(&b));
    let (hw, ckk) = (g.plane_out(), g.ckk());
    // Where each row of the column matrix starts (im2col path), once for every sample.
    let rows = matmul::row_starts(ckk, hw);
    let mut out = vec![0f32; g.n * g.o * hw];
    out.par_chunks_mut(g.o * hw).enumerate().for_each(|(i, y)| {
        let xi = &xs[i * g.c * g.plane_in()..(i + 1) * g.c * g.plane_in()];
        // y [o, HW'] = b + w [o, ckk] x cols [ckk, HW']
        let w = Strided { data: ws, rs: ckk, cs: 1 };
        if g.is_shifted() {
            shifted_product(g.o, w, g.c, g.h, g.w, g.k, xi, y, Start::Row(bs));
        } else {
            let cols = g.im2col(xi);
            matmul::nn(g.o, hw, ckk, w, cols.as_deref().unwrap_or(xi), &rows, y, hw, Start::Row(bs));
        }
    });
    tensor(out, [g.n, g.o, g.h_out, g.w_out])
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

/// The gradient with respect to `w`: per sample `dy x cols^T`, summed in sample order.
pub(super) fn w_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
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
pub(super) fn b_grad(dy: FlexTensor) -> FlexTensor {
    let s = dy.shape();
    let (n, o, plane) = (s[0], s[1], s[2] * s[3]);
    let dy = contiguous(dy);
    let dys = f32s(&dy);
    let db: Vec<f32> = (0..o)
        .into_par_iter()
        .map(|j| (0..n).map(|i| dys[(i * o + j) * plane..(i * o + j + 1) * plane].iter().sum::<f32>()).sum())
        .collect();
    tensor(db, [o])
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

    /// `[c, h, w]` -> `[c*k*k, h'*w']` (row `(ch*k + ky)*k + kx`), zero where the window leaves the
    /// image; `None` for a pointwise convolution (the input is the matrix). Every element is written
    /// once, in order (no zero-filling first: that was a third of this function's time).
    fn im2col(&self, x: &[f32]) -> Option<Vec<f32>> {
        if self.is_pointwise() {
            return None;
        }
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
        let mut cols = Vec::with_capacity(self.ckk() * self.plane_out());
        let zeros = |cols: &mut Vec<f32>, n: usize| cols.resize(cols.len() + n, 0.0);
        for r in 0..self.ckk() {
            let (ch, ky, kx) = (r / (self.k * self.k), (r / self.k) % self.k, r % self.k);
            let xs = self.valid(kx, self.w, wo);
            let ys = self.valid(ky, self.h, ho);
            zeros(&mut cols, ys.start * wo);
            for oy in ys.clone() {
                let iy = oy * s + ky - self.pad;
                let ix0 = xs.start * s + kx - self.pad;
                zeros(&mut cols, xs.start);
                if s == 1 {
                    let src = &x[(ch * self.h + iy) * self.w..];
                    cols.extend_from_slice(&src[ix0..ix0 + xs.len()]);
                } else {
                    let row = &phases[(ch * self.h + iy) * s * ws..];
                    let start = (ix0 % s) * ws + ix0 / s;
                    cols.extend_from_slice(&row[start..start + xs.len()]);
                }
                zeros(&mut cols, wo - xs.end);
            }
            zeros(&mut cols, (ho - ys.end) * wo);
        }
        Some(cols)
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
