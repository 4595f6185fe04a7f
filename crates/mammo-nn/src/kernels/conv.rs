//! The flex convolution ("same" padding, square odd kernel, any stride) and its gradients on float32:
//! one channels-first GEMM per sample. See the module above for why.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::{contiguous, f32s, tensor};

/// `x [n, c, h, w]`, `w [o, c, k, k]`, `b [o]` -> `[n, o, h', w']`.
pub(super) fn forward(x: FlexTensor, w: FlexTensor, b: FlexTensor, stride: usize) -> FlexTensor {
    #[cfg(test)]
    super::tests::FLEX_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
    let (x, w, b) = (contiguous(x), contiguous(w), contiguous(b));
    let (xs, ws, bs) = (f32s(&x), f32s(&w), f32s(&b));
    let mut out = vec![0f32; g.n * g.o * g.plane_out()];
    out.par_chunks_mut(g.o * g.plane_out()).enumerate().for_each(|(i, y)| {
        let xi = &xs[i * g.c * g.plane_in()..(i + 1) * g.c * g.plane_in()];
        let cols = g.im2col(xi);
        // y [o, HW'] = w [o, ckk] x cols [ckk, HW']
        gemm_rm(g.o, g.plane_out(), g.ckk(), y, ws, false, cols.as_deref().unwrap_or(xi), false);
        for (row, &bias) in y.chunks_mut(g.plane_out()).zip(bs) {
            row.iter_mut().for_each(|v| *v += bias);
        }
    });
    tensor(out, [g.n, g.o, g.h_out, g.w_out])
}

/// The gradient with respect to `x`: per sample, `w^T x dy`, then col2im.
pub(super) fn x_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
    let g = Geometry::new(&x.shape(), &w.shape(), stride);
    let (w, dy) = (contiguous(w), contiguous(dy));
    let (ws, dys) = (f32s(&w), f32s(&dy));
    let mut dx = vec![0f32; g.n * g.c * g.plane_in()];
    dx.par_chunks_mut(g.c * g.plane_in()).enumerate().for_each(|(i, dxi)| {
        let dyi = &dys[i * g.o * g.plane_out()..(i + 1) * g.o * g.plane_out()];
        if g.is_pointwise() {
            // dx [c, HW] = w^T [c, o] x dy [o, HW]
            gemm_rm(g.c, g.plane_out(), g.o, dxi, ws, true, dyi, false);
        } else {
            let mut cols = vec![0f32; g.ckk() * g.plane_out()];
            gemm_rm(g.ckk(), g.plane_out(), g.o, &mut cols, ws, true, dyi, false);
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
    let size = g.o * g.ckk();
    // One partial product per sample, in parallel; summed below in sample order.
    let partials: Vec<Vec<f32>> = (0..g.n)
        .into_par_iter()
        .map(|i| {
            let xi = &xs[i * g.c * g.plane_in()..(i + 1) * g.c * g.plane_in()];
            let dyi = &dys[i * g.o * g.plane_out()..(i + 1) * g.o * g.plane_out()];
            let cols = g.im2col(xi);
            let mut dw = vec![0f32; size];
            // dw [o, ckk] = dy [o, HW'] x cols^T [HW', ckk]
            gemm_rm(g.o, g.ckk(), g.plane_out(), &mut dw, dyi, false, cols.as_deref().unwrap_or(xi), true);
            dw
        })
        .collect();
    let mut dw = vec![0f32; size];
    for p in &partials {
        dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    tensor(dw, [g.o, g.c, g.k, g.k])
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
        let (wo, ho) = (self.w_out, self.h_out);
        let mut cols = Vec::with_capacity(self.ckk() * self.plane_out());
        let zeros = |cols: &mut Vec<f32>, n: usize| cols.resize(cols.len() + n, 0.0);
        for r in 0..self.ckk() {
            let (ch, ky, kx) = (r / (self.k * self.k), (r / self.k) % self.k, r % self.k);
            let plane = &x[ch * self.plane_in()..(ch + 1) * self.plane_in()];
            let xs = self.valid(kx, self.w, wo);
            let ys = self.valid(ky, self.h, ho);
            zeros(&mut cols, ys.start * wo);
            for oy in ys.clone() {
                let iy = oy * self.stride + ky - self.pad;
                let src = &plane[iy * self.w..(iy + 1) * self.w];
                let ix0 = xs.start * self.stride + kx - self.pad;
                zeros(&mut cols, xs.start);
                if self.stride == 1 {
                    cols.extend_from_slice(&src[ix0..ix0 + xs.len()]);
                } else {
                    let s = self.stride;
                    cols.extend((0..xs.len()).map(|j| src[ix0 + j * s]));
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

/// `dst [m, n] = op(a) [m, k] x op(b) [k, n]`, all row-major; `op` transposes when its flag is set
/// (`a` is then stored `[k, m]`, `b` `[n, k]`). Single-threaded: callers parallelise over samples.
#[allow(clippy::too_many_arguments)]
fn gemm_rm(m: usize, n: usize, k: usize, dst: &mut [f32], a: &[f32], a_t: bool, b: &[f32], b_t: bool) {
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    // Strides of element (row, col): row-major [rows, cols] has (col stride 1, row stride cols).
    let (a_cs, a_rs) = if a_t { (m as isize, 1) } else { (1, k as isize) };
    let (b_cs, b_rs) = if b_t { (k as isize, 1) } else { (1, n as isize) };
    // SAFETY: the assert above keeps every index of the three matrices inside its slice, and `dst`
    // is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
