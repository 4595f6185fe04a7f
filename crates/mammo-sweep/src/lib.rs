//! Scaling out beyond one process.
//!
//! - [`spec`]: the sweep file (base config, axes, seeds, objective), checked against mammo-nn's
//!   config before anything runs, expanded into trials with stable ids.
//! - [`trials`]: a sweep directory and each trial's state, from files alone.
//! - [`run`]: one trial (train then evaluate) and the local route; [`slurm`]: the `sbatch --array`
//!   route; [`kubernetes`]: the Indexed Job route; [`sagemaker`]: the hyperparameter tuning job
//!   route; [`submit`]: what those two share (job names, the record, is the client configured);
//!   [`yaml`]: JSON values written as YAML; [`collect`]: leaderboard, page and best config.
//! - [`scores`]: the per-shard `scores.csv` of `explain --shard I/N` merged into the unsharded one.

pub mod collect;
pub mod kubernetes;
pub mod run;
pub mod sagemaker;
pub mod scores;
pub mod slurm;
pub mod spec;
pub mod submit;
pub mod trials;
pub mod yaml;

pub use spec::{Sweep, Trial};
pub use trials::{State, SweepDir, SweepError};
