//! Synthetic patches for the tests: an easy task where malignant patches hold a bright disk, benign
//! ones a dim disk at the same places, normal ones none; the lesion mask marks the disk.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use mammo_io::layouts::Label;
use mammo_nn::data::{MASK_BREAST, MASK_LESION, PatchData};
use mammo_nn::{TrainConfig, TrainObserver};
use mammo_prep::split::Split;
use rand::{Rng, SeedableRng};

/// `n` patches per class (malignant, benign, normal) of side `size`; 70 % train, 15 % val, 15 % test.
pub fn synthetic(n: usize, size: usize, seed: u64) -> PatchData {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut pixels, mut masks, mut labels, mut splits) = (vec![], vec![], vec![], vec![]);
    for label in [Label::Malignant, Label::Benign, Label::Normal] {
        for i in 0..n {
            let contrast = match label {
                Label::Malignant => 0.4,
                Label::Benign => 0.08,
                Label::Normal => 0.0,
            };
            let c = size as f32 / 2.0;
            let (cx, cy) = (c + rng.random_range(-2.0..2.0), c + rng.random_range(-2.0..2.0));
            let r = size as f32 / 5.0 + rng.random_range(-1.0..1.0);
            // Smooth background texture (two random waves) plus pixel noise.
            let (f1, f2, p1, p2) = (
                rng.random_range(0.1..0.4f32),
                rng.random_range(0.1..0.4f32),
                rng.random_range(0.0..6.28f32),
                rng.random_range(0.0..6.28f32),
            );
            for y in 0..size {
                for x in 0..size {
                    let (xf, yf) = (x as f32, y as f32);
                    let inside = (xf - cx).powi(2) + (yf - cy).powi(2) <= r * r;
                    let bg = 0.3 + 0.05 * (f1 * xf + p1).sin() + 0.05 * (f2 * yf + p2).sin();
                    let v = bg + if inside { contrast } else { 0.0 } + rng.random_range(-0.03..0.03);
                    pixels.push(v.clamp(0.0, 1.0));
                    let lesion = inside && label != Label::Normal;
                    masks.push(MASK_BREAST | if lesion { MASK_LESION } else { 0 });
                }
            }
            labels.push(label);
            splits.push(match i * 100 / n {
                0..70 => Split::Train,
                70..85 => Split::Val,
                _ => Split::Test,
            });
        }
    }
    PatchData::new(size, 0.4, pixels, masks, labels, splits).unwrap()
}

/// Writes `data` as a DATASET directory (the format `prepare` writes), for going through `PatchStore`.
pub fn write_dataset(dir: &Path, data: &PatchData) {
    std::fs::create_dir_all(dir).unwrap();
    let mut csv = String::from("id,patient_id,split,label,source,x,y,w,h\n");
    for i in 0..data.len() {
        csv += &format!(
            "{i},P{i},{},{},synthetic,0,0,{},{}\n",
            data.splits[i].as_str(),
            data.labels[i].as_str(),
            data.size,
            data.size
        );
    }
    std::fs::write(dir.join("index.csv"), csv).unwrap();
    let raw: Vec<u8> = data.pixels.iter().flat_map(|v| ((v * 65535.0).round() as u16).to_le_bytes()).collect();
    std::fs::write(dir.join("patches.u16"), raw).unwrap();
    std::fs::write(dir.join("masks.u8"), &data.masks).unwrap();
    let info = serde_json::json!({
        "format_version": mammo_prep::DATASET_FORMAT_VERSION,
        "created_by": "mammo-nn tests",
        "source_format": "synthetic",
        "params": {},
        "patch_size": data.size,
        "spacing_mm": data.spacing_mm,
        "patches": data.len(),
        "counts": {},
        "patients": {},
        "images": data.len(),
        "inputs": [],
        "outputs": [],
        "content_hash": "synthetic",
    });
    std::fs::write(dir.join("dataset.json"), serde_json::to_vec_pretty(&info).unwrap()).unwrap();
}

/// A tiny, fast configuration for 32 px patches.
pub fn tiny_config(steps: u64) -> TrainConfig {
    let mut c = TrainConfig::default();
    for (k, v) in [
        ("train.steps", steps.to_string()),
        ("train.batch_size", "16".into()),
        ("train.log_every", "5".into()),
        ("train.image_every", "0".into()),
        ("train.checkpoint_every", "0".into()),
        ("train.keep_checkpoints", "0".into()),
        ("classifier.channels", "4".into()),
        ("classifier.blocks", "2".into()),
        ("attribution.gen_channels", "4".into()),
        ("attribution.gen_depth", "2".into()),
        ("attribution.critic_channels", "4".into()),
        ("attribution.critic_depth", "2".into()),
    ] {
        c.set(k, &v).unwrap();
    }
    c
}

/// Records every step's losses; optionally raises the stop flag after a given step.
#[derive(Default)]
pub struct Recorder<'a> {
    pub losses: Vec<Vec<(String, f64)>>,
    pub checkpoints: Vec<u64>,
    pub images: Vec<String>,
    pub stop_after: Option<(u64, &'a AtomicBool)>,
    pub times: Vec<std::time::Instant>,
}

impl TrainObserver for Recorder<'_> {
    fn progress(&mut self, _model: &str, step: u64, _total: u64, losses: &[(&str, f64)]) {
        self.times.push(std::time::Instant::now());
        self.losses.push(losses.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        if let Some((at, flag)) = self.stop_after
            && step >= at
        {
            flag.store(true, Ordering::SeqCst);
        }
    }
    fn checkpoint_saved(&mut self, _model: &str, step: u64, dir: &Path) {
        assert!(dir.join("state.json").exists());
        self.checkpoints.push(step);
    }
    fn images(&mut self, model: &str, _step: u64, tag: &str, patches: &[Vec<f32>], size: usize) {
        assert!(patches.iter().all(|p| p.len() == size * size));
        self.images.push(format!("{model}/{tag}"));
    }
}

impl Recorder<'_> {
    /// Mean of loss `name` over steps `range`.
    pub fn mean(&self, name: &str, range: std::ops::Range<usize>) -> f64 {
        let vals: Vec<f64> = self.losses[range].iter().map(|l| l.iter().find(|(k, _)| k == name).unwrap().1).collect();
        vals.iter().sum::<f64>() / vals.len() as f64
    }
}

/// A never-set stop flag.
pub fn no_stop() -> AtomicBool {
    AtomicBool::new(false)
}
