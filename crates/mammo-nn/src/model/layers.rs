//! The building blocks: a convolution, group normalisation, and a spectrally normalised convolution,
//! all initialised from named random streams.
//!
//! burn's own layers draw their initial weights from the device's global generator and give every
//! parameter a random id. Both would break the determinism promise: the generator is shared by every
//! thread in the process (tests run in parallel), and the optimizer keys its Adam moments by
//! parameter id, so a resumed run in a fresh process could not find them. Here every parameter's
//! values come from `rng::stream(seed, model, "init/<path>")` and its id from `stable_id(model, path)`.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

use crate::kernels::leaky_relu;
use crate::rng::{stable_id, stream};

/// Where a model's parameters come from: the run's seed, the model's name, the device.
pub struct Init<'a> {
    /// The run's seed.
    pub seed: u64,
    /// The model's name (`classifier`, `generator`, `critic`); part of every parameter's stream and id.
    pub model: &'a str,
    /// Where the parameters live.
    pub device: &'a Device,
}

impl Init<'_> {
    fn id(&self, path: &str) -> ParamId {
        ParamId::from(stable_id(&[self.model, path]))
    }

    fn values(&self, path: &str, n: usize, bound: f32) -> Vec<f32> {
        let mut rng = stream(self.seed, self.model, &format!("init/{path}"), 0);
        (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
    }

    /// A trainable parameter, uniform in [-bound, bound].
    pub fn uniform<const D: usize>(&self, path: &str, shape: [usize; D], bound: f32) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        self.trainable(path, TensorData::new(self.values(path, n, bound), shape))
    }

    /// A trainable parameter filled with `value`.
    pub fn constant<const D: usize>(&self, path: &str, shape: [usize; D], value: f32) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        self.trainable(path, TensorData::new(vec![value; n], shape))
    }

    fn trainable<const D: usize>(&self, path: &str, data: TensorData) -> Param<Tensor<D>> {
        // `from_tensor` marks the parameter trainable; swap in the stable id, keeping that flag.
        let (_, tensor, mapper) = Param::from_tensor(Tensor::from_data(data, self.device)).consume();
        Param::from_mapped_value(self.id(path), tensor, mapper)
    }

    /// A non-trainable state vector (no gradient, untouched by the optimizer, saved with the weights),
    /// random with unit norm.
    pub fn unit_state(&self, path: &str, n: usize) -> Param<Tensor<1>> {
        let v = self.values(path, n, 1.0);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let v: Vec<f32> = v.into_iter().map(|x| x / norm).collect();
        Param::initialized(self.id(path), Tensor::from_data(TensorData::new(v, [n]), self.device))
    }
}

/// A square 2-D convolution with bias, "same" padding for odd kernels.
#[derive(Module, Debug)]
pub struct Conv {
    /// `[out, in, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
    /// Stride in both directions.
    pub stride: usize,
}

impl Conv {
    /// He-uniform weights scaled by `gain` (1 for a layer followed by a ReLU), zero bias.
    pub fn new(init: &Init, path: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize, gain: f32) -> Self {
        let fan_in = (c_in * kernel * kernel) as f32;
        let bound = gain * (6.0 / fan_in).sqrt();
        Conv {
            weight: init.uniform(&format!("{path}.weight"), [c_out, c_in, kernel, kernel], bound),
            bias: init.constant(&format!("{path}.bias"), [c_out], 0.0),
            stride,
        }
    }

    /// `[n, in, h, w] -> [n, out, h/stride, w/stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_same(x, self.weight.val(), self.bias.val(), self.stride)
    }
}

fn conv_same(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize) -> Tensor<4> {
    crate::kernels::conv_same(x, weight, bias, stride)
}

/// Group normalisation with a learned scale and shift per channel.
///
/// Chosen over batch norm because it has no running statistics (nothing batch-dependent to carry
/// between training and inference, or to save) and it normalises each patch on its own, so a patch's
/// score and map do not depend on what else is in the batch.
#[derive(Module, Debug)]
pub struct GroupNorm {
    /// `[c]`, initialised to 1.
    pub gamma: Param<Tensor<1>>,
    /// `[c]`, initialised to 0.
    pub beta: Param<Tensor<1>>,
    /// Number of groups (divides the channels).
    pub groups: usize,
}

impl GroupNorm {
    /// Up to 4 groups (as many as divide `channels`).
    pub fn new(init: &Init, path: &str, channels: usize) -> Self {
        let groups = (1..=4).rev().find(|g| channels % g == 0).unwrap_or(1);
        GroupNorm {
            gamma: init.constant(&format!("{path}.gamma"), [channels], 1.0),
            beta: init.constant(&format!("{path}.beta"), [channels], 0.0),
            groups,
        }
    }

    /// Normalises `[n, c, h, w]` over each group's channels and pixels.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) =
            crate::kernels::group_norm(&x, &self.gamma.val(), &self.beta.val(), self.groups, GROUP_NORM_EPS)
        {
            return y;
        }
        let [n, c, h, w] = x.dims();
        let g = self.groups;
        let grouped = x.reshape([n, g, (c / g) * h * w]);
        let mean = grouped.clone().mean_dim(2);
        let centred = grouped - mean;
        let var = centred.clone().square().mean_dim(2);
        let normed = (centred / var.add_scalar(GROUP_NORM_EPS as f64).sqrt()).reshape([n, c, h, w]);
        normed * self.gamma.val().reshape([1, c, 1, 1]) + self.beta.val().reshape([1, c, 1, 1])
    }

    /// [`GroupNorm::forward`] then the leaky ReLU with `slope` (0: the ReLU); on flex one kernel.
    pub fn forward_act(&self, x: Tensor<4>, slope: f32) -> Tensor<4> {
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        match crate::kernels::group_norm_act(&x, &gamma, &beta, self.groups, GROUP_NORM_EPS, slope) {
            Some(y) => y,
            None => leaky_relu(self.forward(x), slope),
        }
    }

    /// [`GroupNorm::forward`], plus `skip`, then the leaky ReLU with `slope`: a residual block's end;
    /// on flex one kernel.
    pub fn forward_add_act(&self, x: Tensor<4>, skip: Tensor<4>, slope: f32) -> Tensor<4> {
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        match crate::kernels::group_norm_add_act(&x, &gamma, &beta, &skip, self.groups, GROUP_NORM_EPS, slope) {
            Some(y) => y,
            None => leaky_relu(self.forward(x) + skip, slope),
        }
    }
}

/// Added to the variance of [`GroupNorm`].
const GROUP_NORM_EPS: f32 = 1e-5;

/// Conv -> GroupNorm -> LeakyReLU(0.2): the unit of the U-Net and the classifier stem.
#[derive(Module, Debug)]
pub struct ConvNormAct {
    /// The convolution.
    pub conv: Conv,
    /// The normalisation.
    pub norm: GroupNorm,
}

impl ConvNormAct {
    /// A 3x3 unit.
    pub fn new(init: &Init, path: &str, c_in: usize, c_out: usize, stride: usize) -> Self {
        ConvNormAct {
            conv: Conv::new(init, &format!("{path}.conv"), c_in, c_out, 3, stride, 1.0),
            norm: GroupNorm::new(init, &format!("{path}.norm"), c_out),
        }
    }

    /// Applies the unit.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward_act(self.conv.forward(x), 0.2)
    }
}

/// A convolution whose weight is divided by its largest singular value (Miyato et al., ICLR 2018),
/// making the layer 1-Lipschitz (for the weight reshaped to `[out, in*k*k]`).
///
/// The singular vector `u` is estimated by power iteration and kept between steps as non-trainable
/// state: it gets no gradient, the optimizer leaves it alone, and it is saved with the weights (so a
/// resumed run continues from the same estimate). `sigma = u^T W v` is differentiated through `W`
/// only; `u` and `v` are constants of each step.
#[derive(Module, Debug)]
pub struct SnConv {
    /// `[out, in, k, k]`, the unnormalised weight.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
    /// `[out]`, the left singular vector estimate (state, not trained).
    pub u: Param<Tensor<1>>,
    /// Stride in both directions.
    pub stride: usize,
}

impl SnConv {
    /// Uniform weights (their scale is normalised away), zero bias, random unit `u`.
    pub fn new(init: &Init, path: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        let fan_in = (c_in * kernel * kernel) as f32;
        SnConv {
            weight: init.uniform(&format!("{path}.weight"), [c_out, c_in, kernel, kernel], (6.0 / fan_in).sqrt()),
            bias: init.constant(&format!("{path}.bias"), [c_out], 0.0),
            u: init.unit_state(&format!("{path}.u"), c_out),
            stride,
        }
    }

    fn matrix(&self) -> Tensor<2> {
        let [o, i, kh, kw] = self.weight.dims();
        self.weight.val().reshape([o, i * kh * kw])
    }

    /// Advances the estimate of `u` by `iterations` power-iteration steps (no gradient).
    pub fn power_iteration(&mut self, iterations: usize) {
        let w = self.matrix().detach();
        let mut u = self.u.val().detach().unsqueeze_dim::<2>(1);
        for _ in 0..iterations {
            let v = normalize(w.clone().transpose().matmul(u));
            u = normalize(w.clone().matmul(v));
        }
        let n = u.dims()[0];
        self.u = Param::initialized(self.u.id, u.reshape([n]).detach());
    }

    /// The estimated spectral norm `sigma = u^T W v` with `v = normalize(W^T u)` (differentiable in W).
    pub fn sigma(&self) -> Tensor<1> {
        let w = self.matrix();
        let u = self.u.val().detach().unsqueeze_dim::<2>(1);
        let v = normalize(w.clone().detach().transpose().matmul(u.clone()));
        u.transpose().matmul(w.matmul(v)).reshape([1])
    }

    /// The convolution with `W / sigma`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let sigma = self.sigma().reshape([1, 1, 1, 1]);
        conv_same(x, self.weight.val() / sigma, self.bias.val(), self.stride)
    }
}

/// Scales a column vector to unit length.
fn normalize(v: Tensor<2>) -> Tensor<2> {
    let norm = v.clone().square().sum().sqrt().add_scalar(1e-12).reshape([1, 1]);
    v / norm
}

/// `[n, c, h, w] -> [n, c, 1, 1]`.
pub fn global_mean(x: Tensor<4>) -> Tensor<4> {
    x.mean_dim(3).mean_dim(2)
}
