//! `mammogan reproduce`: a finished run re-run from its manifest, and the weights compared.

use std::path::PathBuf;

use anyhow::Result;
use mammo_app::reproduce::ReproduceRequest;

use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// A finished RUN directory.
    run: PathBuf,
    /// Where to re-run it (default: RUN-reproduce beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The DATASET, when it is no longer where the manifest says.
    #[arg(long)]
    data: Option<PathBuf>,
    /// CPU threads (default: the run's own).
    #[arg(long)]
    threads: Option<usize>,
    /// auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters) (default: the run's own backend and device).
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: Args, progress: &Progress) -> Result<()> {
    let request =
        ReproduceRequest { run: args.run, out: args.out, data: args.data, threads: args.threads, device: args.device };
    let reproduction = mammo_app::reproduce::run(&request, progress)?;
    print!("{}", reproduction.comparison.render());
    println!("reproduction: {}", reproduction.out.display());
    reproduction.verdict()
}
