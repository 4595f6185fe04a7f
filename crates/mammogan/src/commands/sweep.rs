//! `mammogan sweep run | trial | status | collect`: configurations x seeds on this machine or a
//! Slurm cluster. The logic is in `mammo-sweep`; this wires arguments to it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
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
        /// The sweep directory (created; re-running into it resumes).
        #[arg(long)]
        out: PathBuf,
        /// Where trials run: local processes, or a Slurm job array.
        #[arg(long, value_enum, default_value = "local")]
        on: On,
        /// Threads per trial (0: local divides the cores between --max-parallel trials; Slurm uses
        /// --cpus-per-task).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Trials at once (local default: cores / 2, at least 1; Slurm: the array's % limit).
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Slurm partition.
        #[arg(long)]
        partition: Option<String>,
        /// Slurm time limit per trial, e.g. 01:00:00.
        #[arg(long)]
        time: Option<String>,
        /// Slurm CPUs per trial.
        #[arg(long, default_value_t = 2)]
        cpus_per_task: usize,
        /// Slurm generic resources per trial, e.g. gpu:1.
        #[arg(long)]
        gres: Option<String>,
        /// Run each Slurm task in this container image (Apptainer/Singularity if the node has one,
        /// else Docker) instead of this binary.
        #[arg(long)]
        image: Option<String>,
        /// Write the Slurm script without submitting it.
        #[arg(long)]
        no_submit: bool,
    },
    /// Train and evaluate one trial of DIR (what each local process or array task runs).
    Trial {
        dir: PathBuf,
        id: String,
        #[arg(long, default_value_t = 0)]
        threads: usize,
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
        } => {
            let text = std::fs::read_to_string(&sweep).with_context(|| format!("{}: cannot read", sweep.display()))?;
            let spec = Sweep::parse(&text, &sweep)?;
            if !data.join("dataset.json").is_file() {
                bail!("{}: not a DATASET (no dataset.json)", data.display());
            }
            let data = std::fs::canonicalize(&data).with_context(|| format!("{}: cannot read", data.display()))?;
            std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
            let out = std::fs::canonicalize(&out)?;
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let (parallel, per_trial) = match on {
                On::Local => {
                    let parallel = max_parallel.unwrap_or((cores / 2).max(1)).max(1);
                    (parallel, if threads > 0 { threads } else { (cores / parallel).max(1) })
                }
                On::Slurm => (max_parallel.unwrap_or(0), cpus_per_task.max(1)),
            };
            let sd = SweepDir::new(&out);
            let settings = mammo_sweep::trials::Settings { data: data.clone(), threads: per_trial };
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
                    let script = mammo_sweep::slurm::write(&out, &pending, &exe, &data, &options)?;
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
            }
            Ok(())
        }
        Command::Trial { dir, id, threads } => {
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
            if let Some(q) = mammo_sweep::slurm::queue(&dir) {
                println!("squeue:\n{}", if q.trim().is_empty() { "(no task queued or running)" } else { q.trim_end() });
            }
            Ok(())
        }
        Command::Collect { dir } => {
            let sd = SweepDir::new(&dir);
            let c = mammo_sweep::collect::collect(&sd)?;
            mammo_sweep::collect::write(&sd, &c)?;
            let done = c.entries.iter().filter(|e| e.objective.is_some()).count();
            println!("{done} of {} trials finished; wrote {}", c.entries.len(), dir.join("leaderboard.csv").display());
            match &c.best {
                Some(b) => println!(
                    "best: {} mean {:.4} ± {:.4} over {} seed(s); wrote {}",
                    mammo_sweep::collect::values_label(&b.values),
                    b.mean,
                    b.sd,
                    b.n,
                    dir.join("best.toml").display()
                ),
                None => println!("no trial finished yet"),
            }
            Ok(())
        }
    }
}
