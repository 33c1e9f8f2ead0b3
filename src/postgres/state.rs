//! What a database holds, read as text rows through any [`Target`]:
//! server version, Alembic revision and row counts; and the comparison of
//! a database with what a backup recorded.

use super::target::{literal, scalar, Rows};
use super::{DbInfo, Result, TableCount, Target, EXACT_COUNT_LIMIT};

/// A way to run one query in one database (a connection, or the
/// container's psql), as [`Target::with_sql`] hands it out.
pub(super) type Sql<'a> = &'a dyn Fn(&str) -> Result<Rows>;

/// The Alembic revision (its rows sorted and joined with `,`), None
/// without an `alembic_version` table.
pub(super) fn alembic_revision(q: Sql) -> Result<Option<String>> {
    let has = scalar(q("SELECT to_regclass('alembic_version') IS NOT NULL")?);
    if has.as_deref() != Some("t") {
        return Ok(None);
    }
    let mut revs: Vec<String> = q("SELECT version_num::text FROM alembic_version")?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    revs.sort();
    Ok(Some(revs.join(",")))
}

/// The number of user tables in the database.
pub(super) fn user_tables(q: Sql) -> Result<i64> {
    let n = scalar(q(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%'",
    )?);
    Ok(n.and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// Server version, database, Alembic revision and row counts, as the
/// current transaction sees them. Every table is listed, partitions
/// too (a dump copies each partition's rows on its own); tables the
/// planner estimates above [`EXACT_COUNT_LIMIT`] rows keep the estimate,
/// the others are counted exactly, all in one query.
pub(super) fn collect_info(q: Sql) -> Result<DbInfo> {
    let (mut info, exact) = list(q)?;
    let all: Vec<usize> = exact.iter().map(|&(i, _)| i).collect();
    for (i, n) in count(q, &info.tables, &all)? {
        info.tables[i].rows = n;
    }
    Ok(info)
}

/// What [`collect_info`] gives, with the tables to count exactly split
/// into `jobs` shares of about equal bytes, each counted on a connection
/// of its own at the same time (a host's database; any other target
/// counts on one).
pub(super) fn collect_info_jobs(target: &Target, jobs: usize) -> Result<DbInfo> {
    if jobs < 2 || target.container().is_some() {
        return target.with_sql(false, collect_info);
    }
    let (mut info, mut exact) = target.with_sql(false, list)?;
    // The biggest first, each to the share with the fewest bytes so far.
    exact.sort_by_key(|&(_, bytes)| std::cmp::Reverse(bytes));
    let mut shares: Vec<(i64, Vec<usize>)> = vec![(0, Vec::new()); jobs.min(exact.len())];
    for (i, bytes) in exact {
        let least = shares.iter_mut().min_by_key(|s| s.0).expect("a share");
        least.0 += bytes.max(1);
        least.1.push(i);
    }
    let (tables, counted) = (&info.tables, std::sync::Mutex::new(Vec::new()));
    crate::runtime::parallel(&shares, shares.len(), |(_, share)| -> Result<()> {
        let counts = target.with_sql(false, |q| count(q, tables, share))?;
        counted.lock().expect("counts lock").extend(counts);
        Ok(())
    })?;
    for (i, n) in counted.into_inner().expect("counts lock") {
        info.tables[i].rows = n;
    }
    Ok(info)
}

/// The database's description with every table's estimate, and the
/// tables to count exactly: (index in `tables`, bytes on disk).
fn list(q: Sql) -> Result<(DbInfo, Vec<(usize, i64)>)> {
    let head = q("SELECT current_setting('server_version'), current_database()")?;
    let field = |i: usize| {
        head.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .unwrap_or_default()
    };
    let (server_version, database) = (field(0), field(1));
    let alembic_revision = alembic_revision(q)?;
    let rows = q("SELECT format('%I.%I', n.nspname, c.relname), c.reltuples,
                pg_relation_size(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
         ORDER BY 1")?;
    let mut tables = Vec::with_capacity(rows.len());
    let mut exact = Vec::new();
    for t in rows {
        let field = |i: usize| t.get(i).cloned().flatten();
        let table = field(0).unwrap_or_default();
        let estimate: f64 = field(1).and_then(|e| e.parse().ok()).unwrap_or(0.0);
        let bytes: i64 = field(2).and_then(|e| e.parse().ok()).unwrap_or(0);
        let counted = estimate <= EXACT_COUNT_LIMIT as f64;
        if counted {
            exact.push((tables.len(), bytes));
        }
        tables.push(TableCount {
            table,
            rows: if counted { 0 } else { estimate as i64 },
            exact: counted,
        });
    }
    let info = DbInfo {
        server_version,
        database,
        alembic_revision,
        tables,
    };
    Ok((info, exact))
}

/// The exact row counts of `which` of `tables`, in one query.
fn count(q: Sql, tables: &[TableCount], which: &[usize]) -> Result<Vec<(usize, i64)>> {
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let sql = which
        .iter()
        .map(|&t| format!("SELECT {t}, count(*) FROM {}", tables[t].table))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut counts = Vec::with_capacity(which.len());
    for r in q(&sql)? {
        let mut f = r.into_iter().map(|f| f.and_then(|v| v.parse::<i64>().ok()));
        if let (Some(Some(i)), Some(Some(n))) = (f.next(), f.next()) {
            if (i as usize) < tables.len() {
                counts.push((i as usize, n));
            }
        }
    }
    Ok(counts)
}

pub use crate::check::Check;

/// The database's Alembic revision (None without an `alembic_version`
/// table); an error when it cannot be reached.
pub fn revision(target: &Target) -> Result<Option<String>> {
    // The revision alone: a restore asks it of every target, and the row
    // counts of a large database would cost it a scan of every table.
    target.with_sql(false, alembic_revision)
}

/// The server's data directory, when it is on this machine and the role
/// may read it (superuser or pg_read_all_settings); None for a server in
/// a container.
pub fn data_directory(target: &Target) -> Option<std::path::PathBuf> {
    if target.container().is_some() {
        return None;
    }
    let dir = target
        .with_sql(true, |q| Ok(scalar(q("SHOW data_directory")?)))
        .ok()??;
    let dir = std::path::PathBuf::from(dir);
    dir.exists().then_some(dir)
}

/// Compares a database with what a backup recorded: the Alembic revision
/// and every table's row count (estimates pass when the table exists).
pub fn verify_db(target: &Target, info: &DbInfo) -> Result<Vec<Check>> {
    verify_db_jobs(target, info, 1)
}

/// The checks that failed, a line each; None when every one passed.
pub fn failures(checks: &[Check]) -> Option<String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("  {}: expected {}, found {}", c.what, c.expected, c.found))
        .collect();
    (!failed.is_empty()).then(|| failed.join("\n"))
}

/// [`verify_db`], the exact row counts on `jobs` connections at once.
pub fn verify_db_jobs(target: &Target, info: &DbInfo, jobs: usize) -> Result<Vec<Check>> {
    let restored = collect_info_jobs(target, jobs)?;
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

/// How many sessions other than relic's own are connected to database
/// `db` (as `q`, a session in another database of the server, sees them
/// in `pg_stat_activity`).
pub(super) fn open_sessions(q: Sql, db: &str) -> Result<i64> {
    let n = scalar(q(&format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = {} AND pid <> pg_backend_pid()
           AND application_name IS DISTINCT FROM {}",
        literal(db),
        literal(&super::conn::own_application_name())
    ))?);
    Ok(n.and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// How many sessions are connected to the database `target` names now
/// (0 when it does not exist): what dropping it would terminate.
pub fn open_connections(target: &Target) -> Result<i64> {
    let db = target.database()?;
    target.with_sql(true, |q| open_sessions(q, &db))
}
