//! Training in SageMaker mode: the contract in `mammo_serve::sagemaker` wired to prepare, train and
//! evaluate. Its stdout lines (the run's summary, `METRIC` lines, where the model is) are the
//! contract's, so they go out through [`Progress::line`].

use anyhow::{Context, Result, bail};
use mammo_nn::TrainConfig;
use mammo_prep::split::Split;
use mammo_serve::sagemaker::{self, Hyperparameters, Paths};
use mammo_track::RunDir;

use crate::evaluate::{self, EvaluateRequest};
use crate::progress::Progress;
use crate::train::{self, TrainOptions};

/// Runs the training contract. Any failure is also written, as one line, to `output/failure`; a stop by
/// SIGTERM (StopTrainingJob, a spot interruption) writes nothing there: its checkpoint is saved in
/// `checkpoints/`, from which the next start resumes.
pub fn train(paths: &Paths, cli: &TrainOptions, progress: &dyn Progress) -> Result<()> {
    let result = run(paths, cli, progress);
    if let Err(e) = &result {
        if e.downcast_ref::<train::Stopped>().is_some() {
            tracing::warn!(
                "stopped by a signal; the checkpoint in {} is resumed on the next start",
                paths.checkpoints().display()
            );
        } else {
            paths.write_failure(&crate::one_line(e));
        }
    }
    result
}

fn run(paths: &Paths, cli: &TrainOptions, progress: &dyn Progress) -> Result<()> {
    tracing::info!("SageMaker mode under {}", paths.base.display());
    if cli.config.is_some() || !cli.set.is_empty() || cli.resume {
        bail!(
            "in SageMaker mode the config comes from hyperparameters.json and resuming is automatic: drop --config, --set and --resume"
        );
    }
    let hp = Hyperparameters::read(&paths.hyperparameters())?;
    for key in &hp.ignored {
        tracing::info!("hyperparameter {key}: ignored (not a mammogan key)");
    }
    if let Some((current, hosts)) = sagemaker::check_resources(paths)? {
        tracing::info!("host {current} of [{}]", hosts.join(", "));
    }
    let (channel, dir) = sagemaker::choose_channel(paths, hp.channel.as_deref())?;
    let data = match sagemaker::find_dataset(&dir) {
        Some(d) => {
            tracing::info!("channel {channel}: prepared DATASET {}", d.display());
            d
        }
        None => {
            let names: Vec<&str> = mammo_io::layouts::Format::ALL.iter().map(|f| f.name()).collect();
            let format = hp.format.with_context(|| {
                format!(
                    "{}: channel {channel} holds no dataset.json (a prepared DATASET); for raw data set the `format` \
                     hyperparameter ({})",
                    dir.display(),
                    names.join(", ")
                )
            })?;
            let out = paths.prepared_dataset();
            if out.join(mammo_prep::dataset::DATASET_JSON).is_file() {
                tracing::info!("reusing the DATASET prepared earlier in {}", out.display());
            } else {
                if out.exists() {
                    std::fs::remove_dir_all(&out).map_err(|e| mammo_io::IoError::io(&out, e))?;
                }
                tracing::info!("channel {channel}: preparing {} data into {}", format.name(), out.display());
                // The key: $MAMMOGAN_KEY_FILE (e.g. a file of its own input channel, so a restarted job that
                // prepares again writes the same names), else one made in the container's home.
                let mut prep = hp.prep.clone();
                prep.key = crate::key::for_prepare(None, &dir)?;
                let info = mammo_prep::prepare(format, &dir, &out, &prep, &|_, _| {})
                    .with_context(|| format!("preparing channel {channel} as {}", format.name()))?;
                tracing::info!("prepared {} patches", info.patches);
            }
            out
        }
    };

    // The RUN directory is the checkpoint directory itself: SageMaker syncs it to checkpoint_s3_uri and
    // restores it on a restart, config.toml, manifest and metrics included.
    let run = paths.checkpoints();
    let resume = std::fs::read_dir(&run).map(|mut d| d.next().is_some()).unwrap_or(false);
    let config = hp.train_config()?;
    let mut opts = cli.clone();
    opts.metric_lines = true;
    opts.resume = resume;
    if let Some(d) = &hp.device {
        opts.device = d.clone();
    }
    if let Some(t) = hp.threads {
        opts.threads = t;
    }
    if let Some(m) = hp.models {
        opts.models = m;
    }
    let saved = run.join(RunDir::CONFIG);
    if resume && saved.is_file() {
        let before = TrainConfig::from_toml_file(&saved)?;
        if before.to_toml() != config.to_toml() {
            bail!(
                "{}: the checkpoints are of a run with another config than these hyperparameters; use a new \
                 checkpoint_s3_uri (or the same hyperparameters)",
                run.display()
            );
        }
        progress.line(&format!("resuming the run in {} from its checkpoints", run.display()));
    } else {
        opts.set = hp.as_set_args();
    }
    let summary = train::run(&data, &run, &opts, progress)?;
    for line in summary.lines() {
        progress.line(&line);
    }

    // One METRIC line per evaluation: val (what a tuning job should optimise), then the held-out test.
    for split in [Split::Val, Split::Test] {
        let request = EvaluateRequest {
            run: run.clone(),
            data: Some(data.clone()),
            images: None,
            key_file: None,
            split,
            device: opts.device.clone(),
            seed: 0,
        };
        match evaluate::run(&request) {
            Ok(metrics) => {
                let values: Vec<(String, f64)> = metrics
                    .iter()
                    .filter_map(|(k, v)| Some((format!("{}.{k}", split.as_str()), v.as_f64()?)))
                    .collect();
                progress.line(&sagemaker::metric_line(&format!("split={}", split.as_str()), &values));
            }
            Err(e) => tracing::warn!("no evaluation on the {} split: {}", split.as_str(), crate::one_line(&e)),
        }
    }
    sagemaker::export_model(&run, &paths.model())?;
    progress.line(&format!("model: {}", paths.model().display()));
    Ok(())
}
