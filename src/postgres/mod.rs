//! PostgreSQL: `pg_dump` streamed into the store, restores through `psql`
//! behind a safety chain, and the checks around both through tokio-postgres.
//!
//! A backup opens a REPEATABLE READ transaction, exports its snapshot and
//! hands it to `pg_dump --snapshot`, so the row counts and Alembic revision
//! recorded come from exactly the state the dump holds. The dump is plain
//! SQL, uncompressed: compressed dumps defeat deduplication, and relic
//! compresses the chunks anyway.

use crate::progress::Progress;
use crate::repo::{self, Repository, SnapshotOptions};
use crate::snapshot::{Snapshot, Tier};
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::process::{Command, Stdio};
use thiserror::Error;
use tokio_postgres::{Client, Config, NoTls};

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
    #[error("snapshot {0} is not a PostgreSQL backup")]
    NotADump(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
    #[error("psql failed ({status}); the single transaction was rolled back, the database is as it was before. {hint}\n{stderr}")]
    Psql {
        status: String,
        stderr: String,
        hint: String,
    },
    #[error("verification failed after the restore:\n{0}")]
    Verify(String),
}

pub type Result<T> = std::result::Result<T, Error>;

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

fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer to static storage or null; we copy
    // the name out before any other call.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr((*pw).pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

/// The password ~/.pgpass (or PGPASSFILE) gives for this connection, as
/// libpq reads it: `host:port:database:user:password` lines, `*` matching
/// anything, `\\` escaping `:` and `\\`, a socket directory matching
/// `localhost`; the file is ignored unless only its owner may read it.
fn pgpass_lookup(file: &std::path::Path, c: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
    let want = [
        host.as_str(),
        port.as_str(),
        c.get_dbname().unwrap_or_default(),
        c.get_user().unwrap_or_default(),
    ];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            _ => out.last_mut().expect("one field").push(ch),
        }
    }
    out
}

/// Connection settings as libpq would take them: the CONNINFO string (URL
/// or key/value), then the PG* environment variables, then libpq's
/// defaults (the local socket directory, the OS user, a database named
/// after the user).
pub fn config(conninfo: Option<&str>) -> Result<Config> {
    let mut c: Config = match conninfo {
        Some(s) if !s.is_empty() => s
            .parse()
            .map_err(|e| Error::Config(format!("'{s}': {e}")))?,
        _ => Config::new(),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if c.get_hosts().is_empty() {
        let host = env("PGHOST").unwrap_or_else(|| {
            ["/var/run/postgresql", "/tmp"]
                .iter()
                .find(|d| std::path::Path::new(d).join(".s.PGSQL.5432").exists())
                .unwrap_or(&"/var/run/postgresql")
                .to_string()
        });
        for h in host.split(',') {
            if h.starts_with('/') {
                c.host_path(h);
            } else {
                c.host(h);
            }
        }
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            c.port(
                p.parse()
                    .map_err(|_| Error::Config(format!("PGPORT '{p}'")))?,
            );
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(os_user)
            .ok_or_else(|| Error::Config("no user: set PGUSER".into()))?;
        c.user(&user);
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_dbname().is_none() {
        let db = env("PGDATABASE").unwrap_or_else(|| c.get_user().unwrap_or_default().to_string());
        c.dbname(&db);
    }
    if c.get_password().is_none() {
        let file = env("PGPASSFILE")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")));
        if let Some(pw) = file.and_then(|f| pgpass_lookup(&f, &c)) {
            c.password(pw);
        }
    }
    c.application_name("relic");
    c.connect_timeout(std::time::Duration::from_secs(10));
    Ok(c)
}

fn describe(c: &Config) -> String {
    format!(
        "database '{}' as '{}'",
        c.get_dbname().unwrap_or_default(),
        c.get_user().unwrap_or_default()
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Connects; the connection is driven by the runtime's tasks.
fn connect(rt: &tokio::runtime::Runtime, c: &Config) -> Result<Client> {
    let (client, conn) = rt
        .block_on(c.connect(NoTls))
        .map_err(|source| Error::Connect {
            target: describe(c),
            source,
        })?;
    rt.spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Server version, database, Alembic revision and row counts, as the
/// current transaction sees them.
async fn collect_info(client: &Client) -> Result<DbInfo> {
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let has_alembic: bool = client
        .query_one("SELECT to_regclass('alembic_version') IS NOT NULL", &[])
        .await?
        .get(0);
    let alembic_revision = if has_alembic {
        let rows = client
            .query("SELECT version_num::text FROM alembic_version", &[])
            .await?;
        let mut revs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        revs.sort();
        Some(revs.join(","))
    } else {
        None
    };
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

/// Backs up a database: pg_dump's plain output streamed into one snapshot,
/// with the database's state recorded beside it. Nothing is listed unless
/// pg_dump exits 0.
pub fn backup(
    repo: &Repository,
    opts: &SnapshotOptions,
    conninfo: Option<&str>,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let cfg = config(conninfo)?;
    let mut failure = None;
    let result = repo.backup(opts, progress, |w| {
        let (info, s) = match dump_into(w, conninfo, &cfg) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                return Err(repo::Error::Source(msg));
            }
        };
        info.to_meta(w);
        w.set_meta("pg.dump_size", s.size.to_string());
        w.set_meta("pg.dump_blake3", hex::encode(s.hash));
        w.add_item(&s.into_item(DUMP_ITEM, 0o600))
    });
    match (result, failure) {
        (Ok(r), _) => Ok(r),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

/// Dumps one database into the write session: the stream is stored (the
/// caller names it with an item), the state it holds is returned. Fails,
/// with pg_dump's stderr, unless pg_dump exits 0.
pub fn dump_into(
    w: &mut repo::Writer<'_>,
    conninfo: Option<&str>,
    cfg: &Config,
) -> Result<(DbInfo, repo::StoredStream)> {
    let rt = runtime();
    let client = connect(&rt, cfg)?;
    let snapshot_name = rt.block_on(async {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let name: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await?
            .get(0);
        Ok::<_, Error>(name)
    })?;
    // The row counts (a count(*) per table) run in the exported snapshot
    // while pg_dump streams it, instead of before: on a database of many
    // mid-sized tables they would otherwise hold the dump back.
    let (info, stored) = std::thread::scope(|s| {
        let counts = s.spawn(|| rt.block_on(collect_info(&client)));
        let stored = run_pg_dump(w, conninfo, &snapshot_name);
        let info = counts
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (info, stored)
    });
    let _ = rt.block_on(client.batch_execute("COMMIT"));
    let stored = stored?;
    Ok((info?, stored))
}

/// Runs `pg_dump --snapshot=NAME` into the write session; fails, with
/// pg_dump's stderr, unless pg_dump exits 0.
fn run_pg_dump(
    w: &mut repo::Writer<'_>,
    conninfo: Option<&str>,
    snapshot_name: &str,
) -> Result<repo::StoredStream> {
    let mut cmd = Command::new("pg_dump");
    cmd.arg("--format=plain")
        .arg("--no-password")
        .arg(format!("--snapshot={snapshot_name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = conninfo.filter(|c| !c.is_empty()) {
        cmd.arg(format!("--dbname={c}"));
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: "pg_dump",
        source,
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    crate::files::widen_pipe(&stdout);
    let stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || tail_of(stderr));
    let stored = w.store_stream(stdout);
    // If the store failed first, pg_dump may still be writing: stop it.
    if stored.is_err() {
        let _ = child.kill();
    }
    let status = child.wait();
    let err = err_reader.join().unwrap_or_default();
    let status = status.map_err(|e| Error::Repo(repo::Error::Input(e)))?;
    if !status.success() {
        return Err(Error::Repo(repo::Error::Source(format!(
            "pg_dump failed ({status}); no snapshot was written:\n{}",
            err.trim_end()
        ))));
    }
    Ok(stored?)
}

/// The last 64 KiB of a stream (a child's stderr).
fn tail_of(mut r: impl Read) -> String {
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

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub conninfo: String,
    pub create: bool,
    pub clean: bool,
    pub expect_revision: Option<String>,
    pub safety_snapshot: bool,
    pub dry_run: bool,
    pub force: bool,
    pub verify_data: bool,
}

/// What the verify step compared.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub expected: String,
    pub found: String,
    pub ok: bool,
}

/// The outcome of a restore (or of a dry run's plan).
#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    pub safety_snapshot: Option<String>,
    pub checks: Vec<Check>,
    pub restored: bool,
}

/// Existence and state of the target database.
struct TargetState {
    exists: bool,
    user_tables: i64,
    alembic: Option<String>,
}

async fn target_state(maint: &Client, target: &Config, rt_cfg: &Config) -> Result<TargetState> {
    let db = target.get_dbname().unwrap_or_default().to_string();
    let exists: bool = maint
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&db],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(TargetState {
            exists,
            user_tables: 0,
            alembic: None,
        });
    }
    let (client, conn) = rt_cfg
        .connect(NoTls)
        .await
        .map_err(|source| Error::Connect {
            target: describe(rt_cfg),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let user_tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .await?
        .get(0);
    let info = collect_info(&client).await?;
    Ok(TargetState {
        exists,
        user_tables,
        alembic: info.alembic_revision,
    })
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Restores a database snapshot through the safety chain: verify the
/// snapshot, check the schema revision, take a safety snapshot of the
/// target, restore in one transaction, verify revision and row counts.
/// `say` receives each step as it happens.
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<RestoreReport> {
    let info = DbInfo::from_snapshot(id, snap)?;
    let mut report = RestoreReport::default();
    let target = config(Some(&opts.conninfo))?;
    let db = target.get_dbname().unwrap_or_default().to_string();

    // 1. The snapshot is whole.
    say(&format!(
        "1/5 verify snapshot {} ({})",
        id.short(),
        if opts.verify_data {
            "reading every chunk"
        } else {
            "index and packs"
        }
    ));
    let item = repo
        .items(snap)
        .next()
        .transpose()?
        .filter(|i| i.path == DUMP_ITEM.as_bytes())
        .ok_or_else(|| Error::NotADump(id.short()))?;
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, opts.verify_data)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}",
            id.short()
        )));
    }

    // 2. Schema revision.
    let rt = runtime();
    let mut maint_cfg = target.clone();
    maint_cfg.dbname("postgres");
    let maint = connect(&rt, &maint_cfg)?;
    let state = rt.block_on(target_state(&maint, &target, &target))?;
    say(&format!(
        "2/5 schema: snapshot at {}, target '{db}' {}",
        info.alembic_revision
            .as_deref()
            .unwrap_or("(no alembic_version)"),
        match (&state.exists, &state.alembic) {
            (false, _) => "does not exist".to_string(),
            (true, Some(r)) => format!("at {r}"),
            (true, None) => "has no alembic_version".to_string(),
        }
    ));
    if !state.exists && !opts.create && !opts.clean {
        return Err(Error::Refused(format!(
            "database '{db}' does not exist; add --create"
        )));
    }
    if state.exists && !opts.clean && state.user_tables > 0 {
        return Err(Error::Refused(format!(
            "database '{db}' exists and holds {} tables; use --clean to replace it",
            state.user_tables
        )));
    }
    if let (Some(expect), Some(snap_rev)) = (&opts.expect_revision, &info.alembic_revision) {
        if expect != snap_rev && !opts.force {
            return Err(Error::Refused(format!(
                "the snapshot is at Alembic revision {snap_rev}, not the expected {expect} (--force overrides)"
            )));
        }
    }
    if let Some(target_rev) = &state.alembic {
        let want = opts
            .expect_revision
            .as_ref()
            .or(info.alembic_revision.as_ref());
        if want != Some(target_rev) && !opts.force {
            return Err(Error::Refused(format!(
                "database '{db}' is at Alembic revision {target_rev} but the snapshot is at {}: restoring would mismatch code and schema (--force overrides)",
                want.map(String::as_str).unwrap_or("no revision")
            )));
        }
    }

    if opts.dry_run {
        say(&format!(
            "3/5 would take a safety snapshot of '{db}': {}",
            if !opts.safety_snapshot {
                "no (--no-safety-snapshot)"
            } else if state.user_tables > 0 {
                "yes"
            } else {
                "no (empty)"
            }
        ));
        say(&format!(
            "4/5 would {}restore {} of dump into '{db}' with psql --single-transaction",
            if opts.clean {
                "drop and recreate the database, then "
            } else if !state.exists {
                "create the database, then "
            } else {
                ""
            },
            megabytes(item.size)
        ));
        say(&format!(
            "5/5 would verify the Alembic revision and {} table row counts",
            info.tables.len()
        ));
        return Ok(report);
    }

    // 3. Safety snapshot of what is there now.
    if opts.safety_snapshot && state.exists && state.user_tables > 0 {
        let safety = SnapshotOptions {
            name: format!("safety-{db}"),
            tier: Tier::Safety,
            labels: [("restoring".to_string(), id.to_hex())]
                .into_iter()
                .collect(),
            meta: Default::default(),
        };
        let (sid, _) = backup(repo, &safety, Some(&opts.conninfo), progress)?;
        say(&format!(
            "3/5 safety snapshot {} of '{db}' taken",
            sid.short()
        ));
        report.safety_snapshot = Some(sid.to_hex());
    } else {
        say("3/5 safety snapshot: not needed (target empty or absent, or --no-safety-snapshot)");
    }

    // 4. Restore in one transaction.
    let hint = match &report.safety_snapshot {
        Some(s) => format!(
            "To return to the state before, restore the safety snapshot: relic restore {} --into-postgres '{}' --clean",
            &s[..8],
            opts.conninfo
        ),
        None => String::new(),
    };
    say(&format!("4/5 restoring into '{db}'"));
    let mode = match (opts.clean, state.exists) {
        (true, true) => LoadMode::Recreate,
        (_, false) => LoadMode::Create,
        (false, true) => LoadMode::Into,
    };
    load_dump(repo, &item, &opts.conninfo, mode, &hint, progress)?;
    report.restored = true;

    // 5. Verify.
    report.checks = verify_db(&opts.conninfo, &info)?;
    say(&format!("5/5 verified {} checks", report.checks.len()));
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("  {}: expected {}, found {}", c.what, c.expected, c.found))
        .collect();
    if !failed.is_empty() {
        return Err(Error::Verify(format!("{}\n{hint}", failed.join("\n"))));
    }
    Ok(report)
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
    let rt = runtime();
    let maint = connect(&rt, &maint_cfg)?;
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
    let rt = runtime();
    let mut maint_cfg = target.clone();
    maint_cfg.dbname("postgres");
    let maint = if mode == LoadMode::Into {
        None
    } else {
        Some(connect(&rt, &maint_cfg)?)
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

/// The database's Alembic revision (None without an `alembic_version`
/// table); an error when it cannot be reached.
pub fn revision(conninfo: &str) -> Result<Option<String>> {
    let target = config(Some(conninfo))?;
    let rt = runtime();
    let client = connect(&rt, &target)?;
    Ok(rt.block_on(collect_info(&client))?.alembic_revision)
}

/// The server's data directory, when it is on this machine and the role
/// may read it (superuser or pg_read_all_settings).
pub fn data_directory(conninfo: &str) -> Option<std::path::PathBuf> {
    let mut target = config(Some(conninfo)).ok()?;
    target.dbname("postgres");
    let rt = runtime();
    let client = connect(&rt, &target).ok()?;
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
    let rt = runtime();
    let client = connect(&rt, &target)?;
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

fn megabytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\ndbhost:5432:other:app:nope\ndbhost:*:app:app:s3cr\\:et\nlocalhost:5432:*:*:local\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c: Config = "host=dbhost port=6000 dbname=app user=app".parse().unwrap();
        assert_eq!(pgpass_lookup(&f, &c).as_deref(), Some("s3cr:et"));
        let c: Config = "host=/var/run/postgresql dbname=x user=y".parse().unwrap();
        assert_eq!(pgpass_lookup(&f, &c).as_deref(), Some("local"));
        let c: Config = "host=elsewhere dbname=app user=app".parse().unwrap();
        assert_eq!(pgpass_lookup(&f, &c), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c: Config = "host=dbhost dbname=app user=app".parse().unwrap();
        assert_eq!(
            pgpass_lookup(&f, &c),
            None,
            "a world-readable file is ignored"
        );
    }
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
