//! Restore through the safety chain: verify the snapshot, check the
//! schema revision, take a safety snapshot, load in one transaction,
//! verify revision and row counts.

use super::conn::{config, connect, describe, runtime};
use super::dump::backup;
use super::load::{load_dump, LoadMode};
use super::state::{collect_info, verify_db, Check};
use super::{DbInfo, Error, Result, DUMP_ITEM};
use crate::progress::Progress;
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{Snapshot, Tier};
use crate::SnapshotId;
use serde::Serialize;
use tokio_postgres::{Client, Config, NoTls};

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

/// Restores a database snapshot through the safety chain: verify the
/// snapshot, check the schema revision, take a safety snapshot of the
/// target, restore in one transaction, verify revision and row counts.
/// `say` receives each step as it happens. A refusal is a typed error
/// (`DatabaseMissing`, `DatabaseNotEmpty`, `UnexpectedRevision`,
/// `RevisionMismatch`) and a psql or verification failure after the safety
/// snapshot is `AfterSafetySnapshot`, so the caller can word what to do in
/// its own terms.
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
    let rt = runtime()?;
    let mut maint_cfg = target.clone();
    maint_cfg.dbname("postgres");
    let maint = connect(rt, &maint_cfg)?;
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
        return Err(Error::DatabaseMissing { db });
    }
    if state.exists && !opts.clean && state.user_tables > 0 {
        return Err(Error::DatabaseNotEmpty {
            db,
            tables: state.user_tables,
        });
    }
    if let (Some(expect), Some(snap_rev)) = (&opts.expect_revision, &info.alembic_revision) {
        if expect != snap_rev && !opts.force {
            return Err(Error::UnexpectedRevision {
                snapshot: snap_rev.clone(),
                expected: expect.clone(),
            });
        }
    }
    if let Some(target_rev) = &state.alembic {
        let want = opts
            .expect_revision
            .as_ref()
            .or(info.alembic_revision.as_ref());
        if want != Some(target_rev) && !opts.force {
            return Err(Error::RevisionMismatch {
                db,
                target: target_rev.clone(),
                wanted: want.cloned(),
            });
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

    // 4. Restore in one transaction. A failure of psql or of the
    // verification names the safety snapshot that undoes it.
    let safety = report.safety_snapshot.clone();
    let undo = |e: Error| match (&safety, e) {
        (Some(s), e @ (Error::Psql { .. } | Error::Verify { .. })) => Error::AfterSafetySnapshot {
            safety_snapshot: s.clone(),
            error: Box::new(e),
        },
        (_, e) => e,
    };
    say(&format!("4/5 restoring into '{db}'"));
    let mode = match (opts.clean, state.exists) {
        (true, true) => LoadMode::Recreate,
        (_, false) => LoadMode::Create,
        (false, true) => LoadMode::Into,
    };
    load_dump(repo, &item, &opts.conninfo, mode, "", progress).map_err(undo)?;
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
        return Err(undo(Error::Verify {
            failed: failed.join("\n"),
            hint: String::new(),
        }));
    }
    Ok(report)
}

/// The dump's size in the dry run's step 4 line. It stays here, not in
/// `cli/render.rs`: the CLI never needed it (its sizes are binary units
/// from indicatif), and the line belongs to the step narrative the library
/// hands to `say` (as the stack restore narrates its own steps).
fn megabytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}
