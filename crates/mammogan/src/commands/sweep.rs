//! `mammogan sweep run | trial | status | collect`: configurations x seeds on this machine, a Slurm
//! cluster, a Kubernetes Indexed Job or a SageMaker tuning job. The logic is in `mammo-sweep`; this
//! wires arguments to it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mammo_sweep::kubernetes::KubeOptions;
use mammo_sweep::sagemaker::SageMakerOptions;
use mammo_sweep::slurm::SlurmOptions;
use mammo_sweep::{State, Sweep, SweepDir};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum On {
    Local,
    Slurm,
    Kubernetes,
    Sagemaker,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check SWEEP, write its trials into DIR and run the ones not finished (finished trials are
    /// skipped; killed or failed ones start again).
    Run {
        /// The sweep file (TOML; see examples/sweeps/).
        sweep: PathBuf,
        /// The DATASET every trial trains on.
        #[arg(long)]
        data: PathBuf,
        /// The whole images the DATASET was prepared from (what `evaluate --images` reads): every trial
        /// then also reports the whole-image figures (image.auc, detection.*, image_attribution.*),
        /// which can be the objective. Local, Slurm and Kubernetes routes.
        #[arg(long)]
        images: Option<PathBuf>,
        /// The sweep directory (created; re-running into it resumes).
        #[arg(long)]
        out: PathBuf,
        /// Where trials run: local processes, a Slurm job array, a Kubernetes Indexed Job, or a
        /// SageMaker hyperparameter tuning job.
        #[arg(long, value_enum, default_value = "local")]
        on: On,
        /// Threads per trial (0: local divides the cores between --max-parallel trials; Slurm uses
        /// --cpus-per-task).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Trials at once (local default: cores / 2, at least 1; Slurm: the array's % limit;
        /// Kubernetes: the Job's parallelism, default all; SageMaker: MaxParallelTrainingJobs, default 4).
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Slurm partition.
        #[arg(long)]
        partition: Option<String>,
        /// Time limit per trial, e.g. 01:00:00 (Slurm; SageMaker: MaxRuntimeInSeconds, default 1 day).
        #[arg(long)]
        time: Option<String>,
        /// CPUs per trial (Slurm; Kubernetes: the pod's CPU request and limit).
        #[arg(long, default_value_t = 2)]
        cpus_per_task: usize,
        /// Generic resources per trial, e.g. gpu:1 (Slurm; Kubernetes: nvidia.com/gpu).
        #[arg(long)]
        gres: Option<String>,
        /// The container image: Slurm runs each task in it (Apptainer/Singularity if the node has one,
        /// else Docker) instead of this binary; required for Kubernetes (mammogan:cpu or :cuda from
        /// your registry) and SageMaker (mammogan:sagemaker in ECR).
        #[arg(long)]
        image: Option<String>,
        /// Write the script, manifest or request without submitting it.
        #[arg(long)]
        no_submit: bool,
        /// Kubernetes: the PersistentVolumeClaim holding DIR and the DATASET.
        #[arg(long)]
        pvc: Option<String>,
        /// Kubernetes: where this machine sees the claim's volume; the pods mount it at the same
        /// path, so DIR and --data must be under it.
        #[arg(long)]
        pvc_path: Option<PathBuf>,
        /// Kubernetes: memory request and limit per pod, e.g. 8Gi.
        #[arg(long)]
        memory: Option<String>,
        /// Kubernetes: the pods' UID:GID (default: DIR's owner, or the image's 65532 when root owns it).
        #[arg(long)]
        run_as: Option<String>,
        /// SageMaker: the execution role's ARN.
        #[arg(long)]
        role_arn: Option<String>,
        /// SageMaker: s3:// URI of the prepared DATASET (the `training` channel).
        #[arg(long)]
        s3_data: Option<String>,
        /// SageMaker: s3:// URI for the training jobs' output.
        #[arg(long)]
        s3_output: Option<String>,
        /// SageMaker: the training instance type.
        #[arg(long, default_value = "ml.m5.xlarge")]
        instance_type: String,
        /// SageMaker: the training volume per job, in GB.
        #[arg(long, default_value_t = 30)]
        volume_gb: u32,
    },
    /// Train and evaluate one trial of DIR (what each local process, array task or pod runs).
    Trial {
        dir: PathBuf,
        /// The trial's id (or give --pending and --index-env).
        #[arg(required_unless_present = "index_env")]
        id: Option<String>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// A list of trial ids, one a line: the trial is line K+1, K read from --index-env.
        #[arg(long, requires = "index_env", conflicts_with = "id")]
        pending: Option<PathBuf>,
        /// The environment variable holding K, e.g. JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
        #[arg(long, requires = "pending")]
        index_env: Option<String>,
    },
    /// Each trial's state from the sweep directory (and the Slurm queue when Slurm runs it).
    Status { dir: PathBuf },
    /// leaderboard.csv, leaderboard.html and best.toml in DIR.
    Collect { dir: PathBuf },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Run {
            sweep,
            data,
            images,
            out,
            on,
            threads,
            max_parallel,
            partition,
            time,
            cpus_per_task,
            gres,
            image,
            no_submit,
            pvc,
            pvc_path,
            memory,
            run_as,
            role_arn,
            s3_data,
            s3_output,
            instance_type,
            volume_gb,
        } => {
            let text = std::fs::read_to_string(&sweep).with_context(|| format!("{}: cannot read", sweep.display()))?;
            let spec = Sweep::parse(&text, &sweep)?;
            if !data.join("dataset.json").is_file() {
                bail!("{}: not a DATASET (no dataset.json)", data.display());
            }
            let data = std::fs::canonicalize(&data).with_context(|| format!("{}: cannot read", data.display()))?;
            let images = images
                .map(|p| std::fs::canonicalize(&p).with_context(|| format!("--images {}: cannot read", p.display())))
                .transpose()?;
            let key = &spec.objective.key;
            match (&images, on) {
                (Some(_), On::Sagemaker) => bail!(
                    "--images: not with --on sagemaker (its trials evaluate the DATASET's patches; the images would \
                     need a channel of their own)"
                ),
                (None, _) if mammo_sweep::trials::whole_image_key(key) => bail!(
                    "{}: objective {key} is measured on whole images: give --images (the images the DATASET was \
                     prepared from)",
                    sweep.display()
                ),
                _ => {}
            }
            std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
            let out = std::fs::canonicalize(&out)?;
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let (parallel, per_trial) = match on {
                On::Local => {
                    let parallel = max_parallel.unwrap_or((cores / 2).max(1)).max(1);
                    (parallel, if threads > 0 { threads } else { (cores / parallel).max(1) })
                }
                On::Slurm | On::Kubernetes | On::Sagemaker => (max_parallel.unwrap_or(0), cpus_per_task.max(1)),
            };
            // Checked before anything is written, like the sweep file.
            let run_as =
                run_as.as_deref().map(mammo_sweep::kubernetes::parse_run_as).transpose().map_err(anyhow::Error::msg)?;
            let max_runtime_s = match (&on, &time) {
                (On::Sagemaker, Some(t)) => mammo_sweep::sagemaker::parse_time(t).map_err(anyhow::Error::msg)?,
                _ => SageMakerOptions::default().max_runtime_s,
            };
            let pvc_path = pvc_path
                .map(|p| std::fs::canonicalize(&p).with_context(|| format!("--pvc-path {}: cannot read", p.display())))
                .transpose()?;
            let kube = KubeOptions {
                image: image.clone(),
                pvc,
                pvc_path,
                cpus_per_task: per_trial,
                memory,
                gres: gres.clone(),
                max_parallel: (parallel > 0).then_some(parallel),
                run_as,
            };
            let sagemaker = SageMakerOptions {
                image: image.clone(),
                role_arn,
                s3_data,
                s3_output,
                instance_type,
                volume_gb,
                max_runtime_s,
                max_parallel: (parallel > 0).then_some(parallel),
            };
            let settings = mammo_sweep::trials::Settings { data: data.clone(), threads: per_trial, images };
            match on {
                On::Kubernetes => mammo_sweep::kubernetes::check(&out, &settings.inputs(), &kube)?,
                On::Sagemaker => mammo_sweep::sagemaker::check(&out, &spec, &sagemaker)?,
                On::Local | On::Slurm => {}
            }
            let sd = SweepDir::new(&out);
            let trials = sd.write(&text, &spec, &settings)?;
            let pending: Vec<String> =
                trials.iter().filter(|t| sd.state(&t.id) != State::Finished).map(|t| t.id.clone()).collect();
            println!("{} trials, {} finished, {} to run", trials.len(), trials.len() - pending.len(), pending.len());
            if pending.is_empty() {
                return Ok(());
            }
            let exe = std::env::current_exe().context("the path of this binary")?;
            match on {
                On::Local => {
                    println!("running {parallel} at a time, {per_trial} threads each");
                    let failed = mammo_sweep::run::run_local(&sd, &pending, &exe, parallel, per_trial, &|id, ok| {
                        println!("{id}: {}", if ok { "finished" } else { "failed" })
                    })?;
                    if !failed.is_empty() {
                        bail!(
                            "{}: {} of {} trials failed ({}); see trials/<id>/log.txt, re-run to retry",
                            out.display(),
                            failed.len(),
                            pending.len(),
                            failed.join(", ")
                        );
                    }
                }
                On::Slurm => {
                    let options = SlurmOptions {
                        partition,
                        time,
                        cpus_per_task: per_trial,
                        gres,
                        max_parallel: (parallel > 0).then_some(parallel),
                        image,
                    };
                    let inputs: Vec<&std::path::Path> = settings.inputs().into_iter().map(|(_, p)| p).collect();
                    let script = mammo_sweep::slurm::write(&out, &pending, &exe, &inputs, &options)?;
                    if no_submit {
                        println!("wrote {}; submit with: sbatch {}", script.display(), script.display());
                    } else {
                        let job = mammo_sweep::slurm::submit(&out, &script)?;
                        println!(
                            "submitted job {job} ({} tasks); follow with: mammogan sweep status {}",
                            pending.len(),
                            out.display()
                        );
                    }
                }
                On::Kubernetes => {
                    let (manifest, name) = mammo_sweep::kubernetes::write(&out, &pending, &settings.inputs(), &kube)?;
                    let apply = format!("kubectl apply -f {}", manifest.display());
                    if no_submit {
                        println!("wrote {} (job {name}); apply with: {apply}", manifest.display());
                    } else if !mammo_sweep::kubernetes::kubectl_configured() {
                        println!(
                            "wrote {} (job {name}); no kubectl with a current context here, so apply it where there is one: {apply}",
                            manifest.display()
                        );
                    } else {
                        mammo_sweep::kubernetes::apply(&out, &manifest, &name)?;
                        println!(
                            "applied job {name} ({} pods); follow with: mammogan sweep status {}",
                            pending.len(),
                            out.display()
                        );
                    }
                }
                On::Sagemaker => {
                    let (request, name) = mammo_sweep::sagemaker::write(&out, &spec, &sagemaker)?;
                    let create = format!("aws {}", mammo_sweep::sagemaker::create_args(&request).join(" "));
                    let upload =
                        format!("aws s3 sync {} {}", data.display(), sagemaker.s3_data.as_deref().unwrap_or("S3_DATA"));
                    if no_submit {
                        println!(
                            "wrote {} (tuning job {name}); upload the DATASET ({upload}), then: {create}",
                            request.display()
                        );
                    } else if !mammo_sweep::sagemaker::aws_configured() {
                        println!(
                            "wrote {} (tuning job {name}); no aws CLI with working credentials here (aws sts get-caller-identity), so run where there is one: {upload} && {create}",
                            request.display()
                        );
                    } else {
                        mammo_sweep::sagemaker::submit(&out, &request, &name)?;
                        println!(
                            "created tuning job {name}; its training jobs read {}; follow in SageMaker or with: mammogan sweep status {}",
                            sagemaker.s3_data.as_deref().unwrap_or_default(),
                            out.display()
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Trial { dir, id, threads, pending, index_env } => {
            let id = match (id, pending, index_env) {
                (Some(id), _, _) => id,
                (None, Some(list), Some(var)) => mammo_sweep::run::pending_at(&list, &var)?,
                _ => bail!("sweep trial: give the trial's ID, or --pending LIST and --index-env VAR"),
            };
            let exe = std::env::current_exe().context("the path of this binary")?;
            mammo_sweep::run::run_trial(&SweepDir::new(&dir), &id, &exe, threads)?;
            println!("{id}: finished");
            Ok(())
        }
        Command::Status { dir } => {
            let sd = SweepDir::new(&dir);
            let trials = sd.trials()?;
            let mut counts = std::collections::BTreeMap::new();
            for t in &trials {
                let state = sd.state(&t.id);
                *counts.entry(state).or_insert(0) += 1;
                let note = if state == State::Failed { sd.failure(&t.id).unwrap_or_default() } else { String::new() };
                println!(
                    "{} seed {} {}: {} {note}",
                    t.id,
                    t.seed,
                    mammo_sweep::collect::values_label(&t.values),
                    state.as_str()
                );
            }
            let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {}", s.as_str())).collect();
            println!("{} trials: {}", trials.len(), summary.join(", "));
            let queue = mammo_sweep::slurm::queue(&dir);
            if let Some(q) = &queue {
                println!("squeue:\n{}", if q.trim().is_empty() { "(no task queued or running)" } else { q.trim_end() });
            }
            // The job has left the queue (squeue lists nothing, or no longer knows the id): how its
            // tasks ended, where Slurm keeps accounting; silent where it does not.
            if queue.as_deref().is_none_or(|q| q.trim().is_empty())
                && let Some(a) = mammo_sweep::slurm::accounting(&dir)
            {
                println!("sacct:\n{a}");
            }
            if let Some(k) = mammo_sweep::kubernetes::status(&dir) {
                println!("{k}");
            }
            if let Some(s) = mammo_sweep::sagemaker::status(&dir) {
                println!("{s}");
            }
            Ok(())
        }
        Command::Collect { dir } => {
            let sd = SweepDir::new(&dir);
            let c = mammo_sweep::collect::collect(&sd)?;
            mammo_sweep::collect::write(&sd, &c)?;
            let finished = c.entries.iter().filter(|e| e.state == State::Finished).count();
            let scored = c.entries.iter().filter(|e| e.objective.is_some()).count();
            println!(
                "{finished} of {} trials finished, {scored} with the objective; wrote {}",
                c.entries.len(),
                dir.join("leaderboard.csv").display()
            );
            match &c.best {
                Some(b) => println!(
                    "best: {} mean {:.4} ± {:.4} over {} seed(s); wrote {}",
                    mammo_sweep::collect::values_label(&b.values),
                    b.mean,
                    b.sd,
                    b.n,
                    dir.join("best.toml").display()
                ),
                // Finished trials without the objective: their notes in leaderboard.csv say why (a
                // test split without both classes has no AUC, say).
                None if finished > 0 => println!("no finished trial has the objective: see leaderboard.csv"),
                None => println!("no trial finished yet"),
            }
            Ok(())
        }
    }
}
