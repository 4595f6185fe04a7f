//! `mammogan scores merge`: the per-shard scores of `explain --shard I/N` into one scores.csv.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Join the N files scores.I-of-N.csv written by `explain --shard I/N` into the scores.csv the
    /// unsharded explain writes (rows in the same order). Refuses missing or repeated shards.
    Merge {
        /// Every shard's scores.I-of-N.csv, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The merged file (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Merge { shards, out } => {
            let rows = mammo_sweep::scores::merge(&shards, &out).context("scores merge")?;
            println!("merged {rows} scores from {} shards into {}", shards.len(), out.display());
            Ok(())
        }
    }
}
