//! The `psql` sessions of a load: pre-data, the index builds side by side,
//! and what runs in order after them (psql runs the dump's own commands,
//! `\restrict` and the rest, as a person's `psql -f` would).

use super::super::target::Psql;
use super::super::Result;
use crossbeam_channel::Receiver;

/// A psql session of the load, the dump's `preamble` (its session
/// settings) sent first; a session that cannot take it fails at `end`.
pub(super) fn session(conninfo: &str, preamble: &[u8]) -> Result<Psql> {
    let mut s = Psql::spawn(conninfo)?;
    s.send(preamble);
    Ok(s)
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
                    let mut psql = session(conninfo, preamble)?;
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
