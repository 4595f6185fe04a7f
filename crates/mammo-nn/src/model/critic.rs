//! The critic of the attribution GAN: tells real patches of the reference class from generated
//! x + m. Every layer is spectrally normalised.
//!
//! Why not WGAN-GP, as in Baumgartner et al.: the gradient penalty needs the gradient of a gradient,
//! and burn has first-order autodiff only. Spectral normalisation bounds the critic's Lipschitz
//! constant by construction instead (each layer's weight divided by its largest singular value, the
//! activations 1-Lipschitz), which is what the penalty approximates. Trained with the hinge loss by
//! default (Miyato et al. 2018), or the Wasserstein loss.

use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};

use super::layers::{Init, SnConv, global_mean};
use crate::config::AttributionConfig;

/// The model's name: its random streams and parameter ids.
pub const CRITIC: &str = "critic";

/// A 3x3 stem, `depth` stride-2 levels doubling the channels, global mean, 1x1 to a score.
#[derive(Module, Debug)]
pub struct Critic {
    layers: Vec<SnConv>,
    head: SnConv,
}

impl Critic {
    /// Builds the critic with weights drawn from `seed`.
    pub fn new(config: &AttributionConfig, seed: u64, device: &Device) -> Self {
        let init = Init { seed, model: CRITIC, device };
        let c = config.critic_channels;
        let mut layers = vec![SnConv::new(&init, "layers.0", 1, c, 3, 1)];
        for l in 0..config.critic_depth {
            layers.push(SnConv::new(&init, &format!("layers.{}", l + 1), c << l, c << (l + 1), 3, 2));
        }
        let head = SnConv::new(&init, "head", c << config.critic_depth, 1, 1, 1);
        Critic { layers, head }
    }

    /// Advances every layer's singular-vector estimate (once per critic update, before its forward).
    pub fn power_iteration(&mut self, iterations: usize) {
        for layer in self.layers.iter_mut().chain(std::iter::once(&mut self.head)) {
            layer.power_iteration(iterations);
        }
    }

    /// `[n, 1, S, S]` -> `[n]` scores (higher = more like the reference class).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        let mut h = x.mul_scalar(2.0).sub_scalar(1.0);
        for layer in &self.layers {
            h = leaky_relu(layer.forward(h), 0.2);
        }
        let n = h.dims()[0];
        self.head.forward(global_mean(h)).reshape([n])
    }
}
