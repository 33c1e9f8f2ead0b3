//! Loading a stored dump into a database with `psql --single-transaction`
//! (into it, creating or recreating it, or replacing it only once the load
//! succeeded), and dropping databases.

use super::conn::{config, connect, runtime};
use super::{tail_of, Error, Result};
use crate::progress::Progress;
use crate::repo::{self, Repository};
use std::process::{Command, Stdio};

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

/// Drops the database `conninfo` names, if it exists.
pub fn drop_database(conninfo: &str) -> Result<()> {
    let target = config(Some(conninfo))?;
    let db = target.get_dbname().unwrap_or_default().to_string();
    let mut maint_cfg = target.clone();
    maint_cfg.dbname("postgres");
    let rt = runtime()?;
    let maint = connect(rt, &maint_cfg)?;
    rt.block_on(maint.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&db)
    )))?;
    Ok(())
}

/// `conninfo` with its database replaced (libpq and tokio-postgres take
/// the last `dbname`, in a URL's query too).
pub fn with_dbname(conninfo: &str, db: &str) -> String {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let sep = if conninfo.contains('?') { '&' } else { '?' };
        let enc: String = db
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{conninfo}{sep}dbname={enc}")
    } else {
        let q = db.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{conninfo} dbname='{q}'")
    }
}

/// Streams a stored dump into `psql --single-transaction` against
/// `conninfo`, preparing the database as `mode` says. `hint` ends the error
/// message when psql fails (how to go back).
pub fn load_dump(
    repo: &Repository,
    item: &crate::snapshot::Item,
    conninfo: &str,
    mode: LoadMode,
    hint: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let target = config(Some(conninfo))?;
    let db = target.get_dbname().unwrap_or_default().to_string();
    let rt = runtime()?;
    let mut maint_cfg = target.clone();
    maint_cfg.dbname("postgres");
    let maint = if mode == LoadMode::Into {
        None
    } else {
        Some(connect(rt, &maint_cfg)?)
    };
    let exec = |sql: String| -> Result<()> {
        let m = maint.as_ref().expect("maintenance connection");
        Ok(rt.block_on(m.batch_execute(&sql))?)
    };
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
    let psql_conninfo = if mode == LoadMode::Replace {
        with_dbname(conninfo, &new_db)
    } else {
        conninfo.to_string()
    };
    let r = psql_load(repo, item, &psql_conninfo, hint, progress);
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

fn psql_load(
    repo: &Repository,
    item: &crate::snapshot::Item,
    conninfo: &str,
    hint: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "--no-password",
        ])
        .arg(format!("--dbname={conninfo}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "psql",
            source,
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    crate::files::widen_pipe(&stdin);
    let stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || tail_of(stderr));
    let mut filtered = SingleTransaction::new(&mut stdin);
    let streamed = repo
        .restore_item(item, &mut filtered, progress)
        .and_then(|()| filtered.finish().map_err(repo::Error::Output));
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| Error::Repo(repo::Error::Output(e)))?;
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::Psql {
            status: status.to_string(),
            stderr: err.trim_end().to_string(),
            hint: hint.to_string(),
        });
    }
    streamed?;
    Ok(())
}

/// Keeps a plain dump inside psql's `--single-transaction`: pg_dump wraps
/// its large objects in `BEGIN;` … `COMMIT;`, and that COMMIT would end
/// psql's transaction early, so a later failure could no longer roll back
/// everything. Those two lines are dropped when they stand alone outside
/// `COPY … FROM stdin` data; every other byte passes unchanged.
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
            out: Vec::new(),
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
        let out = std::mem::take(&mut self.out);
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
        out
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
