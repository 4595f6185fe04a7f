//! Reproducible runs: every RUN describes itself in `manifest.json`, and can be checked against another.
//!
//! Where to start reading:
//! - [`manifest`]: [`Manifest`] (code, build, inputs, environment, outcome) and [`ManifestWriter`],
//!   which training updates atomically at start, at each checkpoint and at the end.
//! - [`environment`]: the fingerprint of the machine a run used (CPU, SIMD, cores, cgroup quota,
//!   memory, GPU, Vulkan adapters, container, the environment variables that change numerics or speed);
//!   [`cgroup`] reads the CPU and memory limits of cgroup v1 and v2; [`vulkan`] lists the adapters.
//! - [`build_info`]: what the binary is (commit, dirty tree, profile, features, rustc, `Cargo.lock`).
//! - [`doctor`]: `mammogan env` — a verdict and a fix per question (its micro-benchmark is
//!   `mammo_nn::bench`: it trains, and this crate does not depend on the one that knows burn).
//! - [`diff`]: what differs between two manifests, causes first; [`reproduce`]: the dataset check and
//!   the verdict of a re-run.
//!
//! Invariant: nothing here records a host name, a user name, a home directory or a patient attribute.
//! The host is a keyed BLAKE3 hash; paths are stored relative to the run or with the home directory
//! replaced by `~`.

#![warn(missing_docs)]

pub mod build_info;
pub mod cgroup;
pub mod diff;
pub mod doctor;
pub mod environment;
pub mod error;
pub mod manifest;
pub mod reproduce;
pub mod vulkan;

pub use build_info::BuildInfo;
pub use environment::Environment;
pub use error::{Result, RunError};
pub use manifest::{Manifest, ManifestWriter, Status};
