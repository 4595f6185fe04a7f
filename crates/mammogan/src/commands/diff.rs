//! `mammogan diff`: what differs between two runs, from their manifests.

use std::path::PathBuf;

use anyhow::Result;
use mammo_run::Manifest;

#[derive(clap::Args)]
pub struct Args {
    /// The first RUN directory.
    run_a: PathBuf,
    /// The second RUN directory.
    run_b: PathBuf,
    /// Print the differences as JSON: {"a", "b", "causes": [...], "effects": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let a = Manifest::read(&args.run_a)?;
    let b = Manifest::read(&args.run_b)?;
    let d = mammo_run::diff::diff(&a, &b);
    if args.json {
        let v = serde_json::json!({
            "a": args.run_a, "b": args.run_b, "causes": d.causes, "effects": d.effects
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("A: {}\nB: {}", args.run_a.display(), args.run_b.display());
        print!("{}", d.render());
    }
    Ok(())
}
