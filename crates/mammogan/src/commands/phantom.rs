//! `mammogan phantom`: synthetic mammograms with exact ground truth.

use std::path::PathBuf;

use anyhow::Result;
use mammo_phantom::{OutputFormat, PhantomParams};

use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to create (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// How many images (a synthetic woman has four: L-CC, L-MLO, R-CC, R-MLO).
    #[arg(long, default_value_t = 16)]
    cases: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// dicom and png write the phantom layout (with exact masks); mias and cbis imitate those datasets.
    #[arg(long, value_enum, default_value_t = FormatArg::Dicom)]
    format: FormatArg,
    #[command(flatten)]
    params: PhantomArgs,
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum FormatArg {
    Dicom,
    Mias,
    Cbis,
    Png,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Dicom => OutputFormat::Dicom,
            FormatArg::Mias => OutputFormat::Mias,
            FormatArg::Cbis => OutputFormat::Cbis,
            FormatArg::Png => OutputFormat::Png,
        }
    }
}

/// The knobs that make a phantom easy or hard on purpose.
#[derive(clap::Args, Clone)]
pub struct PhantomArgs {
    /// Lesion peak contrast relative to the surrounding tissue (0.04 = 4 %).
    #[arg(long)]
    pub contrast: Option<f64>,
    /// Smallest lesion diameter in mm.
    #[arg(long)]
    pub min_size: Option<f64>,
    /// Largest lesion diameter in mm.
    #[arg(long)]
    pub max_size: Option<f64>,
    /// Fraction of images with a malignant lesion.
    #[arg(long)]
    pub malignant: Option<f64>,
    /// Fraction of images with a benign lesion.
    #[arg(long)]
    pub benign: Option<f64>,
    /// Spicules per malignant lesion, as MIN-MAX.
    #[arg(long, value_parser = parse_range::<u32>)]
    pub spicules: Option<(u32, u32)>,
    /// Spicule length in mm, as MIN-MAX.
    #[arg(long, value_parser = parse_range::<f64>)]
    pub spicule_length: Option<(f64, f64)>,
    /// Breast width in mm (image size follows).
    #[arg(long)]
    pub width_mm: Option<f64>,
    /// Pixel spacing of the generated images in mm.
    #[arg(long)]
    pub spacing_mm: Option<f64>,
    /// Scale of the glandular texture that masses hide in (1 = the base amplitudes; default 0.35).
    #[arg(long)]
    pub anatomical_noise: Option<f64>,
    /// Exponent of the glandular texture's power spectrum, P(k) ~ 1/k^beta.
    #[arg(long)]
    pub texture_beta: Option<f64>,
    /// Quantum noise: its standard deviation at full scale, as a fraction of the full scale.
    #[arg(long)]
    pub quantum_noise: Option<f64>,
}

fn parse_range<T: std::str::FromStr>(s: &str) -> Result<(T, T), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("expected MIN-MAX, got '{s}'"))?;
    let p = |x: &str| x.trim().parse::<T>().map_err(|_| format!("not a number: '{x}'"));
    Ok((p(a)?, p(b)?))
}

impl PhantomArgs {
    pub fn apply(&self, p: &mut PhantomParams) {
        if let Some(v) = self.contrast {
            p.lesion_contrast = v;
        }
        if let Some(v) = self.anatomical_noise {
            p.anatomical_noise = v;
        }
        if let Some(v) = self.texture_beta {
            p.beta = v;
        }
        if let Some(v) = self.quantum_noise {
            p.quantum_noise = v;
        }
        if let Some(v) = self.min_size {
            p.min_diameter_mm = v;
        }
        if let Some(v) = self.max_size {
            p.max_diameter_mm = v;
        }
        if let Some(v) = self.malignant {
            p.malignant_fraction = v;
        }
        if let Some(v) = self.benign {
            p.benign_fraction = v;
        }
        if let Some(v) = self.spicules {
            p.spicule_count = v;
        }
        if let Some(v) = self.spicule_length {
            p.spicule_length_mm = v;
        }
        if let Some(v) = self.width_mm {
            p.width_mm = v;
        }
        if let Some(v) = self.spacing_mm {
            p.spacing_mm = v;
        }
    }
}

pub fn run(args: Args, progress: &Progress) -> Result<()> {
    let mut params = PhantomParams { cases: args.cases, seed: args.seed, ..Default::default() };
    args.params.apply(&mut params);
    let summary = mammo_app::phantom::write(&args.out, &params, args.format.into(), progress)?;
    print!(
        "wrote {} synthetic mammograms to {}: {} malignant, {} benign, {} normal",
        summary.images,
        args.out.display(),
        summary.malignant,
        summary.benign,
        summary.normal
    );
    if summary.skipped_normal > 0 {
        print!(" ({} normal cases left out: the layout has none)", summary.skipped_normal);
    }
    println!();
    Ok(())
}
