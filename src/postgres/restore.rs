//! Restore through the safety chain: verify the snapshot, check the
//! schema revision, take a safety snapshot, load (on several sessions
//! into a copy that replaces the database once complete and verified, or
//! in one transaction), verify revision and row counts. Each step is reported as a
//! [`RestoreStep`] as it happens.

use super::dump::backup;
use super::load::{load_verified, LoadMode};
use super::state::{alembic_revision, failures, open_sessions, user_tables, Check};
use super::target::{literal, scalar};
use super::{DbInfo, Error, Result, Target, DUMP_ITEM};
use crate::progress::Progress;
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{Item, Snapshot, Tier};
use crate::SnapshotId;
use serde::Serialize;

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The database restored into (on this host's server or inside a
    /// container).
    pub target: Target,
    pub create: bool,
    pub clean: bool,
    pub expect_revision: Option<String>,
    pub safety_snapshot: bool,
    pub dry_run: bool,
    pub force: bool,
    pub verify_data: bool,
    /// Sessions loading at once (1: psql in one transaction, as before).
    /// Above 1, a host's database is loaded beside the target and
    /// renamed into place when complete.
    pub jobs: usize,
}

/// The outcome of a restore (or of a dry run's plan).
#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    pub safety_snapshot: Option<String>,
    pub checks: Vec<Check>,
    pub restored: bool,
}

/// One step of a database restore's safety chain, reported as it happens;
/// [`RestoreStep::number`] says which of the chain's [`RESTORE_STEPS`].
/// `db` is the target database's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreStep {
    /// Step 1: the snapshot is verified (`read_data`: every chunk read).
    Verify {
        snapshot: SnapshotId,
        read_data: bool,
    },
    /// Step 2: the snapshot's Alembic revision, and the target as it is.
    Schema {
        snapshot_revision: Option<String>,
        db: String,
        target: TargetSchema,
    },
    /// Step 2, when told to clean an existing database: `count` sessions
    /// are connected to it now, and recreating it will terminate them.
    OpenConnections { db: String, count: i64 },
    /// A dry run, step 3: whether a safety snapshot would be taken (None)
    /// or not, and why.
    WouldTakeSafetySnapshot {
        db: String,
        skip: Option<SafetySkip>,
    },
    /// A dry run, step 4: the dump (`dump_size` bytes) would be loaded,
    /// after preparing the database as `mode` says
    /// ([`LoadMode::Recreate`] when told to clean, [`LoadMode::Create`]
    /// when it does not exist, else [`LoadMode::Into`]), on `sessions`
    /// sessions into a copy beside it (more than 1), or in one
    /// transaction.
    WouldRestore {
        db: String,
        mode: LoadMode,
        dump_size: u64,
        sessions: usize,
    },
    /// A dry run, step 5: the revision and `tables` row counts would be
    /// verified.
    WouldVerify { tables: usize },
    /// Step 3: the safety snapshot of the target was taken.
    SafetySnapshotTaken { id: SnapshotId, db: String },
    /// Step 3: no safety snapshot, and why.
    SafetySnapshotSkipped(SafetySkip),
    /// Step 4: the dump is being loaded.
    Restoring { db: String },
    /// Step 5: the restore was verified by `checks` checks.
    Verified { checks: usize },
}

/// The number of steps in a database restore's chain.
pub const RESTORE_STEPS: u8 = 5;

impl RestoreStep {
    /// Which step of the chain (1 to [`RESTORE_STEPS`]) this belongs to.
    pub fn number(&self) -> u8 {
        use RestoreStep as S;
        match self {
            S::Verify { .. } => 1,
            S::Schema { .. } | S::OpenConnections { .. } => 2,
            S::WouldTakeSafetySnapshot { .. }
            | S::SafetySnapshotTaken { .. }
            | S::SafetySnapshotSkipped(_) => 3,
            S::WouldRestore { .. } | S::Restoring { .. } => 4,
            S::WouldVerify { .. } | S::Verified { .. } => 5,
        }
    }
}

/// The target database's schema, as step 2 found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSchema {
    /// The database does not exist.
    Missing,
    /// It is at this Alembic revision.
    At(String),
    /// It exists without an `alembic_version` table.
    NoAlembic,
}

/// Why a restore takes no safety snapshot of its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetySkip {
    /// [`RestoreOptions::safety_snapshot`] was off.
    NotWanted,
    /// The target does not exist or holds no tables: nothing to keep.
    Empty,
}

/// Existence and state of the target database.
struct TargetState {
    exists: bool,
    user_tables: i64,
    alembic: Option<String>,
}

fn target_state(target: &Target, db: &str) -> Result<TargetState> {
    let exists = target.with_sql(true, |q| {
        Ok(scalar(q(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {})",
            literal(db)
        ))?))
    })?;
    if exists.as_deref() != Some("t") {
        return Ok(TargetState {
            exists: false,
            user_tables: 0,
            alembic: None,
        });
    }
    target.with_sql(false, |q| {
        Ok(TargetState {
            exists: true,
            user_tables: user_tables(q)?,
            alembic: alembic_revision(q)?,
        })
    })
}

/// Restores a database snapshot through the safety chain: verify the
/// snapshot, check the schema revision, take a safety snapshot of the
/// target, restore (see [`load_verified`]), verify revision and row
/// counts.
/// `say` hears each step as it happens. A refusal is a typed error
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
    say: &mut dyn FnMut(RestoreStep),
) -> Result<RestoreReport> {
    let info = DbInfo::from_snapshot(id, snap)?;
    let item = repo
        .items(snap)
        .next()
        .transpose()?
        .filter(|i| i.path == DUMP_ITEM.as_bytes())
        .ok_or_else(|| Error::NotADump(id.short()))?;
    restore_dump(repo, id, snap, &Dump { item, info }, opts, progress, say)
}

/// A stored dump and what its backup recorded about the database: the
/// item of a `backup pg` snapshot, or a database part of a stack snapshot.
pub struct Dump {
    pub item: Item,
    pub info: DbInfo,
}

/// [`restore`] of one dump of snapshot `id` (which step 1 verifies whole).
pub fn restore_dump(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    dump: &Dump,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<RestoreReport> {
    let (item, info) = (&dump.item, &dump.info);
    let mut report = RestoreReport::default();
    let target = &opts.target;
    let db = target.database()?;

    // 1. The snapshot is whole.
    say(RestoreStep::Verify {
        snapshot: *id,
        read_data: opts.verify_data,
    });
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, opts.verify_data)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}",
            id.short()
        )));
    }

    // 2. Schema revision.
    let state = target_state(target, &db)?;
    say(RestoreStep::Schema {
        snapshot_revision: info.alembic_revision.clone(),
        db: db.clone(),
        target: match (&state.exists, &state.alembic) {
            (false, _) => TargetSchema::Missing,
            (true, Some(r)) => TargetSchema::At(r.clone()),
            (true, None) => TargetSchema::NoAlembic,
        },
    });
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

    if opts.clean && state.exists {
        let count = target.with_sql(true, |q| open_sessions(q, &db))?;
        say(RestoreStep::OpenConnections {
            db: db.clone(),
            count,
        });
    }

    if opts.dry_run {
        say(RestoreStep::WouldTakeSafetySnapshot {
            db: db.clone(),
            skip: if !opts.safety_snapshot {
                Some(SafetySkip::NotWanted)
            } else if state.user_tables > 0 {
                None
            } else {
                Some(SafetySkip::Empty)
            },
        });
        let mode = match (opts.clean, state.exists) {
            (true, true) => LoadMode::Recreate,
            (_, false) => LoadMode::Create,
            (false, true) => LoadMode::Into,
        };
        say(RestoreStep::WouldRestore {
            db: db.clone(),
            mode,
            dump_size: item.size,
            sessions: if super::loads_beside(target, mode, opts.jobs) {
                opts.jobs
            } else {
                1
            },
        });
        say(RestoreStep::WouldVerify {
            tables: info.tables.len(),
        });
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
            time_ns: None,
        };
        let (sid, _) = backup(repo, &safety, target, progress)?;
        say(RestoreStep::SafetySnapshotTaken {
            id: sid,
            db: db.clone(),
        });
        report.safety_snapshot = Some(sid.to_hex());
    } else {
        say(RestoreStep::SafetySnapshotSkipped(
            if opts.safety_snapshot {
                SafetySkip::Empty
            } else {
                SafetySkip::NotWanted
            },
        ));
    }

    // 4. Restore, into a copy on `jobs` sessions or in one transaction.
    // A failure of the load or of the verification names the safety snapshot that undoes it.
    let safety = report.safety_snapshot.clone();
    let undo = |e: Error| match (&safety, e) {
        (Some(s), e @ (Error::Psql { .. } | Error::Load { .. } | Error::Verify { .. })) => {
            Error::AfterSafetySnapshot {
                safety_snapshot: s.clone(),
                error: Box::new(e),
            }
        }
        (_, e) => e,
    };
    say(RestoreStep::Restoring { db: db.clone() });
    let mode = match (opts.clean, state.exists) {
        (true, true) => LoadMode::Recreate,
        (_, false) => LoadMode::Create,
        (false, true) => LoadMode::Into,
    };
    // 5. Verify: the revision and row counts (a parallel load verifies
    // its copy before it takes the target's place).
    report.checks =
        load_verified(repo, item, target, mode, opts.jobs, info, progress).map_err(undo)?;
    report.restored = true;
    say(RestoreStep::Verified {
        checks: report.checks.len(),
    });
    if let Some(failed) = failures(&report.checks) {
        let hint = if super::loads_beside(target, mode, opts.jobs) {
            format!("The loaded copy was dropped: database '{db}' is as it was.")
        } else {
            String::new()
        };
        return Err(undo(Error::Verify { failed, hint }));
    }
    Ok(report)
}
