//! What an s3s-fs bucket directory holds: s3s-fs keeps one file per
//! object beside hidden metadata files (names starting with a dot).

use std::path::Path;

/// (objects, bytes) under `dir`; nothing when it is missing.
pub fn tally(dir: &Path) -> (usize, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let mut t = (0, 0);
    for e in rd {
        let e = e.unwrap();
        let (n, b) = if e.file_type().unwrap().is_dir() {
            tally(&e.path())
        } else if e.file_name().to_string_lossy().starts_with('.') {
            (0, 0)
        } else {
            (1, e.metadata().unwrap().len())
        };
        t = (t.0 + n, t.1 + b);
    }
    t
}

/// Bytes of the objects under `dir`.
pub fn bytes(dir: &Path) -> u64 {
    tally(dir).1
}

/// Number of objects under `dir`.
pub fn count(dir: &Path) -> usize {
    tally(dir).0
}
