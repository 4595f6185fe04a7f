//! The critic of the attribution GAN: tells real patches of the reference class from generated
//! x + m. Two kinds:
//!
//! - **From the classifier** (the default when the run has a trained classifier): the classifier's
//!   network and weights, scoring minus its logit (higher = more like the benign reference class),
//!   then trained on as a critic. Telling malignant from benign is most of a critic's job, and on
//!   subtle data it takes the classifier hundreds of steps to learn; a critic starting from scratch
//!   inside a GAN step budget never gets there (on the phantom its hinge loss sat at 2, i.e. it output
//!   about 0 for everything, and the maps were noise). Starting from the classifier, the critic knows
//!   from the first step what makes a patch malignant, and the generator learns to remove exactly that.
//! - **Spectrally normalised, from scratch** (Miyato et al. 2018): every layer's weight divided by its
//!   largest singular value, so the critic is Lipschitz by construction. Why not WGAN-GP, as in
//!   Baumgartner et al.: the gradient penalty needs the gradient of a gradient, and burn has first-order
//!   autodiff only. Global *sum* pooling, as in Miyato's discriminators: a mean over the final cells
//!   would shrink every score towards 0, far inside the hinge loss's margin of 1.

use crate::kernels::leaky_relu;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::classifier::Classifier;
use super::layers::{Init, SnConv};
use crate::config::AttributionConfig;

/// The model's name: its random streams and parameter ids.
pub const CRITIC: &str = "critic";

/// The critic: exactly one of the two kinds is present.
#[derive(Module, Debug)]
pub struct Critic {
    /// A spectrally normalised critic trained from scratch.
    spectral: Option<SpectralCritic>,
    /// The classifier's network, scoring minus its logit.
    classifier: Option<Classifier>,
}

impl Critic {
    /// A spectrally normalised critic with weights drawn from `seed`.
    pub fn spectral(config: &AttributionConfig, seed: u64, device: &Device) -> Self {
        Critic { spectral: Some(SpectralCritic::new(config, seed, device)), classifier: None }
    }

    /// A critic that starts as `classifier`, scoring minus its logit.
    pub fn from_classifier(classifier: Classifier) -> Self {
        Critic { spectral: None, classifier: Some(classifier) }
    }

    /// Advances the spectral norm estimates (once per critic update, before its forward); nothing for a
    /// critic from the classifier.
    pub fn power_iteration(&mut self, iterations: usize) {
        if let Some(s) = &mut self.spectral {
            s.power_iteration(iterations);
        }
    }

    /// `[n, 1, S, S]` -> `[n]` scores (higher = more like the reference class).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        match (&self.spectral, &self.classifier) {
            (Some(s), _) => s.forward(x),
            (None, Some(c)) => c.forward(x).neg(),
            (None, None) => unreachable!("a critic is built with one kind"),
        }
    }
}

/// A 3x3 stem, `depth` stride-2 levels doubling the channels, global sum, 1x1 to a score.
#[derive(Module, Debug)]
pub struct SpectralCritic {
    layers: Vec<SnConv>,
    head: SnConv,
}

impl SpectralCritic {
    fn new(config: &AttributionConfig, seed: u64, device: &Device) -> Self {
        let init = Init { seed, model: CRITIC, device };
        let c = config.critic_channels;
        let mut layers = vec![SnConv::new(&init, "layers.0", 1, c, 3, 1)];
        for l in 0..config.critic_depth {
            layers.push(SnConv::new(&init, &format!("layers.{}", l + 1), c << l, c << (l + 1), 3, 2));
        }
        let head = SnConv::new(&init, "head", c << config.critic_depth, 1, 1, 1);
        SpectralCritic { layers, head }
    }

    fn power_iteration(&mut self, iterations: usize) {
        for layer in self.layers.iter_mut().chain(std::iter::once(&mut self.head)) {
            layer.power_iteration(iterations);
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        let mut h = x.mul_scalar(2.0).sub_scalar(1.0);
        for layer in &self.layers {
            h = leaky_relu(layer.forward(h), 0.2);
        }
        let n = h.dims()[0];
        self.head.forward(h.sum_dim(3).sum_dim(2)).reshape([n])
    }
}
