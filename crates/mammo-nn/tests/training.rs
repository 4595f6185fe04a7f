//! End-to-end training on an easy synthetic task (32 px): the classifier learns it, the attribution
//! map finds the lesion, runs are reproducible, resuming changes nothing, divergence is caught.

mod common;

use common::{Recorder, no_stop, synthetic, tiny_config, write_dataset};
use mammo_io::layouts::Label;
use mammo_nn::data::MASK_LESION;
use mammo_nn::{Models, Outcome, PatchData, select_device, train_attribution, train_classifier};
use mammo_prep::split::Split;

fn device() -> mammo_nn::Device {
    select_device("cpu", 0).unwrap().0
}

/// The patches of a split with some labels, flattened, and their indices.
fn patches_of(data: &PatchData, split: Split, labels: &[Label]) -> (Vec<usize>, Vec<f32>) {
    let idx = data.indices(split, labels);
    let flat = idx.iter().flat_map(|&i| data.patch(i).iter().copied()).collect();
    (idx, flat)
}

#[test]
fn classifier_learns_easy_task_and_exports() {
    // Through the DATASET format, as the CLI will do it.
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&dir.path().join("dataset"), &synthetic(40, 32, 1));
    let store = mammo_prep::PatchStore::open(&dir.path().join("dataset")).unwrap();
    let data = PatchData::from_store(store).unwrap();
    let run = dir.path().join("run");
    let mut config = tiny_config(40);
    config.set("train.lr", "0.003").unwrap();
    config.set("train.image_every", "20").unwrap();
    // 40 steps: the default cosine schedule would spend them warming up and decaying.
    config.set("classifier.schedule", "constant").unwrap();
    let mut rec = Recorder::default();
    let outcome = train_classifier(&run, &data, &config, &device(), &mut rec, &no_stop()).unwrap();
    let Outcome::Completed { steps: 40, weights_hash } = outcome else { panic!("{outcome:?}") };
    let early = rec.mean("loss", 0..5);
    let late = rec.mean("loss", 35..40);
    assert!(late < 0.6 * early, "loss {early:.3} -> {late:.3}");
    assert!(rec.images.contains(&"classifier/saliency".to_string()));

    // Held-out (test split) AUC through the exported model.
    let models = Models::load(&run).unwrap();
    assert_eq!(models.weights_hashes()[0].1, weights_hash);
    assert_eq!(models.patch_size(), 32);
    let (pos, pos_px) = patches_of(&data, Split::Test, &[Label::Malignant]);
    let (neg, neg_px) = patches_of(&data, Split::Test, &[Label::Benign]);
    let mut scores = models.predict(&pos_px, pos.len()).unwrap();
    scores.extend(models.predict(&neg_px, neg.len()).unwrap());
    assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)));
    let labels: Vec<bool> = (0..scores.len()).map(|i| i < pos.len()).collect();
    let scores: Vec<f64> = scores.iter().map(|&p| p as f64).collect();
    let auc = mammo_eval::roc_auc(&scores, &labels).unwrap();
    assert!(auc > 0.8, "held-out AUC {auc}");
    // The score averages the eight views of a patch, so turning or mirroring a patch leaves it (up to
    // the order of the float sum) unchanged.
    let s2 = 32 * 32;
    let first = &pos_px[..s2];
    let mut turned = first.to_vec();
    mammo_nn::augment::Geometry { flip_h: true, flip_v: false, quarter_turns: 1 }.apply(&mut turned, 32);
    let (a, b) = (models.predict(first, 1).unwrap()[0], models.predict(&turned, 1).unwrap()[0]);
    assert!((a - b).abs() < 1e-5, "P(malignant) {a} vs {b} for the same patch turned and mirrored");

    // The saliency baseline has one value per pixel, non-negative.
    let sal = models.saliency(&pos_px).unwrap();
    assert_eq!(sal.len(), pos_px.len());
    assert!(sal.iter().all(|v| *v >= 0.0) && sal.iter().any(|v| *v > 0.0));
    assert!(models.predict(&pos_px, pos.len() + 1).is_err());
    assert!(!models.has_attribution());
}

#[test]
fn attribution_map_concentrates_on_the_lesion() {
    let data = synthetic(40, 32, 2);
    let run = tempfile::tempdir().unwrap();
    let config = tiny_config(60);
    let mut rec = Recorder::default();
    let outcome = train_attribution(run.path(), &data, &config, &device(), &mut rec, &no_stop()).unwrap();
    assert!(matches!(outcome, Outcome::Completed { steps: 60, .. }), "{outcome:?}");

    // The classifier is not needed for maps, but Models wants one: train a token one.
    train_classifier(run.path(), &data, &tiny_config(2), &device(), &mut Recorder::default(), &no_stop()).unwrap();
    let models = Models::load(run.path()).unwrap();
    assert!(models.has_attribution());
    let (idx, px) = patches_of(&data, Split::Test, &[Label::Malignant]);
    let maps = models.attribution_maps(&px).unwrap();
    let s2 = 32 * 32;
    let (mut inside, mut n_in, mut outside, mut n_out) = (0.0, 0, 0.0, 0);
    for (k, &i) in idx.iter().enumerate() {
        for (j, &m) in data.mask(i).iter().enumerate() {
            let v = maps[k * s2 + j].abs() as f64;
            if m & MASK_LESION != 0 {
                (inside, n_in) = (inside + v, n_in + 1);
            } else {
                (outside, n_out) = (outside + v, n_out + 1);
            }
        }
    }
    let (inside, outside) = (inside / n_in as f64, outside / n_out as f64);
    println!("mean |m| inside {inside:.4}, outside {outside:.4}");
    assert!(inside > 2.0 * outside, "mean |m| inside {inside:.4}, outside {outside:.4}");
}
