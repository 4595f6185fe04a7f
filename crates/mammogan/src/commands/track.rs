//! `mammogan track push`, and the MLflow options of `train` and `quickstart` (the tracking itself is
//! `mammo_app::tracking`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use mammo_app::tracking::{self, Mlflow};
use mammo_track::mlflow::State;

/// The MLflow options of `train` (and `quickstart`).
#[derive(clap::Args, Clone, Default, Debug)]
pub struct MlflowOpts {
    /// Track the run in this MLflow tracking server (http:// or https://; default: $MLFLOW_TRACKING_URI).
    /// Credentials: $MLFLOW_TRACKING_TOKEN, or $MLFLOW_TRACKING_USERNAME and _PASSWORD.
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// The MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else "mammogan").
    #[arg(long, value_name = "NAME")]
    pub mlflow_experiment: Option<String>,
}

impl MlflowOpts {
    /// As the application layer takes it.
    pub fn to_request(&self) -> Mlflow {
        Mlflow { uri: self.mlflow.clone(), experiment: self.mlflow_experiment.clone() }
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Send a run to an MLflow tracking server: everything it has not confirmed (RUN/mlflow.json keeps
    /// the MLflow run id, so pushing again duplicates nothing).
    Push {
        /// A RUN directory written by `mammogan train`.
        run: PathBuf,
        #[command(flatten)]
        mlflow: MlflowOpts,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Push { run, mlflow } => {
            let recorded = State::read(&run)?;
            let mut opts = mlflow;
            // A run already tracked goes back to its server and experiment unless told otherwise.
            if let Some(s) = recorded.as_ref().filter(|s| !s.server.is_empty()) {
                if opts.mlflow.is_none() && tracking::env("MLFLOW_TRACKING_URI").is_none() {
                    opts.mlflow = Some(s.server.clone());
                }
                opts.mlflow_experiment.get_or_insert_with(|| s.experiment.clone());
            }
            tracking::push(&run, &opts.to_request())?;
            let state = State::read(&run)?.context("no state written")?;
            println!("mlflow run: {} (experiment {}) on {}", state.run_id, state.experiment_id, state.server);
            Ok(())
        }
    }
}
