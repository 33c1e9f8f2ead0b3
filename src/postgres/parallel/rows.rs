//! COPY rows as they arrive: cut into batches of whole lines, and the
//! block's end found, in bulk (memchr), not line by line.

use std::sync::Arc;

/// Rows of one COPY block sent to a connection at a time (each connection
/// streams the batches of a table it takes into one COPY).
pub(super) const BATCH: usize = 1 << 20;

/// The COPY block whose rows are being read.
pub(super) struct CopyBlock {
    pub stmt: Arc<str>,
    pub table: Arc<str>,
    /// Rows not sent yet; `rows[line_start..]` is a line not complete yet.
    pub rows: Vec<u8>,
    line_start: usize,
}

/// What ends a COPY block's rows: a line `\.`.
const END: &[u8] = b"\\.\n";

/// What [`CopyBlock::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// The rows go on; a batch is full when there is one.
    More(Option<Vec<u8>>),
    /// The block's end marker ends at this offset of what was taken;
    /// the rows before it are in the block.
    End(usize),
}

impl CopyBlock {
    pub(super) fn new(stmt: &str, table: &str) -> Self {
        CopyBlock {
            stmt: stmt.into(),
            table: table.into(),
            rows: Vec::with_capacity(BATCH + (1 << 20)),
            line_start: 0,
        }
    }

    /// Takes rows, scanning for the end marker in bulk: a `\.` line (data
    /// never holds one at a line start: pg_dump writes a backslash as
    /// `\\`).
    pub(super) fn take(&mut self, bytes: &[u8]) -> Taken {
        // The end marker, begun in the last write.
        let tail = &self.rows[self.line_start..];
        if !tail.is_empty() && END.starts_with(tail) {
            let need = &END[tail.len()..];
            let n = need.len().min(bytes.len());
            if bytes[..n] == need[..n] {
                if n < need.len() {
                    self.rows.extend_from_slice(bytes);
                    return Taken::More(None);
                }
                self.rows.truncate(self.line_start);
                return Taken::End(n);
            }
        }
        let at_line_start = self.line_start == self.rows.len();
        let end = memchr::memmem::find_iter(bytes, END).find(|&p| {
            if p == 0 {
                at_line_start
            } else {
                bytes[p - 1] == b'\n'
            }
        });
        if let Some(p) = end {
            self.rows.extend_from_slice(&bytes[..p]);
            self.line_start = self.rows.len();
            return Taken::End(p + END.len());
        }
        let old = self.rows.len();
        self.rows.extend_from_slice(bytes);
        if let Some(i) = memchr::memrchr(b'\n', bytes) {
            self.line_start = old + i + 1;
        }
        if self.line_start < BATCH {
            return Taken::More(None);
        }
        // Whole lines go; the incomplete one starts the next batch.
        let mut next = Vec::with_capacity(BATCH + (1 << 20));
        next.extend_from_slice(&self.rows[self.line_start..]);
        let mut full = std::mem::replace(&mut self.rows, next);
        full.truncate(self.line_start);
        self.line_start = 0;
        Taken::More(Some(full))
    }

    /// At the end of the stream: true when what is left is the end
    /// marker without its newline (dropped), false when the stream was
    /// cut inside the rows.
    pub(super) fn ends_at_eof(&mut self) -> bool {
        if &self.rows[self.line_start..] != b"\\." {
            return false;
        }
        self.rows.truncate(self.line_start);
        true
    }
}
