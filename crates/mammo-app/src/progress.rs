//! How a workflow shows that it is alive: bars the caller draws (the binary with indicatif, a test not
//! at all) and the few lines a contract wants on stdout while bars may be drawn.

/// Hands out progress bars and prints output lines above them.
pub trait Progress: Sync {
    /// A bar over `total` items (0: not known yet), named `what`.
    fn bar(&self, total: usize, what: &str) -> Box<dyn Bar>;
    /// One line of the command's output on stdout, printed above any bar.
    fn line(&self, text: &str);
}

/// One bar. Shared with worker threads (prepare reports from its pool).
pub trait Bar: Send + Sync {
    fn set_length(&self, total: u64);
    fn set_position(&self, done: u64);
    fn set_message(&self, message: String);
    /// The work is done: the bar goes away.
    fn finish(&self);
}

/// No bars; lines go to stdout. For callers without a terminal to draw on, and tests.
#[derive(Default, Clone, Copy)]
pub struct Silent;

/// A bar that shows nothing: [`Silent`]'s, and for any `Progress` that only records or prints lines.
pub struct NoBar;

impl Bar for NoBar {
    fn set_length(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: String) {}
    fn finish(&self) {}
}

impl Progress for Silent {
    fn bar(&self, _: usize, _: &str) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
    fn line(&self, text: &str) {
        println!("{text}");
    }
}
