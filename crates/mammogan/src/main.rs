//! `mammogan`: argument parsing and wiring only. Every command is a thin layer over the library crates.

mod commands;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Train GANs on mammograms to highlight the features of malignancy — reproducibly.
#[derive(Parser)]
#[command(name = "mammogan", version, long_version = mammo_run::build_info::LONG_VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    /// No progress bars and only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a phantom, prepare it, and show what the pipeline produces (the embedded default).
    Quickstart(commands::quickstart::Args),
    /// Write synthetic mammograms with exact lesion and malignancy-feature ground truth.
    Phantom(commands::phantom::Args),
    /// Turn a dataset layout into a prepared, patient-split DATASET of patches and masks.
    Prepare(commands::prepare::Args),
    /// Work on DATASET directories: `merge` the shards of `prepare --shard I/N`.
    Dataset(commands::dataset::Args),
    /// Train the benign/malignant classifier and the malignancy-highlighting attribution GAN.
    Train(commands::train::Args),
    /// Measure a run against labels and ground-truth masks: metrics.json and report.html.
    Evaluate(commands::evaluate::Args),
    /// Score a whole mammogram and highlight malignancy features: overlay, heatmap, regions.
    Explain(commands::explain::Args),
    /// Configurations x seeds, locally or as a Slurm job array: `run`, `status`, `collect`.
    Sweep(commands::sweep::Args),
    /// Batch scoring: `merge` the scores of `explain --shard I/N` into one scores.csv.
    Scores(commands::scores::Args),
    /// HTTP inference: GET /ping, POST /invocations (SageMaker's contract; 127.0.0.1:8080 by default).
    Serve(commands::serve::Args),
    /// The browser lab over a directory of runs: status, live curves, comparisons, explain (127.0.0.1:8090).
    Lab(commands::lab::Args),
    /// Convert a mammogram (DICOM, PGM, PNG) into a 16-bit PNG of its values (or 8-bit with --voi).
    Convert(commands::convert::Args),
    /// Show an image's size, bits, photometric interpretation, transfer syntax, spacing, laterality, view.
    Inspect(commands::inspect::Args),
    /// The environment doctor: are threads, GPU, drivers and SIMD right here? (--bench: steps/s)
    Env(commands::env::Args),
    /// Where a run stands, from its manifest: running (or killed), finished, failed.
    Status(commands::status::Args),
    /// Send a run to an MLflow tracking server (`track push RUN`), e.g. after the server was down.
    Track(commands::track::Args),
    /// Re-run a finished run from its manifest and check it gives the same weights.
    Reproduce(commands::reproduce::Args),
    /// What differs between two runs: code, build, config, data, seeds, environment, speed, metrics.
    Diff(commands::diff::Args),
}

fn main() -> ExitCode {
    // Before parsing, so that `--help | head -1` ends quietly too.
    closed_stdout_ends_quietly(true);
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Lab(_)) {
        closed_stdout_ends_quietly(false);
    }
    init_logging(cli.quiet, cli.verbose);
    let progress = progress::Progress::new(cli.quiet);
    let result = match cli.command {
        Command::Quickstart(a) => commands::quickstart::run(a, &progress),
        Command::Phantom(a) => commands::phantom::run(a, &progress),
        Command::Prepare(a) => commands::prepare::run(a, &progress),
        Command::Dataset(a) => commands::dataset::run(a),
        Command::Train(a) => commands::train::run(a, &progress),
        Command::Evaluate(a) => commands::evaluate::run(a),
        Command::Explain(a) => commands::explain::run(a),
        Command::Scores(a) => commands::scores::run(a),
        Command::Sweep(a) => commands::sweep::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Lab(a) => commands::lab::run(a),
        Command::Convert(a) => commands::convert::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Env(a) => commands::env::run(a),
        Command::Status(a) => commands::status::run(a),
        Command::Track(a) => commands::track::run(a),
        Command::Reproduce(a) => commands::reproduce::run(a, &progress),
        Command::Diff(a) => commands::diff::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress.clear();
            eprintln!("error: {}", mammo_app::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `mammogan status RUN | head -1`: when the reader goes away, end quietly, as `cat` does, instead of
/// panicking with "failed printing to stdout" (Rust ignores SIGPIPE, so every `println!` after that
/// fails, and fails by panicking). SIGPIPE's default action is exactly that quiet end (`quiet`). Not
/// for `serve` (`!quiet`, Rust's own setting back): there a client closing its connection raises
/// SIGPIPE too, and must not end the server; its writes see EPIPE as an error instead.
fn closed_stdout_ends_quietly(quiet: bool) {
    #[cfg(unix)]
    // SAFETY: sets a signal's disposition to a constant (no handler runs Rust code), on the main thread
    // before any other thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, if quiet { libc::SIG_DFL } else { libc::SIG_IGN });
    }
    #[cfg(not(unix))]
    let _ = quiet;
}

fn init_logging(quiet: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // OpenJPEG's INFO lines (one per header and tile) stay out of logs unless RUST_LOG asks for them.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("jpeg2k")) {
        filter = filter.add_directive(mammo_io::dicom::QUIET_CODEC_LOGS.parse().expect("a valid directive"));
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter::default)
        .with_target(false)
        .without_time()
        // Colour codes only for a person at a terminal: in a log file or a scheduler's captured stderr
        // they are noise that breaks grep (https://no-color.org for turning them off everywhere).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
}
