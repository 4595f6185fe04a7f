//! `mammogan train`: its arguments, and the summary it prints (the run session is `mammo_app::train`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use mammo_app::train::{TrainOptions, TrainSummary};
use mammo_nn::ModelKind;

use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// A prepared DATASET directory (`mammogan prepare`). Left out (with --out) in SageMaker mode.
    #[arg(long, requires = "out", conflicts_with = "sagemaker")]
    pub data: Option<PathBuf>,
    /// The RUN directory to create (or continue, with --resume).
    #[arg(long, requires = "data", conflicts_with = "sagemaker")]
    pub out: Option<PathBuf>,
    /// SageMaker mode: read /opt/ml/input (or $SAGEMAKER_BASE_DIR/input), checkpoint to
    /// /opt/ml/checkpoints, write the model to /opt/ml/model (also chosen without this flag when
    /// $SAGEMAKER_BASE_DIR is set or /opt/ml/input/config/hyperparameters.json exists).
    #[arg(long)]
    pub sagemaker: bool,
    #[command(flatten)]
    pub opts: TrainOpts,
}

/// Options shared with `quickstart`.
#[derive(clap::Args, Clone)]
pub struct TrainOpts {
    /// A TOML config; defaults are documented in `mammogan train --print-config`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set train.steps=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Which model(s) to train, in training order.
    #[arg(long, default_value = "all", value_parser = model_choice())]
    pub model: &'static [ModelKind],
    /// auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads for the backend (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Continue a killed or stopped run from its newest checkpoints, with its own config.toml.
    #[arg(long)]
    pub resume: bool,
    /// Print a `METRIC step=N train.MODEL.NAME=VALUE; ...` line on stdout per logged step (SageMaker mode).
    #[arg(skip)]
    pub metric_lines: bool,
    #[command(flatten)]
    pub mlflow: crate::commands::track::MlflowOpts,
}

impl TrainOpts {
    /// As the application layer takes them.
    pub fn to_options(&self) -> TrainOptions {
        TrainOptions {
            config: self.config.clone(),
            set: self.set.clone(),
            models: self.model,
            device: self.device.clone(),
            threads: self.threads,
            resume: self.resume,
            metric_lines: self.metric_lines,
            mlflow: self.mlflow.to_request(),
        }
    }
}

/// `--model`: the names [`ModelKind::choice`] takes, listed in `--help` and in clap's error.
fn model_choice() -> impl clap::builder::TypedValueParser<Value = &'static [ModelKind]> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(ModelKind::CHOICES)
        .map(|name| ModelKind::choice(&name).expect("clap passes only the listed choices"))
}

pub fn run(args: Args, progress: &Progress) -> Result<()> {
    let (Some(data), Some(out)) = (&args.data, &args.out) else {
        return match mammo_serve::sagemaker::Paths::training_requested(args.sagemaker) {
            Some(paths) => mammo_app::sagemaker::train(&paths, &args.opts.to_options(), progress),
            None => bail!(
                "train needs --data DATASET and --out RUN (or SageMaker mode: --sagemaker, $SAGEMAKER_BASE_DIR, or \
                 /opt/ml/input/config/hyperparameters.json)"
            ),
        };
    };
    let summary = mammo_app::train::run(data, out, &args.opts.to_options(), progress)?;
    print_summary(&summary);
    println!("run: {}", out.display());
    Ok(())
}

/// One line per trained model: its steps and weight hash.
fn print_summary(summary: &TrainSummary) {
    for line in summary.lines() {
        println!("{line}");
    }
}
