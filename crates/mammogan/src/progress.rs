//! Progress bars (indicatif) that cooperate with log output: log lines are printed above the bars
//! instead of tearing through them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static MULTI: OnceLock<MultiProgress> = OnceLock::new();

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(MultiProgress::new)
}

/// Hands out progress bars, or hidden ones under `--quiet`.
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            multi().set_draw_target(ProgressDrawTarget::hidden());
        }
        Progress { quiet }
    }

    /// A bar over `total` items. Bars only draw on a terminal, and only for work that lasts (indicatif
    /// draws after a short delay, so sub-second steps never flash a bar).
    pub fn bar(&self, total: usize, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = multi().add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    pub fn clear(&self) {
        let _ = multi().clear();
    }
}

/// The application layer's bars are these bars.
impl mammo_app::Progress for Progress {
    fn bar(&self, total: usize, what: &str) -> Box<dyn mammo_app::Bar> {
        Box::new(Bar(Progress::bar(self, total, what)))
    }

    fn line(&self, text: &str) {
        multi().suspend(|| println!("{text}"));
    }
}

struct Bar(ProgressBar);

impl mammo_app::Bar for Bar {
    fn set_length(&self, total: u64) {
        self.0.set_length(total);
    }
    fn set_position(&self, done: u64) {
        self.0.set_position(done);
    }
    fn set_message(&self, message: String) {
        self.0.set_message(message);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A `tracing` writer that prints through the progress bars.
#[derive(Default)]
pub struct LogWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let mut buf = self.buf.lock().unwrap();
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf).trim_end().to_string();
            multi().suspend(|| eprintln!("{text}"));
            buf.clear();
        }
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}
