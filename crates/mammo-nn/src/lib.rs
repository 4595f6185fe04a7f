//! Models, training loops, checkpoints and metrics for mammogan: the only crate that knows burn.
//!
//! Where to start reading:
//! - [`config`]: every hyperparameter, with its default ([`TrainConfig`]).
//! - [`train`]: [`train_classifier`] and [`train_attribution`], each a loop that resumes from the newest
//!   checkpoint, reports to a [`TrainObserver`] and ends by exporting to `RUN/model/`.
//! - [`model`]: the classifier (residual CNN), the map generator (U-Net) and the spectrally normalised
//!   critic.
//! - [`kernels`]: the models' convolution and (leaky) ReLU as a burn backend extension, fast on flex.
//! - [`inference`]: [`Models`] loads `RUN/model/` and scores, maps and saliency-maps patches.
//!
//! Invariants:
//! - **Determinism.** On the flex (CPU) backend, the same config, seed and data give bit-identical
//!   weights, whatever the thread count and whether or not the run was interrupted and resumed. Every
//!   random draw comes from a stream named by (seed, model, purpose, step) ([`rng`]); parameters are
//!   initialised from such streams and carry ids derived from their names, so saved optimizer state
//!   finds them again in a fresh process.
//! - **Crash safety.** Checkpoints and exported files are written to a temporary sibling, synced and
//!   renamed ([`checkpoint`]); a kill leaves the previous complete checkpoint.
//! - **The backend is chosen at run time** ([`device::select_device`]): flex always, CUDA with the
//!   `cuda` feature, wgpu (Vulkan/Metal, [`gpu`]) with the `wgpu` feature. No type here has a backend
//!   parameter; the flex kernels in [`kernels`] serve flex tensors only, other devices run burn's ops.

#![warn(missing_docs)]

pub mod alloc;
pub mod augment;
pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod gpu;
pub mod inference;
pub mod kernels;
pub mod model;
pub mod model_kind;
pub mod observer;
pub mod rng;
pub mod train;

pub use config::{ConfigError, TrainConfig};
pub use data::PatchData;
pub use device::{DeviceInfo, select_device};
pub use error::{NnError, Result};
pub use export::{ModelInfo, weights_hash};
pub use inference::Models;
pub use model_kind::ModelKind;
pub use observer::{NullObserver, Outcome, TrainObserver};
pub use train::{train_attribution, train_classifier};

/// burn's device handle, re-exported so callers need not depend on burn.
pub use burn::tensor::Device;
