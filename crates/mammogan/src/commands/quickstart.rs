use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use mammo_io::layouts::Format;
use mammo_phantom::{OutputFormat, PhantomParams};

use crate::commands::{phantom, prepare};
use crate::progress::Progress;

/// Marks a directory as quickstart's own, so a second run may replace it without risking user data.
const MARKER: &str = "quickstart.json";

#[derive(clap::Args)]
pub struct Args {
    /// Where to put everything (replaced if it holds an earlier quickstart; refused if it holds anything else).
    #[arg(long, default_value = "mammogan-quickstart")]
    out: PathBuf,
    /// Synthetic images to generate.
    #[arg(long, default_value_t = 32)]
    cases: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args, progress: &Progress) -> Result<()> {
    claim(&args.out)?;
    let phantom_dir = args.out.join("phantom");
    let dataset_dir = args.out.join("dataset");
    let params = PhantomParams { cases: args.cases, seed: args.seed, ..Default::default() };
    phantom::write(&phantom_dir, &params, OutputFormat::Dicom, progress)?;
    println!("1/2 phantom: {} synthetic DICOM mammograms with exact masks in {}", args.cases, phantom_dir.display());

    let prep = prepare::PrepArgs {
        spacing: 0.4,
        default_spacing: 0.1,
        patch_size: 64,
        per_lesion: 4,
        normal_per_image: 4,
        seed: args.seed,
        threads: 0,
    };
    let bar = progress.bar(args.cases, "preparing");
    let info = mammo_prep::prepare(Format::Phantom, &phantom_dir, &dataset_dir, &prep.to_params(), &|d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    println!("2/2 prepare:");
    print!("{}", prepare::summary(&info, &dataset_dir));
    let marker =
        serde_json::json!({ "cases": args.cases, "seed": args.seed, "dataset_content_hash": info.content_hash });
    mammo_io::atomic::write_bytes(&args.out.join(MARKER), serde_json::to_string_pretty(&marker)?.as_bytes())?;
    Ok(())
}

/// Creates `out`, or empties it when it is an earlier quickstart's; refuses any other non-empty directory.
fn claim(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = out.read_dir().map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty {
            if !out.join(MARKER).is_file() {
                bail!("{}: exists and is not an earlier quickstart; choose another --out", out.display());
            }
            std::fs::remove_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
    Ok(())
}
