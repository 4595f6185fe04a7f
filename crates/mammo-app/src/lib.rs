//! The application layer: every workflow of mammogan as a function a test can call, without the
//! command line. A run session and its training (`train`), `evaluate`, `explain` (one image or many),
//! the SageMaker training flow (`sagemaker`), `quickstart`, `reproduce`, MLflow tracking of a run
//! (`tracking`), the pseudonym key (`key`), a phantom written with a progress bar (`phantom`).
//!
//! The binary (`crates/mammogan`) parses arguments into the requests here, draws progress by
//! implementing [`Progress`], prints what the workflows return and maps errors to exit codes. Nothing
//! here knows clap or indicatif, and no workflow prints, except the lines a contract asks for on stdout
//! (SageMaker's `METRIC` lines), which go through [`Progress::line`].
//!
//! Errors are `anyhow::Error` at this edge: the libraries' typed errors (`IoError`, `NnError`, ...)
//! pass through with context, and [`one_line`] is how each is shown. A run stopped by a signal is told
//! apart by downcasting to [`train::Stopped`].

pub mod evaluate;
pub mod explain;
pub mod key;
pub mod phantom;
pub mod progress;
pub mod quickstart;
pub mod reproduce;
pub mod sagemaker;
pub mod tracking;
pub mod train;

pub use progress::{Bar, NoBar, Progress, Silent};

/// One line: the chain of causes joined, never a backtrace or a panic. (A cause already quoted by its
/// parent's message is not repeated.) What the binary prints after `error:`, and what a failed run's
/// manifest records.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !msg.contains(&c) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&c);
        }
    }
    msg.replace('\n', " ")
}
