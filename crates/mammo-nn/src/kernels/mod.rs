//! The models' most expensive operations on flex, as a burn backend extension with flex implementations
//! of their forward passes and gradients: the 2-D convolution ("same" padding, square odd kernel), group
//! normalisation and the (leaky) ReLU.
//!
//! Why: convolutions were 80-86 % of a training step on flex (`bench/RESULTS.md`), and most of that was
//! not arithmetic. burn-flex runs every conv2d as a 3-D convolution that first transposes the whole
//! input to channels-last on the calling thread, fills im2col tiles one float at a time, and scatters
//! the GEMM result back; it has no weight gradient of its own, so burn's generic one runs a second
//! convolution over batch/channel-swapped copies with a GEMM whose N is 9. Here each sample is one
//! matrix product on channels-first data (`matmul.rs`, written for these shapes: a general GEMM's
//! packing of both operands was a third of the time), the product lands straight in the output, and
//! samples run in parallel. At stride 2, im2col rows are shifted copies of input rows; at stride 1 on
//! planes 16 or more wide the columns are not written at all: the product reads shifted views of the
//! zero-padded input, and the input gradient is the convolution of `dy` with the flipped kernel. Where
//! the forward pass does build a column matrix and a weight gradient will follow, the autodiff node
//! keeps it for that gradient (`conv_same_keeping_columns`) rather than building it twice.
//!
//! Determinism (the flex promise of `device.rs`): every output element is computed by the same
//! sequence of operations whatever the thread count and whatever the CPU (the AVX2 and portable paths
//! of `matmul.rs` agree bit for bit). Samples are independent in the forward pass and the input
//! gradient; the weight gradient sums per-sample partial products in sample order, and each product
//! runs single-threaded inside its sample's task.
//!
//! The (leaky) ReLU: burn's autodiff has no node of its own for `leaky_relu`, so it ran as a
//! comparison, a scaled copy and a `mask_where`, and its backward as two more `mask_where`s over fresh
//! tensors, all on the calling thread: 12 % of a step's CPU after the convolutions were fixed. Here it
//! is one parallel, vectorised pass forward and one backward.
//!
//! Group norm: composed of burn's operations it is ten passes forward (reshape, mean, subtract,
//! square, mean, add, sqrt, divide, scale, shift) and as many backward, each a fresh tensor. Here it is
//! one pass forward and two backward per (sample, group), sums in f64; the (leaky) ReLU after it (and a
//! residual block's addition) is applied in the same pass, and in training the three are one autodiff
//! node whose backward takes the activation's gradient from the output.
//!
//! Average pooling (the high-pass input's 3x3 local mean, the U-Net's downsampling) and its gradient:
//! burn-flex pools through its 3-D pooling; here it is one pass per plane each way (`pool.rs`).
//!
//! Other backends (CUDA) and other dtypes keep burn's own operations: [`conv_same`], [`group_norm`],
//! [`avg_pool`] and [`leaky_relu`] only route flex float32 tensors here. The flex kernels live in `conv.rs` (with
//! `matmul.rs`), `group_norm.rs` and `elementwise.rs`; this module holds the extension trait, the wrappers the
//! layers call and the autodiff nodes.

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
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{DType, Device, FloatDType, Shape, Tensor};

mod conv;
mod elementwise;
mod group_norm;
mod matmul;
mod pool;
#[cfg(test)]
mod tests;

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

    /// [`Kernels::conv_same`], and the column matrix `[n, c*k*k, h'*w']` it built for its product, for
    /// [`Kernels::conv_same_w_grad_kept`] to reuse (flex at stride 2 and on narrow planes: im2col was
    /// built twice a step, in the forward pass and again in the weight gradient); an empty tensor
    /// where it built none, and on every other backend.
    fn conv_same_keeping_columns(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let none = Self::float_zeros(Shape::new([0]), &x.device(), FloatDType::F32);
        (Self::conv_same(x, w, b, stride), none)
    }

    /// [`Kernels::conv_same_w_grad`], reading the columns [`Kernels::conv_same_keeping_columns`] kept
    /// (the same values; an empty tensor: none kept).
    fn conv_same_w_grad_kept(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        kept: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        drop(kept);
        Self::conv_same_w_grad(x, w, dy, stride)
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

    /// [`Kernels::group_norm`] then [`Kernels::leaky_relu_fused`] with `slope`. Flex does both in one
    /// pass over the output (the same bits), and `Autodiff` makes it one node over that (the gradients
    /// of the two nodes, bit for bit); every other backend composes the two.
    fn group_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        slope: f32,
    ) -> FloatTensor<Self> {
        Self::leaky_relu_fused(Self::group_norm(x, gamma, beta, groups, eps), slope)
    }

    /// [`Kernels::group_norm`], plus `skip` (same shape), then [`Kernels::leaky_relu_fused`] with
    /// `slope`: a residual block's end. As [`Kernels::group_norm_act`]: one pass on flex, one node on
    /// `Autodiff`, composed elsewhere.
    fn group_norm_add_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        skip: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        slope: f32,
    ) -> FloatTensor<Self> {
        let sum = Self::float_add(Self::group_norm(x, gamma, beta, groups, eps), skip);
        Self::leaky_relu_fused(sum, slope)
    }

    /// The gradients of [`Kernels::group_norm`] with respect to `x`, `gamma` and `beta`.
    fn group_norm_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        groups: usize,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Average pooling of `x [n, c, h, w]` over `k x k` windows at `stride`, with `pad` zeros around
    /// the image that are not counted (a border window averages the pixels it has).
    fn avg_pool(x: FloatTensor<Self>, k: usize, stride: usize, pad: usize) -> FloatTensor<Self> {
        Self::avg_pool2d(x, [k, k], [stride, stride], [pad, pad], false, false)
    }

    /// The gradient of [`Kernels::avg_pool`] with respect to `x` (whose shape it takes from `x`).
    fn avg_pool_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        Self::avg_pool2d_backward(x, dy, [k, k], [stride, stride], [pad, pad], false, false)
    }

    /// `x` where `x > 0`, else `slope * x` (`slope` 0: the ReLU).
    fn leaky_relu_fused(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::leaky_relu(x, slope.into())
    }

    /// The gradient of [`Kernels::leaky_relu_fused`]: `dy` where `x > 0`, else `slope * dy`.
    fn leaky_relu_fused_grad(x: FloatTensor<Self>, dy: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        leaky_relu_grad_composed::<Self>(x, dy, slope)
    }
}

/// The gradient of the (leaky) ReLU from burn's own operations: `dy` where `x > 0`, else `slope * dy`.
fn leaky_relu_grad_composed<B: Backend>(x: FloatTensor<B>, dy: FloatTensor<B>, slope: f32) -> FloatTensor<B> {
    let bool_dtype = get_or_init_device_settings::<B>(&x.device()).bool_dtype;
    let positive = B::float_greater_elem(x, 0f32.into(), bool_dtype);
    let scaled = B::float_mul_scalar(dy.clone(), slope.into());
    B::float_mask_where(scaled, positive, dy)
}

/// The group norm's backward from `dy`, the gradient at its output (after the activation's, for the
/// fused nodes): the gradients of `x`, `gamma` and `beta`, registered for the `parents` (their ids,
/// in that order) that take one. `states` are the checkpointed `x` and `gamma`.
fn group_norm_backward<B: Backend + Kernels>(
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
    parents: [Option<NodeId>; 3],
    [x_state, gamma_state]: [NodeId; 2],
    dy: FloatTensor<B>,
    groups: usize,
    eps: f32,
) {
    let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
    let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
    let (dx, dgamma, dbeta) = B::group_norm_grad(x, gamma, dy, groups, eps);
    for (id, grad) in parents.into_iter().zip([dx, dgamma, dbeta]) {
        if let Some(id) = id {
            grads.register::<B>(id, grad);
        }
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

/// Average pooling (see [`Kernels::avg_pool`]): the flex kernel on flex float32 tensors, burn's
/// `avg_pool2d` (padding not counted) elsewhere.
pub fn avg_pool(x: Tensor<4>, k: usize, stride: usize, pad: usize) -> Tensor<4> {
    if on_flex(&x.device()) && x.dtype() == DType::F32 {
        Tensor::from_dispatch(<Dispatch as Kernels>::avg_pool(x.into_dispatch(), k, stride, pad))
    } else {
        let options = AvgPoolOptions::new([k, k])
            .with_stride([stride, stride])
            .with_padding([pad, pad])
            .with_count_include_pad(false);
        burn::tensor::module::avg_pool2d(x, options)
    }
}

/// `max(x, 0)`: [`leaky_relu`] with slope 0.
pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    leaky_relu(x, 0.0)
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
    let (x, gamma, beta) = norm_inputs(x, gamma, beta)?;
    Some(Tensor::from_dispatch(<Dispatch as Kernels>::group_norm(x, gamma, beta, groups, eps)))
}

/// [`Kernels::group_norm_act`] on flex float32 tensors; `None` elsewhere, for the caller to compose.
pub fn group_norm_act(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    groups: usize,
    eps: f32,
    slope: f32,
) -> Option<Tensor<4>> {
    let (x, gamma, beta) = norm_inputs(x, gamma, beta)?;
    Some(Tensor::from_dispatch(<Dispatch as Kernels>::group_norm_act(x, gamma, beta, groups, eps, slope)))
}

/// [`Kernels::group_norm_add_act`] on flex float32 tensors (`skip` float32 of `x`'s shape); `None`
/// elsewhere, for the caller to compose.
pub fn group_norm_add_act(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    skip: &Tensor<4>,
    groups: usize,
    eps: f32,
    slope: f32,
) -> Option<Tensor<4>> {
    if skip.dtype() != DType::F32 || skip.dims() != x.dims() {
        return None;
    }
    let (x, gamma, beta) = norm_inputs(x, gamma, beta)?;
    let skip = skip.clone().into_dispatch();
    Some(Tensor::from_dispatch(<Dispatch as Kernels>::group_norm_add_act(x, gamma, beta, skip, groups, eps, slope)))
}

/// The group norm's inputs as the extension takes them, when `x` is a flex float32 tensor (the only
/// case its flex kernels serve); `None` otherwise.
fn norm_inputs(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
) -> Option<(FloatTensor<Dispatch>, FloatTensor<Dispatch>, FloatTensor<Dispatch>)> {
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return None;
    }
    Some((x.clone().into_dispatch(), gamma.clone().into_dispatch(), beta.clone().into_dispatch()))
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
            /// The checkpointed inputs, the stride, and the column matrix the forward pass kept.
            type State = (NodeId, NodeId, NodeId, usize, Option<FloatTensor<B>>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_w, node_b] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, w_state, b_state, stride, kept) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let w = checkpointer.retrieve_node_output::<FloatTensor<B>>(w_state);
                let b = checkpointer.retrieve_node_output::<FloatTensor<B>>(b_state);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::conv_same_x_grad(x.clone(), w.clone(), dy.clone(), stride));
                }
                if let Some(node) = node_w {
                    let dw = match kept {
                        Some(cols) => B::conv_same_w_grad_kept(x.clone(), w, dy.clone(), cols, stride),
                        None => B::conv_same_w_grad(x.clone(), w, dy.clone(), stride),
                    };
                    grads.register::<B>(node.id, dw);
                }
                if let Some(node) = node_b {
                    grads.register::<B>(node.id, B::conv_same_b_grad(x, b, dy));
                }
            }
        }

        match ConvSame.prepare::<C>([x.node(), w.node(), b.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let (xs, ws, bs) = (prep.checkpoint(&x), prep.checkpoint(&w), prep.checkpoint(&b));
                // Keep the columns only for a weight gradient to come (not through frozen weights).
                let (y, kept) = if Self::float_is_require_grad(&w) {
                    let (x, w, b) = (x.into_primitive(), w.into_primitive(), b.into_primitive());
                    let (y, cols) = B::conv_same_keeping_columns(x, w, b, stride);
                    (y, Some(cols))
                } else {
                    (B::conv_same(x.into_primitive(), w.into_primitive(), b.into_primitive(), stride), None)
                };
                prep.finish((xs, ws, bs, stride, kept), y)
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
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, groups, eps) = ops.state;
                let parents = ops.parents.map(|p| p.map(|node| node.id));
                group_norm_backward::<B>(grads, checkpointer, parents, [x_state, gamma_state], dy, groups, eps);
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

    /// One node for the normalisation and its activation (flex: one pass forward, no pre-activation
    /// tensor kept). The backward takes the activation's gradient from the output's sign, which is the
    /// normalised value's for `slope >= 0`, so the gradients are the bits of the two nodes it replaces.
    fn group_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        slope: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GroupNormAct;

        impl<B: Backend + Kernels> Backward<B, 3> for GroupNormAct {
            /// `x` and `gamma` checkpointed, the output, groups, eps, slope.
            type State = (NodeId, NodeId, FloatTensor<B>, usize, f32, f32);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, y, groups, eps, slope) = ops.state;
                let dn = B::leaky_relu_fused_grad(y, dy, slope);
                let parents = ops.parents.map(|p| p.map(|node| node.id));
                group_norm_backward::<B>(grads, checkpointer, parents, [x_state, gamma_state], dn, groups, eps);
            }
        }

        if slope < 0.0 {
            // The output's sign is not the normalised value's: two nodes.
            return Self::leaky_relu_fused(Self::group_norm(x, gamma, beta, groups, eps), slope);
        }
        match GroupNormAct.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let (xs, gs) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
                let y = B::group_norm_act(x, gamma, beta, groups, eps, slope);
                prep.finish((xs, gs, y.clone(), groups, eps, slope), y)
            }
            OpsKind::UnTracked(prep) => {
                let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
                prep.finish(B::group_norm_act(x, gamma, beta, groups, eps, slope))
            }
        }
    }

    /// As [`Kernels::group_norm_act`] for a residual block's end: the residual's gradient is the
    /// activation's, as the addition's node gave it.
    fn group_norm_add_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        skip: FloatTensor<Self>,
        groups: usize,
        eps: f32,
        slope: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GroupNormAddAct;

        impl<B: Backend + Kernels> Backward<B, 4> for GroupNormAddAct {
            /// `x` and `gamma` checkpointed, the output, groups, eps, slope.
            type State = (NodeId, NodeId, FloatTensor<B>, usize, f32, f32);

            fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta, node_skip] = ops.parents.map(|p| p.map(|node| node.id));
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, y, groups, eps, slope) = ops.state;
                let dn = B::leaky_relu_fused_grad(y, dy, slope);
                if let Some(id) = node_skip {
                    grads.register::<B>(id, dn.clone());
                }
                let parents = [node_x, node_gamma, node_beta];
                group_norm_backward::<B>(grads, checkpointer, parents, [x_state, gamma_state], dn, groups, eps);
            }
        }

        if slope < 0.0 {
            let sum = Self::float_add(Self::group_norm(x, gamma, beta, groups, eps), skip);
            return Self::leaky_relu_fused(sum, slope);
        }
        let nodes = [x.node(), gamma.node(), beta.node(), skip.node()];
        match GroupNormAddAct.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let (xs, gs) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
                let y = B::group_norm_add_act(x, gamma, beta, skip.into_primitive(), groups, eps, slope);
                prep.finish((xs, gs, y.clone(), groups, eps, slope), y)
            }
            OpsKind::UnTracked(prep) => {
                let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
                prep.finish(B::group_norm_add_act(x, gamma, beta, skip.into_primitive(), groups, eps, slope))
            }
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

    fn avg_pool(x: FloatTensor<Self>, k: usize, stride: usize, pad: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AvgPool;

        impl<B: Backend + Kernels> Backward<B, 1> for AvgPool {
            type State = (NodeId, [usize; 3]);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x] = ops.parents;
                let dy = grads.consume::<B>(&ops.node);
                let (x_state, [k, stride, pad]) = ops.state;
                if let Some(node) = node_x {
                    let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                    grads.register::<B>(node.id, B::avg_pool_grad(x, dy, k, stride, pad));
                }
            }
        }

        match AvgPool.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), [k, stride, pad]);
                prep.finish(state, B::avg_pool(x.into_primitive(), k, stride, pad))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::avg_pool(x.into_primitive(), k, stride, pad)),
        }
    }

    /// Only the backward node above calls this, on the inner backend; here for completeness.
    fn avg_pool_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::avg_pool_grad(Self::inner(x), Self::inner(dy), k, stride, pad))
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

// ---- Flex: float32 goes to the kernels in the submodules; other dtypes to burn-flex's own operations.

impl Kernels for Flex {
    fn conv_same(x: FlexTensor, w: FlexTensor, b: FlexTensor, stride: usize) -> FlexTensor {
        if !all_f32(&[&x, &w, &b]) {
            let k = w.shape()[2];
            return <Flex as ModuleOps<Flex>>::conv2d(x, w, Some(b), options(k, stride));
        }
        conv::forward(x, w, b, stride)
    }

    fn conv_same_keeping_columns(
        x: FlexTensor,
        w: FlexTensor,
        b: FlexTensor,
        stride: usize,
    ) -> (FlexTensor, FlexTensor) {
        if !all_f32(&[&x, &w, &b]) {
            return (Self::conv_same(x, w, b, stride), tensor(Vec::new(), [0]));
        }
        let (y, cols) = conv::forward_keeping(x, w, b, stride, true);
        (y, cols.unwrap_or_else(|| tensor(Vec::new(), [0])))
    }

    fn conv_same_w_grad_kept(
        x: FlexTensor,
        w: FlexTensor,
        dy: FlexTensor,
        kept: FlexTensor,
        stride: usize,
    ) -> FlexTensor {
        if !all_f32(&[&x, &w, &dy]) || kept.shape().num_elements() == 0 {
            return Self::conv_same_w_grad(x, w, dy, stride);
        }
        conv::w_grad(x, w, dy, stride, Some(kept))
    }

    fn conv_same_x_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
        if !all_f32(&[&x, &w, &dy]) {
            let k = w.shape()[2];
            return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, w, dy, options(k, stride));
        }
        conv::x_grad(x, w, dy, stride)
    }

    fn conv_same_w_grad(x: FlexTensor, w: FlexTensor, dy: FlexTensor, stride: usize) -> FlexTensor {
        if !all_f32(&[&x, &w, &dy]) {
            let k = w.shape()[2];
            return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, w, dy, options(k, stride));
        }
        conv::w_grad(x, w, dy, stride, None)
    }

    fn conv_same_b_grad(x: FlexTensor, b: FlexTensor, dy: FlexTensor) -> FlexTensor {
        if !all_f32(&[&dy]) {
            return <Flex as ModuleOps<Flex>>::conv2d_bias_backward(x, b, dy);
        }
        conv::b_grad(dy)
    }

    fn group_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, eps: f32) -> FlexTensor {
        assert!(all_f32(&[&x, &gamma, &beta]), "group_norm: float32 only (other dtypes take burn's operations)");
        group_norm::forward(x, gamma, beta, groups, eps)
    }

    fn group_norm_act(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        eps: f32,
        slope: f32,
    ) -> FlexTensor {
        assert!(all_f32(&[&x, &gamma, &beta]), "group_norm_act: float32 only (other dtypes take burn's operations)");
        group_norm::forward_act(x, gamma, beta, None, groups, eps, Some(slope))
    }

    fn group_norm_add_act(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        skip: FlexTensor,
        groups: usize,
        eps: f32,
        slope: f32,
    ) -> FlexTensor {
        assert!(all_f32(&[&x, &gamma, &beta, &skip]), "group_norm_add_act: float32 only");
        group_norm::forward_act(x, gamma, beta, Some(skip), groups, eps, Some(slope))
    }

    fn group_norm_grad(
        x: FlexTensor,
        gamma: FlexTensor,
        dy: FlexTensor,
        groups: usize,
        eps: f32,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        assert!(all_f32(&[&x, &gamma, &dy]), "group_norm_grad: float32 only");
        group_norm::grad(x, gamma, dy, groups, eps)
    }

    fn avg_pool(x: FlexTensor, k: usize, stride: usize, pad: usize) -> FlexTensor {
        if !all_f32(&[&x]) {
            return <Flex as ModuleOps<Flex>>::avg_pool2d(x, [k, k], [stride, stride], [pad, pad], false, false);
        }
        pool::forward(x, k, stride, pad)
    }

    fn avg_pool_grad(x: FlexTensor, dy: FlexTensor, k: usize, stride: usize, pad: usize) -> FlexTensor {
        if !all_f32(&[&x, &dy]) {
            return <Flex as ModuleOps<Flex>>::avg_pool2d_backward(
                x,
                dy,
                [k, k],
                [stride, stride],
                [pad, pad],
                false,
                false,
            );
        }
        pool::grad(&x, dy, k, stride, pad)
    }

    fn leaky_relu_fused(x: FlexTensor, slope: f32) -> FlexTensor {
        if !all_f32(&[&x]) {
            return <Flex as ActivationOps<Flex>>::leaky_relu(x, slope.into());
        }
        elementwise::leaky_relu(x, slope)
    }

    fn leaky_relu_fused_grad(x: FlexTensor, dy: FlexTensor, slope: f32) -> FlexTensor {
        if !all_f32(&[&x, &dy]) {
            return leaky_relu_grad_composed::<Flex>(x, dy, slope);
        }
        elementwise::leaky_relu_grad(x, dy, slope)
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
