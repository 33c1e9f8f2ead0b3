//! Loading a stored dump into a database with `psql` in one transaction
//! (into it, creating or recreating it, or replacing it only once the load
//! succeeded), and dropping databases.

use super::{Result, Target};
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
    let db = target.database()?;
    target.maintenance(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&db)
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
    let new_db: String = format!("{}_relic_new", db.chars().take(50).collect::<String>());
    match mode {
        LoadMode::Into => {}
        LoadMode::Create => exec(format!("CREATE DATABASE {}", quote_ident(&db)))?,
        LoadMode::Recreate => {
            exec(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&db)
            ))?;
            exec(format!("CREATE DATABASE {}", quote_ident(&db)))?;
        }
        LoadMode::Replace => {
            exec(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&new_db)
            ))?;
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
            let _ = exec(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&new_db)
            ));
            return r;
        }
        exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&db)
        ))?;
        exec(format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&new_db),
            quote_ident(&db)
        ))?;
    }
    r
}

/// Loads a stored dump on `jobs` sessions at once (see the `parallel`
/// module) into a new database beside `target`'s (a host's server), and
/// only when all of it went in, drops the target (when `mode` is
/// `Recreate`) and renames the new database into its place. A failure
/// leaves the target as it was and no new database behind.
pub fn load_parallel(
    repo: &Repository,
    item: &crate::snapshot::Item,
    target: &Target,
    mode: LoadMode,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<()> {
    let Target::Host(conninfo) = target else {
        return load_dump(repo, item, target, mode, "", progress);
    };
    let db = target.database()?;
    let exec = |sql: String| target.maintenance(&sql);
    let new_db: String = format!("{}_relic_new", db.chars().take(50).collect::<String>());
    let drop_new = || {
        exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&new_db)
        ))
    };
    drop_new()?;
    exec(format!("CREATE DATABASE {}", quote_ident(&new_db)))?;
    let r = super::parallel::load(
        repo,
        item,
        &with_dbname(conninfo, &new_db),
        jobs,
        "",
        progress,
    );
    if let Err(e) = r {
        let _ = drop_new();
        return Err(e);
    }
    if mode != LoadMode::Create {
        exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&db)
        ))?;
    }
    exec(format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&new_db),
        quote_ident(&db)
    ))
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
    partial: Vec<u8>,
    in_copy: bool,
    out: Vec<u8>,
}

impl<W: std::io::Write> SingleTransaction<W> {
    pub fn new(inner: W) -> Self {
        SingleTransaction {
            inner,
            partial: Vec::new(),
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
        let rest = std::mem::take(&mut self.partial);
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
        let mut rest = buf;
        if !self.partial.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                None => {
                    self.partial.extend_from_slice(rest);
                    return Ok(buf.len());
                }
                Some(i) => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&rest[..=i]);
                    self.line(&line);
                    rest = &rest[i + 1..];
                }
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.line(&rest[..=i]);
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
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
