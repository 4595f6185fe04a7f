//! What the Kubernetes and SageMaker routes share: a name per submission, the record of what was
//! submitted (for `sweep status`), and whether a client (`kubectl`, `aws`) is there and configured.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::trials::{SweepError, err, write_atomic};

/// The record of submitted job names, one a line, in `DIR/<route>/`.
pub const SUBMITTED: &str = "submitted.txt";

/// Eight hex digits naming the sweep directory, so jobs of different sweeps do not collide.
pub fn dir_tag(dir: &Path) -> String {
    blake3::hash(dir.to_string_lossy().as_bytes()).to_hex()[..8].to_string()
}

/// The job names submitted from `route_dir` so far, oldest first.
pub fn submitted(route_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(route_dir.join(SUBMITTED))
        .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

/// Adds `name` to the record.
pub fn record(route_dir: &Path, name: &str) -> Result<(), SweepError> {
    let mut names = submitted(route_dir);
    names.push(name.to_string());
    write_atomic(&route_dir.join(SUBMITTED), (names.join("\n") + "\n").as_bytes())
}

/// The number of the next submission (1 for the first). A job's name carries it: Kubernetes cannot
/// re-apply a finished Job with a new pod template, and SageMaker never reuses a tuning job's name.
pub fn next_number(route_dir: &Path) -> usize {
    submitted(route_dir).len() + 1
}

/// Whether `program args` runs and succeeds (quietly; no input). `kubectl config current-context`
/// and `aws sts get-caller-identity` are how the routes tell "configured" from "merely installed".
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `program args`; its stdout, or a one-line error naming `what` and its stderr.
pub fn run(program: &str, args: &[&str], what: &Path) -> Result<String, SweepError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(what, format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        return Err(err(
            what,
            format!(
                "{program} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
