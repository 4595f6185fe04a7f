//! From decoded mammograms to a prepared DATASET: breast segmentation, orientation, resampling, intensity
//! normalisation, lesion-centred and normal-tissue patches with their masks, and a patient-grouped
//! split. The DATASET format itself is in [`dataset`].
//!
//! Every step is a pure function of its inputs and the seed, so preparing the same input twice gives
//! byte-identical output; the pseudonym key ([`pseudonym`], [`key_file`]) changes only the names written.

pub mod dataset;
pub mod error;
pub mod image_prep;
pub mod input_walk;
pub mod key_file;
pub mod limits;
pub mod normalize;
pub mod orient;
pub mod patch;
pub mod pipeline;
pub mod pseudonym;
pub mod resample;
pub mod segment;
pub mod shard;
pub mod split;
pub mod tiling;

pub use dataset::{DATASET_FORMAT_VERSION, DatasetInfo, PatchStore};
pub use error::{PrepError, Result};
pub use image_prep::PreparedImage;
pub use pipeline::{PrepParams, prepare};
pub use pseudonym::{Namer, PseudonymKey};
pub use shard::{ShardSpec, merge, prepare_shard};
