//! The `psql` sessions of a load: pre-data, the index builds side by side,
//! and what runs in order after them (psql runs the dump's own commands,
//! `\restrict` and the rest, as a person's `psql -f` would).

use super::super::{Error, Result};
use crate::repo;
use crossbeam_channel::Receiver;
use std::io::Write;
use std::process::{Child, ChildStdin};

/// One `psql` session of the load.
pub(super) struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: std::thread::JoinHandle<String>,
}

impl Session {
    pub(super) fn start(conninfo: &str, preamble: &[u8]) -> Result<Session> {
        let (child, stdin, stderr) = super::super::target::spawn_psql(conninfo)?;
        let mut s = Session {
            child,
            stdin: Some(stdin),
            stderr,
        };
        // A session that cannot take its preamble fails at `end`.
        s.send(preamble);
        Ok(s)
    }

    /// Writes to the session; false once it has stopped reading (psql
    /// stopped at an error: `end` reports it).
    pub(super) fn send(&mut self, bytes: &[u8]) -> bool {
        let ok = self
            .stdin
            .as_mut()
            .is_some_and(|w| w.write_all(bytes).is_ok());
        if !ok {
            self.stdin = None;
        }
        ok
    }

    /// Closes the input and waits: psql's failure, with its stderr.
    pub(super) fn end(mut self, hint: &str) -> Result<()> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Repo(repo::Error::Output(e)))?;
        let err = self.stderr.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(Error::Psql {
            status: status.to_string(),
            stderr: err.trim_end().to_string(),
            hint: hint.to_string(),
        })
    }
}

/// Runs `units` on `jobs` psql sessions, each unit whole on one of them.
pub(super) fn side_by_side(
    conninfo: &str,
    preamble: &[u8],
    jobs: usize,
    hint: &str,
    units: Receiver<Vec<u8>>,
) -> Result<()> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                let units = units.clone();
                s.spawn(move || -> Result<()> {
                    let mut session = Session::start(conninfo, preamble)?;
                    // A session that stopped still takes its share, so
                    // the sender never waits on it.
                    for u in units {
                        session.send(&u);
                    }
                    session.end(hint)
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
