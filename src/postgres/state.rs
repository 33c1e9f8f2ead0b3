//! What a database holds, read through tokio-postgres: server version,
//! Alembic revision and row counts; and the comparison of a database with
//! what a backup recorded.

use super::conn::{config, connect, runtime};
use super::{DbInfo, Result, TableCount, EXACT_COUNT_LIMIT};
use tokio_postgres::Client;

/// The Alembic revision (its rows sorted and joined with `,`), None
/// without an `alembic_version` table.
pub(super) async fn alembic_revision(client: &Client) -> Result<Option<String>> {
    let has_alembic: bool = client
        .query_one("SELECT to_regclass('alembic_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !has_alembic {
        return Ok(None);
    }
    let rows = client
        .query("SELECT version_num::text FROM alembic_version", &[])
        .await?;
    let mut revs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    revs.sort();
    Ok(Some(revs.join(",")))
}

/// Server version, database, Alembic revision and row counts, as the
/// current transaction sees them.
pub(super) async fn collect_info(client: &Client) -> Result<DbInfo> {
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let alembic_revision = alembic_revision(client).await?;
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), c.reltuples
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
             ORDER BY 1",
            &[],
        )
        .await?;
    let mut counts = Vec::with_capacity(tables.len());
    for t in tables {
        let table: String = t.get(0);
        let estimate: f32 = t.get(1);
        if estimate > EXACT_COUNT_LIMIT {
            counts.push(TableCount {
                table,
                rows: estimate as i64,
                exact: false,
            });
        } else {
            let rows: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .get(0);
            counts.push(TableCount {
                table,
                rows,
                exact: true,
            });
        }
    }
    Ok(DbInfo {
        server_version,
        database,
        alembic_revision,
        tables: counts,
    })
}

pub use crate::check::Check;

/// The database's Alembic revision (None without an `alembic_version`
/// table); an error when it cannot be reached.
pub fn revision(conninfo: &str) -> Result<Option<String>> {
    let target = config(Some(conninfo))?;
    let rt = runtime()?;
    let client = connect(rt, &target)?;
    // The revision alone: a restore asks it of every target, and the row
    // counts of a large database would cost it a scan of every table.
    rt.block_on(alembic_revision(&client))
}

/// The server's data directory, when it is on this machine and the role
/// may read it (superuser or pg_read_all_settings).
pub fn data_directory(conninfo: &str) -> Option<std::path::PathBuf> {
    let mut target = config(Some(conninfo)).ok()?;
    target.dbname("postgres");
    let rt = runtime().ok()?;
    let client = connect(rt, &target).ok()?;
    let dir: String = rt
        .block_on(client.query_one("SHOW data_directory", &[]))
        .ok()?
        .get(0);
    let dir = std::path::PathBuf::from(dir);
    dir.exists().then_some(dir)
}

/// Compares a database with what a backup recorded: the Alembic revision
/// and every table's row count (estimates pass when the table exists).
pub fn verify_db(conninfo: &str, info: &DbInfo) -> Result<Vec<Check>> {
    let target = config(Some(conninfo))?;
    let rt = runtime()?;
    let client = connect(rt, &target)?;
    let restored = rt.block_on(collect_info(&client))?;
    let mut checks = vec![Check {
        what: "alembic revision".into(),
        expected: info.alembic_revision.clone().unwrap_or_else(|| "-".into()),
        found: restored
            .alembic_revision
            .clone()
            .unwrap_or_else(|| "-".into()),
        ok: info.alembic_revision == restored.alembic_revision,
    }];
    for t in &info.tables {
        let found = restored.tables.iter().find(|r| r.table == t.table);
        checks.push(Check {
            what: format!("rows {}", t.table),
            expected: format!("{}{}", t.rows, if t.exact { "" } else { " (estimate)" }),
            found: found
                .map(|f| f.rows.to_string())
                .unwrap_or_else(|| "missing".into()),
            ok: found.is_some_and(|f| !t.exact || f.rows == t.rows),
        });
    }
    Ok(checks)
}

/// How many sessions other than this process's own are connected to
/// database `db` (as `maint`, a connection to another database of the
/// server, sees them in `pg_stat_activity`).
pub(super) async fn open_sessions(maint: &Client, db: &str) -> Result<i64> {
    Ok(maint
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()
               AND application_name IS DISTINCT FROM $2",
            &[&db, &super::conn::own_application_name()],
        )
        .await?
        .get(0))
}

/// How many sessions are connected to the database `conninfo` names now
/// (0 when it does not exist): what dropping it would terminate.
pub fn open_connections(conninfo: &str) -> Result<i64> {
    let target = config(Some(conninfo))?;
    let db = target.get_dbname().unwrap_or_default().to_string();
    let mut maint_cfg = target;
    maint_cfg.dbname("postgres");
    let rt = runtime()?;
    let maint = connect(rt, &maint_cfg)?;
    rt.block_on(open_sessions(&maint, &db))
}
