//! PostgreSQL: `pg_dump` streamed into the store, restores through `psql`
//! behind a safety chain, and the checks around both through tokio-postgres.
//!
//! A backup opens a REPEATABLE READ transaction, exports its snapshot and
//! hands it to `pg_dump --snapshot`, so the row counts and Alembic revision
//! recorded come from exactly the state the dump holds. The dump is plain
//! SQL, uncompressed: compressed dumps defeat deduplication, and relic
//! compresses the chunks anyway.
//!
//! This module owns the error type and [`DbInfo`], what a backup records
//! about the database; `conn` connects, `state` reads and compares a
//! database's state, `dump` backs up, `restore` runs the safety chain and
//! `load` feeds a dump to psql.

mod conn;
mod container;
mod dump;
mod load;
mod parallel;
mod restore;
mod state;
mod target;

pub use conn::{config, display_target};
use container::dump_in_container;
pub use container::{DumpFacts, DumpScanner};
pub use dump::{backup, dump_into};
pub use load::{
    drop_database, load_dump, load_parallel, load_verified, loads_beside, with_dbname, with_param,
    LoadMode, SingleTransaction,
};
pub use restore::{
    restore, restore_dump, Dump, RestoreOptions, RestoreReport, RestoreStep, SafetySkip,
    TargetSchema, RESTORE_STEPS,
};
pub use state::{data_directory, open_connections, revision, verify_db, verify_db_jobs, Check};
pub use target::{Rows, Target};

use crate::repo;
use crate::snapshot::Snapshot;
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use std::io::Read;
use thiserror::Error;

/// Sessions a load takes when not told: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Name of the dump inside a database snapshot.
pub const DUMP_ITEM: &str = "dump.sql";
/// Tables with more estimated rows than this are counted by estimate.
pub const EXACT_COUNT_LIMIT: f32 = 5_000_000.0;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL ({target}): {source}")]
    Connect {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("connection settings: {0}")]
    Config(String),
    #[error("cannot run {program}: {source} (is the PostgreSQL client installed?)")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error("pg_dump failed ({status}); no snapshot was written:\n{stderr}")]
    DumpFailed { status: String, stderr: String },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The engine, for a database inside a container.
    #[error(transparent)]
    Docker(#[from] crate::docker::Error),
    /// A tool run inside a container failed (`what` says which and why).
    #[error("PostgreSQL in container '{container}': {what}")]
    InContainer { container: String, what: String },
    #[error("snapshot {0} is not a PostgreSQL backup")]
    NotADump(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
    /// The target database does not exist, and the restore was not told to
    /// create it ([`RestoreOptions::create`] or `clean`).
    #[error("refusing to restore: database '{db}' does not exist")]
    DatabaseMissing { db: String },
    /// The target database holds tables, and the restore was not told to
    /// replace it ([`RestoreOptions::clean`]).
    #[error("refusing to restore: database '{db}' exists and holds {tables} tables")]
    DatabaseNotEmpty { db: String, tables: i64 },
    /// The snapshot is not at [`RestoreOptions::expect_revision`] (and
    /// `force` is off).
    #[error("refusing to restore: the snapshot is at Alembic revision {snapshot}, not the expected {expected}")]
    UnexpectedRevision { snapshot: String, expected: String },
    /// The target is at another Alembic revision than the one the restore
    /// would bring (`wanted`: the expected one, else the snapshot's), and
    /// `force` is off.
    #[error("refusing to restore: database '{db}' is at Alembic revision {target} but the snapshot is at {}: restoring would mismatch code and schema", .wanted.as_deref().unwrap_or("no revision"))]
    RevisionMismatch {
        db: String,
        target: String,
        wanted: Option<String>,
    },
    /// `hint`: the caller's words on how to go back (see [`Error::with_hint`]).
    #[error("psql failed ({status}); the load was rolled back, the database is as it was before. {hint}\n{stderr}")]
    Psql {
        status: String,
        stderr: String,
        hint: String,
    },
    /// A statement on one of relic's own connections of a parallel load
    /// failed (`what`: the rows of which table); `hint` as for `Psql`.
    #[error("loading {what} failed; the load was rolled back, the database is as it was before. {hint}\n{}", server_message(.source))]
    Load {
        what: String,
        source: tokio_postgres::Error,
        hint: String,
    },
    /// `failed`: one line per check that failed; `hint` as for `Psql`.
    #[error("verification failed after the restore:\n{failed}\n{hint}")]
    Verify { failed: String, hint: String },
    /// `error` (psql or the verification) failed after the restore took
    /// its safety snapshot (hex id) of the target: restoring that snapshot
    /// returns the database to the state before.
    #[error("{error}\nthe safety snapshot {} holds the database as it was before", &safety_snapshot[..8.min(safety_snapshot.len())])]
    AfterSafetySnapshot {
        safety_snapshot: String,
        error: Box<Error>,
    },
}

impl Error {
    /// A `Psql` or `Verify` failure with `hint` (how to go back, in the
    /// caller's words) ending its message; any other error as it is.
    pub fn with_hint(self, hint: &str) -> Error {
        match self {
            Error::Psql { status, stderr, .. } => Error::Psql {
                status,
                stderr,
                hint: hint.to_string(),
            },
            Error::Load { what, source, .. } => Error::Load {
                what,
                source,
                hint: hint.to_string(),
            },
            Error::Verify { failed, .. } => Error::Verify {
                failed,
                hint: hint.to_string(),
            },
            e => e,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What the server said, as psql prints it (`ERROR:  …`, `DETAIL:  …`,
/// `CONTEXT:  …`), or the connection's failure.
fn server_message(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut m = format!("{}:  {}", db.severity(), db.message());
    for (k, v) in [("DETAIL", db.detail()), ("CONTEXT", db.where_())] {
        if let Some(v) = v {
            m.push_str(&format!("\n{k}:  {v}"));
        }
    }
    m
}

/// One table's row count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub table: String,
    pub rows: i64,
    /// False when the count is the planner's estimate (large tables).
    pub exact: bool,
}

/// What a backup records about the database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInfo {
    pub server_version: String,
    pub database: String,
    pub alembic_revision: Option<String>,
    pub tables: Vec<TableCount>,
}

impl DbInfo {
    fn to_meta(&self, w: &mut repo::Writer<'_>) {
        w.set_meta("source", "postgres");
        w.set_meta("pg.server_version", self.server_version.clone());
        w.set_meta("pg.database", self.database.clone());
        if let Some(r) = &self.alembic_revision {
            w.set_meta("pg.alembic_revision", r.clone());
        }
        w.set_meta(
            "pg.tables",
            serde_json::to_string(&self.tables).expect("counts serialize"),
        );
    }

    /// Reads what a backup recorded.
    pub fn from_snapshot(id: &SnapshotId, snap: &Snapshot) -> Result<DbInfo> {
        if snap.meta.get("source").map(String::as_str) != Some("postgres") {
            return Err(Error::NotADump(id.short()));
        }
        Ok(DbInfo {
            server_version: snap
                .meta
                .get("pg.server_version")
                .cloned()
                .unwrap_or_default(),
            database: snap.meta.get("pg.database").cloned().unwrap_or_default(),
            alembic_revision: snap.meta.get("pg.alembic_revision").cloned(),
            tables: snap
                .meta
                .get("pg.tables")
                .map(|t| serde_json::from_str(t))
                .transpose()
                .map_err(|e| {
                    Error::NotADump(format!("{}: table counts unreadable: {e}", id.short()))
                })?
                .unwrap_or_default(),
        })
    }
}

/// The server a backup recorded in its metadata `meta` (`pg.host`,
/// `pg.port`, `pg.user`) as a conninfo without a database, or None when it
/// recorded none (backups made before relic recorded them).
pub fn recorded_server(meta: &std::collections::BTreeMap<String, String>) -> Option<String> {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let parts: Vec<String> = [
        ("host", "pg.host"),
        ("port", "pg.port"),
        ("user", "pg.user"),
    ]
    .iter()
    .filter_map(|(k, key)| meta.get(*key).map(|v| format!("{k}={}", quote(v))))
    .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The last 64 KiB of a stream (a child's stderr).
pub(super) fn tail_of(mut r: impl Read) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        if all.len() > 128 << 10 {
            all.drain(..all.len() - (64 << 10));
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_no_flags_and_hints_end_failures() {
        let refusals = [
            Error::DatabaseMissing { db: "app".into() },
            Error::DatabaseNotEmpty {
                db: "app".into(),
                tables: 2,
            },
            Error::UnexpectedRevision {
                snapshot: "r1".into(),
                expected: "r2".into(),
            },
            Error::RevisionMismatch {
                db: "app".into(),
                target: "r2".into(),
                wanted: None,
            },
        ];
        for e in refusals {
            let m = e.to_string();
            assert!(
                m.starts_with("refusing to restore: ") && !m.contains("--"),
                "{m}"
            );
        }
        let psql = Error::Psql {
            status: "exit status: 3".into(),
            stderr: "ERROR:  boom".into(),
            hint: String::new(),
        };
        assert_eq!(
            psql.with_hint("Go back.").to_string(),
            "psql failed (exit status: 3); the load was rolled back, the database is as it was before. Go back.\nERROR:  boom"
        );
        let verify = Error::Verify {
            failed: "  rows t: expected 1, found 0".into(),
            hint: String::new(),
        };
        let after = Error::AfterSafetySnapshot {
            safety_snapshot: "0123456789abcdef".into(),
            error: Box::new(verify),
        };
        assert!(
            after.to_string().contains("safety snapshot 01234567"),
            "{after}"
        );
        let Error::AfterSafetySnapshot { error, .. } = after else {
            unreachable!()
        };
        assert_eq!(
            error.with_hint("Go back.").to_string(),
            "verification failed after the restore:\n  rows t: expected 1, found 0\nGo back."
        );
    }

    #[test]
    fn the_recorded_server_parses_back_without_a_password() {
        let mut meta = std::collections::BTreeMap::new();
        assert_eq!(recorded_server(&meta), None);
        for (k, v) in [
            ("pg.host", "/run/pg's dir"),
            ("pg.port", "6543"),
            ("pg.user", "app"),
        ] {
            meta.insert(k.to_string(), v.to_string());
        }
        let c = config(Some(&with_dbname(&recorded_server(&meta).unwrap(), "x"))).unwrap();
        assert_eq!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Unix("/run/pg's dir".into())]
        );
        assert_eq!((c.get_ports(), c.get_user()), (&[6543][..], Some("app")));
        assert_eq!(c.get_dbname(), Some("x"));
    }

    #[test]
    fn meta_round_trip() {
        let tables = vec![TableCount {
            table: "public.people".into(),
            rows: 3,
            exact: true,
        }];
        let json = serde_json::to_string(&tables).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<TableCount>>(&json).unwrap(),
            tables
        );
    }
}
