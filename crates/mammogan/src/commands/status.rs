//! `mammogan status`: where a run stands, from its manifest.

use std::path::PathBuf;

use anyhow::Result;
use mammo_run::{Manifest, Status};

#[derive(clap::Args)]
pub struct Args {
    /// A RUN directory.
    run: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let m = Manifest::read(&args.run)?;
    let o = &m.outcome;
    // A SIGKILLed run cannot record its end: its manifest still says "running". Whether its process
    // is alive tells the two apart (only on the host that wrote it).
    let same_host = m.environment.host_hash == mammo_run::environment::host_hash();
    let alive = if o.status == Status::Running { m.run.process_alive(same_host) } else { None };
    let checkpoint = o.last_checkpoint.as_ref().map(|c| format!("{} step {}", c.model, c.step));
    if args.json {
        let v = serde_json::json!({
            "status": o.status,
            "process_alive": alive,
            "last_checkpoint": o.last_checkpoint,
            "error": o.error,
            "steps": o.steps,
            "weights": o.weights,
            "metrics": o.metrics,
            "wall_time_s": o.wall_time_s,
            "steps_per_s": o.steps_per_s,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let cp = checkpoint.as_deref().unwrap_or("none yet");
    let line = match (o.status, alive) {
        (Status::Running, Some(true)) => format!("running (process {}), last checkpoint: {cp}", m.run.pid),
        (Status::Running, Some(false)) => format!(
            "running according to its manifest, but its process ({}) is gone: killed without a chance to record \
             it (SIGKILL, out of memory, power); last checkpoint: {cp}; continue with `mammogan train --resume`",
            m.run.pid
        ),
        (Status::Running, None) => {
            format!("running according to its manifest (written on another host), last checkpoint: {cp}")
        }
        (Status::Finished, _) => "finished".to_string(),
        (Status::Failed, _) => format!("failed: {}", o.error.as_deref().unwrap_or("unknown error")),
        (Status::Killed, _) => format!("killed by a signal; last checkpoint: {cp}; continue with --resume"),
    };
    println!("{}: {line}", args.run.display());
    if m.is_failed_start() {
        // Nothing ran: no steps, timings or device to show.
        return Ok(());
    }
    for (model, steps) in &o.steps {
        let w = o.weights.get(model).map(|h| format!(", weights blake3 {h}")).unwrap_or_default();
        println!("  {model}: {steps} steps{w}");
    }
    let speed = o.steps_per_s.map(|s| format!(", {s:.2} steps/s")).unwrap_or_default();
    println!("  wall time {:.1} s{speed}, {} on {} threads", o.wall_time_s, m.run.backend, m.run.threads);
    Ok(())
}
