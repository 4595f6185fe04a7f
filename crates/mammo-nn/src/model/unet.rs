//! The map generator M of the attribution GAN: a U-Net that takes a malignant patch x and returns a
//! map m of the same size, bounded by `map_scale * tanh`, such that x + m looks like the reference
//! class. |m| is the highlight of the features that make x malignant.

use burn::module::Module;
use burn::tensor::module::{avg_pool2d, interpolate};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use super::layers::{Conv, ConvNormAct, Init};
use crate::config::AttributionConfig;

/// The model's name: its random streams and parameter ids.
pub const GENERATOR: &str = "generator";

/// Two 3x3 conv-norm-activation units.
#[derive(Module, Debug)]
pub struct DoubleConv {
    a: ConvNormAct,
    b: ConvNormAct,
}

impl DoubleConv {
    fn new(init: &Init, path: &str, c_in: usize, c_out: usize) -> Self {
        DoubleConv {
            a: ConvNormAct::new(init, &format!("{path}.a"), c_in, c_out, 1),
            b: ConvNormAct::new(init, &format!("{path}.b"), c_out, c_out, 1),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.b.forward(self.a.forward(x))
    }
}

/// One decoder level: reduce channels, upsample, join the skip connection, two convolutions. The
/// reduction runs before the upsampling, at a quarter of the pixels.
#[derive(Module, Debug)]
pub struct UpLevel {
    reduce: ConvNormAct,
    convs: DoubleConv,
}

/// The U-Net: `depth` levels, `channels * 2^l` channels at level `l`.
#[derive(Module, Debug)]
pub struct MapGenerator {
    down: Vec<DoubleConv>,
    up: Vec<UpLevel>,
    out: Conv,
    /// m = map_scale * tanh(out).
    map_scale: f64,
}

impl MapGenerator {
    /// Builds the generator with weights drawn from `seed`.
    pub fn new(config: &AttributionConfig, seed: u64, device: &Device) -> Self {
        let init = Init { seed, model: GENERATOR, device };
        let c = config.gen_channels;
        let depth = config.gen_depth;
        let down = (0..depth)
            .map(|l| {
                let c_in = if l == 0 { 1 } else { c << (l - 1) };
                DoubleConv::new(&init, &format!("down.{l}"), c_in, c << l)
            })
            .collect();
        // up[i] brings level i+1 back to level i; they run from the deepest to the shallowest.
        let up = (0..depth.saturating_sub(1))
            .map(|l| UpLevel {
                reduce: ConvNormAct::new(&init, &format!("up.{l}.reduce"), c << (l + 1), c << l, 1),
                convs: DoubleConv::new(&init, &format!("up.{l}.convs"), 2 * (c << l), c << l),
            })
            .collect();
        // A small output layer starts m near 0: x + m begins as x, and the critic's pressure grows the
        // map from there rather than undoing a random one.
        let out = Conv::new(&init, "out", c, 1, 1, 1, 0.1);
        MapGenerator { down, up, out, map_scale: config.map_scale }
    }

    /// `[n, 1, S, S]` intensities in [0, 1] -> `[n, 1, S, S]` map m. S must be divisible by
    /// 2^(depth-1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = Vec::with_capacity(self.down.len());
        let mut h = x.mul_scalar(2.0).sub_scalar(1.0);
        for (l, level) in self.down.iter().enumerate() {
            if l > 0 {
                h = avg_pool2d(h, AvgPoolOptions::new([2, 2]).with_stride([2, 2]));
            }
            h = level.forward(h);
            skips.push(h.clone());
        }
        skips.pop();
        for level in self.up.iter().rev() {
            let skip = skips.pop().expect("one skip per decoder level");
            let [_, _, sh, sw] = skip.dims();
            let reduced = level.reduce.forward(h);
            let up = interpolate(reduced, InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([sh, sw]));
            h = level.convs.forward(Tensor::cat(vec![up, skip], 1));
        }
        self.out.forward(h).tanh().mul_scalar(self.map_scale)
    }
}
