//! The DATASET directory: what `prepare` writes and training reads.
//!
//! ```text
//! DATASET/
//!   dataset.json   parameters, counts, BLAKE3 of every input file and every output file, content hash
//!   index.csv      id,patient_id,split,label,source,x,y,w,h — one row per patch, in storage order
//!   patches.u16    N x S x S little-endian u16: normalised intensity [0,1] scaled to 0..65535
//!   masks.u8       N x S x S u8 bit flags: 1 lesion, 2 malignancy features, 4 breast
//! ```
//! Both binary files are headerless, fixed-stride arrays, so patch `i` lives at byte offset
//! `i * S * S * 2` (resp. `i * S * S`): a reader can memory-map or seek straight to any patch, and
//! loading the whole set is one read per file. `x,y,w,h` locate the patch in the *source image's* pixel
//! coordinates (before orientation and resampling), so any patch can be traced back.

use std::collections::BTreeMap;
use std::path::Path;

use mammo_io::layouts::Label;
use serde::{Deserialize, Serialize};

use crate::error::{PrepError, Result};
use crate::split::Split;

/// Bumped on any incompatible change to the files above.
pub const DATASET_FORMAT_VERSION: u32 = 1;
pub const DATASET_JSON: &str = "dataset.json";
pub const INDEX_CSV: &str = "index.csv";
pub const PATCHES_FILE: &str = "patches.u16";
pub const MASKS_FILE: &str = "masks.u8";

/// A file and its BLAKE3 hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashedFile {
    /// Relative to the input (or DATASET) directory, with `/` separators.
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

/// `dataset.json`. It holds no timestamp and no host name, so identical inputs give an identical file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub format_version: u32,
    pub created_by: String,
    pub source_format: String,
    /// Every preprocessing parameter, so the dataset can be rebuilt.
    pub params: serde_json::Value,
    pub patch_size: usize,
    pub spacing_mm: f64,
    pub patches: usize,
    /// split -> label -> patch count.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// split -> number of patients.
    pub patients: BTreeMap<String, usize>,
    pub images: usize,
    pub inputs: Vec<HashedFile>,
    pub outputs: Vec<HashedFile>,
    /// BLAKE3 over the output hashes: one value that names this dataset's content.
    pub content_hash: String,
}

/// One row of `index.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexRow {
    pub id: usize,
    pub patient_id: String,
    pub split: Split,
    pub label: Label,
    pub source: String,
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// BLAKE3 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|e| PrepError::io(path, e))?;
    let n = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, file), &mut hasher)
        .map_err(|e| PrepError::io(path, e))?;
    Ok((n, hasher.finalize().to_hex().to_string()))
}

/// The content hash of a list of hashed files (order-independent: sorted by path).
pub fn content_hash(files: &[HashedFile]) -> String {
    let mut sorted: Vec<&HashedFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = blake3::Hasher::new();
    for f in sorted {
        h.update(f.path.as_bytes());
        h.update(b"\0");
        h.update(f.blake3.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// A prepared dataset loaded into memory.
pub struct PatchStore {
    pub info: DatasetInfo,
    pub rows: Vec<IndexRow>,
    /// All patches, row-major, `patch_size^2` values each, in [0, 1].
    pub pixels: Vec<f32>,
    pub masks: Vec<u8>,
}

impl PatchStore {
    /// Opens a DATASET directory, checking its format version and that the files agree in size.
    pub fn open(dir: &Path) -> Result<Self> {
        let (info, rows) = Self::read_index(dir)?;
        let s2 = info.patch_size * info.patch_size;
        let read = |name: &str, per_patch: usize| -> Result<Vec<u8>> {
            let p = dir.join(name);
            let bytes = std::fs::read(&p).map_err(|e| PrepError::io(&p, e))?;
            if bytes.len() != rows.len() * per_patch {
                return Err(PrepError::invalid(
                    &p,
                    format!("holds {} bytes, {} patches need {}", bytes.len(), rows.len(), rows.len() * per_patch),
                ));
            }
            Ok(bytes)
        };
        let raw = read(PATCHES_FILE, s2 * 2)?;
        let pixels = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f32 / 65535.0).collect();
        let masks = read(MASKS_FILE, s2)?;
        Ok(PatchStore { info, rows, pixels, masks })
    }

    /// `dataset.json` (its format version checked) and `index.csv` alone, without the pixels: what a
    /// DATASET holds and where each patch came from.
    pub fn read_index(dir: &Path) -> Result<(DatasetInfo, Vec<IndexRow>)> {
        let info_path = dir.join(DATASET_JSON);
        let text = std::fs::read_to_string(&info_path).map_err(|e| PrepError::io(&info_path, e))?;
        let info: DatasetInfo = serde_json::from_str(&text)
            .map_err(|e| PrepError::invalid(&info_path, format!("not a valid dataset.json: {e}")))?;
        if info.format_version != DATASET_FORMAT_VERSION {
            return Err(PrepError::invalid(
                &info_path,
                format!("dataset format {} (this build reads {DATASET_FORMAT_VERSION})", info.format_version),
            ));
        }
        let index_path = dir.join(INDEX_CSV);
        let mut rdr =
            csv::Reader::from_path(&index_path).map_err(|e| PrepError::invalid(&index_path, e.to_string()))?;
        let rows = rdr
            .deserialize()
            .collect::<std::result::Result<Vec<IndexRow>, _>>()
            .map_err(|e| PrepError::invalid(&index_path, e.to_string()))?;
        Ok((info, rows))
    }

    /// Re-hashes the output files and compares them with `dataset.json`; names the first that differs.
    pub fn verify(dir: &Path, info: &DatasetInfo) -> Result<()> {
        for f in &info.outputs {
            let p = dir.join(&f.path);
            let (_, hash) = hash_file(&p)?;
            if hash != f.blake3 {
                return Err(PrepError::invalid(&p, "content differs from the hash recorded in dataset.json"));
            }
        }
        Ok(())
    }
}
