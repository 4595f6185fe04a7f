//! Step timings at the default sizes (batch 32, 64 px, default channels). Not part of the suite:
//! `cargo test --release -p mammo-nn --test timing -- --ignored --nocapture`.
//!
//! `step_timings_at_default_sizes` trains the classifier first, into the same run directory, so the
//! attribution GAN's critic starts from it (`attribution.critic_from_classifier`, the default) rather
//! than being the spectrally normalised one. `bench/train_step.py` times it against a PyTorch twin.

mod common;

use common::{Recorder, no_stop, synthetic};
use mammo_nn::{TrainConfig, select_device, train_attribution, train_classifier};

fn per_step(rec: &Recorder) -> f64 {
    // The first step includes warm-up; time the rest.
    let t = &rec.times;
    (t[t.len() - 1] - t[1]).as_secs_f64() / (t.len() - 2) as f64
}

#[test]
#[ignore]
fn step_timings_at_default_sizes() {
    let data = synthetic(40, 64, 1);
    let mut config = TrainConfig::default();
    // `MAMMO_NN_TIMING_STEPS` trains longer (a steadier mean when comparing two builds); default 8.
    let steps = std::env::var("MAMMO_NN_TIMING_STEPS").unwrap_or_else(|_| "8".into());
    config.set("train.steps", &steps).unwrap();
    config.set("train.checkpoint_every", "0").unwrap();
    config.set("train.image_every", "0").unwrap();
    let (device, info) = select_device("cpu", 0).unwrap();
    let run = tempfile::tempdir().unwrap();
    let mut rec = Recorder::default();
    train_classifier(run.path(), &data, &config, &device, &mut rec, &no_stop()).unwrap();
    println!("classifier step: {:.3} s ({} threads)", per_step(&rec), info.threads);
    // `MAMMO_NN_TIMING_MODELS=classifier` stops here (for profiling the classifier alone).
    if std::env::var("MAMMO_NN_TIMING_MODELS").is_ok_and(|m| m == "classifier") {
        return;
    }
    let mut rec = Recorder::default();
    train_attribution(run.path(), &data, &config, &device, &mut rec, &no_stop()).unwrap();
    println!("attribution step ({} critic + 1 generator update): {:.3} s", config.attribution.n_critic, per_step(&rec));
}

/// The whole default training (both models) on 64 px synthetic patches: wall time, held-out AUC and
/// how much of the map falls in the lesion. `-- --ignored --nocapture quickstart`.
#[test]
#[ignore]
fn quickstart_defaults_at_64px() {
    use mammo_io::layouts::Label;
    use mammo_nn::Models;
    use mammo_nn::data::MASK_LESION;
    use mammo_prep::split::Split;

    let data = synthetic(60, 64, 7);
    let mut config = TrainConfig::default();
    // Overrides to try, e.g. MAMMO_NN_SET="attribution.n_critic=1,train.steps=100".
    for kv in std::env::var("MAMMO_NN_SET").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').expect("key=value");
        config.set(k, v).unwrap();
    }
    let (device, _) = select_device("cpu", 0).unwrap();
    let run = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    train_classifier(run.path(), &data, &config, &device, &mut Recorder::default(), &no_stop()).unwrap();
    let classifier_s = start.elapsed().as_secs_f64();
    train_attribution(run.path(), &data, &config, &device, &mut Recorder::default(), &no_stop()).unwrap();
    let total_s = start.elapsed().as_secs_f64();
    let models = Models::load(run.path()).unwrap();
    let test = |labels: &[Label]| {
        let idx = data.indices(Split::Test, labels);
        let px: Vec<f32> = idx.iter().flat_map(|&i| data.patch(i).iter().copied()).collect();
        (idx, px)
    };
    let (pos, pos_px) = test(&[Label::Malignant]);
    let (neg, neg_px) = test(&[Label::Benign]);
    let mut scores = models.predict(&pos_px, pos.len()).unwrap();
    scores.extend(models.predict(&neg_px, neg.len()).unwrap());
    let labels: Vec<bool> = (0..scores.len()).map(|i| i < pos.len()).collect();
    let auc = mammo_eval::roc_auc(&scores.iter().map(|&p| p as f64).collect::<Vec<_>>(), &labels).unwrap();
    let maps = models.attribution_maps(&pos_px).unwrap();
    let (mut inside, mut n_in, mut outside, mut n_out) = (0.0, 0, 0.0, 0);
    for (k, &i) in pos.iter().enumerate() {
        for (j, &m) in data.mask(i).iter().enumerate() {
            let v = maps[k * 64 * 64 + j].abs() as f64;
            if m & MASK_LESION != 0 {
                (inside, n_in) = (inside + v, n_in + 1);
            } else {
                (outside, n_out) = (outside + v, n_out + 1);
            }
        }
    }
    println!(
        "classifier {classifier_s:.1} s, both {total_s:.1} s; held-out AUC {auc:.3}; mean |m| inside {:.4}, outside {:.4}",
        inside / n_in as f64,
        outside / n_out as f64
    );
}
