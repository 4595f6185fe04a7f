//! The models' most expensive operations on flex, as a burn backend extension with flex implementations
//! of their forward passes and gradients: the 2-D convolution ("same" padding, square odd kernel), group
//! normalisation and the (leaky) ReLU.
//!
//! Why: convolutions were 80-86 % of a training step on flex (`bench/RESULTS.md`), and most of that was
//! not arithmetic. burn-flex runs every conv2d as a 3-D convolution that first transposes the whole
//! input to channels-last on the calling thread, fills im2col tiles one float at a time, and scatters
//! the GEMM result back; it has no weight gradient of its own, so burn's generic one runs a second
//! convolution over batch/channel-swapped copies with a GEMM whose N is 9. Here each sample is one
//! GEMM on channels-first data: im2col rows are shifted copies of input rows (whole `memcpy` runs at
//! stride 1), the product lands straight in the output, and samples run in parallel.
//!
//! Determinism (the flex promise of `device.rs`): every output element is computed by the same
//! sequence of operations whatever the thread count. Samples are independent in the forward pass and
//! the input gradient; the weight gradient sums per-sample partial products in sample order, and each
//! GEMM runs single-threaded inside its sample's task.
//!
//! The (leaky) ReLU: burn's autodiff has no node of its own for `leaky_relu`, so it ran as a
//! comparison, a scaled copy and a `mask_where`, and its backward as two more `mask_where`s over fresh
//! tensors, all on the calling thread: 12 % of a step's CPU after the convolutions were fixed. Here it
//! is one parallel, vectorised pass forward and one backward.
//!
//! Group norm: composed of burn's operations it is ten passes forward (reshape, mean, subtract,
//! square, mean, add, sqrt, divide, scale, shift) and as many backward, each a fresh tensor. Here it is
//! one pass forward and two backward per (sample, group), sums in f64.
//!
//! Other backends (CUDA) and other dtypes keep burn's own operations: [`conv_same`], [`group_norm`]
//! and [`leaky_relu`] only route flex float32 tensors here.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension, get_or_init_device_settings,
};
use burn::tensor::{DType, Device, Shape, Tensor};
use rayon::prelude::*;

/// The convolution, group norm and (leaky) ReLU with their gradients, as backend operations.
///
/// Where a default body is given it is burn's own operations, so a backend that has nothing better
/// (and `Autodiff`, for the gradient operations, which are never differentiated) inherits it.
#[backend_extension(Flex, Autodiff)]
pub trait Kernels: Backend {
    /// `x [n, c, h, w]`, `w [o, c, k, k]`, `b [o]` -> `[n, o, h', w']`.
    fn conv_same(x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        let k = w.shape()[2];
        Self::conv2d(x, w, Some(b), options(k, stride))
    }

    /// The gradient with respect to `x` (whose shape it takes from `x`).
    fn conv_same_x_grad(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        let k = w.shape()[2];
        Self::conv2d_x_backward(x, w, dy, options(k, stride))
    }

    /// The gradient with respect to `w`.
    fn conv_same_w_grad(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        let k = w.shape()[2];
        Self::conv2d_weight_backward(x, w, dy, options(k, stride))
    }

    /// The gradient with respect to `b`.
    fn conv_same_b_grad(x: FloatTensor<Self>, b: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d_bias_backward(x, b, dy)
    }

    /// Group normalisation of `x [n, c, h, w]` over each sample's `groups` groups of channels, then
    /// `* gamma[c] + beta[c]`; variance biased, `eps` added to it. Float32 only.
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
    ) -> FloatTensor<Self>;

    /// The gradients of [`Kernels::group_norm`] with respect to `x`, `gamma` and `beta`.
    fn group_norm_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        groups: usize,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `x` where `x > 0`, else `slope * x` (`slope` 0: the ReLU).
    fn leaky_relu_fused(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::leaky_relu(x, slope.into())
    }

    /// The gradient of [`Kernels::leaky_relu_fused`]: `dy` where `x > 0`, else `slope * dy`.
    fn leaky_relu_fused_grad(x: FloatTensor<Self>, dy: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        let bool_dtype = get_or_init_device_settings::<Self>(&x.device()).bool_dtype;
        let positive = Self::float_greater_elem(x, 0f32.into(), bool_dtype);
        let scaled = Self::float_mul_scalar(dy.clone(), slope.into());
        Self::float_mask_where(scaled, positive, dy)
    }
}

fn options(k: usize, stride: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [k / 2, k / 2], [1, 1], 1)
}

/// `[n, c, h, w]` -> `[n, o, h', w']`: the convolution of [`Kernels::conv_same`], through the flex
/// kernels below when `x` lives on flex, else burn's `conv2d`.
pub fn conv_same(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize) -> Tensor<4> {
    let k = weight.dims()[2];
    if on_flex(&x.device()) && x.dtype() == DType::F32 && k % 2 == 1 {
        let y =
            <Dispatch as Kernels>::conv_same(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), stride);
        Tensor::from_dispatch(y)
    } else {
        burn::tensor::module::conv2d(x, weight, Some(bias), options(k, stride))
    }
}

/// `x` where `x > 0`, else `slope * x`: [`Kernels::leaky_relu_fused`] on flex, burn's `leaky_relu` (or
/// `relu` for slope 0) elsewhere.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    if on_flex(&x.device()) && x.dtype() == DType::F32 {
        Tensor::from_dispatch(<Dispatch as Kernels>::leaky_relu_fused(x.into_dispatch(), slope))
    } else if slope == 0.0 {
        burn::tensor::activation::relu(x)
    } else {
        burn::tensor::activation::leaky_relu(x, slope as f64)
    }
}

/// Group normalisation (see [`Kernels::group_norm`]) on flex float32 tensors; `None` elsewhere, for
/// the caller to compose it from burn's operations.
pub fn group_norm(x: &Tensor<4>, gamma: &Tensor<1>, beta: &Tensor<1>, groups: usize, eps: f32) -> Option<Tensor<4>> {
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return None;
    }
    let (x, gamma, beta) = (x.clone().into_dispatch(), gamma.clone().into_dispatch(), beta.clone().into_dispatch());
    Some(Tensor::from_dispatch(<Dispatch as Kernels>::group_norm(x, gamma, beta, groups, eps)))
}

fn on_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

// ---- Autodiff: the forward on the inner backend, and a backward node that calls the gradient ops.

impl<B: Backend + Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn conv_same(x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>, stride: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvSame;

        impl<B: Backend + Kernels> Backward<B, 3> for ConvSame {
            type State = (NodeId, NodeId, NodeId, usize);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_w, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, w_state, b_state, stride) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let w = checkpointer.retrieve_node_output::<FloatTensor<B>>(w_state);
                let b = checkpointer.retrieve_node_output::<FloatTensor<B>>(b_state);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::conv_same_x_grad(x.clone(), w.clone(), dy.clone(), stride));
                }
                if let Some(node) = node_w {
                    grads.register::<B>(node.id, B::conv_same_w_grad(x.clone(), w, dy.clone(), stride));
                }
                if let Some(node) = node_b {
                    grads.register::<B>(node.id, B::conv_same_b_grad(x, b, dy));
                }
            }
        }

        match ConvSame.prepare::<C>([x.node(), w.node(), b.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&w), prep.checkpoint(&b), stride);
                prep.finish(state, B::conv_same(x.into_primitive(), w.into_primitive(), b.into_primitive(), stride))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv_same(x.into_primitive(), w.into_primitive(), b.into_primitive(), stride))
            }
        }
    }

    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GroupNormOp;

        impl<B: Backend + Kernels> Backward<B, 3> for GroupNormOp {
            type State = (NodeId, NodeId, usize, f32);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, groups, eps) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let (dx, dgamma, dbeta) = B::group_norm_grad(x, gamma, dy, groups, eps);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match GroupNormOp.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&gamma), groups, eps);
                let y = B::group_norm(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), groups, eps);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::group_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                groups,
                eps,
            )),
        }
    }

    /// Only the backward node above calls this, on the inner backend; here for completeness.
    fn group_norm_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        groups: usize,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::group_norm_grad(Self::inner(x), Self::inner(gamma), Self::inner(dy), groups, eps);
        (Self::from_inner(dx), Self::from_inner(dgamma), Self::from_inner(dbeta))
    }

    fn leaky_relu_fused(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LeakyRelu;

        impl<B: Backend + Kernels> Backward<B, 1> for LeakyRelu {
            type State = (NodeId, f32);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, slope) = ops.state;
                if let Some(node) = node_x {
                    let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                    grads.register::<B>(node.id, B::leaky_relu_fused_grad(x, dy, slope));
                }
            }
        }

        match LeakyRelu.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), slope);
                prep.finish(state, B::leaky_relu_fused(x.into_primitive(), slope))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::leaky_relu_fused(x.into_primitive(), slope)),
        }
    }
}

// ---- Flex: channels-first im2col + one GEMM per sample.

impl Kernels for Flex {
    fn conv_same(x: FlexTensor, w: FlexTensor, b: FlexTensor, stride: usize) -> FlexTensor {
        if !all_f32(&[&x, &w, &b]) {
            let k = w.shape()[2];
            return <Flex as ModuleOps<Flex>>::conv2d(x, w, Some(b), options(k, stride));
        }
        #[cfg(test)]
        tests::FLEX_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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

    fn conv_same_x_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
        if !all_f32(&[&x, &w, &dy]) {
            let k = w.shape()[2];
            return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, w, dy, options(k, stride));
        }
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

    fn conv_same_w_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
        if !all_f32(&[&x, &w, &dy]) {
            let k = w.shape()[2];
            return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, w, dy, options(k, stride));
        }
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

    fn conv_same_b_grad(x: FlexTensor, b: FlexTensor, dy: FlexTensor) -> FlexTensor {
        if !all_f32(&[&dy]) {
            return <Flex as ModuleOps<Flex>>::conv2d_bias_backward(x, b, dy);
        }
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

    fn group_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, eps: f32) -> FlexTensor {
        assert!(all_f32(&[&x, &gamma, &beta]), "group_norm: float32 only (other dtypes take burn's operations)");
        let shape = x.shape();
        let norm = GroupGeometry::new(&shape, groups);
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let (gs, bs) = (f32s(&gamma), f32s(&beta));
        let mut y = vec![0f32; shape.num_elements()];
        y.par_chunks_mut(norm.len()).zip(f32s(&x).par_chunks(norm.len())).enumerate().for_each(|(i, (y, x))| {
            let (mean, rstd) = norm.moments(x, eps);
            let first = (i % groups) * norm.channels;
            for (j, (y, x)) in y.chunks_mut(norm.plane).zip(x.chunks(norm.plane)).enumerate() {
                let (scale, shift) = (rstd * gs[first + j], bs[first + j]);
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = (x - mean) * scale + shift);
            }
        });
        FlexTensor::new(burn::tensor::Bytes::from_elems(y), Layout::contiguous(shape), DType::F32)
    }

    fn group_norm_grad(
        x: FlexTensor,
        gamma: FlexTensor,
        dy: FlexTensor,
        groups: usize,
        eps: f32,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        assert!(all_f32(&[&x, &gamma, &dy]), "group_norm_grad: float32 only");
        let shape = x.shape();
        let c = shape[1];
        let norm = GroupGeometry::new(&shape, groups);
        let (x, gamma, dy) = (contiguous(x), contiguous(gamma), contiguous(dy));
        let gs = f32s(&gamma);
        let mut dx = vec![0f32; shape.num_elements()];
        // Per (sample, channel): sum of dy * x_hat and of dy, reduced over samples in order below.
        let mut partial = vec![0f64; shape[0] * c * 2];
        dx.par_chunks_mut(norm.len())
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
                        *dx = rstd * (dy * gamma - mean_g - xh * mean_gx);
                    }
                }
            });
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

    fn leaky_relu_fused(x: FlexTensor, slope: f32) -> FlexTensor {
        if !all_f32(&[&x]) {
            return <Flex as ActivationOps<Flex>>::leaky_relu(x, slope.into());
        }
        let shape = x.shape();
        let x = contiguous(x);
        let xs = f32s(&x);
        let y = par_build(xs.len(), |start, out| {
            let (xs, slope) = (&xs[start..start + out.len()], slope);
            for (o, &v) in out.iter_mut().zip(xs) {
                // Both sides computed, then a select: the loop vectorises (a branch kept it scalar).
                // `+ 0.0` turns the -0 of a negative input times slope 0 into +0, as burn's relu gives.
                let scaled = v * slope + 0.0;
                o.write(if v > 0.0 { v } else { scaled });
            }
        });
        FlexTensor::new(burn::tensor::Bytes::from_elems(y), Layout::contiguous(shape), DType::F32)
    }

    fn leaky_relu_fused_grad(x: FlexTensor, dy: FlexTensor, slope: f32) -> FlexTensor {
        if !all_f32(&[&x, &dy]) {
            let bool_dtype = get_or_init_device_settings::<Flex>(&x.device()).bool_dtype;
            let positive = Flex::float_greater_elem(x, 0f32.into(), bool_dtype);
            let scaled = Flex::float_mul_scalar(dy.clone(), slope.into());
            return Flex::float_mask_where(scaled, positive, dy);
        }
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

    /// The output columns `ox` whose input column `ox * stride + dx - pad` lies inside the image.
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

fn all_f32(ts: &[&FlexTensor]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() { t } else { t.to_contiguous() }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous float32 (made so by `contiguous`)")
}

fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::new(burn::tensor::Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), DType::F32)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};
    use rand::Rng;

    use super::*;

    /// Calls of the flex forward kernel (so the test knows the extension was reached).
    pub(super) static FLEX_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
        let mut rng = crate::rng::stream(seed, "test", "conv", 0);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale * 10.0, "{what}[{i}]: ours {x}, burn {y}");
        }
    }

    /// Forward and all three gradients against burn's own conv2d, for every shape the models use
    /// (3x3 and 1x1, stride 1 and 2) and for odd sizes where a stride-2 window runs off the edge.
    #[test]
    fn matches_burn_conv2d_forward_and_backward() {
        let device = Device::flex().autodiff();
        let cases = [
            ([2, 3, 8, 8], 4, 3, 1),
            ([2, 3, 8, 8], 4, 3, 2),
            ([3, 2, 7, 5], 5, 3, 2),
            ([3, 2, 7, 5], 5, 3, 1),
            ([2, 4, 6, 6], 3, 1, 1),
            ([2, 4, 7, 6], 3, 1, 2),
            ([1, 1, 9, 9], 2, 5, 1),
        ];
        for (seed, (xs, o, k, stride)) in cases.into_iter().enumerate() {
            let seed = seed as u64 * 10;
            let what = format!("x {xs:?}, {o} outputs, k {k}, stride {stride}");
            let run = |ours: bool| {
                let x = random(xs, seed, &device).require_grad();
                let w = random([o, xs[1], k, k], seed + 1, &device).require_grad();
                let b = random([o], seed + 2, &device).require_grad();
                let y = if ours {
                    conv_same(x.clone(), w.clone(), b.clone(), stride)
                } else {
                    burn::tensor::module::conv2d(x.clone(), w.clone(), Some(b.clone()), options(k, stride))
                };
                let r = random(y.dims(), seed + 3, &device);
                let grads = (y.clone() * r).sum().backward();
                let (gx, gw, gb) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap(), b.grad(&grads).unwrap());
                (y.inner(), gx, gw, gb.reshape([1, 1, 1, o]))
            };
            let before = FLEX_CALLS.load(std::sync::atomic::Ordering::SeqCst);
            let (y1, gx1, gw1, gb1) = run(true);
            assert!(
                FLEX_CALLS.load(std::sync::atomic::Ordering::SeqCst) > before,
                "{what}: the flex kernel was not used"
            );
            let (y2, gx2, gw2, gb2) = run(false);
            close(y1, y2, &format!("y, {what}"));
            close(gx1, gx2, &format!("dx, {what}"));
            close(gw1, gw2, &format!("dw, {what}"));
            close(gb1, gb2, &format!("db, {what}"));
        }
    }

    /// The fused group norm and its three gradients against the same normalisation composed of burn's
    /// operations.
    #[test]
    fn group_norm_matches_composed_ops() {
        let device = Device::flex().autodiff();
        for (shape, groups) in [([2, 8, 5, 6], 4), ([3, 6, 4, 4], 2), ([2, 4, 3, 3], 1)] {
            let run = |ours: bool| {
                let x = random(shape, 11, &device).mul_scalar(3.0).add_scalar(0.5).require_grad();
                let gamma = random([shape[1]], 12, &device).add_scalar(1.0).require_grad();
                let beta = random([shape[1]], 13, &device).require_grad();
                let y = if ours {
                    group_norm(&x, &gamma, &beta, groups, 1e-5).unwrap()
                } else {
                    let [n, c, h, w] = shape;
                    let g = x.clone().reshape([n, groups, (c / groups) * h * w]);
                    let centred = g.clone() - g.mean_dim(2);
                    let var = centred.clone().square().mean_dim(2);
                    let normed = (centred / var.add_scalar(1e-5).sqrt()).reshape(shape);
                    normed * gamma.clone().reshape([1, c, 1, 1]) + beta.clone().reshape([1, c, 1, 1])
                };
                let r = random(shape, 14, &device);
                let grads = (y.clone() * r).sum().backward();
                let c = shape[1];
                let (gg, gb) = (
                    gamma.grad(&grads).unwrap().reshape([1, 1, 1, c]),
                    beta.grad(&grads).unwrap().reshape([1, 1, 1, c]),
                );
                (y.inner(), x.grad(&grads).unwrap(), gg, gb)
            };
            let ((y1, dx1, dg1, db1), (y2, dx2, dg2, db2)) = (run(true), run(false));
            let what = format!("{shape:?} in {groups} groups");
            close(y1, y2, &format!("y, {what}"));
            close(dx1, dx2, &format!("dx, {what}"));
            close(dg1, dg2, &format!("dgamma, {what}"));
            close(db1, db2, &format!("dbeta, {what}"));
        }
    }

    /// The (leaky) ReLU and its gradient against burn's own, for slopes 0 (the ReLU) and 0.2.
    #[test]
    fn leaky_relu_matches_burn() {
        let device = Device::flex().autodiff();
        for slope in [0.0f32, 0.2] {
            let run = |ours: bool| {
                let x = random([2, 3, 5, 7], 7, &device).require_grad();
                let y = if ours {
                    leaky_relu(x.clone(), slope)
                } else if slope == 0.0 {
                    burn::tensor::activation::relu(x.clone())
                } else {
                    burn::tensor::activation::leaky_relu(x.clone(), slope as f64)
                };
                let r = random(y.dims(), 8, &device);
                let grads = (y.clone() * r).sum().backward();
                (y.inner(), x.grad(&grads).unwrap())
            };
            let ((y1, g1), (y2, g2)) = (run(true), run(false));
            close(y1, y2, &format!("y, slope {slope}"));
            close(g1, g2, &format!("dx, slope {slope}"));
        }
    }
}
