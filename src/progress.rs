//! How long operations report progress. The library knows nothing of the
//! terminal: the CLI implements this trait with indicatif, tests use
//! [`NoProgress`].

/// What a phase counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// Receives progress of one long operation. Calls may come from any thread.
pub trait Progress: Send + Sync {
    /// A new phase begins; `total` when known.
    fn start(&self, phase: &str, total: Option<u64>, unit: Unit);
    /// `n` more bytes (or items) done.
    fn inc(&self, n: u64);
    /// The phase is over.
    fn finish(&self);
    /// A warning the user should see (a skipped file, a damaged pack).
    fn warn(&self, msg: &str);
}

/// Discards progress; warnings go to stderr.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>, _: Unit) {}
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
    fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }
}
