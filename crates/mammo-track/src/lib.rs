//! What a mammogan training run writes as it goes, independent of the model and of the deep-learning
//! framework: the RUN directory's layout ([`RunDir`]), scalar metrics as JSON lines ([`MetricsJsonl`]),
//! TensorBoard event files ([`TensorBoardWriter`]), image grids for them ([`image_grid_png`]), and the
//! same run sent to an MLflow tracking server ([`mlflow`]). Checkpoints are not this crate's: the trainer
//! writes them (in mammogan, `mammo_nn::checkpoint`) and says which step a resume starts from.
//!
//! Every writer survives a crash and a resume the same way: what was logged is on its way to disk when
//! the call returns, a record cut short by a kill is skipped by readers, and reopening a file for a run
//! resumed from the checkpoint at step N drops what the killed run logged after N, so the files equal an
//! uninterrupted run's. For that to hold, a trainer logs step N *before* it saves checkpoint N, and
//! resumes at N + 1:
//! ```no_run
//! # fn main() -> mammo_track::Result<()> {
//! use mammo_track::{MetricsJsonl, RunDir, TensorBoardWriter, WallTime};
//! # fn newest_checkpoint(_: &RunDir) -> u64 { 0 }
//! let run = RunDir::resume("runs/classifier")?;
//! let last = newest_checkpoint(&run); // the trainer's: 0 for a fresh run
//! let mut metrics = MetricsJsonl::open_resume(run.metrics(), last)?;
//! let mut tb = TensorBoardWriter::open_resume(run.tensorboard(), "train", WallTime::System, last)?;
//! for step in last + 1..=1000 {
//!     let loss = 1.0 / step as f64; // a training step
//!     metrics.log(step, "classifier", &[("loss", loss)])?;
//!     tb.scalar(step, "classifier/loss", loss as f32)?;
//!     if step % 100 == 0 {
//!         // save checkpoint `step`
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod crc32c;
mod error;
pub mod event;
mod grid;
mod jsonl;
pub mod mlflow;
mod resume;
mod rundir;
mod tensorboard;
pub mod tfrecord;

pub use crate::crc32c::{crc32c, masked_crc32c};
pub use crate::error::{Result, TrackError};
pub use crate::grid::{GridOptions, TileScale, encode_png_gray, image_grid, image_grid_png};
pub use crate::jsonl::{MetricsJsonl, RESERVED_KEYS, Record, read_metrics};
pub use crate::rundir::RunDir;
pub use crate::tensorboard::{EVENT_FILE_PREFIX, TensorBoardWriter, WallTime, event_file_name, read_events};
