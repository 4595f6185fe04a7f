//! Determinism, resume and the divergence guard.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::{Recorder, no_stop, synthetic, tiny_config};
use mammo_nn::checkpoint;
use mammo_nn::{NnError, Outcome, PatchData, TrainConfig, select_device, train_attribution, train_classifier};

fn device() -> mammo_nn::Device {
    select_device("cpu", 0).unwrap().0
}

type Trainer = fn(
    &Path,
    &PatchData,
    &TrainConfig,
    &mammo_nn::Device,
    &mut dyn mammo_nn::TrainObserver,
    &AtomicBool,
) -> mammo_nn::Result<Outcome>;

fn completed_hash(outcome: Outcome) -> String {
    match outcome {
        Outcome::Completed { weights_hash, .. } => weights_hash,
        other => panic!("expected completion, got {other:?}"),
    }
}

/// The file hashes (weights and optimizer state) of a model's newest checkpoint.
fn final_checkpoint_files(run: &Path, model: &str) -> Vec<(String, String)> {
    checkpoint::latest(run, model).unwrap().unwrap().state.files
}

#[test]
fn same_seed_same_weights_different_seed_different_weights() {
    let data = synthetic(12, 32, 3);
    let config = tiny_config(4);
    let train = |config: &TrainConfig| {
        let run = tempfile::tempdir().unwrap();
        let c = train_classifier(run.path(), &data, config, &device(), &mut Recorder::default(), &no_stop()).unwrap();
        let a = train_attribution(run.path(), &data, config, &device(), &mut Recorder::default(), &no_stop()).unwrap();
        (completed_hash(c), completed_hash(a), final_checkpoint_files(run.path(), "attribution"))
    };
    let first = train(&config);
    assert_eq!(first, train(&config));
    // The thread count changes the speed, not the numbers: a 1-thread pool gives the same weights.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    assert_eq!(first, pool.install(|| train(&config)));
    let mut other = config.clone();
    other.set("train.seed", "43").unwrap();
    let second = train(&other);
    assert_ne!(first.0, second.0);
    assert_ne!(first.1, second.1);
}

/// Trains `total` steps uninterrupted, and again stopped after `stop_at` (with `checkpoint_every`
/// not dividing it, so the stop itself must save) then resumed by a fresh call; both must agree bit
/// for bit, weights and optimizer state.
fn resume_matches(train: Trainer, model: &str, total: u64, stop_at: u64) {
    resume_matches_with(train, model, total, stop_at, &[]);
}

/// [`resume_matches`] with further config settings.
fn resume_matches_with(train: Trainer, model: &str, total: u64, stop_at: u64, settings: &[(&str, &str)]) {
    let data = synthetic(12, 32, 4);
    let mut config = tiny_config(total);
    config.set("train.checkpoint_every", "3").unwrap();
    for (key, value) in settings {
        config.set(key, value).unwrap();
    }

    let straight = tempfile::tempdir().unwrap();
    let h1 = completed_hash(
        train(straight.path(), &data, &config, &device(), &mut Recorder::default(), &no_stop()).unwrap(),
    );

    let resumed = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let mut rec = Recorder { stop_after: Some((stop_at, &stop)), ..Default::default() };
    let outcome = train(resumed.path(), &data, &config, &device(), &mut rec, &stop).unwrap();
    assert_eq!(outcome, Outcome::Stopped { step: stop_at });
    assert_eq!(checkpoint::latest(resumed.path(), model).unwrap().unwrap().state.step, stop_at);
    drop(rec);
    // Nothing from the first call survives but the files.
    let mut rec = Recorder::default();
    let h2 = completed_hash(train(resumed.path(), &data, &config, &device(), &mut rec, &no_stop()).unwrap());
    assert_eq!(rec.losses.len() as u64, total - stop_at, "the resumed call runs only the remaining steps");
    assert_eq!(h1, h2, "{model}: resumed weights differ");
    assert_eq!(final_checkpoint_files(straight.path(), model), final_checkpoint_files(resumed.path(), model));

    // A finished run called again re-exports without training.
    let mut rec = Recorder::default();
    let h3 = completed_hash(train(resumed.path(), &data, &config, &device(), &mut rec, &no_stop()).unwrap());
    assert!(rec.losses.is_empty());
    assert_eq!(h1, h3);

    // A different config cannot resume this run.
    let mut changed = config.clone();
    changed.set("train.lr", "0.5").unwrap();
    changed.set("attribution.lr_g", "0.5").unwrap();
    let err = train(resumed.path(), &data, &changed, &device(), &mut Recorder::default(), &no_stop()).unwrap_err();
    assert!(err.to_string().contains("different seed or configuration"), "{err}");
}

#[test]
fn classifier_resume_equals_uninterrupted() {
    resume_matches(train_classifier, "classifier", 8, 4);
}

#[test]
fn classifier_resume_with_mined_hard_negatives_equals_uninterrupted() {
    // Mining at steps 2, 4, 6 and 8; the stop at 7 saves the picks of step 6, which steps 7 and the
    // resumed call's first step must draw from exactly as the uninterrupted run does.
    let mining =
        [("classifier.mine_every", "2"), ("classifier.hard_negatives", "0.5"), ("classifier.hard_pool", "0.3")];
    resume_matches_with(train_classifier, "classifier", 10, 7, &mining);
    // The picks travel with the checkpoint.
    let data = synthetic(12, 32, 4);
    let mut config = tiny_config(5);
    for (key, value) in mining {
        config.set(key, value).unwrap();
    }
    let run = tempfile::tempdir().unwrap();
    train_classifier(run.path(), &data, &config, &device(), &mut Recorder::default(), &no_stop()).unwrap();
    let ckpt = checkpoint::latest(run.path(), "classifier").unwrap().unwrap();
    let hard: Vec<usize> = serde_json::from_slice(&ckpt.read("classifier.hard.json").unwrap()).unwrap();
    assert!(!hard.is_empty() && hard.windows(2).all(|w| w[0] < w[1]), "{hard:?}");
    assert!(hard.iter().all(|&i| data.labels[i] != mammo_io::layouts::Label::Malignant), "only negatives are mined");
}

#[test]
fn attribution_resume_equals_uninterrupted() {
    resume_matches(train_attribution, "attribution", 6, 4);
}

#[test]
fn divergence_guard_names_model_step_and_loss_and_keeps_last_good_checkpoint() {
    let data = synthetic(12, 32, 5);
    // An absurd learning rate: the weights overflow within a few steps.
    let mut config = tiny_config(40);
    config.set("train.lr", "1e30").unwrap();
    config.set("train.checkpoint_every", "1").unwrap();
    let run = tempfile::tempdir().unwrap();
    let err =
        train_classifier(run.path(), &data, &config, &device(), &mut Recorder::default(), &no_stop()).unwrap_err();
    let NnError::Diverged { ref model, step, .. } = err else { panic!("{err}") };
    assert_eq!(model, "classifier");
    assert!(err.to_string().contains("classifier diverged at step"), "{err}");
    if let Some(last) = checkpoint::latest(run.path(), "classifier").unwrap() {
        assert!(last.state.step < step, "checkpoint {} at or after divergence {step}", last.state.step);
    }

    // An injected NaN in the data: caught at the first step, named.
    let mut poisoned = data.clone();
    poisoned.pixels.iter_mut().for_each(|v| *v = f32::NAN);
    let run = tempfile::tempdir().unwrap();
    let err = train_classifier(run.path(), &poisoned, &tiny_config(5), &device(), &mut Recorder::default(), &no_stop())
        .unwrap_err();
    assert!(err.to_string().starts_with("classifier diverged at step 1: loss = NaN"), "{err}");
    assert!(checkpoint::latest(run.path(), "classifier").unwrap().is_none());

    // The critic's bound: a hinge loss near 2 is far beyond 1e-6.
    let mut config = tiny_config(5);
    config.set("attribution.critic_loss_bound", "1e-6").unwrap();
    let err =
        train_attribution(run.path(), &data, &config, &device(), &mut Recorder::default(), &no_stop()).unwrap_err();
    assert!(err.to_string().starts_with("attribution diverged at step 1: critic_loss"), "{err}");
    assert!(err.to_string().contains("beyond the bound"), "{err}");
}
