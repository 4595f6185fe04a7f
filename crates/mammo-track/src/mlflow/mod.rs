//! Runs tracked in an MLflow tracking server, through its REST API: one more sink beside
//! `metrics.jsonl` and TensorBoard, never in the way of training.
//!
//! - [`api`]: request bodies and answers, as documented (pure, tested without a server).
//! - [`target`]: the tracking URI and its credentials (never shown).
//! - [`client`]: a blocking HTTP client with bounded timeouts.
//! - [`state`]: `RUN/mlflow.json`, the MLflow run id and what the server confirmed.
//! - [`sync`]: sending what a RUN directory holds and the server lacks (end of a run, `evaluate`,
//!   `mammogan track push`).
//! - [`live`]: the background sender a training run queues its metrics to.

pub mod api;
pub mod client;
pub mod live;
pub mod state;
pub mod sync;
pub mod target;

pub use api::RunStatus;
pub use client::{Client, MlflowError};
pub use live::{Finished, Live};
pub use state::{STATE_FILE, State};
pub use sync::{Payload, Sent, SyncError, sync};
pub use target::{DEFAULT_EXPERIMENT, Target};
