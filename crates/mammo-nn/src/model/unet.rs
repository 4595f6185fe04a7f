//! The map generator M of the attribution GAN: a U-Net that takes a malignant patch x and returns a
//! map m of the same size such that x + m looks like the reference class. |m| is the highlight of the
//! features that make x malignant.
//!
//! Two forms of m (`attribution.map_form`):
//! - **free** (as in Baumgartner et al.): m = map_scale * tanh(U-Net(x)), any change at all.
//! - **deletion** (the default): m = -g * max(x - blur(x), 0) with a gate g = sigmoid(U-Net(x)) in
//!   [0, 1]: where g is on, x + m loses its density above the local (blurred) background. The map
//!   can take dense fine structure out (spicules, an irregular margin) but cannot paint anything new.
//!   A free map fools a critic started from the classifier within a few steps with adversarial speckle
//!   spread over the whole patch (on the phantom its pointing game sat near chance); a deletion map
//!   has no such pattern to paint, so the cheapest way past the critic is to delete exactly the malignant
//!   evidence, and the L1 penalty on g keeps the deleted area small. This is the "blur" perturbation
//!   of Fong & Vedaldi (ICCV 2017, "Interpretable explanations of black boxes by meaningful
//!   perturbation"), with the mask produced by the GAN's generator.

use burn::module::Module;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::{conv2d, interpolate};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::classifier::highpass;
use super::layers::{Conv, ConvNormAct, Init};
use crate::config::{AttributionConfig, MapForm};

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
    /// m = map_scale * tanh(out) (free maps).
    map_scale: f64,
    /// Whether the map (or the deletion gate) is smoothed with a 3x3 binomial filter.
    smooth: bool,
    /// The form of the map: a gated deletion of fine structure (true) or free (false).
    deletion: bool,
    /// The deletion form's blur: 1-D Gaussian taps, applied along rows and columns.
    blur_taps: Vec<f32>,
}

impl MapGenerator {
    /// Builds the generator with weights drawn from `seed`.
    pub fn new(config: &AttributionConfig, seed: u64, device: &Device) -> Self {
        let init = Init { seed, model: GENERATOR, device };
        let c = config.gen_channels;
        let depth = config.gen_depth;
        let down = (0..depth)
            .map(|l| {
                let c_in = if l == 0 { 2 } else { c << (l - 1) };
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
        // A small output layer starts a free m near 0 (x + m begins as x, and the critic's pressure grows
        // the map from there rather than undoing a random one) and a deletion gate near 0.5.
        let out = Conv::new(&init, "out", c, 1, 1, 1, 0.1);
        MapGenerator {
            down,
            up,
            out,
            map_scale: config.map_scale,
            smooth: config.map_smooth,
            deletion: config.map_form == MapForm::Deletion,
            blur_taps: gaussian_taps(config.blur_sigma),
        }
    }

    /// `[n, 1, S, S]` intensities in [0, 1] -> `[n, 1, S, S]` map m. S must be divisible by
    /// 2^(depth-1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with_cost(x).0
    }

    /// The map m and the map whose mean absolute value the training penalises: m itself for free
    /// maps, the gate g (the share of each pixel's fine structure taken out) for deletion maps.
    pub fn forward_with_cost(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let mut skips = Vec::with_capacity(self.down.len());
        // The centred patch and its high-pass residual, where the critic's evidence lives.
        let mut h = Tensor::cat(vec![x.clone().mul_scalar(2.0).sub_scalar(1.0), highpass(x.clone())], 1);
        for (l, level) in self.down.iter().enumerate() {
            if l > 0 {
                h = crate::kernels::avg_pool(h, 2, 2, 0);
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
        let out = self.out.forward(h);
        if self.deletion {
            // The gate starts at 0.5 everywhere: half of every pixel's excess density is taken out at
            // first, and the L1 penalty on g closes the gate wherever deleting does not help x + m
            // pass the critic. (Starting near 0 instead, 100 steps hardly moved the gate off its
            // start, and the map stayed what its form alone gives.)
            let g = sigmoid(out);
            let g = if self.smooth { binomial3(g) } else { g };
            // Only density above the local background is taken out: spicules and a mass's margin are
            // denser (brighter) than the tissue around them, and the dark rims a symmetric detail
            // map (blur(x) - x) would add beside each line are not where the features are.
            let excess = relu(x.clone() - gaussian_blur(x, &self.blur_taps));
            (g.clone() * excess.neg(), g)
        } else {
            let m = out.tanh().mul_scalar(self.map_scale);
            let m = if self.smooth { binomial3(m) } else { m };
            (m.clone(), m)
        }
    }

    /// Whether m is a gated deletion (else a free map).
    pub fn is_deletion(&self) -> bool {
        self.deletion
    }

    /// For a deletion generator, the map its form alone gives: -max(x - blur(x), 0), i.e. the gate
    /// held at 1 everywhere (any constant gate ranks pixels the same). Evaluation scores it beside the
    /// trained map, so a report shows what training the gate added to the form. `None` for free maps.
    pub fn form_only(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        self.deletion.then(|| relu(x.clone() - gaussian_blur(x, &self.blur_taps)).neg())
    }
}

/// Normalised 1-D Gaussian taps for `sigma` pixels, out to 3 sigma.
fn gaussian_taps(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let w: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|v| (v / total) as f32).collect()
}

/// A separable Gaussian blur of `[n, 1, h, w]`, with the border pixels repeated outwards.
///
/// Why replicate rather than renormalise at the border: a renormalised (one-sided) mean near the
/// patch edge leaves edge-hugging bright tissue with a large excess over its "background", and the
/// map's maximum then lands on the patch border instead of the lesion (on the phantom, with sigma 2,
/// the pointing game of the form alone fell from 0.91 to 0.82).
fn gaussian_blur(x: Tensor<4>, taps: &[f32]) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let k = taps.len();
    let r = k / 2;
    let row = Tensor::<4>::from_data(TensorData::new(taps.to_vec(), [1, 1, 1, k]), &device);
    let col = Tensor::<4>::from_data(TensorData::new(taps.to_vec(), [1, 1, k, 1]), &device);
    let padded = replicate_pad(x.reshape([n * c, 1, h, w]), r);
    let t = conv2d(padded, row, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
    conv2d(t, col, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)).reshape([n, c, h, w])
}

/// A 3x3 binomial blur ([1 2 1] x [1 2 1] / 16, borders replicated): takes out the pixel-scale
/// alternation (stripes, checkerboards) that fools a critic without looking like anything, and keeps
/// structures two pixels wide and up.
fn binomial3(m: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = m.dims();
    let device = m.device();
    let k = Tensor::<4>::from_data(
        TensorData::new(
            vec![1.0f32, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0].iter().map(|v| v / 16.0).collect(),
            [1, 1, 3, 3],
        ),
        &device,
    );
    let padded = replicate_pad(m.reshape([n * c, 1, h, w]), 1);
    conv2d(padded, k, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)).reshape([n, c, h, w])
}

/// Pads `[n, 1, h, w]` by `r` pixels on every side, repeating the border.
fn replicate_pad(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let x = Tensor::cat(
        vec![x.clone().narrow(2, 0, 1).repeat_dim(2, r), x.clone(), x.narrow(2, h - 1, 1).repeat_dim(2, r)],
        2,
    );
    Tensor::cat(vec![x.clone().narrow(3, 0, 1).repeat_dim(3, r), x.clone(), x.narrow(3, w - 1, 1).repeat_dim(3, r)], 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_blur_keeps_constants_and_flattens_checkerboards() {
        let device = Device::flex();
        let flat = Tensor::<4>::ones([1, 1, 4, 4], &device).mul_scalar(0.3);
        let out: Vec<f32> = binomial3(flat).into_data().try_into_vec().unwrap();
        assert!(out.iter().all(|v| (v - 0.3).abs() < 1e-6), "{out:?}");
        let checker: Vec<f32> = (0..36).map(|i| if (i / 6 + i % 6) % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let t = Tensor::<4>::from_data(TensorData::new(checker, [1, 1, 6, 6]), &device);
        let out: Vec<f32> = binomial3(t).into_data().try_into_vec().unwrap();
        // Inside, a checkerboard averages to exactly 0.
        assert!(out[7].abs() < 1e-6 && out[14].abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn gaussian_blur_keeps_constants_up_to_the_border() {
        let device = Device::flex();
        let flat = Tensor::<4>::ones([2, 1, 8, 8], &device).mul_scalar(0.7);
        let out: Vec<f32> = gaussian_blur(flat, &gaussian_taps(1.5)).into_data().try_into_vec().unwrap();
        assert!(out.iter().all(|v| (v - 0.7).abs() < 1e-5), "{out:?}");
    }

    #[test]
    fn a_deletion_map_only_takes_out_excess_density() {
        let device = Device::flex();
        let config = AttributionConfig::default();
        assert_eq!(config.map_form, MapForm::Deletion);
        let generator = MapGenerator::new(&config, 7, &device);
        // A flat patch with one bright vertical line: the only excess density is on the line.
        let (s, col) = (16, 9);
        let pixels: Vec<f32> = (0..s * s).map(|i| if i % s == col { 0.8 } else { 0.4 }).collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [1, 1, s, s]), &device);
        let (m, gate) = generator.forward_with_cost(x.clone());
        let m: Vec<f32> = m.into_data().try_into_vec().unwrap();
        let gate: Vec<f32> = gate.into_data().try_into_vec().unwrap();
        let form: Vec<f32> = generator.form_only(x).unwrap().into_data().try_into_vec().unwrap();
        assert!(gate.iter().all(|g| (0.0..=1.0).contains(g)));
        for i in 0..s * s {
            // Never adds density, never takes out more than the excess, and nothing off the line.
            assert!(m[i] <= 0.0 && m[i] >= form[i] - 1e-6, "pixel {i}: m {} form {}", m[i], form[i]);
            assert!(m[i] + pixels[i] >= 0.4 - 1e-5, "pixel {i} went below the background");
            if i % s != col {
                assert!(form[i].abs() < 1e-6, "pixel {i} off the line: {}", form[i]);
            }
        }
        assert!(form[5 * s + col] < -0.1, "the line's excess: {}", form[5 * s + col]);
    }
}
