//! The `psql` sessions of a load: pre-data, the index builds side by side,
//! and what runs in order after them (psql runs the dump's own commands,
//! `\restrict` and the rest, as a person's `psql -f` would).

use super::super::target::Psql;
use super::super::Result;
use crossbeam_channel::Receiver;

/// psql sessions started before they are needed: each starts and
/// connects (tens of milliseconds, most of it Debian's `pg_wrapper`)
/// while the rows load, so the index builds start the moment the last row
/// is in. Sessions never taken read their end of input and exit.
pub(super) struct Warm {
    conninfo: String,
    ready: Vec<Psql>,
}

impl Warm {
    pub(super) fn new(conninfo: &str) -> Warm {
        Warm {
            conninfo: conninfo.to_string(),
            ready: Vec::new(),
        }
    }

    /// Starts `n` more sessions. One that cannot start is left out: the
    /// session started on demand instead reports why.
    pub(super) fn start(&mut self, n: usize) {
        self.ready
            .extend((0..n).filter_map(|_| Psql::spawn(&self.conninfo).ok()));
    }

    /// A session of the load, the dump's `preamble` (its session
    /// settings) sent first; a session that cannot take it fails at `end`.
    pub(super) fn session(&mut self, preamble: &[u8]) -> Result<Psql> {
        let mut s = match self.ready.pop() {
            Some(s) => s,
            None => Psql::spawn(&self.conninfo)?,
        };
        s.send(preamble);
        Ok(s)
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        for s in self.ready.drain(..) {
            // Nothing was sent: it ends at once, and has nothing to report.
            let _ = s.end("");
        }
    }
}

/// Runs `units` on `sessions`, each unit whole on one of them.
pub(super) fn side_by_side(
    sessions: Vec<Psql>,
    hint: &str,
    units: Receiver<Vec<u8>>,
) -> Result<()> {
    std::thread::scope(|s| {
        let workers: Vec<_> = sessions
            .into_iter()
            .map(|mut psql| {
                let units = units.clone();
                s.spawn(move || -> Result<()> {
                    // A session that stopped still takes its share, so
                    // the sender never waits on it.
                    for u in units {
                        psql.send(&u);
                    }
                    psql.end(hint)
                })
            })
            .collect();
        drop(units);
        workers
            .into_iter()
            .map(|w| w.join().expect("load session panicked"))
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
}
