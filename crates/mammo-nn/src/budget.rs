//! What a training config will ask of memory, known before anything is allocated.
//!
//! A typo such as `--set classifier.channels=100000` or `train.batch_size=100000000` used to make the
//! process abort in the allocator (or be killed by the kernel) minutes into a run, leaving a manifest
//! that said "running" and suggested `--resume`, which failed the same way. The models' shapes follow
//! from the config and the patch size alone, so their parameters and activations can be counted
//! exactly here and compared with the memory the machine (or its cgroup) has, before the run starts.
//!
//! The count is of the tensors the models themselves produce; the backward pass (one gradient per
//! activation) and the backend's temporaries are covered by a generous factor, [`TRAINING_FACTOR`]:
//! the check exists to stop shapes that are off by orders of magnitude, not to fit a run to the last
//! megabyte.

use crate::ModelKind;
use crate::config::TrainConfig;

/// Bytes per value (f32 everywhere).
const F32: u64 = 4;
/// Values kept per parameter while training: the weight, its gradient and Adam's two moments.
const PER_PARAMETER: u64 = 4;
/// Peak training memory over the forward activations a step holds: the activations and their
/// gradients (the count of values above already includes every intermediate, so it errs high: on the
/// defaults it gives about 0.5 GiB for the attribution step, where the whole quickstart's measured
/// peak is 486 MiB).
const TRAINING_FACTOR: u64 = 2;

/// The memory one model's training needs, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelBudget {
    /// Trainable parameters.
    pub parameters: u64,
    /// Bytes: parameters with gradients and optimizer state, plus a step's activations and temporaries.
    pub bytes: u64,
}

/// Why a config cannot train on these patches: a one-line message naming the keys to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BudgetError(pub String);

/// The classifier's parameters and the values one patch's forward pass holds (every conv, norm and
/// activation output), for `s` x `s` patches.
fn classifier_counts(config: &TrainConfig, s: u64) -> (u64, u64) {
    let c = config.classifier.channels as u64;
    let blocks = config.classifier.blocks as u32;
    let stems = config.classifier.stem_convs.max(1) as u64;
    // Stem: a 3x3 conv from 1 channel, then c -> c; each with a group norm (2c) and an activation.
    let mut params = 9 * c + 2 * c + (stems - 1) * (9 * c * c + 2 * c);
    let mut values = stems * 3 * c * s * s;
    for b in 0..blocks {
        let (c_in, c_out) = (c << b, c << (b + 1));
        let side = s >> (b + 1);
        params += 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out + c_in * c_out;
        // conv1, norm1, relu, conv2, norm2, shortcut, sum, relu; and the columns the strided conv1
        // and shortcut (and conv2 on a narrow plane) keep for their weight gradients.
        values += 8 * c_out * side * side + kept_columns(9 * c_in + c_in, side, 2) + kept_columns(9 * c_out, side, 1);
    }
    params += c << blocks;
    (params, values)
}

/// Values of the column matrices that convolutions with `rows` column rows in all (`c_in * k * k`
/// summed over them) keep per patch for their weight gradients, at `side` x `side` outputs: at stride 2
/// always, at stride 1 on planes narrower than 16 (where the product reads shifted views instead).
fn kept_columns(rows: u64, side: u64, stride: u64) -> u64 {
    if stride > 1 || side < 16 { rows * side * side } else { 0 }
}

/// The attribution generator's and critic's parameters and per-patch forward values.
fn attribution_counts(config: &TrainConfig, s: u64) -> (u64, u64) {
    let a = &config.attribution;
    let c = a.gen_channels as u64;
    let mut params = 0;
    let mut values = 2 * s * s;
    for l in 0..a.gen_depth as u32 {
        let c_in = if l == 0 { 2 } else { c << (l - 1) };
        let c_out = c << l;
        let side = s >> l;
        // A double conv (two conv + norm + activation) on the way down, and on the way up a 1x1
        // reduction, the upsampled copy, the concatenation and another double conv.
        params += 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out;
        values += 6 * c_out * side * side + kept_columns(9 * c_in + 9 * c_out, side, 1);
        if l + 1 < a.gen_depth as u32 {
            params += (c_out * 2) * c_out + 9 * 2 * c_out * c_out + 9 * c_out * c_out + 6 * c_out;
            values += (3 + 2 + 2 + 6) * c_out * side * side + kept_columns(9 * 2 * c_out + 9 * c_out, side, 1);
        }
    }
    params += c + 1;
    values += 4 * s * s;
    let critic = if a.critic_from_classifier {
        classifier_counts(config, s)
    } else {
        let k = a.critic_channels as u64;
        let mut p = 9 * k;
        let mut v = 2 * k * s * s;
        for l in 0..a.critic_depth as u32 {
            p += 9 * (k << l) * (k << (l + 1));
            v += 2 * (k << (l + 1)) * (s >> (l + 1)) * (s >> (l + 1)) + kept_columns(9 * (k << l), s >> (l + 1), 2);
        }
        (p + (k << a.critic_depth), v)
    };
    // The critic sees real and generated patches; the frozen classifier scores x + m as well.
    let (_, classifier_values) = classifier_counts(config, s);
    (params + critic.0, values + 2 * critic.1 + classifier_values)
}

/// The memory of training `model` with `config` on `patch` px patches,
/// or why those shapes cannot exist (a stage that would halve the patch below one pixel).
pub fn model_budget(config: &TrainConfig, model: ModelKind, patch: usize) -> Result<ModelBudget, BudgetError> {
    let s = patch as u64;
    let halvings = |key: &str, n: usize, allowed: u32| {
        if n as u32 > allowed {
            Err(BudgetError(format!(
                "{key}={n}: each halves the {patch} px patch, so at most {allowed} fit (lower {key})"
            )))
        } else {
            Ok(())
        }
    };
    let log2 = patch.max(1).ilog2();
    halvings("classifier.blocks", config.classifier.blocks, log2)?;
    let (params, values) = match model {
        ModelKind::Classifier => classifier_counts(config, s),
        ModelKind::Attribution => {
            let a = &config.attribution;
            halvings("attribution.gen_depth", a.gen_depth, log2 + 1)?;
            if !a.critic_from_classifier {
                halvings("attribution.critic_depth", a.critic_depth, log2)?;
            }
            attribution_counts(config, s)
        }
    };
    let batch = config.train.batch_size as u64;
    let bytes = params
        .saturating_mul(PER_PARAMETER * F32)
        .saturating_add(values.saturating_mul(batch).saturating_mul(F32 * TRAINING_FACTOR));
    Ok(ModelBudget { parameters: params, bytes })
}

/// Refuses a config whose training would need more than `available` bytes (the machine's or the
/// cgroup's free memory) on `patch` px patches, naming what to lower.
pub fn check(
    config: &TrainConfig,
    models: &[ModelKind],
    patch: usize,
    available: Option<u64>,
) -> Result<(), BudgetError> {
    for &model in models {
        let b = model_budget(config, model, patch)?;
        let Some(avail) = available else { continue };
        if b.bytes > avail {
            let gib = |v: u64| v as f64 / (1u64 << 30) as f64;
            let keys = match model {
                ModelKind::Classifier => "train.batch_size, classifier.channels or classifier.blocks",
                ModelKind::Attribution => "train.batch_size, attribution.gen_channels or attribution.gen_depth",
            };
            return Err(BudgetError(format!(
                "training the {model} with these settings needs about {:.1} GiB ({} parameters, batch {}), but \
                 only {:.1} GiB of memory is available: lower {keys}",
                gib(b.bytes),
                b.parameters,
                config.train.batch_size,
                gib(avail)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_small_and_absurd_ones_are_refused() {
        let c = TrainConfig::default();
        for model in ModelKind::ALL {
            let b = model_budget(&c, model, 64).unwrap();
            // The default quickstart's measured peak is 486 MiB with the dataset in memory: the
            // estimate may err high, but not so far that it refuses the defaults on a small machine.
            assert!(b.bytes < 768 << 20, "{model}: {} bytes", b.bytes);
            assert!(b.parameters > 1000, "{model}: {}", b.parameters);
        }
        check(&c, &ModelKind::ALL, 64, Some(2 << 30)).unwrap();

        let mut wide = c.clone();
        wide.classifier.channels = 100_000;
        let e = check(&wide, &[ModelKind::Classifier], 64, Some(16 << 30)).unwrap_err().to_string();
        assert!(e.contains("classifier.channels") && e.contains("GiB"), "{e}");

        let mut big_batch = c.clone();
        big_batch.train.batch_size = 100_000_000;
        let e = check(&big_batch, &[ModelKind::Classifier], 64, Some(16 << 30)).unwrap_err().to_string();
        assert!(e.contains("train.batch_size") && e.contains("batch 100000000"), "{e}");

        let mut deep = c.clone();
        deep.classifier.blocks = 40;
        let e = check(&deep, &[ModelKind::Classifier], 64, None).unwrap_err().to_string();
        assert!(e.contains("classifier.blocks=40") && e.contains("at most 6"), "{e}");
    }

    #[test]
    fn the_count_grows_with_the_shapes_it_depends_on() {
        let c = TrainConfig::default();
        let base = model_budget(&c, ModelKind::Classifier, 64).unwrap();
        let mut wider = c.clone();
        wider.classifier.channels *= 2;
        let w = model_budget(&wider, ModelKind::Classifier, 64).unwrap();
        assert!(w.parameters > 3 * base.parameters && w.bytes > base.bytes);
        let mut batch = c.clone();
        batch.train.batch_size *= 2;
        assert!(model_budget(&batch, ModelKind::Classifier, 64).unwrap().bytes > base.bytes);
        assert!(model_budget(&c, ModelKind::Classifier, 128).unwrap().bytes > base.bytes);
    }
}
