//! `mammogan env`: the environment doctor and, with `--bench`, the training benchmark.

use anyhow::{Result, bail};
use mammo_run::doctor::{self, Verdict};
use mammo_run::{BuildInfo, Environment};

#[derive(clap::Args)]
pub struct Args {
    /// Print everything as JSON (checks, environment, build, bench).
    #[arg(long)]
    json: bool,
    /// Also time training steps of the default classifier here (about 10 s).
    #[arg(long)]
    bench: bool,
    /// Seconds the benchmark runs.
    #[arg(long, default_value_t = 10.0, hide = true)]
    bench_seconds: f64,
    /// The thread count to check (0 = what a run with `--threads 0` would use).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The device the benchmark uses: auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(args: Args) -> Result<()> {
    let env = Environment::detect(None);
    let build = BuildInfo::current();
    let threads = if args.threads > 0 { args.threads } else { doctor::default_threads(&env) };
    let checks = doctor::checks(&env, &build, threads);
    let verdict = doctor::overall(&checks);
    let bench =
        if args.bench { Some(mammo_nn::bench::bench(&args.device, args.threads, args.bench_seconds)?) } else { None };
    if args.json {
        let v = serde_json::json!({
            "verdict": verdict,
            "threads": threads,
            "checks": checks,
            "build": build,
            "environment": env,
            "bench": bench,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "mammogan {} (commit {}{}, {} build, backends {})",
            build.version,
            &build.git_commit[..12.min(build.git_commit.len())],
            if build.git_dirty == "true" { " dirty" } else { "" },
            build.profile,
            build.backends.join(", ")
        );
        println!(
            "{} {} on {}, {}",
            env.os_release.as_deref().unwrap_or(&env.os),
            env.kernel.as_deref().unwrap_or(""),
            env.arch,
            env.cpu_model.as_deref().unwrap_or("unknown CPU")
        );
        for c in &checks {
            println!("[{:^4}] {}\n       {}", c.verdict.to_string(), c.question, c.finding);
            if let Some(fix) = &c.fix {
                println!("       fix: {fix}");
            }
        }
        if let Some(b) = &bench {
            println!(
                "bench: {:.2} training steps/s of the default classifier ({} steps in {:.1} s; {}, {} threads, \
                 batch {}, {} px)",
                b.steps_per_s, b.steps, b.seconds, b.backend, b.threads, b.batch_size, b.patch_size
            );
        }
        println!("verdict: {verdict}");
    }
    if verdict == Verdict::Fail {
        let n = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
        bail!("environment: {n} check(s) failed (see the fixes above)");
    }
    Ok(())
}
