//! Where a database is, and the few ways relic talks to it: SQL whose
//! rows come back as text, a dump streamed out, a dump streamed in.
//!
//! A server this host reaches ([`Target::Host`]) is queried through
//! tokio-postgres and loaded by the host's `psql`. A server inside a
//! container ([`Target::Container`]) is queried and loaded by the
//! container's own `psql`, dumped by its own `pg_dump`, all run through
//! the engine's exec endpoint: no client on the host, no published port,
//! and the tools always match the server's major version.

use super::conn::{config, connect, runtime};
use super::load::{with_param, SingleTransaction};
use super::{tail_of, Error, Result};
use crate::docker::{Engine, ExecSpec};
use crate::progress::Progress;
use crate::repo::{self, Repository};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::process::{Command, Stdio};
use tokio_postgres::SimpleQueryMessage;

/// Rows of a query, each field as PostgreSQL's text form (None: NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// A database, as a backup reads it or a restore writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Reached from this host with a libpq conninfo (empty: libpq's
    /// defaults and the PG* variables).
    Host(String),
    /// Inside a running container (a name or an id), with a conninfo as
    /// seen from inside it. What it leaves out comes from the container's
    /// environment as the official image sets it: `POSTGRES_USER` (else
    /// `postgres`), `POSTGRES_DB` (else the user), `POSTGRES_PASSWORD`.
    Container { container: String, conninfo: String },
}

/// A container's database resolved: the engine, and how its `psql` and
/// `pg_dump` are to be run.
pub(super) struct Inside {
    pub engine: Engine,
    pub container: String,
    /// The conninfo given to the tools, with user and database.
    pub conninfo: String,
    pub database: String,
    /// `PGPASSWORD` and `PGAPPNAME` for the tools.
    pub env: Vec<String>,
}

impl Inside {
    /// `program` with `args` inside the container, against the database.
    pub fn spec(&self, program: &str, args: &[&str]) -> ExecSpec {
        let mut cmd = vec![program.to_string()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        cmd.push(format!("--dbname={}", self.conninfo));
        ExecSpec {
            cmd,
            env: self.env.clone(),
            ..Default::default()
        }
    }

    fn failed(&self, program: &str, status: &crate::docker::ExecStatus) -> Error {
        Error::InContainer {
            container: self.container.clone(),
            what: match status.code {
                Some(127) | Some(126) => format!(
                    "{program} cannot run in it (is it a PostgreSQL container?): {}",
                    status.stderr
                ),
                Some(c) => format!("{program} exited with {c}: {}", status.stderr),
                None => format!("{program} was killed: {}", status.stderr),
            },
        }
    }
}

/// Field and record separators of `psql -A` output (ASCII's unit and
/// record separators) and its NULL marker: none appears in what relic
/// asks for (names, counts, revisions).
const FIELD_SEP: char = '\u{1f}';
const RECORD_SEP: char = '\u{1e}';
const NULL_MARK: &str = "\u{2}";

impl Target {
    /// A host target from an optional conninfo.
    pub fn host(conninfo: Option<&str>) -> Target {
        Target::Host(conninfo.unwrap_or_default().to_string())
    }

    /// The container, for a target inside one.
    pub fn container(&self) -> Option<&str> {
        match self {
            Target::Host(_) => None,
            Target::Container { container, .. } => Some(container),
        }
    }

    /// The conninfo (as seen from the host, or from inside the container).
    pub fn conninfo(&self) -> &str {
        match self {
            Target::Host(c) | Target::Container { conninfo: c, .. } => c,
        }
    }

    /// The same server, database `db`.
    pub fn with_database(&self, db: &str) -> Target {
        match self {
            Target::Host(c) => Target::Host(with_param(c, "dbname", db)),
            Target::Container {
                container,
                conninfo,
            } => Target::Container {
                container: container.clone(),
                conninfo: with_param(conninfo, "dbname", db),
            },
        }
    }

    /// The name of the database (asks the engine for a container's
    /// defaults).
    pub fn database(&self) -> Result<String> {
        match self {
            Target::Host(c) => Ok(config(Some(c))?
                .get_dbname()
                .unwrap_or_default()
                .to_string()),
            Target::Container { .. } => Ok(self.inside()?.database),
        }
    }

    /// The target for people, without its password.
    pub fn display(&self) -> String {
        match self {
            Target::Host(c) => super::display_target(c),
            Target::Container {
                container,
                conninfo,
            } => {
                let given: tokio_postgres::Config = conninfo.parse().unwrap_or_default();
                let db = given
                    .get_dbname()
                    .map(|d| format!("'{d}'"))
                    .unwrap_or_else(|| "the default database".into());
                format!("{db} in container '{container}'")
            }
        }
    }

    /// Resolves a container's database through the engine.
    pub(super) fn inside(&self) -> Result<Inside> {
        let Target::Container {
            container,
            conninfo,
        } = self
        else {
            unreachable!("inside() of a host target");
        };
        let given: tokio_postgres::Config = if conninfo.trim().is_empty() {
            tokio_postgres::Config::new()
        } else {
            conninfo
                .parse()
                .map_err(|e| Error::Config(format!("'{conninfo}': {e}")))?
        };
        let engine = Engine::connect()?;
        let env = engine.container_env(container)?;
        let var = |k: &str| {
            env.iter()
                .find_map(|e| e.strip_prefix(&format!("{k}=")).map(str::to_string))
                .filter(|v| !v.is_empty())
        };
        let mut full = conninfo.clone();
        let user = match given.get_user() {
            Some(u) => u.to_string(),
            None => {
                let u = var("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
                full = with_param(&full, "user", &u);
                u
            }
        };
        let database = match given.get_dbname() {
            Some(d) => d.to_string(),
            None => {
                let d = var("POSTGRES_DB").unwrap_or(user);
                full = with_param(&full, "dbname", &d);
                d
            }
        };
        let mut tool_env = vec![format!("PGAPPNAME={}", super::conn::own_application_name())];
        if given.get_password().is_none() {
            if let Some(p) = var("POSTGRES_PASSWORD") {
                tool_env.push(format!("PGPASSWORD={p}"));
            }
        }
        Ok(Inside {
            engine,
            container: container.clone(),
            conninfo: full.trim().to_string(),
            database,
            env: tool_env,
        })
    }

    /// Runs `f` with a way to query the target's database (`maintenance`:
    /// the server's `postgres` database instead), one connection or one
    /// resolved container for all its queries.
    pub(super) fn with_sql<T>(
        &self,
        maintenance: bool,
        f: impl FnOnce(&dyn Fn(&str) -> Result<Rows>) -> Result<T>,
    ) -> Result<T> {
        let target = if maintenance {
            self.with_database("postgres")
        } else {
            self.clone()
        };
        match &target {
            Target::Host(c) => {
                let cfg = config(Some(c))?;
                let rt = runtime()?;
                let client = connect(rt, &cfg)?;
                f(&|sql| simple_rows(rt, &client, sql))
            }
            Target::Container { .. } => {
                let inside = target.inside()?;
                f(&|sql| psql_rows(&inside, sql))
            }
        }
    }

    /// Runs statements (no rows wanted) in the server's `postgres`
    /// database: creating, dropping, renaming databases.
    pub(super) fn maintenance(&self, sql: &str) -> Result<()> {
        self.with_sql(true, |q| q(sql).map(drop))
    }

    /// Streams a stored dump into the target's `psql`, in one transaction
    /// that commits only when the whole stream went in: a stream that
    /// fails part way ends psql's input without the COMMIT, and the
    /// server rolls back. `hint` ends the error message of a failed load.
    pub(super) fn load(
        &self,
        repo: &Repository,
        item: &crate::snapshot::Item,
        hint: &str,
        progress: &dyn Progress,
    ) -> Result<()> {
        match self {
            Target::Host(c) => host_load(repo, item, c, hint, progress),
            Target::Container { .. } => {
                let inside = self.inside()?;
                let mut spec = inside.spec("psql", &LOAD_ARGS);
                spec.stdin = true;
                spec.discard_stdout = true;
                let mut exec = inside.engine.exec(&inside.container, &spec)?;
                let input = exec.input().expect("stdin attached");
                let streamed = send_dump(repo, item, input, progress);
                let status = exec.finish()?;
                if !status.success() {
                    return Err(Error::Psql {
                        status: match status.code {
                            Some(c) => {
                                format!("exit status: {c}, in container {}", inside.container)
                            }
                            None => format!("killed, in container {}", inside.container),
                        },
                        stderr: status.stderr,
                        hint: hint.to_string(),
                    });
                }
                streamed?;
                Ok(())
            }
        }
    }
}

/// psql's arguments for a load: no psqlrc, quiet, stop at the first
/// error. The transaction is written into the stream
/// ([`SingleTransaction`]), so that a cut stream never commits.
const LOAD_ARGS: [&str; 5] = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"];

/// A query's rows through a connection.
pub(super) fn simple_rows(
    rt: &crate::runtime::Runtime,
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Rows> {
    let msgs = rt.block_on(client.simple_query(sql))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// A query's rows through the container's `psql` (unaligned, tuples only,
/// separators no value holds).
fn psql_rows(inside: &Inside, sql: &str) -> Result<Rows> {
    let args = [
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "--no-password",
        "-F",
        &FIELD_SEP.to_string(),
        "-R",
        &RECORD_SEP.to_string(),
        "-P",
        &format!("null={NULL_MARK}"),
        "-c",
        sql,
    ];
    let spec = inside.spec("psql", &args);
    let (out, status) = inside.engine.exec_output(&inside.container, &spec)?;
    if !status.success() {
        return Err(inside.failed("psql", &status));
    }
    Ok(parse_unaligned(&String::from_utf8_lossy(&out)))
}

fn parse_unaligned(out: &str) -> Rows {
    let out = out.strip_suffix('\n').unwrap_or(out);
    if out.is_empty() {
        return Vec::new();
    }
    out.split(RECORD_SEP)
        .map(|r| {
            r.split(FIELD_SEP)
                .map(|f| (f != NULL_MARK).then(|| f.to_string()))
                .collect()
        })
        .collect()
}

/// A text literal for SQL (standard_conforming_strings, the default since
/// PostgreSQL 9.1).
pub(super) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The first field of the first row.
pub(super) fn scalar(rows: Rows) -> Option<String> {
    rows.into_iter().next()?.into_iter().next()?
}

/// Writes a stored dump into `input` (psql's) as one transaction, then
/// closes it: the COMMIT goes only after the whole stream.
fn send_dump(
    repo: &Repository,
    item: &crate::snapshot::Item,
    input: impl std::io::Write,
    progress: &dyn Progress,
) -> repo::Result<()> {
    let mut filtered = SingleTransaction::new(input);
    repo.restore_item(item, &mut filtered, progress)?;
    filtered.finish().map_err(repo::Error::Output)
}

/// A loading `psql` on a host's server: its input (a wide pipe) and a
/// thread keeping the tail of its stderr.
pub(super) struct Psql {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: std::thread::JoinHandle<String>,
}

impl Psql {
    /// Starts psql on `conninfo`, reading statements from its input.
    pub(super) fn spawn(conninfo: &str) -> Result<Psql> {
        let mut child = Command::new("psql")
            .args(LOAD_ARGS)
            .arg(format!("--dbname={conninfo}"))
            .env("PGAPPNAME", super::conn::own_application_name())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "psql",
                source,
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        crate::files::widen_pipe(&stdin);
        let stderr = child.stderr.take().expect("piped stderr");
        Ok(Psql {
            child,
            stdin: Some(stdin),
            stderr: std::thread::spawn(move || tail_of(stderr)),
        })
    }

    /// Writes to psql; false once it has stopped reading (it stopped at an
    /// error: [`Psql::end`] reports it).
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

    /// Closes the input and waits: psql's failure, with its stderr and
    /// `hint`.
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

fn host_load(
    repo: &Repository,
    item: &crate::snapshot::Item,
    conninfo: &str,
    hint: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let mut psql = Psql::spawn(conninfo)?;
    let input = psql.stdin.as_mut().expect("input open");
    let streamed = send_dump(repo, item, input, progress);
    // psql's failure first: a stream cut by it is its consequence.
    psql.end(hint)?;
    streamed?;
    Ok(())
}

/// Dumps the container's database with its own `pg_dump` into `sink`;
/// fails, with pg_dump's stderr, unless it exits 0.
pub(super) fn container_dump<T>(
    inside: &Inside,
    sink: impl FnOnce(&mut dyn std::io::Read) -> T,
) -> Result<T> {
    let spec = inside.spec("pg_dump", &["--format=plain", "--no-password"]);
    let mut exec = inside.engine.exec(&inside.container, &spec)?;
    let out = sink(&mut exec);
    let status = exec.finish()?;
    if !status.success() {
        return Err(match status.code {
            Some(126) | Some(127) => inside.failed("pg_dump", &status),
            code => Error::DumpFailed {
                status: match code {
                    Some(c) => format!("exit status: {c} (in container {})", inside.container),
                    None => format!("killed (in container {})", inside.container),
                },
                stderr: status.stderr,
            },
        });
    }
    Ok(out)
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_output_parses_into_rows() {
        assert_eq!(parse_unaligned(""), Rows::new());
        assert_eq!(parse_unaligned("\n"), Rows::new());
        let out = format!("a{FIELD_SEP}1{RECORD_SEP}b{FIELD_SEP}{NULL_MARK}\n");
        assert_eq!(
            parse_unaligned(&out),
            vec![
                vec![Some("a".into()), Some("1".into())],
                vec![Some("b".into()), None]
            ]
        );
    }

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn a_container_target_moves_to_another_database() {
        let t = Target::Container {
            container: "db".into(),
            conninfo: String::new(),
        };
        let moved = t.with_database("scratch");
        let c: tokio_postgres::Config = moved.conninfo().trim().parse().unwrap();
        assert_eq!(c.get_dbname(), Some("scratch"));
        assert_eq!(moved.display(), "'scratch' in container 'db'");
    }
}
