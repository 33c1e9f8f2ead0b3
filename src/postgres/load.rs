//! Loading a stored dump into a database with `psql` in one transaction
//! (into it, creating or recreating it, or replacing it only once the load
//! succeeded), and dropping databases.

use super::state::{failures, verify_db_jobs, Check};
use super::{DbInfo, Result, Target};
use crate::progress::Progress;
use crate::repo::Repository;

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// How [`load_dump`] treats the target database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Into the database as it is.
    Into,
    /// Create it first.
    Create,
    /// Drop it (if it exists) and create it first.
    Recreate,
    /// Restore into a new database beside it, and only when that succeeded
    /// drop the target and rename the new one into its place: a failure
    /// leaves the target untouched.
    Replace,
}

/// Drops the database `target` names, if it exists.
pub fn drop_database(target: &Target) -> Result<()> {
    drop_named(target, &target.database()?)
}

/// Drops database `db` of `target`'s server, if it exists.
fn drop_named(target: &Target, db: &str) -> Result<()> {
    target.maintenance(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(db)
    ))
}

/// The database a load goes into beside `db` before it replaces it.
fn beside(db: &str) -> String {
    format!("{}_relic_new", db.chars().take(50).collect::<String>())
}

/// Puts the loaded `new_db` in the place of `db`: drops `db` (when there
/// is one to drop) and renames `new_db`.
fn swap_in(target: &Target, new_db: &str, db: &str, drop_old: bool) -> Result<()> {
    if drop_old {
        drop_named(target, db)?;
    }
    target.maintenance(&format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(new_db),
        quote_ident(db)
    ))
}

/// `conninfo` with `key` set to `value` (libpq and tokio-postgres take
/// the last of a key, in a URL's query too).
pub fn with_param(conninfo: &str, key: &str, value: &str) -> String {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let sep = if conninfo.contains('?') { '&' } else { '?' };
        let enc: String = value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{conninfo}{sep}{key}={enc}")
    } else {
        let q = value.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{conninfo} {key}='{q}'")
    }
}

/// `conninfo` with its database replaced.
pub fn with_dbname(conninfo: &str, db: &str) -> String {
    with_param(conninfo, "dbname", db)
}

/// Streams a stored dump into `target` in one transaction, preparing the
/// database as `mode` says. `hint` ends the error message when psql fails
/// (how to go back).
pub fn load_dump(
    repo: &Repository,
    item: &crate::snapshot::Item,
    target: &Target,
    mode: LoadMode,
    hint: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let db = target.database()?;
    let exec = |sql: String| target.maintenance(&sql);
    let new_db = beside(&db);
    match mode {
        LoadMode::Into => {}
        LoadMode::Create => exec(format!("CREATE DATABASE {}", quote_ident(&db)))?,
        LoadMode::Recreate => {
            drop_named(target, &db)?;
            exec(format!("CREATE DATABASE {}", quote_ident(&db)))?;
        }
        LoadMode::Replace => {
            drop_named(target, &new_db)?;
            exec(format!("CREATE DATABASE {}", quote_ident(&new_db)))?;
        }
    }
    let into = if mode == LoadMode::Replace {
        target.with_database(&new_db)
    } else {
        target.clone()
    };
    let r = into.load(repo, item, hint, progress);
    if mode == LoadMode::Replace {
        if r.is_err() {
            let _ = drop_named(target, &new_db);
            return r;
        }
        swap_in(target, &new_db, &db, true)?;
    }
    r
}

/// Loads a stored dump on `jobs` sessions at once (see the `parallel`
/// module) into a new database beside `target`'s (a host's server), and
/// only when all of it went in, drops the target (when `mode` is
/// `Recreate` or `Replace`) and renames the new database into its place.
/// A failure leaves the target as it was and no new database behind.
/// Any other target, or one session, loads with [`load_dump`].
pub fn load_parallel(
    repo: &Repository,
    item: &crate::snapshot::Item,
    target: &Target,
    mode: LoadMode,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<()> {
    let check = |_: &Target| Ok(());
    load_then(repo, item, target, mode, jobs, progress, check, |()| true)
}

/// Loads a stored dump as [`load_parallel`] does and compares the result
/// with `info` (what the backup recorded: revision, row counts), the
/// exact counts on `jobs` connections. A parallel load ([`loads_beside`])
/// verifies its copy while the foreign keys are checked, before it takes
/// the target's place: a copy that fails a check is dropped and the target
/// stays as it was. The checks are returned; a failed one is the caller's
/// to report.
#[allow(clippy::too_many_arguments)]
pub fn load_verified(
    repo: &Repository,
    item: &crate::snapshot::Item,
    target: &Target,
    mode: LoadMode,
    jobs: usize,
    info: &DbInfo,
    progress: &dyn Progress,
) -> Result<Vec<Check>> {
    let check = |db: &Target| verify_db_jobs(db, info, jobs);
    let keep = |checks: &Vec<Check>| failures(checks).is_none();
    load_then(repo, item, target, mode, jobs, progress, check, keep)
}

/// A load is parallel, into a copy beside the target: more than one
/// session, a server on a host, and a database that may be replaced.
pub fn loads_beside(target: &Target, mode: LoadMode, jobs: usize) -> bool {
    jobs > 1 && mode != LoadMode::Into && matches!(target, Target::Host(_))
}

/// Loads, then runs `check` on the loaded database. A parallel load
/// goes into `<db>_relic_new`, runs `check` on it alongside its last
/// steps, and takes the target's place when `keep` says so (else the
/// copy is dropped); one session loads with [`load_dump`] and checks
/// after.
#[allow(clippy::too_many_arguments)]
fn load_then<T: Send>(
    repo: &Repository,
    item: &crate::snapshot::Item,
    target: &Target,
    mode: LoadMode,
    jobs: usize,
    progress: &dyn Progress,
    check: impl FnOnce(&Target) -> Result<T> + Send,
    keep: impl FnOnce(&T) -> bool,
) -> Result<T> {
    if !loads_beside(target, mode, jobs) {
        load_dump(repo, item, target, mode, "", progress)?;
        return check(target);
    }
    let Target::Host(conninfo) = target else {
        unreachable!("parallel loads are for a host's server");
    };
    let db = target.database()?;
    let new_db = beside(&db);
    drop_named(target, &new_db)?;
    target.maintenance(&format!("CREATE DATABASE {}", quote_ident(&new_db)))?;
    let copy = target.with_database(&new_db);
    let r = super::parallel::load(
        repo,
        item,
        &with_dbname(conninfo, &new_db),
        jobs,
        "",
        progress,
        || check(&copy),
    );
    let t = match r {
        Ok(t) if keep(&t) => t,
        Ok(t) => {
            drop_named(target, &new_db)?;
            return Ok(t);
        }
        Err(e) => {
            let _ = drop_named(target, &new_db);
            return Err(e);
        }
    };
    swap_in(target, &new_db, &db, mode != LoadMode::Create)?;
    Ok(t)
}

/// Makes a plain dump one transaction: `BEGIN;` before it, and `COMMIT;`
/// after it only from [`SingleTransaction::finish`], so a stream cut part
/// way (a damaged pack, a dead repository) ends psql's input without a
/// COMMIT and the server rolls everything back; psql's own
/// `--single-transaction` would commit at the end of its input whatever
/// came before. pg_dump wraps its large objects in `BEGIN;` … `COMMIT;`,
/// and that COMMIT would end the transaction early: those two lines are
/// dropped when they stand alone outside `COPY … FROM stdin` data. Every
/// other byte passes unchanged.
pub struct SingleTransaction<W: std::io::Write> {
    inner: W,
    lines: Lines,
    in_copy: bool,
    out: Vec<u8>,
}

impl<W: std::io::Write> SingleTransaction<W> {
    pub fn new(inner: W) -> Self {
        SingleTransaction {
            inner,
            lines: Lines::default(),
            in_copy: false,
            out: b"BEGIN;\n".to_vec(),
        }
    }

    fn line(&mut self, line: &[u8]) {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if self.in_copy {
            if body == b"\\." {
                self.in_copy = false;
            }
        } else if body == b"BEGIN;" || body == b"COMMIT;" {
            return;
        } else if body.starts_with(b"COPY ") && body.ends_with(b" FROM stdin;") {
            self.in_copy = true;
        }
        self.out.extend_from_slice(line);
    }

    /// Writes what is left (a last line without a newline) and flushes.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let rest = self.lines.rest();
        if !rest.is_empty() {
            self.line(&rest);
        }
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(b"\nCOMMIT;\n");
        self.inner.write_all(&out)?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> std::io::Write for SingleTransaction<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(buf, |l| {
            self.line(l);
            Ok(())
        })?;
        self.lines = lines;
        let out = std::mem::take(&mut self.out);
        self.inner.write_all(&out)?;
        self.out = out;
        self.out.clear();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Cuts what is written into lines (each with its `\n`), keeping a last
/// line without one for the next write.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Calls `line` on every line `buf` completes.
    fn feed(
        &mut self,
        buf: &[u8],
        mut line: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut rest = buf;
        if !self.partial.is_empty() {
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                return Ok(());
            };
            let mut first = std::mem::take(&mut self.partial);
            first.extend_from_slice(&rest[..=i]);
            line(&first)?;
            rest = &rest[i + 1..];
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            line(&rest[..=i])?;
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The last line, without its newline, if any.
    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    fn filter(input: &[u8], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = SingleTransaction::new(&mut out);
        for c in input.chunks(step) {
            f.write_all(c).unwrap();
        }
        f.finish().unwrap();
        let out = out.strip_prefix(b"BEGIN;\n").expect("BEGIN first").to_vec();
        out.strip_suffix(b"\nCOMMIT;\n")
            .expect("COMMIT last")
            .to_vec()
    }

    #[test]
    fn only_finish_commits() {
        let mut out = Vec::new();
        let mut f = SingleTransaction::new(&mut out);
        f.write_all(b"CREATE TABLE t ();\nCOPY t FROM stdin;\n1\n")
            .unwrap();
        drop(f);
        assert_eq!(out, b"BEGIN;\nCREATE TABLE t ();\nCOPY t FROM stdin;\n1\n");
    }

    #[test]
    fn drops_large_object_transaction_lines_only_outside_copy() {
        let dump = b"SET x = 1;\nCOPY public.t (a) FROM stdin;\nBEGIN;\nCOMMIT;\n\\.\n\nBEGIN;\n\nSELECT pg_catalog.lo_open('1', 131072);\nCOMMIT;\n  COMMIT;\nlast";
        let want = b"SET x = 1;\nCOPY public.t (a) FROM stdin;\nBEGIN;\nCOMMIT;\n\\.\n\n\nSELECT pg_catalog.lo_open('1', 131072);\n  COMMIT;\nlast";
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(filter(dump, step), want.to_vec(), "step {step}");
        }
    }
}
