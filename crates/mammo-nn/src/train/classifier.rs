//! Training the classifier of P(malignant): binary cross-entropy on balanced batches of the training
//! split (half malignant; half negatives, each negative label an equal share, and once mined a share of
//! the negatives the classifier currently finds hardest), AdamW, augmentation on the CPU.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use mammo_io::layouts::Label;
use mammo_prep::split::Split;

use super::{
    Cadence, MaskedBatch, check_loss, check_resumable, check_weights, config_fingerprint, draw_batch_with_masks,
    examples, split_patches, to_tensor, to_vec,
};
use crate::ModelKind;
use crate::augment::Augment;
use crate::checkpoint::{self, CHECKPOINT_FORMAT_VERSION, CheckpointState};
use crate::config::TrainConfig;
use crate::data::PatchData;
use crate::device::on_pool;
use crate::error::{NnError, Result};
use crate::export::export;
use crate::model::Classifier;
use crate::model::classifier::AUX_MASK_BITS;
use crate::observer::{Outcome, TrainObserver};
use crate::rng::stream;

/// The name of this training (random streams, checkpoint directory, observer reports, errors).
const CLASSIFIER: &str = ModelKind::Classifier.as_str();
const WEIGHTS: &str = "classifier.safetensors";
const OPTIMIZER: &str = "classifier.optim.bpk";
/// The mined hard negatives (patch indices, JSON), so a resume draws the batches the run would have.
const HARD_NEGATIVES: &str = "classifier.hard.json";
/// Examples shown with their saliency at image steps.
const IMAGE_EXAMPLES: usize = 4;

/// Everything the classifier loop carries from step to step.
struct State {
    model: Classifier,
    optim: ModuleOptimizer,
    step: u64,
    /// The hardest negatives at the last mining (empty before the first, or with mining off).
    hard: Vec<usize>,
}

/// Trains (or resumes training) the classifier in `run_dir`, then exports it to `RUN/model/`.
///
/// Positives are the malignant patches of `data.split`, negatives those labelled `data.negatives`.
/// Returns [`Outcome::Stopped`] (after saving a checkpoint) when `stop` is set, and an
/// [`NnError::Diverged`] error if a loss stops being finite; the last good checkpoint is kept.
pub fn train_classifier(
    run_dir: &Path,
    data: &PatchData,
    config: &TrainConfig,
    device: &Device,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<Outcome> {
    config.validate()?;
    crate::alloc::keep_freed_buffers();
    let split = config.data.split;
    let positives = data.indices(split, &[Label::Malignant]);
    let negative_labels = &config.data.negatives;
    let negatives = data.indices(split, &negative_labels);
    // Each negative label gets an equal share of the batch: normal tissue outnumbers benign masses
    // several times over, and drawn in proportion it would leave the classifier seeing too few of
    // the masses it must tell apart from malignant ones.
    let negative_pools: Vec<Vec<usize>> =
        negative_labels.iter().map(|&l| data.indices(split, &[l])).filter(|p| !p.is_empty()).collect();
    if positives.is_empty() || negatives.is_empty() {
        return Err(NnError::Data(format!(
            "the classifier needs malignant and {} patches in the {} split; found {} and {}",
            negative_labels.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("/"),
            split.as_str(),
            positives.len(),
            negatives.len()
        )));
    }
    let total = config.classifier_steps();
    let seed = config.train.seed;
    let fingerprint = config_fingerprint(config, ModelKind::Classifier);
    let mut state = resume_or_start(run_dir, config, &fingerprint, device)?;
    let cc = &config.classifier;
    let augment = Augment {
        flip: cc.flip,
        rotate90: cc.rotate90,
        intensity_jitter: cc.intensity_jitter as f32,
        contrast_jitter: cc.contrast_jitter as f32,
    };
    let lr = config.classifier_lr();
    let batch = config.train.batch_size;
    let size = data.size;
    let val = Validation::new(data, &config.data.negatives);
    let shown = examples(data, &val.pool_or(&positives), IMAGE_EXAMPLES);
    let mut loss_sum = 0.0;
    let mut acc_sum = 0.0;
    let mut aux_sum = 0.0;
    let mut since_log = 0u64;

    let cadence = Cadence::new(config, total, stop);
    while state.step < total {
        if cadence.stop_requested() {
            save(run_dir, &state, total, seed, &fingerprint, observer)?;
            return Ok(Outcome::Stopped { step: state.step });
        }
        let s = state.step;
        if cc.hard_negatives > 0.0 && s > 0 && s % cc.mine_every == 0 {
            state.hard = on_pool(|| hardest(&state.model, data, &negatives, cc.hard_pool, batch, device));
        }
        // The whole batch of step s comes from the stream of step s: half malignant, half negative
        // (a share from the mined hardest negatives once there are any, the rest split evenly
        // between the negative labels).
        let mut rng = stream(seed, CLASSIFIER, "batch", s);
        let n_pos = batch.div_ceil(2);
        let n_hard =
            if state.hard.is_empty() { 0 } else { ((batch - n_pos) as f64 * cc.hard_negatives).round() as usize };
        let aux = (cc.aux_weight > 0.0).then(|| (&AUX_MASK_BITS[..], state.model.aux_factor()));
        let mut drawn = draw_batch_with_masks(data, &positives, n_pos, &augment, &mut rng, aux);
        let n_plain = batch - n_pos - n_hard;
        let mut parts = Vec::with_capacity(negative_pools.len() + 1);
        for (k, pool) in negative_pools.iter().enumerate() {
            // The first labels take the remainder, so the shares always add up to n_plain.
            let n = n_plain / negative_pools.len() + usize::from(k < n_plain % negative_pools.len());
            parts.push(draw_batch_with_masks(data, pool, n, &augment, &mut rng, aux));
        }
        parts.push(draw_batch_with_masks(data, &state.hard, n_hard, &augment, &mut rng, aux));
        for part in parts {
            drawn.pixels.extend(part.pixels);
            drawn.targets.extend(part.targets);
            drawn.known.extend(part.known);
        }
        let MaskedBatch { pixels, targets: masks, known } = drawn;
        let targets: Vec<f32> = (0..batch).map(|i| if i < n_pos { 1.0 } else { 0.0 }).collect();

        // Forward, losses, backward and update on one of the pool's threads (see `on_pool`).
        let lr = cc.schedule.at(lr, s, total);
        let targets_tensor = TensorData::new(targets.clone(), [batch]);
        let (next, logits, loss_value, aux_value) =
            on_pool(move || -> Result<(State, Tensor<1>, f64, Option<f64>)> {
                let mut state = state;
                let x = to_tensor(pixels, batch, size, device);
                let y = Tensor::<1>::from_data(targets_tensor, device);
                let (logits, aux_logits) = state.model.forward_with_aux(x, aux.is_some());
                // "loss" in the logs is the classification loss alone: the auxiliary loss has a floor
                // (cells a thin spicule only partly covers have fractional targets) and would hide its
                // progress.
                let bce = bce_with_logits(logits.clone(), y);
                let loss_value = bce.clone().into_scalar::<f32>() as f64;
                let mut loss = bce;
                let mut aux_value = None;
                if let Some(z) = aux_logits {
                    let dims = z.dims();
                    let t = Tensor::<4>::from_data(TensorData::new(masks, dims), device);
                    // Each (patch, bit) plane counts only where its mask is known.
                    let cells = dims[2] * dims[3];
                    let w: Vec<f32> = known.iter().flat_map(|&k| std::iter::repeat_n(k, cells)).collect();
                    let n = dims.iter().product::<usize>();
                    let w = Tensor::<1>::from_data(TensorData::new(w, [n]), device);
                    let aux_loss = weighted_bce_with_logits(z.reshape([n]), t.reshape([n]), w);
                    aux_value = Some(aux_loss.clone().into_scalar::<f32>() as f64);
                    loss = loss + aux_loss.mul_scalar(cc.aux_weight);
                }
                let total_value = loss.clone().into_scalar::<f32>() as f64;
                check_loss(CLASSIFIER, s + 1, "loss", total_value, None)?;
                let grads = GradientsParams::from_grads(loss.backward(), &state.model);
                state.model = state.optim.step(lr, state.model, grads);
                Ok((state, logits, loss_value, aux_value))
            })?;
        state = next;
        aux_sum += aux_value.unwrap_or(0.0);
        state.step += 1;
        let step = state.step;

        let correct = to_vec(logits.detach()).iter().zip(&targets).filter(|(z, t)| (**z > 0.0) == (**t > 0.5)).count();
        loss_sum += loss_value;
        acc_sum += correct as f64 / batch as f64;
        since_log += 1;
        observer.progress(CLASSIFIER, step, total, &[("loss", loss_value)]);
        if cadence.log(step) {
            let k = since_log as f64;
            let mut scalars = vec![("loss", loss_sum / k), ("accuracy", acc_sum / k), ("lr", lr)];
            if cc.aux_weight > 0.0 {
                scalars.push(("aux_loss", aux_sum / k));
            }
            observer.scalars(CLASSIFIER, step, &scalars);
            (loss_sum, acc_sum, aux_sum, since_log) = (0.0, 0.0, 0.0, 0);
        }
        if cadence.images(step) && !shown.is_empty() {
            let n = shown.len() / (size * size);
            let sal = state.model.saliency(to_tensor(shown.clone(), n, size, device));
            observer.images(CLASSIFIER, step, "input", &split_patches(&shown, size), size);
            observer.images(CLASSIFIER, step, "saliency", &split_patches(&to_vec(sal), size), size);
        }
        if cadence.checkpoint(step) {
            check_weights(CLASSIFIER, step, &state.model)?;
            if let Some((val_loss, val_auc)) = on_pool(|| val.evaluate(&state.model, size, device)) {
                observer.scalars(CLASSIFIER, step, &[("val_loss", val_loss), ("val_auc", val_auc)]);
            }
            save(run_dir, &state, total, seed, &fingerprint, observer)?;
            checkpoint::prune(run_dir, CLASSIFIER, config.train.keep_checkpoints)?;
        }
    }
    let weights_hash = export(run_dir, ModelKind::Classifier, &state.model, state.step, config, data)?;
    Ok(Outcome::Completed { steps: state.step, weights_hash })
}

/// Mean binary cross-entropy of logits `z` against targets `y` in [0, 1], written with log-sigmoid so
/// large logits do not overflow.
pub(crate) fn bce_with_logits(z: Tensor<1>, y: Tensor<1>) -> Tensor<1> {
    let pos = y.clone() * log_sigmoid(z.clone());
    let neg = y.neg().add_scalar(1.0) * log_sigmoid(z.neg());
    (pos + neg).mean().neg()
}

/// [`bce_with_logits`] with a weight per element, averaged over the weights (0 when all are 0).
fn weighted_bce_with_logits(z: Tensor<1>, y: Tensor<1>, w: Tensor<1>) -> Tensor<1> {
    let pos = y.clone() * log_sigmoid(z.clone());
    let neg = y.neg().add_scalar(1.0) * log_sigmoid(z.neg());
    let total = w.clone().sum().clamp_min(1.0);
    ((pos + neg) * w).sum().neg() / total
}

/// The `share` of `negatives` (at least `min` of them) that `model` scores highest, in index order: the
/// hard negatives the next steps draw from. A plain forward pass, no augmentation.
fn hardest(
    model: &Classifier,
    data: &PatchData,
    negatives: &[usize],
    share: f64,
    min: usize,
    device: &Device,
) -> Vec<usize> {
    let eval = model.valid();
    let plain = device.clone().without_autodiff();
    let mut scored: Vec<(f32, usize)> = Vec::with_capacity(negatives.len());
    for chunk in negatives.chunks(64) {
        let pixels: Vec<f32> = chunk.iter().flat_map(|&i| data.patch(i).iter().copied()).collect();
        let logits = to_vec(eval.forward(to_tensor(pixels, chunk.len(), data.size, &plain)));
        scored.extend(logits.into_iter().zip(chunk.iter().copied()));
    }
    // Highest logit first; ties by index, so the pick does not depend on anything but the scores.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let k = ((negatives.len() as f64 * share).ceil() as usize).max(min).min(negatives.len());
    let mut hard: Vec<usize> = scored[..k].iter().map(|&(_, i)| i).collect();
    hard.sort_unstable();
    hard
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(config.classifier.weight_decay as f32).init()
}

fn resume_or_start(run_dir: &Path, config: &TrainConfig, fingerprint: &str, device: &Device) -> Result<State> {
    // Seeding burn's own generator as well costs nothing; our parameters do not draw from it (see
    // model/layers.rs), but anything added later that does stays reproducible.
    device.seed(config.train.seed);
    let mut model = Classifier::new(&config.classifier, config.train.seed, device);
    let mut optim = optimizer(config);
    let Some(ckpt) = checkpoint::latest(run_dir, CLASSIFIER)? else {
        return Ok(State { model, optim, step: 0, hard: Vec::new() });
    };
    check_resumable(&ckpt, config, fingerprint)?;
    checkpoint::weights_from_bytes(&mut model, ckpt.read(WEIGHTS)?, &ckpt.dir.join(WEIGHTS))?;
    optim = checkpoint::optimizer_from_bytes(optim, ckpt.read(OPTIMIZER)?, &ckpt.dir.join(OPTIMIZER))?;
    // Written only once mining has run; a checkpoint before that has none.
    let hard = match ckpt.dir.join(HARD_NEGATIVES).is_file() {
        true => serde_json::from_slice(&ckpt.read(HARD_NEGATIVES)?).map_err(|e| {
            NnError::invalid(&ckpt.dir.join(HARD_NEGATIVES), format!("not a list of patch indices: {e}"))
        })?,
        false => Vec::new(),
    };
    tracing::info!("{CLASSIFIER}: resuming from {}", ckpt.dir.display());
    Ok(State { model, optim, step: ckpt.state.step, hard })
}

fn save(
    run_dir: &Path,
    state: &State,
    total: u64,
    seed: u64,
    fingerprint: &str,
    observer: &mut dyn TrainObserver,
) -> Result<()> {
    let mut files = vec![
        (WEIGHTS, checkpoint::weights_to_bytes(&state.model)?),
        (OPTIMIZER, checkpoint::optimizer_to_bytes(&state.optim)?),
    ];
    if !state.hard.is_empty() {
        files.push((HARD_NEGATIVES, serde_json::to_vec(&state.hard).expect("indices serialise")));
    }
    let ckpt_state = CheckpointState {
        format_version: CHECKPOINT_FORMAT_VERSION,
        model: CLASSIFIER.into(),
        step: state.step,
        total_steps: total,
        seed,
        config_hash: fingerprint.into(),
        files: Vec::new(),
    };
    let dir = checkpoint::write(run_dir, &ckpt_state, &files)?;
    observer.checkpoint_saved(CLASSIFIER, state.step, &dir);
    Ok(())
}

/// The validation patches (malignant vs the configured negatives), if the data has both.
struct Validation<'a> {
    data: &'a PatchData,
    positives: Vec<usize>,
    negatives: Vec<usize>,
}

impl<'a> Validation<'a> {
    fn new(data: &'a PatchData, negatives: &[Label]) -> Self {
        Validation {
            data,
            positives: data.indices(Split::Val, &[Label::Malignant]),
            negatives: data.indices(Split::Val, negatives),
        }
    }

    /// The malignant validation patches, or `fallback` when there are none.
    fn pool_or(&self, fallback: &[usize]) -> Vec<usize> {
        if self.positives.is_empty() { fallback.to_vec() } else { self.positives.clone() }
    }

    /// Loss and ROC AUC on the validation patches.
    fn evaluate(&self, model: &Classifier, size: usize, device: &Device) -> Option<(f64, f64)> {
        if self.positives.is_empty() || self.negatives.is_empty() {
            return None;
        }
        let eval = model.valid();
        let plain = device.clone().without_autodiff();
        let all: Vec<usize> = self.positives.iter().chain(&self.negatives).copied().collect();
        let labels: Vec<bool> = (0..all.len()).map(|i| i < self.positives.len()).collect();
        let mut logits = Vec::with_capacity(all.len());
        for chunk in all.chunks(64) {
            let pixels: Vec<f32> = chunk.iter().flat_map(|&i| self.data.patch(i).iter().copied()).collect();
            logits.extend(to_vec(eval.forward(to_tensor(pixels, chunk.len(), size, &plain))));
        }
        let loss = logits
            .iter()
            .zip(&labels)
            .map(|(&z, &y)| {
                let z = z as f64;
                // -log sigmoid(z) for positives, -log sigmoid(-z) for negatives, computed stably.
                let t = if y { -z } else { z };
                t.max(0.0) + (-t.abs()).exp().ln_1p()
            })
            .sum::<f64>()
            / logits.len() as f64;
        let scores: Vec<f64> = logits.iter().map(|&z| z as f64).collect();
        mammo_eval::roc_auc(&scores, &labels).map(|auc| (loss, auc))
    }
}
