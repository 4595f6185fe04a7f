//! `mammogan env --bench`: how fast one training step of the default classifier is here.
//!
//! Trains the default classifier (default config: batch 32, 64 px patches) on random patches for
//! about `seconds`, in a temporary run directory, and reports the steps per second after a warm-up
//! step. Real training differs only in its data, so this is the speed a run will see.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{PatchData, TrainConfig, TrainObserver};
use mammo_io::layouts::Label;
use mammo_prep::split::Split;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{NnError, Result};

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchResult {
    /// The backend (`flex`, `cuda`).
    pub backend: String,
    /// Its worker threads.
    pub threads: usize,
    /// Timed steps (after one warm-up step).
    pub steps: u64,
    /// Seconds they took.
    pub seconds: f64,
    /// Training steps per second of the default classifier.
    pub steps_per_s: f64,
    /// Batch size and patch side of the step.
    pub batch_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
}

struct Clock<'a> {
    stop: &'a AtomicBool,
    limit: Duration,
    first: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
}

impl TrainObserver for Clock<'_> {
    fn progress(&mut self, _model: &str, step: u64, _total: u64, _losses: &[(&str, f64)]) {
        let now = Instant::now();
        let first = *self.first.get_or_insert((now, step));
        self.last = Some((now, step));
        if now - first.0 >= self.limit {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs the benchmark for about `seconds` on `device` (`auto`, `cpu`, `cuda`) with `threads` workers.
pub fn bench(device: &str, threads: usize, seconds: f64) -> Result<BenchResult> {
    let (device, info) = crate::select_device(device, threads)?;
    let config = TrainConfig::default();
    let size = 64;
    let n = 64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let pixels: Vec<f32> = (0..n * size * size).map(|_| rng.random::<f32>()).collect();
    let labels = (0..n).map(|i| if i % 2 == 0 { Label::Malignant } else { Label::Benign }).collect();
    let data = PatchData::new(size, 0.4, pixels, vec![4; n * size * size], labels, vec![Split::Train; n])?;
    let mut config = config;
    config.set("train.steps", "1000000")?;
    config.set("train.checkpoint_every", "0")?;
    config.set("train.image_every", "0")?;
    config.set("train.log_every", "1000000")?;
    let tmp = tempfile::tempdir().map_err(|e| NnError::io(&std::env::temp_dir(), e))?;
    let stop = AtomicBool::new(false);
    let mut clock = Clock { stop: &stop, limit: Duration::from_secs_f64(seconds), first: None, last: None };
    crate::train_classifier(tmp.path(), &data, &config, &device, &mut clock, &stop)?;
    let (Some((t0, s0)), Some((t1, s1))) = (clock.first, clock.last) else {
        return Err(NnError::Named("bench: no training step completed".into()));
    };
    let secs = (t1 - t0).as_secs_f64();
    let steps = s1 - s0;
    Ok(BenchResult {
        backend: info.backend,
        threads: info.threads,
        steps,
        seconds: secs,
        steps_per_s: if secs > 0.0 { steps as f64 / secs } else { 0.0 },
        batch_size: config.train.batch_size,
        patch_size: size,
    })
}
