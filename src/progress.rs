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

/// A duration as people write it: `45s`, `2m30s`, `1h`, `1h5m`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_written() {
        use std::time::Duration;
        assert_eq!(super::duration(Duration::ZERO), "0s");
        assert_eq!(super::duration(Duration::from_secs(30)), "30s");
        assert_eq!(super::duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(super::duration(Duration::from_secs(3600)), "1h");
        assert_eq!(super::duration(Duration::from_secs(3900)), "1h5m");
    }
}
