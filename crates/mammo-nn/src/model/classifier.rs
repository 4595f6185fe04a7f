//! The benign/malignant classifier: a small residual CNN on `1 x S x S` patches that gives one logit
//! (P(malignant) = sigmoid(logit)). It is also the scorer for explain and the source of the
//! gradient-saliency baseline.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::layers::{Conv, ConvNormAct, GroupNorm, Init, global_mean};
use crate::config::ClassifierConfig;

/// The model's name: its random streams, parameter ids, checkpoint directory and file.
pub const CLASSIFIER: &str = "classifier";

/// Two 3x3 convolutions with a shortcut; the first may halve the resolution.
#[derive(Module, Debug)]
pub struct ResBlock {
    conv1: Conv,
    norm1: GroupNorm,
    conv2: Conv,
    norm2: GroupNorm,
    /// A 1x1 projection where the shape changes.
    shortcut: Option<Conv>,
}

impl ResBlock {
    fn new(init: &Init, path: &str, c_in: usize, c_out: usize, stride: usize) -> Self {
        ResBlock {
            conv1: Conv::new(init, &format!("{path}.conv1"), c_in, c_out, 3, stride, 1.0),
            norm1: GroupNorm::new(init, &format!("{path}.norm1"), c_out),
            conv2: Conv::new(init, &format!("{path}.conv2"), c_out, c_out, 3, 1, 1.0),
            norm2: GroupNorm::new(init, &format!("{path}.norm2"), c_out),
            shortcut: (c_in != c_out || stride != 1)
                .then(|| Conv::new(init, &format!("{path}.shortcut"), c_in, c_out, 1, stride, 1.0)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        let h = relu(self.norm1.forward(self.conv1.forward(x)));
        let h = self.norm2.forward(self.conv2.forward(h));
        relu(h + skip)
    }
}

/// Stem, `blocks` residual stages (each halves the resolution and doubles the channels), global
/// average pooling and a 1x1 convolution to one logit.
#[derive(Module, Debug)]
pub struct Classifier {
    stem: ConvNormAct,
    stages: Vec<ResBlock>,
    head: Conv,
}

impl Classifier {
    /// Builds the model with weights drawn from `seed`.
    pub fn new(config: &ClassifierConfig, seed: u64, device: &Device) -> Self {
        let init = Init { seed, model: CLASSIFIER, device };
        let c = config.channels;
        let stem = ConvNormAct::new(&init, "stem", 1, c, 1);
        let stages =
            (0..config.blocks).map(|b| ResBlock::new(&init, &format!("stages.{b}"), c << b, c << (b + 1), 2)).collect();
        let head = Conv::new(&init, "head", c << config.blocks, 1, 1, 1, 1.0);
        Classifier { stem, stages, head }
    }

    /// `[n, 1, S, S]` intensities in [0, 1] -> `[n]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        // Centre the input on 0 so the first layer starts in the linear range of its activation.
        let mut h = self.stem.forward(x.mul_scalar(2.0).sub_scalar(1.0));
        for stage in &self.stages {
            h = stage.forward(h);
        }
        let n = h.dims()[0];
        self.head.forward(global_mean(h)).reshape([n])
    }

    /// |d logit / d x| for each pixel: the plain gradient-saliency baseline the attribution maps are
    /// compared with. `x` must be on an autodiff device (first-order gradients are all it needs).
    pub fn saliency(&self, x: Tensor<4>) -> Tensor<4> {
        let x = x.detach().require_grad();
        // Patches do not interact (group norm is per patch), so the gradient of the sum of logits
        // with respect to each patch is that patch's own gradient.
        let grads = self.forward(x.clone()).sum().backward();
        x.grad(&grads).expect("the input requires a gradient").abs()
    }
}
