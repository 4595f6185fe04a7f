//! Tracking while training: a background thread sends, the training loop only queues.
//!
//! The loop never waits on the network: [`Live::metrics`] puts the values on a bounded queue and
//! returns; when the queue is full (a slow server) or a request fails (a server down), the thread warns
//! once and stops sending live. Nothing is lost: `metrics.jsonl` is written first and stays as it is,
//! and [`Live::finish`] (then `evaluate`, or `mammogan track push RUN` later) sends from the files what
//! the server has not confirmed, as `RUN/mlflow.json` records.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use super::api::{Metric, RunStatus};
use super::client::Client;
use super::state::State;
use super::sync::{self, Payload, Sent, metric_key, now_ms};
use super::target::Target;

/// Messages queued before the loop stops queueing (one per logged step: minutes of training at the
/// fastest logging rate; a few hundred kB at most).
pub const QUEUE_CAPACITY: usize = 4096;

enum Msg {
    Metrics(Vec<Metric>),
    Finish(Box<Payload>),
}

/// How the end of a tracked run went.
#[derive(Debug)]
pub enum Finished {
    /// Everything the RUN directory holds reached the server.
    Complete(Sent),
    /// Some of it did not (the state file says what; `mammogan track push RUN` sends it).
    Incomplete(Vec<String>),
    /// The thread did not finish within the wait; what it confirmed is in the state file.
    TimedOut,
}

/// A run being tracked.
pub struct Live {
    tx: SyncSender<Msg>,
    stopped: Arc<AtomicBool>,
    done: Receiver<Finished>,
    shown: String,
}

fn warn_once(warned: &AtomicBool, shown: &str, what: &dyn std::fmt::Display) {
    if !warned.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "MLflow: {what}; training goes on and keeps its own files, tracking to {shown} resumes at the end \
             (or with `mammogan track push RUN`)"
        );
    }
}

impl Live {
    /// Starts tracking `run_dir` to `target`: the thread makes the MLflow run (or continues the one
    /// `RUN/mlflow.json` names, for a resumed run) and sends params and tags, while training starts.
    pub fn start(run_dir: &Path, target: Target, start: Payload) -> Live {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let stopped = Arc::new(AtomicBool::new(false));
        let shown = target.shown().to_string();
        let thread_stopped = Arc::clone(&stopped);
        let run_dir = run_dir.to_path_buf();
        let spawned = std::thread::Builder::new().name("mlflow".into()).spawn(move || {
            let result = run(&run_dir, target, start, &rx, &thread_stopped);
            let _ = done_tx.send(result);
        });
        if let Err(e) = spawned {
            tracing::warn!("MLflow: could not start the sender thread ({e}); `mammogan track push RUN` sends the run");
            stopped.store(true, Ordering::Relaxed);
        }
        Live { tx, stopped, done, shown }
    }

    /// Queues one logged step's values; never blocks.
    pub fn metrics(&self, step: u64, model: &str, values: &[(&str, f64)]) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let ts = now_ms();
        let batch = values
            .iter()
            .map(|(k, v)| Metric { key: metric_key(model, k), value: *v, timestamp_ms: ts, step })
            .collect();
        match self.tx.try_send(Msg::Metrics(batch)) {
            Ok(()) => {}
            // A later step sent before this one would hide it from the next sync (which goes by the
            // last step confirmed), so the loop stops queueing altogether; the end sends the rest.
            Err(TrySendError::Full(_)) => {
                self.stopped.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "MLflow: {} is not keeping up; training goes on, the rest is sent at the end (or with \
                     `mammogan track push RUN`)",
                    self.shown
                );
            }
            Err(TrySendError::Disconnected(_)) => self.stopped.store(true, Ordering::Relaxed),
        }
    }

    /// Sends what is left (metrics the live queue did not carry, artifacts, the final status), waiting
    /// at most `wait`; the run's own files are complete whatever this returns.
    pub fn finish(self, payload: Payload, wait: Duration) -> Finished {
        // A blocking send: the queue drains as the thread sends, within `wait` below either way.
        let tx = self.tx;
        let sender = std::thread::spawn(move || {
            let _ = tx.send(Msg::Finish(Box::new(payload)));
        });
        let result = match self.done.recv_timeout(wait) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => Finished::TimedOut,
        };
        if matches!(result, Finished::Complete(_)) {
            let _ = sender.join();
        }
        result
    }
}

fn run(run_dir: &Path, target: Target, start: Payload, rx: &Receiver<Msg>, stopped: &AtomicBool) -> Finished {
    let shown = target.shown().to_string();
    let warned = AtomicBool::new(false);
    let client = Client::new(target);
    let mut state = match State::read(run_dir) {
        Ok(Some(s)) if s.server != shown => {
            warn_once(
                &warned,
                &shown,
                &format!("{} tracks this run on {}, not {shown}", State::path(run_dir).display(), s.server),
            );
            stopped.store(true, Ordering::Relaxed);
            return Finished::Incomplete(vec![format!("tracked on {}", s.server)]);
        }
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            warn_once(&warned, &shown, &e);
            stopped.store(true, Ordering::Relaxed);
            return Finished::Incomplete(vec![e.to_string()]);
        }
    };
    let mut healthy = (|| -> Result<(), sync::SyncError> {
        sync::ensure_run(run_dir, &client, &start, &mut state)?;
        sync::send_params(run_dir, &client, &start, &mut state)?;
        // A resumed run is running again.
        if state.status_sent.as_deref().is_some_and(|s| s != RunStatus::Running.as_str()) {
            client.update_run(&state.run_id, RunStatus::Running, None)?;
            state.status_sent = Some(RunStatus::Running.as_str().to_string());
            state.write(run_dir)?;
        }
        Ok(())
    })()
    .map_err(|e| warn_once(&warned, &shown, &e))
    .is_ok();
    if !healthy {
        stopped.store(true, Ordering::Relaxed);
    }
    let mut finish = None;
    while finish.is_none() {
        let mut metrics = match rx.recv() {
            Ok(Msg::Metrics(m)) => m,
            Ok(Msg::Finish(p)) => {
                finish = Some(p);
                break;
            }
            // Dropped without finish (the process is ending): the state says how far it got.
            Err(_) => return Finished::Incomplete(vec!["the run ended without finishing its tracking".into()]),
        };
        // Whatever else is queued goes in the same request.
        while metrics.len() < super::api::MAX_METRICS_PER_BATCH {
            match rx.try_recv() {
                Ok(Msg::Metrics(m)) => metrics.extend(m),
                Ok(Msg::Finish(p)) => {
                    finish = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        if healthy && let Err(e) = sync::send_metrics(run_dir, &client, metrics, &mut state) {
            warn_once(&warned, &shown, &e);
            healthy = false;
            stopped.store(true, Ordering::Relaxed);
        }
    }
    let payload = finish.expect("the loop ends on Finish");
    // One more try at the end, even after a failure: a server back up gets the whole run now.
    match sync::sync(run_dir, &client, &payload, &mut state) {
        Ok(sent) if state.complete => Finished::Complete(sent),
        Ok(_) => Finished::Incomplete(state.not_sent.clone()),
        Err(e) => {
            warn_once(&warned, &shown, &e);
            Finished::Incomplete(state.not_sent.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn payload() -> Payload {
        Payload {
            params: vec![("train.steps".into(), "20".into())],
            tags: vec![],
            start_ms: 0,
            eval: vec![],
            artifacts: vec![],
            status: RunStatus::Finished,
            end_ms: Some(1),
        }
    }

    fn target(port: u16) -> Target {
        Target::parse(&format!("http://127.0.0.1:{port}"), "e", |_| None).unwrap()
    }

    #[test]
    fn a_server_that_never_answers_blocks_neither_logging_nor_the_end() {
        // Accepts connections and never answers: the slowest server there is.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                held.push(s);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let live = Live::start(dir.path(), target(port), payload());
        let t = Instant::now();
        // More steps than the queue holds: the loop must never wait.
        for step in 1..=(QUEUE_CAPACITY as u64 + 100) {
            live.metrics(step, "classifier", &[("loss", 0.5)]);
        }
        assert!(t.elapsed() < Duration::from_secs(2), "logging waited {:?}", t.elapsed());
        assert!(live.stopped.load(Ordering::Relaxed), "a full queue stops live sending");
        let t = Instant::now();
        assert!(matches!(live.finish(payload(), Duration::from_millis(500)), Finished::TimedOut));
        assert!(t.elapsed() < Duration::from_secs(2), "the end waited {:?}", t.elapsed());
    }

    #[test]
    fn a_server_that_is_down_leaves_a_record_of_what_was_not_sent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(crate::RunDir::METRICS), "{\"step\":1,\"model\":\"classifier\",\"loss\":0.5}\n")
            .unwrap();
        let live = Live::start(dir.path(), target(port), payload());
        live.metrics(1, "classifier", &[("loss", 0.5)]);
        match live.finish(payload(), Duration::from_secs(30)) {
            Finished::Incomplete(left) => {
                assert!(left.iter().any(|l| l.contains("never created")), "{left:?}");
                assert!(left.iter().any(|l| l.contains("1 metric values")), "{left:?}");
            }
            other => panic!("{other:?}"),
        }
        let state = State::read(dir.path()).unwrap().expect("the state records what was not sent");
        assert!(!state.complete && state.run_id.is_empty() && !state.not_sent.is_empty());
    }
}
