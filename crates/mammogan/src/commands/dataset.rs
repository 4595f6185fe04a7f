//! `mammogan dataset merge`: the shards of `prepare --shard I/N` into one DATASET.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Join the N shards written by `prepare --shard I/N` into the DATASET the unsharded prepare
    /// writes (the same files, the same content hash). Refuses missing or repeated shards and shards
    /// of another input, parameters or key, before writing anything.
    Merge {
        /// Every shard directory, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The DATASET directory to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Merge { shards, out } => {
            let info = mammo_prep::merge(&shards, &out).context("dataset merge")?;
            print!("{}", super::prepare::summary(&info, &out));
            Ok(())
        }
    }
}
