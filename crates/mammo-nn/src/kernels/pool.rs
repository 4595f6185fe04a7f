//! Flex average pooling on float32 (square window, any stride, zero padding not counted: a window at
//! the border averages the pixels it has) and its gradient: one plane per parallel task.
//!
//! Why: burn-flex pools through its 3-D pooling, and the models pool on every step (the high-pass
//! input's 3x3 local mean of the classifier and critic, the U-Net's 2x2 downsampling), forward and,
//! for the generator's update, backward: 8 % of a GAN training step, most of it the 3-D wrapper and
//! its per-element bounds tests. Here each plane is one task and each window one run of rows.
//!
//! The arithmetic is burn-flex's, in its order (each window summed row by row from zero, then divided
//! by the count; the gradient adds `dy / count` over each window, windows in row-major order), so the
//! results are bit-identical to burn's pooling on flex (tested). This matters: the high-pass input is
//! `(x - local mean) * 40`, a difference of nearly equal numbers, and a mean summed in another order
//! (columns first) moved a 4-step GAN run by 1e-2 from the GPU's (tests/gpu/run); Adam's first steps
//! amplify such differences. Planes are independent, so thread counts do not change the bits.

use burn::backend::TensorMetadata;
use rayon::prelude::*;

use burn::backend::flex::FlexTensor;

use super::{contiguous, f32s, tensor};

/// The pooling's sizes along one axis.
#[derive(Clone, Copy)]
struct Axis {
    len_in: usize,
    len_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Axis {
    fn new(len_in: usize, k: usize, stride: usize, pad: usize) -> Self {
        assert!(len_in + 2 * pad >= k && stride > 0, "avg_pool: window {k} larger than {len_in} + 2 x {pad}");
        Axis { len_in, len_out: (len_in + 2 * pad - k) / stride + 1, k, stride, pad }
    }

    /// The input positions of output `o`'s window that lie inside the image.
    fn window(&self, o: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride) as isize - self.pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + self.k as isize).max(0) as usize).min(self.len_in);
        lo..hi.max(lo)
    }
}

/// `x [n, c, h, w]` -> `[n, c, h', w']`: the mean of each window's pixels inside the image.
pub(super) fn forward(x: FlexTensor, k: usize, stride: usize, pad: usize) -> FlexTensor {
    let s = x.shape();
    let (planes, ry, rx) = (s[0] * s[1], Axis::new(s[2], k, stride, pad), Axis::new(s[3], k, stride, pad));
    let x = contiguous(x);
    let xs = f32s(&x);
    let (plane_in, plane_out) = (ry.len_in * rx.len_in, ry.len_out * rx.len_out);
    let mut out = vec![0f32; planes * plane_out];
    out.par_chunks_mut(plane_out).enumerate().for_each(|(p, y)| {
        let xp = &xs[p * plane_in..(p + 1) * plane_in];
        for (oy, y_row) in y.chunks_mut(rx.len_out).enumerate() {
            let wy = ry.window(oy);
            for (ox, v) in y_row.iter_mut().enumerate() {
                let wx = rx.window(ox);
                let mut sum = 0f32;
                for iy in wy.clone() {
                    for &x in &xp[iy * rx.len_in + wx.start..iy * rx.len_in + wx.end] {
                        sum += x;
                    }
                }
                *v = sum / (wy.len() * wx.len()).max(1) as f32;
            }
        }
    });
    tensor(out, [s[0], s[1], ry.len_out, rx.len_out])
}

/// The gradient of [`forward`] with respect to `x` (whose shape it takes from `x`).
pub(super) fn grad(x: &FlexTensor, dy: FlexTensor, k: usize, stride: usize, pad: usize) -> FlexTensor {
    let s = x.shape();
    let (planes, ry, rx) = (s[0] * s[1], Axis::new(s[2], k, stride, pad), Axis::new(s[3], k, stride, pad));
    let dy = contiguous(dy);
    let dys = f32s(&dy);
    let (plane_in, plane_out) = (ry.len_in * rx.len_in, ry.len_out * rx.len_out);
    let mut dx = vec![0f32; planes * plane_in];
    dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, dxp)| {
        let g = &dys[p * plane_out..(p + 1) * plane_out];
        for (oy, g_row) in g.chunks(rx.len_out).enumerate() {
            let wy = ry.window(oy);
            for (ox, &v) in g_row.iter().enumerate() {
                let wx = rx.window(ox);
                let share = v / (wy.len() * wx.len()).max(1) as f32;
                for iy in wy.clone() {
                    for d in &mut dxp[iy * rx.len_in + wx.start..iy * rx.len_in + wx.end] {
                        *d += share;
                    }
                }
            }
        }
    });
    tensor(dx, [s[0], s[1], s[2], s[3]])
}
