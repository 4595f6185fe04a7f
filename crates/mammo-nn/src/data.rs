//! The patches a model trains on, in memory: pixels, masks, labels and splits, one entry per patch.
//!
//! Built from a prepared DATASET ([`PatchData::from_store`]) or directly from arrays
//! ([`PatchData::new`], for tests and tools).

use mammo_io::layouts::Label;
use mammo_prep::PatchStore;
use mammo_prep::split::Split;

use crate::error::{NnError, Result};

/// Mask bit: inside the lesion.
pub const MASK_LESION: u8 = 1;
/// Mask bit: a malignancy feature (spicule, irregular margin).
pub const MASK_MALIGNANCY: u8 = 2;
/// Mask bit: inside the breast.
pub const MASK_BREAST: u8 = 4;

/// Patches with their labels, splits and masks.
#[derive(Clone, Debug)]
pub struct PatchData {
    /// Side of a square patch in pixels.
    pub size: usize,
    /// Pixel spacing of the patches in mm (recorded with the exported models).
    pub spacing_mm: f64,
    /// `n * size * size` intensities in [0, 1], patch after patch, row-major.
    pub pixels: Vec<f32>,
    /// `n * size * size` mask bit flags ([`MASK_LESION`], [`MASK_MALIGNANCY`], [`MASK_BREAST`]).
    pub masks: Vec<u8>,
    /// The label of each patch.
    pub labels: Vec<Label>,
    /// The split of each patch.
    pub splits: Vec<Split>,
    /// The dataset's content hash, if it came from a DATASET directory.
    pub content_hash: Option<String>,
}

impl PatchData {
    /// Builds a set from arrays, checking that their lengths agree.
    pub fn new(
        size: usize,
        spacing_mm: f64,
        pixels: Vec<f32>,
        masks: Vec<u8>,
        labels: Vec<Label>,
        splits: Vec<Split>,
    ) -> Result<Self> {
        let n = labels.len();
        let s2 = size * size;
        if size == 0 || pixels.len() != n * s2 || masks.len() != n * s2 || splits.len() != n {
            return Err(NnError::Data(format!(
                "{n} labels, {} splits, {} pixels and {} mask values do not make {n} patches of {size}x{size}",
                splits.len(),
                pixels.len(),
                masks.len()
            )));
        }
        Ok(PatchData { size, spacing_mm, pixels, masks, labels, splits, content_hash: None })
    }

    /// Takes a loaded DATASET.
    pub fn from_store(store: PatchStore) -> Result<Self> {
        let labels = store.rows.iter().map(|r| r.label).collect();
        let splits = store.rows.iter().map(|r| r.split).collect();
        let mut data =
            PatchData::new(store.info.patch_size, store.info.spacing_mm, store.pixels, store.masks, labels, splits)?;
        data.content_hash = Some(store.info.content_hash);
        Ok(data)
    }

    /// Number of patches.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no patches.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of patch `i`.
    pub fn patch(&self, i: usize) -> &[f32] {
        let s2 = self.size * self.size;
        &self.pixels[i * s2..(i + 1) * s2]
    }

    /// The mask of patch `i`.
    pub fn mask(&self, i: usize) -> &[u8] {
        let s2 = self.size * self.size;
        &self.masks[i * s2..(i + 1) * s2]
    }

    /// Indices of the patches of `split` with one of `labels`, in storage order.
    pub fn indices(&self, split: Split, labels: &[Label]) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.splits[i] == split && labels.contains(&self.labels[i])).collect()
    }
}
