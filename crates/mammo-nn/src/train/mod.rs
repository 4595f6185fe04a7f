//! The training loops: [`train_classifier`] and [`train_attribution`], and what they share (batches,
//! the divergence guard, the config fingerprint a resume checks).
//!
//! Both loops have the same shape: resume from the newest complete checkpoint if there is one, then
//! for each step check the stop flag, draw the step's batch from the step's own random stream, update,
//! check the losses, report, and checkpoint every `checkpoint_every` steps; at the end write the model
//! to `RUN/model/`. Nothing a step needs lives only in memory, so killing the process and starting the
//! same call again continues exactly where the last checkpoint left off.

mod attribution;
mod classifier;

pub use attribution::train_attribution;
pub use classifier::train_classifier;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;

use crate::ModelKind;
use crate::augment::Augment;
use crate::config::TrainConfig;
use crate::data::{MASK_MALIGNANCY, PatchData};
use crate::error::{NnError, Result};
use mammo_io::layouts::Label;

/// Uploads `n` patches of side `size` as `[n, 1, size, size]`.
pub(crate) fn to_tensor(pixels: Vec<f32>, n: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(pixels, [n, 1, size, size]), device)
}

/// Downloads a tensor's values.
pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("float tensors hold f32")
}

/// Draws `n` patches from `pool` (with replacement) and augments each, all from `rng`.
pub(crate) fn draw_batch(
    data: &PatchData,
    pool: &[usize],
    n: usize,
    augment: &Augment,
    rng: &mut impl Rng,
) -> Vec<f32> {
    draw_batch_with_masks(data, pool, n, augment, rng, None).pixels
}

/// A batch's patches and, when asked for, their mask targets.
pub(crate) struct MaskedBatch {
    /// `[n, 1, size, size]` intensities.
    pub pixels: Vec<f32>,
    /// `[n, bits, size / factor, size / factor]`: for each mask bit, the fraction of each cell that has it.
    pub targets: Vec<f32>,
    /// `[n, bits]`: 1 where the patch's mask for that bit is known, 0 where the data cannot say (a
    /// malignant patch whose dataset has no lesion outline, or no malignancy-feature mask): an empty
    /// plane there means "not drawn", not "absent", and must not teach the network that.
    pub known: Vec<f32>,
}

/// [`draw_batch`], also returning each drawn patch's mask (under the same flips and turns) when
/// `masks` is set: for each of the mask bits in `masks.0`, the fraction of each `factor x factor`
/// cell (`masks.1`) that has it. Draws the same random values as `draw_batch`, so asking for masks
/// changes no batch.
pub(crate) fn draw_batch_with_masks(
    data: &PatchData,
    pool: &[usize],
    n: usize,
    augment: &Augment,
    rng: &mut impl Rng,
    masks: Option<(&[u8], usize)>,
) -> MaskedBatch {
    let s = data.size;
    let mut pixels = Vec::with_capacity(n * s * s);
    let mut targets = Vec::new();
    let mut known = Vec::new();
    for _ in 0..n {
        let i = pool[rng.random_range(0..pool.len())];
        let start = pixels.len();
        pixels.extend_from_slice(data.patch(i));
        let geometry = augment.apply(&mut pixels[start..], s, rng);
        if let Some((bits, factor)) = masks {
            let mut mask = data.mask(i).to_vec();
            geometry.apply(&mut mask, s);
            targets.extend(cell_fractions(&mask, s, bits, factor));
            // Normal tissue has neither a lesion nor its features, and a benign lesion has no
            // malignancy features, whatever was drawn; for anything else an empty plane is unknown.
            let label = data.labels[i];
            known.extend(bits.iter().map(|&bit| {
                let certain_absent = label == Label::Normal || (label == Label::Benign && bit == MASK_MALIGNANCY);
                let drawn = mask.iter().any(|v| v & bit != 0);
                f32::from(u8::from(certain_absent || drawn))
            }));
        }
    }
    MaskedBatch { pixels, targets, known }
}

/// For each bit, the fraction of each `factor x factor` cell of a `size x size` mask that has it:
/// `bits.len() * (size / factor)^2` values, bit after bit, row-major.
pub(crate) fn cell_fractions(mask: &[u8], size: usize, bits: &[u8], factor: usize) -> Vec<f32> {
    let cells = size / factor;
    let norm = 1.0 / (factor * factor) as f32;
    let mut out = vec![0f32; bits.len() * cells * cells];
    for (b, &bit) in bits.iter().enumerate() {
        let plane = &mut out[b * cells * cells..(b + 1) * cells * cells];
        for y in 0..cells * factor {
            for x in 0..cells * factor {
                if mask[y * size + x] & bit != 0 {
                    plane[(y / factor) * cells + x / factor] += norm;
                }
            }
        }
    }
    out
}

/// The divergence guard for one loss value.
pub(crate) fn check_loss(model: &str, step: u64, loss: &str, value: f64, bound: Option<f64>) -> Result<()> {
    let reason = if !value.is_finite() {
        "not finite".to_string()
    } else if let Some(b) = bound.filter(|b| value.abs() > *b) {
        format!("beyond the bound {b}")
    } else {
        return Ok(());
    };
    Err(NnError::Diverged { model: model.into(), step, loss: loss.into(), value, reason })
}

/// Refuses to checkpoint weights that are no longer finite (an update can overflow after a finite
/// loss): the last good checkpoint must stay the newest.
pub(crate) fn check_weights<M: Module>(model_name: &str, step: u64, module: &M) -> Result<()> {
    struct Finite(bool);
    impl burn::module::ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if self.0 {
                self.0 = param.val().abs().max().into_scalar::<f32>().is_finite();
            }
        }
    }
    let mut v = Finite(true);
    module.visit(&mut v);
    if v.0 {
        Ok(())
    } else {
        Err(NnError::Diverged {
            model: model_name.into(),
            step,
            loss: "weights".into(),
            value: f64::NAN,
            reason: "not finite after the update".into(),
        })
    }
}

/// BLAKE3 of what a model's checkpoints depend on: the config without the keys that only say how
/// long to run or how often to report, and without the other model's settings. A resume under a
/// different fingerprint is refused, since it could not reproduce the uninterrupted run; a resume
/// with more steps is allowed, and so is retraining one model of a run with new settings.
pub(crate) fn config_fingerprint(config: &TrainConfig, model: ModelKind) -> String {
    let mut c = config.clone();
    let d = TrainConfig::default();
    match model {
        ModelKind::Classifier => c.attribution = d.attribution.clone(),
        ModelKind::Attribution => {
            c.classifier = d.classifier.clone();
            c.train.lr = d.train.lr;
            c.data.negatives = d.data.negatives.clone();
        }
    }
    c.train.steps = d.train.steps;
    c.train.log_every = d.train.log_every;
    c.train.image_every = d.train.image_every;
    c.train.checkpoint_every = d.train.checkpoint_every;
    c.train.keep_checkpoints = d.train.keep_checkpoints;
    c.train.threads = d.train.threads;
    c.classifier.steps = None;
    c.attribution.steps = None;
    blake3::hash(c.to_toml().as_bytes()).to_hex().to_string()
}

/// A checkpoint made under another seed or config cannot continue this run.
pub(crate) fn check_resumable(
    ckpt: &crate::checkpoint::Checkpoint,
    config: &TrainConfig,
    fingerprint: &str,
) -> Result<()> {
    if ckpt.state.seed != config.train.seed || ckpt.state.config_hash != fingerprint {
        return Err(NnError::invalid(
            &ckpt.dir,
            "was written under a different seed or configuration; resume with the run's config.toml or use a new run directory",
        ));
    }
    Ok(())
}

/// Whether `step` (1-based, just completed) is a multiple of `every` (never when `every` is 0).
pub(crate) fn due(step: u64, every: u64) -> bool {
    every > 0 && step % every == 0
}

/// When a training loop stops, logs, draws images and checkpoints: one schedule for both models, so
/// `train.log_every`, `image_every` and `checkpoint_every` mean the same for either, and the last step
/// is always logged and checkpointed (a resume or an export starts from it).
pub(crate) struct Cadence<'a> {
    total: u64,
    log_every: u64,
    image_every: u64,
    checkpoint_every: u64,
    stop: &'a AtomicBool,
}

impl<'a> Cadence<'a> {
    /// The schedule of `config.train` for a loop of `total` steps that `stop` interrupts.
    pub(crate) fn new(config: &TrainConfig, total: u64, stop: &'a AtomicBool) -> Self {
        let t = &config.train;
        Cadence {
            total,
            log_every: t.log_every,
            image_every: t.image_every,
            checkpoint_every: t.checkpoint_every,
            stop,
        }
    }

    /// Whether a signal asked the loop to stop before its next step (it then saves and returns).
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether the averages since the last log are reported after `step`.
    pub(crate) fn log(&self, step: u64) -> bool {
        due(step, self.log_every) || step == self.total
    }

    /// Whether example images are drawn after `step`.
    pub(crate) fn images(&self, step: u64) -> bool {
        due(step, self.image_every)
    }

    /// Whether the weights are checked and a checkpoint saved after `step`.
    pub(crate) fn checkpoint(&self, step: u64) -> bool {
        due(step, self.checkpoint_every) || step == self.total
    }
}

/// The first `n` patches of `pool`, copied out (fixed examples for image reports).
pub(crate) fn examples(data: &PatchData, pool: &[usize], n: usize) -> Vec<f32> {
    pool.iter().take(n).flat_map(|&i| data.patch(i).iter().copied()).collect()
}

/// Splits a flat array into `size * size` patches.
pub(crate) fn split_patches(flat: &[f32], size: usize) -> Vec<Vec<f32>> {
    flat.chunks(size * size).map(<[f32]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::MASK_LESION;
    use mammo_prep::split::Split;

    #[test]
    fn cell_fractions_count_each_bit_per_cell() {
        // 4 x 4 mask, 2 x 2 cells: the lesion fills the top-left cell, the features half of it.
        let mut mask = vec![0u8; 16];
        for (y, x) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            mask[y * 4 + x] = MASK_LESION;
        }
        mask[0] |= MASK_MALIGNANCY;
        mask[1] |= MASK_MALIGNANCY;
        let f = cell_fractions(&mask, 4, &[MASK_LESION, MASK_MALIGNANCY], 2);
        assert_eq!(f, vec![1.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn mask_planes_the_data_cannot_vouch_for_are_unknown() {
        // Four 2 x 2 patches: malignant with an outline and features, malignant with nothing drawn,
        // benign with nothing drawn, normal.
        let m = MASK_LESION | MASK_MALIGNANCY;
        let masks = [[m, 0, 0, 0], [0; 4], [0; 4], [0; 4]].concat();
        let labels = vec![Label::Malignant, Label::Malignant, Label::Benign, Label::Normal];
        let data = PatchData::new(2, 0.4, vec![0.5; 16], masks, labels, vec![Split::Train; 4]).unwrap();
        let bits = [MASK_LESION, MASK_MALIGNANCY];
        let mut known = Vec::new();
        for i in 0..4 {
            // A pool of one patch makes the draw deterministic.
            let mut rng = crate::rng::stream(0, "test", "batch", 0);
            known.push(draw_batch_with_masks(&data, &[i], 1, &Augment::NONE, &mut rng, Some((&bits, 1))).known);
        }
        assert_eq!(known, vec![vec![1.0, 1.0], vec![0.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]]);
    }
}
