//! Running trials: one trial (`sweep trial DIR ID`, what every scheduler's task runs) and the local
//! route (such processes side by side, the cores divided between them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::trials::{State, SweepDir, SweepError, err};

/// Trains and evaluates trial `id` with the binary `exe` into `DIR/trials/<id>/run`, the output
/// appended to the trial's `log.txt`. An earlier attempt's leftovers are removed first; a failure is
/// recorded in `failed` (and returned).
pub fn run_trial(sd: &SweepDir, id: &str, exe: &Path, threads: usize) -> Result<(), SweepError> {
    let settings = sd.settings()?;
    let threads = if threads > 0 { threads } else { settings.threads.max(1) };
    sd.begin(id)?;
    let d = sd.trial_dir(id);
    let run = sd.run_dir(id);
    let log_path = d.join("log.txt");
    let step = |args: &[&std::ffi::OsStr], what: &str| -> Result<(), SweepError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| err(&log_path, e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| err(&log_path, e.to_string()))?;
        let status = Command::new(exe)
            .arg("--quiet")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .status()
            .map_err(|e| err(exe, format!("cannot start: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail.lines().rev().find(|l| l.contains("error")).unwrap_or("").trim().to_string();
            let message = format!("{what} failed ({status}){}{last}", if last.is_empty() { "" } else { ": " });
            sd.fail(id, &message)?;
            Err(err(&d, message))
        }
    };
    let threads_s = threads.to_string();
    step(
        &[
            "train".as_ref(),
            "--data".as_ref(),
            settings.data.as_os_str(),
            "--out".as_ref(),
            run.as_os_str(),
            "--config".as_ref(),
            d.join("config.toml").as_os_str(),
            "--threads".as_ref(),
            threads_s.as_ref(),
        ],
        "train",
    )?;
    let mut evaluate = vec!["evaluate".as_ref(), run.as_os_str(), "--data".as_ref(), settings.data.as_os_str()];
    if let Some(images) = &settings.images {
        evaluate.extend(["--images".as_ref(), images.as_os_str()]);
    }
    step(&evaluate, "evaluate")?;
    if sd.state(id) != State::Finished {
        let message = "evaluate wrote no eval/metrics.json";
        sd.fail(id, message)?;
        return Err(err(&d, message));
    }
    Ok(())
}

/// The trial a scheduler's task K runs: line K+1 of the pending list `list`, K read from the
/// environment variable `var` (`JOB_COMPLETION_INDEX` in a Kubernetes Indexed Job). The image needs no
/// shell to pick its line, and the index is checked against the list rather than trusted.
pub fn pending_at(list: &Path, var: &str) -> Result<String, SweepError> {
    let raw = std::env::var(var).map_err(|_| err(list, format!("--index-env {var}: the variable is not set")))?;
    let k: usize =
        raw.trim().parse().map_err(|_| err(list, format!("--index-env {var}: '{raw}' is not an index (0, 1, ...)")))?;
    let text = std::fs::read_to_string(list).map_err(|e| err(list, e.to_string()))?;
    let ids: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    ids.get(k).map(|id| id.to_string()).ok_or_else(|| {
        err(
            list,
            format!(
                "--index-env {var}={k}: the list holds {} trials (indices 0-{})",
                ids.len(),
                ids.len().saturating_sub(1)
            ),
        )
    })
}

/// Runs `pending` trials locally, `parallel` at a time, each as `exe sweep trial DIR ID --threads T`.
/// Returns the ids that failed.
pub fn run_local(
    sd: &SweepDir,
    pending: &[String],
    exe: &Path,
    parallel: usize,
    threads: usize,
    report: &dyn Fn(&str, bool),
) -> Result<Vec<String>, SweepError> {
    let mut queue = pending.iter();
    let mut running: Vec<(String, Child)> = Vec::new();
    let mut failed = Vec::new();
    loop {
        while running.len() < parallel.max(1) {
            let Some(id) = queue.next() else { break };
            let child = Command::new(exe)
                .args(["--quiet", "sweep", "trial"])
                .arg(&sd.dir)
                .arg(id)
                .args(["--threads", &threads.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| err(exe, format!("cannot start: {e}")))?;
            running.push((id.clone(), child));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut still = Vec::new();
        for (id, mut child) in running {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let ok = status.success() && sd.state(&id) == State::Finished;
                    if !ok {
                        failed.push(id.clone());
                    }
                    report(&id, ok);
                }
                Ok(None) => still.push((id, child)),
                Err(e) => return Err(err(&sd.dir, format!("waiting for trial {id}: {e}"))),
            }
        }
        running = still;
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_picks_a_line_of_the_list() {
        let tmp = tempfile::tempdir().unwrap();
        let list = tmp.path().join("pending.txt");
        std::fs::write(&list, "ta\ntb\n").unwrap();
        // Variables of this test alone (tests run in parallel threads of one process).
        unsafe {
            std::env::set_var("MAMMO_SWEEP_TEST_INDEX_1", "1");
            std::env::set_var("MAMMO_SWEEP_TEST_INDEX_2", "2");
            std::env::set_var("MAMMO_SWEEP_TEST_INDEX_X", "x");
        }
        assert_eq!(pending_at(&list, "MAMMO_SWEEP_TEST_INDEX_1").unwrap(), "tb");
        let e = pending_at(&list, "MAMMO_SWEEP_TEST_INDEX_2").unwrap_err().to_string();
        assert!(e.contains("--index-env MAMMO_SWEEP_TEST_INDEX_2=2: the list holds 2 trials"), "{e}");
        let e = pending_at(&list, "MAMMO_SWEEP_TEST_INDEX_X").unwrap_err().to_string();
        assert!(e.contains("'x' is not an index"), "{e}");
        let e = pending_at(&list, "MAMMO_SWEEP_TEST_INDEX_UNSET").unwrap_err().to_string();
        assert!(e.contains("not set"), "{e}");
    }
}
