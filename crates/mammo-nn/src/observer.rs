//! What a training loop reports, and to whom: the caller implements [`TrainObserver`] (a progress bar,
//! a JSONL writer, TensorBoard) and the loop calls it. The loop itself prints nothing.

use std::path::Path;

/// Receives a training run's progress. Every method has an empty default.
pub trait TrainObserver {
    /// Scalars at a logging step (`log_every`): losses, learning rate, accuracy, etc.
    fn scalars(&mut self, model: &str, step: u64, values: &[(&str, f64)]) {
        let _ = (model, step, values);
    }

    /// Example images at an image step (`image_every`): `patches` are `size x size` row-major arrays
    /// (inputs in [0, 1]; maps in [-map_scale, map_scale]), one entry per example. `tag` says which.
    fn images(&mut self, model: &str, step: u64, tag: &str, patches: &[Vec<f32>], size: usize) {
        let _ = (model, step, tag, patches, size);
    }

    /// A checkpoint for `step` is complete in `dir`.
    fn checkpoint_saved(&mut self, model: &str, step: u64, dir: &Path) {
        let _ = (model, step, dir);
    }

    /// Called after every step, with that step's losses.
    fn progress(&mut self, model: &str, step: u64, total: u64, losses: &[(&str, f64)]) {
        let _ = (model, step, total, losses);
    }
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullObserver;

impl TrainObserver for NullObserver {}

/// How a training call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All steps ran; the model is exported to `RUN/model/`.
    Completed {
        /// The number of steps now done.
        steps: u64,
        /// [`crate::export::weights_hash`] of the exported model.
        weights_hash: String,
    },
    /// The stop flag was set; a checkpoint at `step` holds everything needed to resume.
    Stopped {
        /// The steps done so far (and saved).
        step: u64,
    },
}
