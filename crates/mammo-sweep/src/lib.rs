//! Scaling out beyond one process.
//!
//! - [`spec`]: the sweep file (base config, axes, seeds, objective), checked against mammo-nn's
//!   config before anything runs, expanded into trials with stable ids.
//! - [`trials`]: a sweep directory and each trial's state, from files alone.
//! - [`run`]: one trial (train then evaluate) and the local route; [`slurm`]: the `sbatch --array`
//!   route; [`collect`]: leaderboard, page and best config.
//! - [`scores`]: the per-shard `scores.csv` of `explain --shard I/N` merged into the unsharded one.

pub mod collect;
pub mod run;
pub mod scores;
pub mod slurm;
pub mod spec;
pub mod trials;

pub use spec::{Sweep, Trial};
pub use trials::{State, SweepDir, SweepError};
