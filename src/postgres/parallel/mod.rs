//! A plain dump loaded on several sessions at once, into a database nobody
//! uses yet (the caller creates it beside the target and renames it into
//! place only when everything here succeeded).
//!
//! pg_dump writes a comment header before every entry (`-- Name: …; Type:
//! TABLE DATA; …`), entries in three sections: pre-data (schema), data
//! (a `COPY … FROM stdin;` block per table, sequence values, large
//! objects), post-data (indexes, constraints, triggers, grants). Here:
//! - the lines before the first entry (the `SET …` preamble) start every
//!   session;
//! - pre-data runs on one `psql` session, which must finish first;
//! - each COPY block is cut at line boundaries into batches of about
//!   [`rows::BATCH`] bytes, spread over `jobs` connections of relic's own
//!   ([`copy`]: no psql reads the rows), each streaming the batches it
//!   takes into a COPY of that table; the rows of a block are
//!   independent, so one big table, the usual case, loads on every
//!   connection at once;
//! - the other data entries (sequence values, large objects, a table's
//!   rows written as INSERTs) then run in their order on one session;
//! - the post-data indexes and unique or primary-key constraints run side
//!   by side on `jobs` sessions, those of the tables with the most rows
//!   first, and what is left (foreign keys, triggers, grants…) in its
//!   order on one session: each depends only on what came before it.
//!
//! COPY data is scanned in bulk for its end (a `\.` line): its lines are
//! never read as headers.

mod copy;
mod psql;
mod rows;

use super::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::repo::{self, Repository};
use crossbeam_channel::{bounded, Sender};
use psql::{side_by_side, Warm};
use rows::{CopyBlock, Taken};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Every session of the load: its commits do not wait for the WAL to
/// reach the disk. Nothing here is used before the database is renamed
/// into place, and that rename commits on a session of its own that does
/// wait, flushing all the WAL before it: a crash before then leaves a
/// scratch database the next restore drops, never a half-loaded target.
const LOAD_SETTINGS: &str = "SET synchronous_commit = off;\n";

/// Session settings of the index builds and foreign-key checks: their
/// sorts and hashes in memory rather than in temp files (the server's
/// default is 64 MB), as `pg_restore` users are told to set.
const INDEX_SETTINGS: &str = "SET maintenance_work_mem = '256MB';\n";

/// The settings that say where pg_dump's next entry goes.
const PLACEMENT: [&str; 2] = [
    "SET default_tablespace = ",
    "SET default_table_access_method = ",
];

/// Post-data entry types that may run side by side (each takes a lock on
/// one table; the entries that need an index, a foreign key above all,
/// run after them).
const SIDE_BY_SIDE: [&str; 2] = ["INDEX", "CONSTRAINT"];

/// Loads the dump `item` into the database `conninfo` names, on `jobs`
/// sessions. A failure of any session fails the load; what was loaded
/// stays in that database for the caller to drop.
/// `alongside` runs once every row is in, beside the last, serial steps
/// (foreign keys, triggers, grants), which leave a core free; its result
/// is the load's.
pub fn load<T: Send>(
    repo: &Repository,
    item: &crate::snapshot::Item,
    conninfo: &str,
    jobs: usize,
    hint: &str,
    progress: &dyn Progress,
    alongside: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let mut split = Splitter::new(conninfo, jobs.max(1), hint);
    let streamed = repo.restore_item(item, &mut split, progress);
    let done = split.finish(streamed.is_ok(), progress, alongside);
    // A session that failed stopped the stream: its error is the cause.
    let t = done?;
    streamed?;
    Ok(t.expect("a whole stream is loaded to the end"))
}

/// Whether `sql` holds more than blank lines and `--` comments (the
/// comment headers between COPY blocks need no session of their own).
fn has_statements(sql: &[u8]) -> bool {
    sql.split(|&b| b == b'\n').any(|l| {
        let l = l.trim_ascii_start();
        !l.is_empty() && !l.starts_with(b"--")
    })
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

/// The entry type a header line names (`-- Name: x; Type: INDEX; …`).
fn entry_type(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    if !(line.starts_with("-- Name: ") || line.starts_with("-- Data for Name: ")) {
        return None;
    }
    let rest = &line[line.find("; Type: ")? + 8..];
    Some(rest[..rest.find(';')?].to_string())
}

/// The (schema-qualified, possibly quoted) name that starts `s`, as it is
/// written: `public.t`, `"My Schema"."a ""b"""`.
fn leading_name(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b' ' | b'\n' | b'(' | b';' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    &s[..i]
}

/// The table a post-data entry's statement is about: `ALTER TABLE [ONLY]
/// t …` or `CREATE [UNIQUE] INDEX i ON [ONLY] t …`.
fn entry_table(text: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(text).ok()?;
    let stmt = text
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with("--"))?;
    let after = if let Some(r) = stmt.strip_prefix("ALTER TABLE ") {
        r
    } else if stmt.starts_with("CREATE INDEX ") || stmt.starts_with("CREATE UNIQUE INDEX ") {
        &stmt[stmt.find(" ON ")? + 4..]
    } else {
        return None;
    };
    Some(leading_name(after.strip_prefix("ONLY ").unwrap_or(after)))
}

/// The stream, cut into what runs where as it arrives.
struct Splitter<'a> {
    conninfo: &'a str,
    jobs: usize,
    hint: &'a str,
    /// A line not complete yet (outside COPY data).
    partial: Vec<u8>,
    phase: Phase,
    preamble: Vec<u8>,
    /// Pre-data, then (after the COPY blocks) the other data entries.
    serial: Vec<u8>,
    /// Post-data entries: (type, text).
    post: Vec<(String, Vec<u8>)>,
    /// The last `SET default_tablespace …` and `SET
    /// default_table_access_method …` lines: pg_dump writes one before an
    /// entry only when it differs from the entry before, so every
    /// post-data entry starts with both (it may run on another session).
    placement: [Vec<u8>; 2],
    copy: Option<CopyBlock>,
    /// Bytes of COPY rows per table, as COPY statements name them.
    rows_of: HashMap<Arc<str>, u64>,
    /// The current data entry is a table's.
    table_data: bool,
    /// The connections loading COPY batches, once pre-data is in.
    loader: Option<Loader>,
    failed: Option<Error>,
    /// psql sessions started ahead of their turn.
    warm: Warm,
}

/// Connections taking COPY batches, on a thread of their own.
struct Loader {
    batches: Sender<copy::Batch>,
    stop: Arc<AtomicBool>,
    done: std::thread::JoinHandle<Result<()>>,
}

impl<'a> Splitter<'a> {
    fn new(conninfo: &'a str, jobs: usize, hint: &'a str) -> Self {
        Splitter {
            conninfo,
            jobs,
            hint,
            partial: Vec::new(),
            phase: Phase::Preamble,
            preamble: Vec::new(),
            serial: Vec::new(),
            post: Vec::new(),
            placement: Default::default(),
            copy: None,
            rows_of: HashMap::new(),
            table_data: false,
            loader: None,
            failed: None,
            warm: Warm::new(conninfo),
        }
    }

    /// The preamble for a psql session, with `extra` settings after it.
    fn preamble_with(&self, extra: &[&str]) -> Vec<u8> {
        let mut p = self.preamble.clone();
        for e in extra {
            p.extend_from_slice(e.as_bytes());
        }
        p
    }

    /// One line outside COPY data.
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
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
                self.post.push((t, self.placement.concat()));
            }
        }
        for (i, set) in PLACEMENT.iter().enumerate() {
            if body.starts_with(set.as_bytes()) {
                self.placement[i] = line.to_vec();
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
                let stmt = String::from_utf8_lossy(&body[..body.len() - 1]);
                self.copy = Some(CopyBlock::new(&stmt, leading_name(&stmt[5..])));
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

    /// Takes COPY rows; returns what follows the block's end when `bytes`
    /// holds it.
    fn rows<'b>(&mut self, bytes: &'b [u8]) -> std::io::Result<&'b [u8]> {
        let c = self.copy.as_mut().expect("in a COPY block");
        match c.take(bytes) {
            Taken::More(None) => Ok(&[]),
            Taken::More(Some(full)) => self.send(full).map(|()| &[][..]),
            Taken::End(used) => {
                self.end_block()?;
                Ok(&bytes[used..])
            }
        }
    }

    /// The block's rows are all read: sends what is left of them.
    fn end_block(&mut self) -> std::io::Result<()> {
        let c = self.copy.as_mut().expect("in a COPY block");
        let rows = std::mem::take(&mut c.rows);
        let r = if rows.is_empty() {
            Ok(())
        } else {
            self.send(rows)
        };
        self.copy = None;
        r
    }

    /// Runs pre-data (it must be in before any row), then starts the
    /// connections that take COPY batches.
    fn start_data(&mut self) -> std::io::Result<()> {
        self.phase = Phase::Data;
        let pre = std::mem::take(&mut self.serial);
        // Pre-data's session, then those of the index builds and of what
        // follows them, connecting while the rows load.
        self.warm.start(self.jobs + 2);
        let preamble = self.preamble_with(&[LOAD_SETTINGS]);
        let session = self.warm.session(&preamble);
        let r = session.and_then(|mut s| {
            s.send(&pre);
            s.end(self.hint)
        });
        if let Err(e) = r {
            return self.fail(e);
        }
        let (tx, rx) = bounded::<copy::Batch>(self.jobs * 2);
        // The preamble without psql's own commands (`\restrict …`).
        let mut setup: String = String::from_utf8_lossy(&self.preamble)
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .flat_map(|l| [l, "\n"])
            .collect();
        setup.push_str(LOAD_SETTINGS);
        let (conninfo, jobs, hint) = (self.conninfo.to_string(), self.jobs, self.hint.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let done =
            std::thread::spawn(move || copy::run(&conninfo, &setup, jobs, &hint, rx, &stopped));
        self.loader = Some(Loader {
            batches: tx,
            stop,
            done,
        });
        Ok(())
    }

    /// Sends rows of the current COPY block to a connection.
    fn send(&mut self, rows: Vec<u8>) -> std::io::Result<()> {
        let c = self.copy.as_ref().expect("in a COPY block");
        *self.rows_of.entry(c.table.clone()).or_default() += rows.len() as u64;
        let batch = copy::Batch {
            stmt: c.stmt.clone(),
            table: c.table.clone(),
            rows: rows.into(),
        };
        let sent = self
            .loader
            .as_ref()
            .is_some_and(|l| !l.stop.load(Ordering::SeqCst) && l.batches.send(batch).is_ok());
        if !sent {
            return Err(std::io::Error::other("the load sessions stopped"));
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> std::io::Result<()> {
        self.failed = Some(e);
        Err(std::io::Error::other("a load session failed"))
    }

    /// Runs `bytes` in order on one psql session, `extra` settings first.
    fn serial(&mut self, bytes: &[u8], extra: &[&str]) -> Result<()> {
        if !has_statements(bytes) {
            return Ok(());
        }
        let preamble = self.preamble_with(extra);
        let mut s = self.warm.session(&preamble)?;
        s.send(bytes);
        s.end(self.hint)
    }

    /// Ends the stream: waits for the COPY connections, then runs the
    /// other data entries, the side-by-side post-data, and the rest.
    fn finish<T: Send>(
        mut self,
        streamed: bool,
        progress: &dyn Progress,
        alongside: impl FnOnce() -> Result<T> + Send,
    ) -> Result<Option<T>> {
        if !streamed || self.failed.is_some() {
            // The cause: a session's failure, else the stream's.
            self.end_loader(true)?;
            return self.failed.take().map_or(Ok(None), Err);
        }
        let rest = std::mem::take(&mut self.partial);
        if let Some(c) = &mut self.copy {
            // A last `\.` without its newline ends the block; anything
            // else is a dump cut inside its rows.
            if !c.ends_at_eof() {
                let table = c.table.clone();
                self.end_loader(true)?;
                return Err(Error::Refused(format!(
                    "the dump ends inside the rows of {table}"
                )));
            }
            self.end_block()
                .map_err(|e| Error::Repo(repo::Error::Output(e)))?;
        } else if !rest.is_empty() {
            self.line(&rest)
                .map_err(|e| Error::Repo(repo::Error::Output(e)))?;
        }
        if let Some(e) = self.failed.take() {
            self.end_loader(true)?;
            return Err(e);
        }
        self.end_loader(false)?;
        // No data entries at all (an empty database): one session, in order.
        let data = std::mem::take(&mut self.serial);
        self.serial(&data, &[LOAD_SETTINGS])?;
        let (mut parallel, after): (Vec<_>, Vec<_>) = std::mem::take(&mut self.post)
            .into_iter()
            .partition(|(t, _)| SIDE_BY_SIDE.contains(&t.as_str()));
        if !parallel.is_empty() {
            // The longest builds first, so that no session is left with
            // one while the others wait.
            let rows = |text: &[u8]| {
                entry_table(text)
                    .and_then(|t| self.rows_of.get(t))
                    .copied()
                    .unwrap_or(0)
            };
            parallel.sort_by_cached_key(|(_, text)| std::cmp::Reverse(rows(text)));
            progress.start(&format!("{} indexes", parallel.len()), None, Unit::Items);
            let (tx, rx) = bounded::<Vec<u8>>(parallel.len());
            for (_, text) in parallel {
                tx.send(text).expect("room for every entry");
            }
            drop(tx);
            let preamble = self.preamble_with(&[LOAD_SETTINGS, INDEX_SETTINGS]);
            let sessions = (0..self.jobs)
                .map(|_| self.warm.session(&preamble))
                .collect::<Result<Vec<_>>>()?;
            side_by_side(sessions, self.hint, rx)?;
        }
        let after: Vec<u8> = after.into_iter().flat_map(|(_, t)| t).collect();
        progress.start("keys, checks", None, Unit::Items);
        std::thread::scope(|s| {
            let beside = s.spawn(alongside);
            let r = self.serial(&after, &[LOAD_SETTINGS, INDEX_SETTINGS]);
            let t = beside.join().expect("verification panicked");
            r?;
            t.map(Some)
        })
    }

    /// Waits for the COPY connections to load what they were sent (or,
    /// told to `stop`, to drop it): their failure.
    fn end_loader(&mut self, stop: bool) -> Result<()> {
        let Some(l) = self.loader.take() else {
            return Ok(());
        };
        if stop {
            l.stop.store(true, Ordering::SeqCst);
        }
        drop(l.batches);
        l.done.join().expect("load sessions panicked")
    }
}

impl Write for Splitter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.copy.is_some() {
                rest = self.rows(rest)?;
                continue;
            }
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                break;
            };
            let (line, after) = rest.split_at(i + 1);
            if self.partial.is_empty() {
                self.line(line)?;
            } else {
                let mut full = std::mem::take(&mut self.partial);
                full.extend_from_slice(line);
                self.line(&full)?;
            }
            rest = after;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
