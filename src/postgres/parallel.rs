//! A plain dump loaded on several `psql` sessions at once, into a database
//! nobody uses yet (the caller creates it beside the target and renames it
//! into place only when everything here succeeded).
//!
//! pg_dump writes a comment header before every entry (`-- Name: …; Type:
//! TABLE DATA; …`), entries in three sections: pre-data (schema), data
//! (a `COPY … FROM stdin;` block per table, sequence values, large
//! objects), post-data (indexes, constraints, triggers, grants). Here:
//! - the lines before the first entry (the `SET …` preamble) start every
//!   session;
//! - pre-data runs on one session, which must finish first;
//! - each COPY block is cut at line boundaries into batches of about
//!   [`BATCH`] bytes, each a COPY of its own, spread over `jobs` sessions
//!   (the rows of a block are independent; one big table, the usual case,
//!   loads on every session at once);
//! - the other data entries (sequence values, large objects, a table's
//!   rows written as INSERTs) then run in their order on one session;
//! - the post-data indexes and unique or primary-key constraints run side
//!   by side on `jobs` sessions, and what is left (foreign keys, triggers,
//!   grants…) in its order on one session: each depends only on what came
//!   before it.
//!
//! Lines inside COPY data are never read as headers.

use super::load::Lines;
use super::{Error, Result};
use crate::progress::Progress;
use crate::repo::{self, Repository};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io::Write;
use std::process::{Child, ChildStdin};

/// Rows of one COPY block sent to a session at a time.
const BATCH: usize = 4 << 20;

/// Session settings of the index builds: their sorts in memory rather than
/// in temp files (the server's default is 64 MB), as `pg_restore` users are
/// told to set.
const INDEX_SETTINGS: &[u8] = b"SET maintenance_work_mem = '256MB';\n";

/// Post-data entry types that may run side by side (each takes a lock on
/// one table; the entries that need an index, a foreign key above all,
/// run after them).
const SIDE_BY_SIDE: [&str; 2] = ["INDEX", "CONSTRAINT"];

/// Loads the dump `item` into the database `conninfo` names, on `jobs`
/// sessions. A failure of any session fails the load; what was loaded
/// stays in that database for the caller to drop.
pub fn load(
    repo: &Repository,
    item: &crate::snapshot::Item,
    conninfo: &str,
    jobs: usize,
    hint: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let mut split = Splitter::new(conninfo, jobs.max(1), hint);
    let streamed = repo.restore_item(item, &mut split, progress);
    let done = split.finish();
    // A session that failed closed its input: its error is the cause.
    done?;
    streamed?;
    Ok(())
}

/// Where the stream is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first entry: the session preamble.
    Preamble,
    Pre,
    Data,
    Post,
}

/// One `psql` session of the load.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: std::thread::JoinHandle<String>,
}

impl Session {
    fn start(conninfo: &str, preamble: &[u8]) -> Result<Session> {
        let (child, stdin, stderr) = super::target::spawn_psql(conninfo)?;
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
    fn send(&mut self, bytes: &[u8]) -> bool {
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
    fn end(mut self, hint: &str) -> Result<()> {
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

/// Runs `units` on `jobs` sessions, each unit whole on one of them.
fn side_by_side(
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

/// The entry type a header line names (`-- Name: x; Type: INDEX; …`).
fn entry_type(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    if !(line.starts_with("-- Name: ") || line.starts_with("-- Data for Name: ")) {
        return None;
    }
    let rest = &line[line.find("; Type: ")? + 8..];
    Some(rest[..rest.find(';')?].to_string())
}

/// The stream, cut into what runs where as it arrives.
struct Splitter<'a> {
    conninfo: &'a str,
    jobs: usize,
    hint: &'a str,
    lines: Lines,
    phase: Phase,
    preamble: Vec<u8>,
    /// Pre-data, then (after the COPY blocks) the other data entries.
    serial: Vec<u8>,
    /// Post-data entries: (type, text).
    post: Vec<(String, Vec<u8>)>,
    /// The COPY statement whose rows are being read, and the batch so far
    /// (that statement, then rows).
    copy: Option<(Vec<u8>, Vec<u8>)>,
    /// The current data entry is a table's.
    table_data: bool,
    /// The sessions loading COPY batches, once pre-data is in.
    loader: Option<Loader>,
    failed: Option<Error>,
}

/// Sessions taking COPY batches, on a thread of their own.
struct Loader {
    batches: Sender<Vec<u8>>,
    done: std::thread::JoinHandle<Result<()>>,
}

impl<'a> Splitter<'a> {
    fn new(conninfo: &'a str, jobs: usize, hint: &'a str) -> Self {
        Splitter {
            conninfo,
            jobs,
            hint,
            lines: Lines::default(),
            phase: Phase::Preamble,
            preamble: Vec::new(),
            serial: Vec::new(),
            post: Vec::new(),
            copy: None,
            table_data: false,
            loader: None,
            failed: None,
        }
    }

    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some((stmt, batch)) = &mut self.copy {
            if body == b"\\." {
                let mut batch = std::mem::take(batch);
                batch.extend_from_slice(b"\\.\n");
                self.copy = None;
                return self.send(batch);
            }
            batch.extend_from_slice(line);
            if batch.len() >= BATCH {
                // The next batch starts with the same COPY statement.
                let next = Vec::with_capacity(BATCH + stmt.len() + line.len());
                let mut full = std::mem::replace(batch, next);
                batch.extend_from_slice(stmt);
                full.extend_from_slice(b"\\.\n");
                return self.send(full);
            }
            return Ok(());
        }
        if let Some(t) = entry_type(body) {
            let data = matches!(
                t.as_str(),
                "TABLE DATA" | "SEQUENCE SET" | "BLOBS" | "BLOB DATA"
            );
            match (self.phase, data) {
                (Phase::Preamble | Phase::Pre, true) => self.start_data()?,
                (Phase::Preamble, false) => self.phase = Phase::Pre,
                (Phase::Data, false) => self.phase = Phase::Post,
                _ => {}
            }
            self.table_data = t == "TABLE DATA";
            if self.phase == Phase::Post {
                self.post.push((t, Vec::new()));
            }
        }
        match self.phase {
            Phase::Preamble => self.preamble.extend_from_slice(line),
            Phase::Pre => self.serial.extend_from_slice(line),
            Phase::Data
                if self.table_data
                    && body.starts_with(b"COPY ")
                    && body.ends_with(b" FROM stdin;") =>
            {
                let mut batch = Vec::with_capacity(BATCH + line.len());
                batch.extend_from_slice(line);
                self.copy = Some((line.to_vec(), batch));
            }
            // Sequence values, large objects, and a table's data written
            // as statements (pg_dump --inserts): in order, on one session.
            Phase::Data => self.serial.extend_from_slice(line),
            Phase::Post => self
                .post
                .last_mut()
                .expect("an entry")
                .1
                .extend_from_slice(line),
        }
        Ok(())
    }

    /// Runs pre-data (it must be in before any row), then starts the
    /// sessions that take COPY batches.
    fn start_data(&mut self) -> std::io::Result<()> {
        self.phase = Phase::Data;
        let pre = std::mem::take(&mut self.serial);
        let session = Session::start(self.conninfo, &self.preamble);
        let r = session.and_then(|mut s| {
            s.send(&pre);
            s.end(self.hint)
        });
        if let Err(e) = r {
            return self.fail(e);
        }
        let (tx, rx) = bounded::<Vec<u8>>(self.jobs * 2);
        let (conninfo, preamble, jobs, hint) = (
            self.conninfo.to_string(),
            self.preamble.clone(),
            self.jobs,
            self.hint.to_string(),
        );
        let done = std::thread::spawn(move || side_by_side(&conninfo, &preamble, jobs, &hint, rx));
        self.loader = Some(Loader { batches: tx, done });
        Ok(())
    }

    /// Sends one COPY batch (its statement, rows and `\.` line) to a
    /// session.
    fn send(&mut self, batch: Vec<u8>) -> std::io::Result<()> {
        let sent = self
            .loader
            .as_ref()
            .is_some_and(|l| l.batches.send(batch).is_ok());
        if !sent {
            return Err(std::io::Error::other("the load sessions stopped"));
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> std::io::Result<()> {
        self.failed = Some(e);
        Err(std::io::Error::other("a load session failed"))
    }

    /// Ends the stream: waits for the COPY sessions, then runs the other
    /// data entries, the side-by-side post-data, and the rest.
    fn finish(mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let rest = self.lines.rest();
        if !rest.is_empty() {
            self.line(&rest)
                .map_err(|e| Error::Repo(repo::Error::Output(e)))?;
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if let Some(l) = self.loader.take() {
            drop(l.batches);
            l.done.join().expect("load sessions panicked")?;
        }
        let serial = |bytes: &[u8]| -> Result<()> {
            if bytes.is_empty() {
                return Ok(());
            }
            let mut s = Session::start(self.conninfo, &self.preamble)?;
            s.send(bytes);
            s.end(self.hint)
        };
        // No data entries at all (an empty database): one session, in order.
        serial(&self.serial)?;
        let (parallel, after): (Vec<_>, Vec<_>) = std::mem::take(&mut self.post)
            .into_iter()
            .partition(|(t, _)| SIDE_BY_SIDE.contains(&t.as_str()));
        if !parallel.is_empty() {
            let (tx, rx) = bounded::<Vec<u8>>(parallel.len());
            for (_, text) in parallel {
                tx.send(text).expect("room for every entry");
            }
            drop(tx);
            let mut preamble = self.preamble.clone();
            preamble.extend_from_slice(INDEX_SETTINGS);
            side_by_side(self.conninfo, &preamble, self.jobs, self.hint, rx)?;
        }
        let after: Vec<u8> = after.into_iter().flat_map(|(_, t)| t).collect();
        serial(&after)
    }
}

impl Write for Splitter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = std::mem::take(&mut self.lines);
        let r = lines.feed(buf, |l| self.line(l));
        self.lines = lines;
        r.map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
