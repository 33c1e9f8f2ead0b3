//! A database inside a container, dumped by the container's own `pg_dump`
//! (its major version always matches its server's) through the engine's
//! exec endpoint: no client on the host, no published port.
//!
//! What a host backup reads through a connection in the dump's exported
//! snapshot (server version, Alembic revision, row counts) is read here
//! from the dump itself as it streams past ([`DumpScanner`]): the header
//! names the server's version, each table's `COPY … FROM stdin;` block
//! holds its rows, one per line, and `alembic_version`'s block holds the
//! revision. So the counts are exact and of the very state dumped.

use super::target::{container_dump, Inside};
use super::{DbInfo, Result, TableCount};
use crate::repo;
use std::io::{self, Read};

/// Dumps the database `inside` a container into the write session: the
/// stream is stored (the caller names it with an item), the state it
/// holds is returned. Fails, with pg_dump's stderr, unless it exits 0.
pub(super) fn dump_in_container(
    w: &mut repo::Writer<'_>,
    inside: &Inside,
) -> Result<(DbInfo, repo::StoredStream)> {
    let (stored, found) = container_dump(inside, |out| {
        let mut scanner = DumpScanner::new(out);
        let stored = w.store_stream(&mut scanner);
        (stored, scanner.into_parts().1)
    })?;
    Ok((found.info(inside.database.clone()), stored?))
}

/// What a plain dump says about the database, gathered line by line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpFacts {
    server_version: String,
    tables: Vec<TableCount>,
    alembic: Option<Vec<String>>,
}

impl DumpFacts {
    /// The facts as a backup records them (tables sorted by name, as a
    /// host backup lists them).
    pub fn info(mut self, database: String) -> DbInfo {
        self.tables.sort_by(|a, b| a.table.cmp(&b.table));
        DbInfo {
            server_version: self.server_version,
            database,
            alembic_revision: self.alembic.map(|mut r| {
                r.sort();
                r.join(",")
            }),
            tables: self.tables,
        }
    }
}

/// A reader that passes a plain dump through unchanged while it notes
/// the server version, each table's rows and the Alembic revision.
pub struct DumpScanner<R> {
    inner: R,
    facts: DumpFacts,
    /// The start of the current line: up to 4 KiB outside a COPY block and
    /// in `alembic_version`'s, 3 bytes in other tables' blocks.
    line: Vec<u8>,
    /// The table whose COPY block is being read, and its index.
    copying: Option<usize>,
    alembic_block: bool,
}

const LINE_KEPT: usize = 4096;

impl<R: Read> DumpScanner<R> {
    pub fn new(inner: R) -> Self {
        DumpScanner {
            inner,
            facts: DumpFacts::default(),
            line: Vec::new(),
            copying: None,
            alembic_block: false,
        }
    }

    pub fn into_parts(self) -> (R, DumpFacts) {
        (self.inner, self.facts)
    }

    fn scan(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    self.keep(&rest[..i]);
                    self.end_line();
                    rest = &rest[i + 1..];
                }
                None => {
                    self.keep(rest);
                    break;
                }
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        // Inside a table's COPY block a row only counts: three bytes tell
        // the end marker `\.` from a row, and the data is not copied.
        let kept = if self.copying.is_some() && !self.alembic_block {
            3
        } else {
            LINE_KEPT
        };
        let room = kept.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        match self.copying {
            Some(_) if line == b"\\." => {
                self.copying = None;
                self.alembic_block = false;
            }
            Some(t) => {
                self.facts.tables[t].rows += 1;
                if self.alembic_block {
                    let rev = String::from_utf8_lossy(&line).into_owned();
                    self.facts.alembic.get_or_insert_with(Vec::new).push(rev);
                }
            }
            None => self.header_or_copy(&line),
        }
        self.line = line;
        self.line.clear();
    }

    fn header_or_copy(&mut self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        if let Some(v) = text.strip_prefix("-- Dumped from database version ") {
            self.facts.server_version = v.trim().to_string();
        } else if let Some(rest) = text.strip_prefix("COPY ") {
            if !text.ends_with(" FROM stdin;") {
                return;
            }
            let table = qualified_name(rest);
            self.alembic_block = table == "public.alembic_version" || table == "alembic_version";
            if self.alembic_block {
                self.facts.alembic.get_or_insert_with(Vec::new);
            }
            self.facts.tables.push(TableCount {
                table,
                rows: 0,
                exact: true,
            });
            self.copying = Some(self.facts.tables.len() - 1);
        }
    }
}

/// The table name at the start of a COPY line's rest: up to the first
/// space outside double quotes.
fn qualified_name(rest: &str) -> String {
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => return rest[..i].to_string(),
            _ => {}
        }
    }
    rest.to_string()
}

impl<R: Read> Read for DumpScanner<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n-- Dumped by pg_dump version 15.18\n\nCREATE TABLE public.people (id integer);\n\nCOPY public.alembic_version (version_num) FROM stdin;\nrev-9\n\\.\n\n\nCOPY public.people (id, name) FROM stdin;\n1\tann\n2\tbob\n3\t\\N\n\\.\n\n\nCOPY public.\"Odd Name\" (\"a b\") FROM stdin;\n\\.\n\nCOPY public.zeta FROM stdin;\nx\n\\.\n";

    /// Whatever the read sizes, the facts are the same and the bytes
    /// pass through unchanged.
    #[test]
    fn a_dump_tells_its_version_rows_and_revision() {
        for step in [1usize, 2, 7, 64, 4096] {
            let mut s = DumpScanner::new(DUMP.as_bytes());
            let mut out = Vec::new();
            let mut buf = vec![0u8; step];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, DUMP.as_bytes());
            let (_, facts) = s.into_parts();
            let info = facts.info("shop".into());
            assert_eq!(info.server_version, "15.18 (Debian 15.18-0+deb12u1)");
            assert_eq!(info.alembic_revision.as_deref(), Some("rev-9"));
            let t: Vec<(&str, i64)> = info
                .tables
                .iter()
                .map(|t| (t.table.as_str(), t.rows))
                .collect();
            assert_eq!(
                t,
                [
                    ("public.\"Odd Name\"", 0),
                    ("public.alembic_version", 1),
                    ("public.people", 3),
                    ("public.zeta", 1)
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn no_alembic_table_is_no_revision() {
        let mut s = DumpScanner::new(&b"COPY public.t (a) FROM stdin;\n1\n\\.\n"[..]);
        io::copy(&mut s, &mut io::sink()).unwrap();
        let info = s.into_parts().1.info("d".into());
        assert_eq!(info.alembic_revision, None);
        assert_eq!(info.tables[0].rows, 1);
    }
}
