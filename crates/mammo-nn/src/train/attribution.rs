//! Training the attribution GAN (after Baumgartner et al., CVPR 2018, "Visual Feature Attribution using
//! Wasserstein GANs").
//!
//! The map generator M takes a malignant patch x and returns m; y = x + m must pass the critic as a
//! patch of the reference class (benign by default, normal tissue with `reference = "normal"`), and an
//! L1 penalty on m keeps the change minimal. So m is the smallest change that removes what makes x
//! malignant, and |m| highlights it.
//!
//! Each step: `n_critic` critic updates (real = reference patches, fake = x + M(x) held fixed), then one
//! generator update. The critic is spectrally normalised and trained with the hinge (or Wasserstein)
//! loss instead of the paper's WGAN-GP: burn has first-order autodiff only, and the gradient penalty
//! needs second-order gradients (see `model/critic.rs`).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor};
use mammo_io::layouts::Label;
use mammo_prep::split::Split;
use rand::Rng;

use super::{
    Cadence, check_loss, check_resumable, check_weights, config_fingerprint, draw_batch, examples, split_patches,
    to_tensor, to_vec,
};
use crate::ModelKind;
use crate::augment::Augment;
use crate::checkpoint::{self, CHECKPOINT_FORMAT_VERSION, CheckpointState};
use crate::config::{GanLoss, TrainConfig};
use crate::data::PatchData;
use crate::device::on_pool;
use crate::error::{NnError, Result};
use crate::export::{MODEL_DIR, ModelInfo, export, model_json_path};
use crate::model::{Classifier, Critic, MapGenerator};
use crate::observer::{Outcome, TrainObserver};
use crate::rng::stream;

/// The name of this training (random streams, checkpoint directory, observer reports, errors).
const ATTRIBUTION: &str = ModelKind::Attribution.as_str();
const GEN_WEIGHTS: &str = "generator.safetensors";
const CRITIC_WEIGHTS: &str = "critic.safetensors";
const GEN_OPTIM: &str = "generator.optim.bpk";
const CRITIC_OPTIM: &str = "critic.optim.bpk";
/// Examples shown with their maps at image steps.
const IMAGE_EXAMPLES: usize = 4;

/// Everything the GAN loop carries from step to step.
struct State {
    generator: MapGenerator,
    critic: Critic,
    optim_g: ModuleOptimizer,
    optim_c: ModuleOptimizer,
    step: u64,
}

/// Trains (or resumes training) the attribution GAN in `run_dir`, then exports the map generator to
/// `RUN/model/`.
///
/// One step is `n_critic` critic updates and one generator update. Returns [`Outcome::Stopped`]
/// (after saving a checkpoint) when `stop` is set, and an [`NnError::Diverged`] error if a loss is not
/// finite or the critic's loss leaves `critic_loss_bound`; the last good checkpoint is kept.
pub fn train_attribution(
    run_dir: &Path,
    data: &PatchData,
    config: &TrainConfig,
    device: &Device,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<Outcome> {
    config.validate()?;
    crate::alloc::keep_freed_buffers();
    let ac = &config.attribution;
    // Each U-Net level and each critic level halves the patch; the deepest must keep a few pixels.
    let halvings = ac.gen_depth.saturating_sub(1).max(ac.critic_depth);
    if data.size >> halvings < 2 {
        return Err(NnError::Data(format!(
            "patches of {} px are too small to halve {halvings} times (attribution.gen_depth / critic_depth)",
            data.size
        )));
    }
    let split = config.data.split;
    let malignant = data.indices(split, &[Label::Malignant]);
    let reference = data.indices(split, &[ac.reference.label()]);
    if malignant.is_empty() || reference.is_empty() {
        return Err(NnError::Data(format!(
            "the attribution GAN needs malignant and {} patches in the {} split; found {} and {}",
            ac.reference.label().as_str(),
            split.as_str(),
            malignant.len(),
            reference.len()
        )));
    }
    let total = config.attribution_steps();
    let seed = config.train.seed;
    let warm = if ac.critic_from_classifier { trained_classifier(run_dir, data, device)? } else { None };
    let mut fingerprint = config_fingerprint(config, ModelKind::Attribution);
    if let Some((_, hash)) = &warm {
        // The critic starts from these weights: another classifier could not continue this run.
        fingerprint = format!("{fingerprint}+classifier:{hash}");
    }
    match &warm {
        Some(_) => tracing::info!("{ATTRIBUTION}: the critic starts from the run's trained classifier"),
        None => tracing::info!("{ATTRIBUTION}: the critic starts from scratch (spectrally normalised)"),
    }
    let mut state = resume_or_start(run_dir, config, &fingerprint, device, warm.map(|(c, _)| c))?;
    let augment = if ac.augment {
        Augment { flip: true, rotate90: true, intensity_jitter: 0.0, contrast_jitter: 0.0 }
    } else {
        Augment::NONE
    };
    let batch = config.train.batch_size;
    let size = data.size;
    let val_malignant = data.indices(Split::Val, &[Label::Malignant]);
    let shown = examples(data, if val_malignant.is_empty() { &malignant } else { &val_malignant }, IMAGE_EXAMPLES);
    let mut sums = [0.0f64; 4];
    let mut since_log = 0u64;

    let cadence = Cadence::new(config, total, stop);
    while state.step < total {
        if cadence.stop_requested() {
            save(run_dir, &state, total, seed, &fingerprint, observer)?;
            return Ok(Outcome::Stopped { step: state.step });
        }
        let s = state.step;
        let step = s + 1;
        let mut rng = stream(seed, ATTRIBUTION, "batch", s);

        // The critic updates and the generator's, on one of the pool's threads (see `on_pool`).
        let (malignant, reference, augment) = (&malignant, &reference, &augment);
        let (next, critic_loss, gap, adv_value, l1_value, gen_loss) = on_pool(move || -> Result<StepOut> {
            let mut state = state;
            // Critic updates: real reference patches against the current generator's x + m, held fixed.
            let mut critic_loss = 0.0;
            let mut gap = 0.0;
            // The fakes need no gradient: run the generator without autodiff (about half the cost).
            let generator_eval = state.generator.valid();
            let plain = device.clone().inner();
            for _ in 0..ac.n_critic {
                let real = to_tensor(draw_batch(data, reference, batch, augment, &mut rng), batch, size, device);
                let x = to_tensor(draw_batch(data, malignant, batch, augment, &mut rng), batch, size, &plain);
                let fake = (x.clone() + generator_eval.forward(x)).autodiff();
                state.critic.power_iteration(ac.power_iterations);
                let d_real = state.critic.forward(random_crops(real, ac.critic_crop, &mut rng));
                let d_fake = state.critic.forward(random_crops(fake, ac.critic_crop, &mut rng));
                gap = (d_real.clone().mean() - d_fake.clone().mean()).into_scalar::<f32>() as f64;
                let loss = match ac.loss {
                    GanLoss::Hinge => relu(d_real.neg().add_scalar(1.0)).mean() + relu(d_fake.add_scalar(1.0)).mean(),
                    GanLoss::Wasserstein => d_fake.mean() - d_real.mean(),
                };
                critic_loss = loss.clone().into_scalar::<f32>() as f64;
                check_loss(ATTRIBUTION, step, "critic_loss", critic_loss, Some(ac.critic_loss_bound))?;
                let grads = GradientsParams::from_grads(loss.backward(), &state.critic);
                state.critic = state.optim_c.step(ac.lr_c, state.critic, grads);
            }

            // Generator update: x + m should score as the reference class, with m as small as possible.
            let x = to_tensor(draw_batch(data, malignant, batch, augment, &mut rng), batch, size, device);
            let (m, cost) = state.generator.forward_with_cost(x.clone());
            // The critic's weights are constants here: gradients flow through it to m only.
            let frozen = state.critic.clone().no_grad();
            let d_fake = frozen.forward(random_crops(x.clone() + m.clone(), ac.critic_crop, &mut rng));
            let adversarial = match ac.loss {
                // Non-saturating: -log sigmoid(D). Once x + m passes, the push stops and the L1 term pulls m
                // back to the least change that passes, instead of pumping the score ever higher.
                GanLoss::Hinge => softplus(d_fake.neg(), 1.0).mean(),
                GanLoss::Wasserstein => d_fake.mean().neg(),
            };
            let l1 = cost.abs().mean();
            let loss = adversarial.clone() + l1.clone().mul_scalar(ac.l1_weight);
            let (adv_value, l1_value, gen_loss) = (
                adversarial.into_scalar::<f32>() as f64,
                l1.into_scalar::<f32>() as f64,
                loss.clone().into_scalar::<f32>() as f64,
            );
            check_loss(ATTRIBUTION, step, "generator_loss", gen_loss, None)?;
            let grads = GradientsParams::from_grads(loss.backward(), &state.generator);
            state.generator = state.optim_g.step(ac.lr_g, state.generator, grads);
            Ok((state, critic_loss, gap, adv_value, l1_value, gen_loss))
        })?;
        state = next;
        state.step = step;

        let losses = [("critic_loss", critic_loss), ("generator_loss", gen_loss), ("map_l1", l1_value)];
        observer.progress(ATTRIBUTION, step, total, &losses);
        for (sum, v) in sums.iter_mut().zip([critic_loss, adv_value, l1_value, gap]) {
            *sum += v;
        }
        since_log += 1;
        if cadence.log(step) {
            let k = since_log as f64;
            let scalars = [
                ("critic_loss", sums[0] / k),
                ("generator_adversarial", sums[1] / k),
                ("map_l1", sums[2] / k),
                ("critic_gap", sums[3] / k),
            ];
            observer.scalars(ATTRIBUTION, step, &scalars);
            (sums, since_log) = ([0.0; 4], 0);
        }
        if cadence.images(step) && !shown.is_empty() {
            let n = shown.len() / (size * size);
            let m = to_vec(state.generator.valid().forward(to_tensor(shown.clone(), n, size, &device.clone().inner())));
            let y: Vec<f32> = shown.iter().zip(&m).map(|(a, b)| a + b).collect();
            observer.images(ATTRIBUTION, step, "input", &split_patches(&shown, size), size);
            observer.images(ATTRIBUTION, step, "map", &split_patches(&m, size), size);
            observer.images(ATTRIBUTION, step, "output", &split_patches(&y, size), size);
        }
        if cadence.checkpoint(step) {
            check_weights(ATTRIBUTION, step, &state.generator)?;
            check_weights(ATTRIBUTION, step, &state.critic)?;
            save(run_dir, &state, total, seed, &fingerprint, observer)?;
            checkpoint::prune(run_dir, ATTRIBUTION, config.train.keep_checkpoints)?;
        }
    }
    let weights_hash = export(run_dir, ModelKind::Attribution, &state.generator, state.step, config, data)?;
    Ok(Outcome::Completed { steps: state.step, weights_hash })
}

/// What one step hands back: the state, the critic's loss and score gap, the generator's adversarial
/// loss, map L1 and total loss.
type StepOut = (State, f64, f64, f64, f64, f64);

/// Random translations of what the critic sees (as in DiffAugment, Zhao et al. 2020): each patch is cut
/// to its `(S - crop)`-pixel window at an offset drawn from `rng`, independently per patch; real and
/// generated patches alike. A map can then only fool the critic with what moves with the patch's
/// content, not with patterns at fixed positions of the critic's grid (a frame along the patch
/// border was what a generator found first against a critic started from the classifier).
fn random_crops(x: Tensor<4>, crop: usize, rng: &mut impl Rng) -> Tensor<4> {
    let [n, _, s, _] = x.dims();
    if crop == 0 || crop >= s {
        return x;
    }
    let w = s - crop;
    let windows = (0..n)
        .map(|i| {
            let (dy, dx) = (rng.random_range(0..=crop), rng.random_range(0..=crop));
            x.clone().narrow(0, i, 1).narrow(2, dy, w).narrow(3, dx, w)
        })
        .collect();
    Tensor::cat(windows, 0)
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let ac = &config.attribution;
    AdamConfig::new().with_beta_1(ac.beta1 as f32).with_beta_2(ac.beta2 as f32).init()
}

/// The run's exported classifier and its weight hash, if it has one for patches of this size.
fn trained_classifier(run_dir: &Path, data: &PatchData, device: &Device) -> Result<Option<(Classifier, String)>> {
    if !model_json_path(run_dir).is_file() {
        return Ok(None);
    }
    let info = ModelInfo::read(run_dir)?;
    let Some(entry) = info.classifier.filter(|_| info.patch_size == data.size) else {
        return Ok(None);
    };
    let mut classifier = Classifier::new(&entry.config.classifier, 0, device);
    let path = run_dir.join(MODEL_DIR).join(&entry.file);
    checkpoint::weights_from_bytes(&mut classifier, std::fs::read(&path).map_err(|e| NnError::io(&path, e))?, &path)?;
    Ok(Some((classifier, entry.weights_hash)))
}

fn resume_or_start(
    run_dir: &Path,
    config: &TrainConfig,
    fingerprint: &str,
    device: &Device,
    warm: Option<Classifier>,
) -> Result<State> {
    device.seed(config.train.seed);
    let mut generator = MapGenerator::new(&config.attribution, config.train.seed, device);
    let mut critic = match warm {
        Some(classifier) => Critic::from_classifier(classifier),
        None => Critic::spectral(&config.attribution, config.train.seed, device),
    };
    let (mut optim_g, mut optim_c) = (optimizer(config), optimizer(config));
    let Some(ckpt) = checkpoint::latest(run_dir, ATTRIBUTION)? else {
        return Ok(State { generator, critic, optim_g, optim_c, step: 0 });
    };
    check_resumable(&ckpt, config, fingerprint)?;
    checkpoint::weights_from_bytes(&mut generator, ckpt.read(GEN_WEIGHTS)?, &ckpt.dir.join(GEN_WEIGHTS))?;
    checkpoint::weights_from_bytes(&mut critic, ckpt.read(CRITIC_WEIGHTS)?, &ckpt.dir.join(CRITIC_WEIGHTS))?;
    optim_g = checkpoint::optimizer_from_bytes(optim_g, ckpt.read(GEN_OPTIM)?, &ckpt.dir.join(GEN_OPTIM))?;
    optim_c = checkpoint::optimizer_from_bytes(optim_c, ckpt.read(CRITIC_OPTIM)?, &ckpt.dir.join(CRITIC_OPTIM))?;
    tracing::info!("{ATTRIBUTION}: resuming from {}", ckpt.dir.display());
    Ok(State { generator, critic, optim_g, optim_c, step: ckpt.state.step })
}

fn save(
    run_dir: &Path,
    state: &State,
    total: u64,
    seed: u64,
    fingerprint: &str,
    observer: &mut dyn TrainObserver,
) -> Result<()> {
    let files = [
        (GEN_WEIGHTS, checkpoint::weights_to_bytes(&state.generator)?),
        (CRITIC_WEIGHTS, checkpoint::weights_to_bytes(&state.critic)?),
        (GEN_OPTIM, checkpoint::optimizer_to_bytes(&state.optim_g)?),
        (CRITIC_OPTIM, checkpoint::optimizer_to_bytes(&state.optim_c)?),
    ];
    let ckpt_state = CheckpointState {
        format_version: CHECKPOINT_FORMAT_VERSION,
        model: ATTRIBUTION.into(),
        step: state.step,
        total_steps: total,
        seed,
        config_hash: fingerprint.into(),
        files: Vec::new(),
    };
    let dir = checkpoint::write(run_dir, &ckpt_state, &files)?;
    observer.checkpoint_saved(ATTRIBUTION, state.step, &dir);
    Ok(())
}
