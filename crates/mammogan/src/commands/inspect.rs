//! `mammogan inspect`: the facts of one image file, never a patient attribute.

use std::path::PathBuf;

use anyhow::Result;
use mammo_io::ImageInfo;

#[derive(clap::Args)]
pub struct Args {
    /// A DICOM, PGM or PNG file.
    input: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Image facts only: `ImageInfo` has no field that could hold a patient-identifying attribute.
pub fn run(args: Args) -> Result<()> {
    let (info, width, height) = mammo_io::read_info(&args.input)?;
    if args.json {
        let v = serde_json::json!({ "width": width, "height": height, "info": info });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&info, width, height));
    }
    Ok(())
}

fn text(i: &ImageInfo, width: usize, height: usize) -> String {
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let source = match &i.source {
        mammo_io::SourceKind::Dicom { transfer_syntax, transfer_syntax_name } => {
            format!("DICOM, {transfer_syntax_name} ({transfer_syntax})")
        }
        mammo_io::SourceKind::Pgm { binary } => format!("PGM ({})", if *binary { "P5" } else { "P2" }),
        mammo_io::SourceKind::Png { bit_depth } => format!("PNG, {bit_depth}-bit"),
    };
    let lines = [
        ("format", source),
        ("size", format!("{width} x {height}")),
        (
            "bits",
            format!(
                "{} stored / {} allocated, {}",
                i.bits_stored,
                i.bits_allocated,
                if i.signed { "signed" } else { "unsigned" }
            ),
        ),
        ("photometric", format!("{:?}", i.photometric).to_uppercase()),
        (
            "spacing",
            opt(i.spacing_mm.map(|(r, c)| format!("{r} x {c} mm ({})", i.spacing_source.clone().unwrap_or_default()))),
        ),
        ("laterality", opt(i.laterality.map(|l| l.letter().into()))),
        ("view", opt(i.view.map(|v| format!("{v:?}")))),
        ("modality", opt(i.modality.clone())),
        ("intent", opt(i.presentation_intent.clone())),
        ("modality LUT", opt(i.modality_lut.as_ref().map(|l| l.describe()))),
        ("voi", format!("{} transform(s)", i.voi.len())),
    ];
    lines.iter().map(|(k, v)| format!("{k:>12}: {v}\n")).collect()
}
