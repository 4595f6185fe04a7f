//! Flex element-wise kernels on float32: the (leaky) ReLU and its gradient, vectorised, in parallel
//! chunks.

use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::DType;
use rayon::prelude::*;

use super::{contiguous, f32s};

/// `x` where `x > 0`, else `slope * x`.
pub(super) fn leaky_relu(x: FlexTensor, slope: f32) -> FlexTensor {
    let shape = x.shape();
    let x = contiguous(x);
    let xs = f32s(&x);
    let y = par_build(xs.len(), |start, out| {
        let (xs, slope) = (&xs[start..start + out.len()], slope);
        for (o, &v) in out.iter_mut().zip(xs) {
            o.write(leaky(v, slope));
        }
    });
    FlexTensor::new(burn::tensor::Bytes::from_elems(y), Layout::contiguous(shape), DType::F32)
}

/// `v` where `v > 0`, else `slope * v`: one element of [`leaky_relu`] (and of the fused group norm).
#[inline(always)]
pub(super) fn leaky(v: f32, slope: f32) -> f32 {
    // Both sides computed, then a select: the loop vectorises (a branch kept it scalar). `+ 0.0` turns
    // the -0 of a negative input times slope 0 into +0, as burn's relu gives.
    let scaled = v * slope + 0.0;
    if v > 0.0 { v } else { scaled }
}

/// `dy` where `x > 0`, else `slope * dy`.
pub(super) fn leaky_relu_grad(x: FlexTensor, dy: FlexTensor, slope: f32) -> FlexTensor {
    let shape = dy.shape();
    let (x, dy) = (contiguous(x), contiguous(dy));
    let (xs, dys) = (f32s(&x), f32s(&dy));
    let dx = par_build(xs.len(), |start, out| {
        let (xs, dys, slope) = (&xs[start..start + out.len()], &dys[start..start + out.len()], slope);
        for (o, (&v, &g)) in out.iter_mut().zip(xs.iter().zip(dys)) {
            let scaled = g * slope + 0.0;
            o.write(if v > 0.0 { g } else { scaled });
        }
    });
    FlexTensor::new(burn::tensor::Bytes::from_elems(dx), Layout::contiguous(shape), DType::F32)
}

/// `n` floats written in parallel chunks of [`ELEMENTWISE_CHUNK`] by `fill(start, chunk)`, which must
/// write every element of its chunk (never read first: no zero-filling pass, and the loops stay
/// simple enough to vectorise).
fn par_build(n: usize, fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(ELEMENTWISE_CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| fill(i * ELEMENTWISE_CHUNK, chunk));
    // SAFETY: the `n` elements were all written by the `fill` calls (its contract), and `n` is
    // within the capacity.
    unsafe { v.set_len(n) };
    v
}

/// Elements per parallel task of the element-wise kernels (large enough to amortise rayon's cost).
const ELEMENTWISE_CHUNK: usize = 1 << 15;
