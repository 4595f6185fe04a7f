//! Dataset layouts: how each public mammography collection arranges its images, labels and lesion
//! annotations, turned into one list of [`Case`]s.
//!
//! A layout adapter reads tables and folder structure only (and DICOM headers where matching needs them);
//! it never decodes pixels and never rasterises masks: [`MaskSource`] says where the ground truth is,
//! and preprocessing rasterises it at the image's own size.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};
use crate::image::{GrayImage, Laterality, View};

pub mod mask;

/// The label of a lesion or of a whole case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Normal,
    Benign,
    Malignant,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Normal => "normal",
            Label::Benign => "benign",
            Label::Malignant => "malignant",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" | "0" => Some(Label::Normal),
            "benign" | "b" | "1" => Some(Label::Benign),
            "malignant" | "m" | "2" => Some(Label::Malignant),
            _ => None,
        }
    }
}

/// Where a lesion's ground truth lives, in the pixel coordinates of the full image with the origin at
/// the top-left corner (adapters convert e.g. mini-MIAS's bottom-left origin).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MaskSource {
    /// A mask image (DICOM, PNG or PGM; non-zero = inside). May differ in size from the image (CBIS-DDSM
    /// masks occasionally do); it is then scaled to the image.
    File { path: PathBuf },
    /// A disk (mini-MIAS: centre and radius).
    Disk { cx: f64, cy: f64, r: f64 },
    /// A closed polygon (INbreast ROI outlines).
    Polygon { points: Vec<(f64, f64)> },
    /// An axis-aligned box, inclusive of x0,y0 and exclusive of x1,y1 (VinDr-Mammo findings).
    Rect { x0: f64, y0: f64, x1: f64, y1: f64 },
}

/// One annotated lesion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lesion {
    pub label: Label,
    /// `mass`, `calcification`, or the dataset's own word.
    pub kind: String,
    /// The lesion outline.
    pub mask: MaskSource,
    /// Where known (the phantom), the malignancy features only: spicules and irregular margin.
    pub feature_mask: Option<MaskSource>,
}

/// One image with its labels: the unit every adapter produces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The image file.
    pub image: PathBuf,
    /// The dataset's own patient key (e.g. CBIS-DDSM's `P_00001`), used only to group splits. It is
    /// pseudonymised before it is written anywhere.
    pub patient: String,
    /// Case-level label: the worst lesion, or `Normal` when there is none.
    pub label: Label,
    pub lesions: Vec<Lesion>,
    pub laterality: Option<Laterality>,
    pub view: Option<View>,
    /// Pixel spacing in mm that the layout itself defines (mini-MIAS: 0.2; the phantom: its own), used
    /// when the image file carries none. `None` when the layout says nothing.
    #[serde(default)]
    pub spacing_mm: Option<f64>,
}

impl Case {
    /// The worst label among the lesions (malignant > benign > normal).
    pub fn label_from_lesions(lesions: &[Lesion]) -> Label {
        lesions.iter().map(|l| l.label).max().unwrap_or(Label::Normal)
    }
}

/// The layouts `prepare --format` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    CbisDdsm,
    MiniMias,
    Inbreast,
    Vindr,
    Csv,
    Phantom,
}

impl Format {
    pub const ALL: [Format; 6] =
        [Format::CbisDdsm, Format::MiniMias, Format::Inbreast, Format::Vindr, Format::Csv, Format::Phantom];
    pub fn name(self) -> &'static str {
        match self {
            Format::CbisDdsm => "cbis-ddsm",
            Format::MiniMias => "mini-mias",
            Format::Inbreast => "inbreast",
            Format::Vindr => "vindr",
            Format::Csv => "csv",
            Format::Phantom => "phantom",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Reads the cases of a dataset directory in the given layout. Cases come back in a deterministic
/// order (sorted by image path) so that preparing the same input twice gives the same output.
pub fn load(format: Format, dir: &Path) -> Result<Vec<Case>> {
    if !dir.is_dir() {
        return Err(IoError::format(dir, "input is not a directory"));
    }
    let mut cases = match format {
        Format::CbisDdsm => cbis::load(dir)?,
        Format::MiniMias => mias::load(dir)?,
        Format::Inbreast => inbreast::load(dir)?,
        Format::Vindr => vindr::load(dir)?,
        Format::Csv => table::load(dir)?,
        Format::Phantom => phantom::load(dir)?,
    };
    if cases.is_empty() {
        return Err(IoError::format(dir, format!("no cases found in the {} layout", format.name())));
    }
    cases.sort_by(|a, b| a.image.cmp(&b.image));
    Ok(cases)
}

/// Opens a CSV with a header and checks that every required column is there, naming the missing one.
pub(crate) fn open_csv(
    path: &Path,
    delimiter: u8,
    required: &[&str],
) -> Result<(csv::StringRecord, Vec<csv::StringRecord>)> {
    let bytes = std::fs::read(path).map_err(|e| IoError::format(path, format!("cannot open table: {e}")))?;
    if let Some(line) = csv_quotes::unterminated_quote_line(&bytes, delimiter) {
        return Err(IoError::format(path, format!("unterminated quote (\") opened at line {line}")));
    }
    let mut rdr = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(bytes.as_slice());
    let headers = rdr.headers().map_err(|e| IoError::format(path, format!("cannot read the header: {e}")))?.clone();
    let trimmed: Vec<String> = headers.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_string()).collect();
    for col in required {
        if !trimmed.iter().any(|h| h == col) {
            return Err(IoError::format(path, format!("missing column '{col}'")));
        }
    }
    let headers = csv::StringRecord::from(trimmed);
    let mut rows = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        rows.push(r.map_err(|e| IoError::format(path, format!("row {}: {e}", i + 2)))?);
    }
    Ok((headers, rows))
}

/// The value of column `name` in `row` (empty string when the row is short).
pub(crate) fn col<'a>(headers: &csv::StringRecord, row: &'a csv::StringRecord, name: &str) -> &'a str {
    headers.iter().position(|h| h == name).and_then(|i| row.get(i)).map(str::trim).unwrap_or("")
}

/// The layout's table: `preferred` in `dir`, or else the only `*.csv` there. `what` describes the table
/// for the error when there is none.
pub(crate) fn find_table(dir: &Path, preferred: &str, what: &str) -> Result<PathBuf> {
    let path = dir.join(preferred);
    if path.is_file() {
        return Ok(path);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| IoError::io(dir, e))?;
    let mut csvs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    csvs.sort();
    match csvs.len() {
        1 => Ok(csvs.remove(0)),
        0 => Err(IoError::format(&path, format!("not found, nor any other *.csv ({what})"))),
        n => Err(IoError::format(
            dir,
            format!(
                "no {preferred} and {n} other *.csv files ({}): name the table {preferred}",
                csvs.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Checks a referenced file exists and is a regular file (after links: a FIFO or a device would hang
/// or never end when read), with an error naming both the table and the file.
pub(crate) fn existing(table: &Path, file: PathBuf) -> Result<PathBuf> {
    if file.is_file() {
        Ok(file)
    } else if file.exists() {
        Err(IoError::format(
            table,
            format!("referenced file {} is not a regular file (a directory, FIFO or device)", file.display()),
        ))
    } else {
        Err(IoError::format(table, format!("referenced file {} does not exist", file.display())))
    }
}

mod cbis;
mod csv_quotes;
mod inbreast;
mod mias;
mod phantom;
mod table;
mod vindr;

pub use phantom::{PHANTOM_MANIFEST, PhantomCase, PhantomLesion, PhantomManifest};

/// Rasterises a mask at the given size (helper re-exported for preprocessing).
pub fn rasterize(mask: &MaskSource, width: usize, height: usize) -> Result<GrayImage<u8>> {
    mask::rasterize(mask, width, height)
}
