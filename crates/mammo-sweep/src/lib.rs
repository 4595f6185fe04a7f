//! Scaling out beyond one process: the per-shard `scores.csv` of `explain --shard I/N` merged into
//! the one the unsharded run writes ([`scores`]).

pub mod scores;
