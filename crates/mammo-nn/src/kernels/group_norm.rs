//! Flex group normalisation and its gradients on float32: one pass forward, two backward per
//! (sample, group), sums in f64.

use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

use super::{contiguous, f32s, tensor};

/// `(x - mean) / sqrt(var + eps) * gamma + beta` per (sample, group).
pub(super) fn forward(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, eps: f32) -> FlexTensor {
    forward_act(x, gamma, beta, None, groups, eps, None)
}

/// [`forward`], then with `skip` added (a residual of the same shape), then with `Some(slope)` the
/// (leaky) ReLU of `elementwise.rs`, each output as it is written: the same bits as the kernels one
/// after the other (an f32 addition is the same operation wherever it runs), without their passes and
/// buffers.
pub(super) fn forward_act(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    skip: Option<FlexTensor>,
    groups: usize,
    eps: f32,
    slope: Option<f32>,
) -> FlexTensor {
    let shape = x.shape();
    let norm = GroupGeometry::new(&shape, groups);
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let skip = skip.map(|s| {
        assert_eq!(s.shape(), shape, "group_norm: the residual's shape");
        contiguous(s)
    });
    let (gs, bs) = (f32s(&gamma), f32s(&beta));
    // Without a residual, the group's own input stands in (and is not read).
    let skips = skip.as_ref().map_or(f32s(&x), f32s);
    // Every element is written below (the planes of the groups cover the tensor), so the buffer is not
    // zero-filled first: with the kept-buffers allocator that fill was a memset of every output.
    let n = shape.num_elements();
    let mut y: Vec<f32> = Vec::with_capacity(n);
    let groups_in = f32s(&x).par_chunks(norm.len()).zip(skips.par_chunks(norm.len()));
    y.spare_capacity_mut()[..n].par_chunks_mut(norm.len()).zip(groups_in).enumerate().for_each(|(i, (y, (x, s)))| {
        let (mean, rstd) = norm.moments(x, eps);
        let first = (i % groups) * norm.channels;
        for (j, ((y, x), s)) in y.chunks_mut(norm.plane).zip(x.chunks(norm.plane)).zip(s.chunks(norm.plane)).enumerate()
        {
            let (scale, shift) = (rstd * gs[first + j], bs[first + j]);
            match (slope, skip.is_some()) {
                (None, false) => y.iter_mut().zip(x).for_each(|(y, &x)| {
                    y.write((x - mean) * scale + shift);
                }),
                (Some(slope), false) => y.iter_mut().zip(x).for_each(|(y, &x)| {
                    y.write(super::elementwise::leaky((x - mean) * scale + shift, slope));
                }),
                (None, true) => y.iter_mut().zip(x.iter().zip(s)).for_each(|(y, (&x, &s))| {
                    y.write((x - mean) * scale + shift + s);
                }),
                (Some(slope), true) => y.iter_mut().zip(x.iter().zip(s)).for_each(|(y, (&x, &s))| {
                    y.write(super::elementwise::leaky((x - mean) * scale + shift + s, slope));
                }),
            }
        }
    });
    // SAFETY: the loop above wrote all `n` elements (each group's planes, each plane's pixels), and `n`
    // is within the capacity.
    unsafe { y.set_len(n) };
    FlexTensor::new(burn::tensor::Bytes::from_elems(y), Layout::contiguous(shape), DType::F32)
}

/// The gradients with respect to `x`, `gamma` and `beta`.
pub(super) fn grad(
    x: FlexTensor,
    gamma: FlexTensor,
    dy: FlexTensor,
    groups: usize,
    eps: f32,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.shape();
    let c = shape[1];
    let norm = GroupGeometry::new(&shape, groups);
    let (x, gamma, dy) = (contiguous(x), contiguous(gamma), contiguous(dy));
    let gs = f32s(&gamma);
    // Written whole below, as the forward's output.
    let n = shape.num_elements();
    let mut dx: Vec<f32> = Vec::with_capacity(n);
    // Per (sample, channel): sum of dy * x_hat and of dy, reduced over samples in order below.
    let mut partial = vec![0f64; shape[0] * c * 2];
    dx.spare_capacity_mut()[..n]
        .par_chunks_mut(norm.len())
        .zip(f32s(&x).par_chunks(norm.len()).zip(f32s(&dy).par_chunks(norm.len())))
        .zip(partial.par_chunks_mut(norm.channels * 2))
        .enumerate()
        .for_each(|(i, ((dx, (x, dy)), partial))| {
            let (mean, rstd) = norm.moments(x, eps);
            let first = (i % groups) * norm.channels;
            // dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)), g = dy * gamma
            let (mut sum_g, mut sum_gx) = (0f64, 0f64);
            for (j, (x, dy)) in x.chunks(norm.plane).zip(dy.chunks(norm.plane)).enumerate() {
                let s_dy = lane_sum(dy, dy, |_, dy| dy as f64);
                let s_dyx = lane_sum(x, dy, |x, dy| dy as f64 * ((x - mean) * rstd) as f64);
                partial[2 * j] = s_dyx;
                partial[2 * j + 1] = s_dy;
                sum_g += s_dy * gs[first + j] as f64;
                sum_gx += s_dyx * gs[first + j] as f64;
            }
            let m = norm.len() as f64;
            let (mean_g, mean_gx) = ((sum_g / m) as f32, (sum_gx / m) as f32);
            for (j, (dx, (x, dy))) in
                dx.chunks_mut(norm.plane).zip(x.chunks(norm.plane).zip(dy.chunks(norm.plane))).enumerate()
            {
                let gamma = gs[first + j];
                for (dx, (&x, &dy)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                    let xh = (x - mean) * rstd;
                    dx.write(rstd * (dy * gamma - mean_g - xh * mean_gx));
                }
            }
        });
    // SAFETY: every element of every group's planes was written above, and `n` is within the capacity.
    unsafe { dx.set_len(n) };
    let (mut dgamma, mut dbeta) = (vec![0f64; c], vec![0f64; c]);
    for sample in partial.chunks(c * 2) {
        for ch in 0..c {
            dgamma[ch] += sample[2 * ch];
            dbeta[ch] += sample[2 * ch + 1];
        }
    }
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
    let dx = FlexTensor::new(burn::tensor::Bytes::from_elems(dx), Layout::contiguous(shape), DType::F32);
    (dx, tensor(to_f32(dgamma), [c]), tensor(to_f32(dbeta), [c]))
}

/// The sizes of one group normalisation: each sample's channels fall into groups of `channels`
/// consecutive channels of `plane` pixels each.
struct GroupGeometry {
    channels: usize,
    plane: usize,
}

impl GroupGeometry {
    fn new(shape: &Shape, groups: usize) -> Self {
        assert!(groups > 0 && shape[1] % groups == 0, "group_norm: {} channels in {groups} groups", shape[1]);
        GroupGeometry { channels: shape[1] / groups, plane: shape[2] * shape[3] }
    }

    /// Elements of one (sample, group).
    fn len(&self) -> usize {
        self.channels * self.plane
    }

    /// Mean and 1 / sqrt(biased variance + eps) of one group's elements (sums in f64).
    fn moments(&self, x: &[f32], eps: f32) -> (f32, f32) {
        let m = x.len() as f64;
        let mean = lane_sum(x, x, |v, _| v as f64) / m;
        let var = lane_sum(x, x, |v, _| (v as f64 - mean).powi(2)) / m;
        (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
    }
}

/// `sum f(a[i], b[i])` in f64, over 8 interleaved partial sums (so the loop vectorises) added in a
/// fixed order: the same result on every run and thread count.
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (a, b) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(a[l], b[l]);
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&a, &b)| f(a, b)).sum();
    acc.iter().sum::<f64>() + tail
}
