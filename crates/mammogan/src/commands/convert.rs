//! `mammogan convert`: a mammogram (DICOM, PGM, PNG) to a PNG of its values.

use std::path::PathBuf;

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {
    /// A DICOM, PGM or PNG file.
    input: PathBuf,
    /// The PNG to write.
    output: PathBuf,
    /// Apply the VOI LUT (window or table; N selects which, default the first) and write 8 bits for
    /// viewing. Without it: a 16-bit PNG of the values after the modality LUT, no windowing.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "0")]
    voi: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let m = mammo_io::read_image(&args.input)?;
    match args.voi {
        Some(n) => {
            if n > 0 && n >= m.info.voi.len() {
                bail!("{}: VOI transform {n} requested but the file has {}", args.input.display(), m.info.voi.len());
            }
            if m.info.voi.is_empty() {
                tracing::warn!("{}: no VOI LUT in the file; using the full value range", args.input.display());
            }
            mammo_io::png_io::write_png8(&args.output, &m.to_display_u8(n))?;
        }
        None => {
            let (img, clamped) = m.to_u16_after_modality();
            if clamped > 0 {
                tracing::warn!(
                    "{}: {clamped} values fall outside 0..65535 after the modality LUT and were clamped",
                    args.input.display()
                );
            }
            mammo_io::png_io::write_png16(&args.output, &img)?;
        }
    }
    Ok(())
}
