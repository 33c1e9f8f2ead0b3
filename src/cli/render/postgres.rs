//! A database restore (`relic restore --into-postgres`) for people: each
//! step of its safety chain as the line it prints. The dump's size is in
//! decimal megabytes, as this line has always said it.

use relic::postgres::{LoadMode, RestoreStep, SafetySkip, TargetSchema, RESTORE_STEPS};

/// A byte count in decimal megabytes: `0.3 MB`.
fn megabytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

/// The line a step of a database restore prints.
pub fn postgres_step(step: &RestoreStep) -> String {
    use RestoreStep as S;
    let n = format!("{}/{RESTORE_STEPS}", step.number());
    match step {
        S::Verify {
            snapshot,
            read_data,
        } => super::verify_step(&n, snapshot, *read_data),
        S::Schema {
            snapshot_revision,
            db,
            target,
        } => format!(
            "{n} schema: snapshot at {}, target '{db}' {}",
            snapshot_revision
                .as_deref()
                .unwrap_or("(no alembic_version)"),
            match target {
                TargetSchema::Missing => "does not exist".to_string(),
                TargetSchema::At(r) => format!("at {r}"),
                TargetSchema::NoAlembic => "has no alembic_version".to_string(),
            }
        ),
        S::OpenConnections { db, count } => super::open_connections(&n, db, *count),
        S::WouldTakeSafetySnapshot { db, skip } => format!(
            "{n} would take a safety snapshot of '{db}': {}",
            match skip {
                Some(SafetySkip::NotWanted) => "no (--no-safety-snapshot)",
                None => "yes",
                Some(SafetySkip::Empty) => "no (empty)",
            }
        ),
        S::WouldRestore {
            db,
            mode,
            dump_size,
            sessions,
        } if *sessions > 1 => format!(
            "{n} would load {} of dump on {sessions} sessions into a new database beside '{db}', check it, then {}",
            megabytes(*dump_size),
            match mode {
                LoadMode::Create => "rename it to that name",
                _ => "drop the database and rename the new one in its place",
            },
        ),
        S::WouldRestore {
            db,
            mode,
            dump_size,
            ..
        } => format!(
            "{n} would {}restore {} of dump into '{db}' with psql --single-transaction",
            match mode {
                LoadMode::Recreate | LoadMode::Replace => "drop and recreate the database, then ",
                LoadMode::Create => "create the database, then ",
                LoadMode::Into => "",
            },
            megabytes(*dump_size)
        ),
        S::WouldVerify { tables } => {
            format!("{n} would verify the Alembic revision and {tables} table row counts")
        }
        S::SafetySnapshotTaken { id, db } => {
            format!("{n} safety snapshot {} of '{db}' taken", id.short())
        }
        S::SafetySnapshotSkipped(_) => format!(
            "{n} safety snapshot: not needed (target empty or absent, or --no-safety-snapshot)"
        ),
        S::Restoring { db } => format!("{n} restoring into '{db}'"),
        S::Verified { checks } => format!("{n} verified {checks} checks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relic::SnapshotId;

    /// Every step's line, as the library printed it before the steps were
    /// data.
    #[test]
    fn restore_steps_read_as_they_always_did() {
        use RestoreStep as S;
        let id = SnapshotId([0xab; 32]);
        let db = || "app".to_string();
        let would = |mode| S::WouldRestore {
            db: db(),
            mode,
            dump_size: 34_041,
            sessions: 1,
        };
        let cases = [
            (
                S::Verify {
                    snapshot: id,
                    read_data: false,
                },
                "1/5 verify snapshot abababab (index and packs)",
            ),
            (
                S::Verify {
                    snapshot: id,
                    read_data: true,
                },
                "1/5 verify snapshot abababab (reading every chunk)",
            ),
            (
                S::Schema {
                    snapshot_revision: Some("r2".into()),
                    db: db(),
                    target: TargetSchema::Missing,
                },
                "2/5 schema: snapshot at r2, target 'app' does not exist",
            ),
            (
                S::Schema {
                    snapshot_revision: None,
                    db: db(),
                    target: TargetSchema::At("r0".into()),
                },
                "2/5 schema: snapshot at (no alembic_version), target 'app' at r0",
            ),
            (
                S::Schema {
                    snapshot_revision: Some("r2".into()),
                    db: db(),
                    target: TargetSchema::NoAlembic,
                },
                "2/5 schema: snapshot at r2, target 'app' has no alembic_version",
            ),
            (
                S::OpenConnections {
                    db: db(),
                    count: 1,
                },
                "2/5 database 'app' has 1 open connection: it will be terminated",
            ),
            (
                S::OpenConnections {
                    db: db(),
                    count: 3,
                },
                "2/5 database 'app' has 3 open connections: they will be terminated",
            ),
            (
                S::OpenConnections {
                    db: db(),
                    count: 0,
                },
                "2/5 database 'app' has no open connection",
            ),
            (
                S::WouldTakeSafetySnapshot { db: db(), skip: None },
                "3/5 would take a safety snapshot of 'app': yes",
            ),
            (
                S::WouldTakeSafetySnapshot {
                    db: db(),
                    skip: Some(SafetySkip::NotWanted),
                },
                "3/5 would take a safety snapshot of 'app': no (--no-safety-snapshot)",
            ),
            (
                S::WouldTakeSafetySnapshot {
                    db: db(),
                    skip: Some(SafetySkip::Empty),
                },
                "3/5 would take a safety snapshot of 'app': no (empty)",
            ),
            (
                would(LoadMode::Recreate),
                "4/5 would drop and recreate the database, then restore 0.0 MB of dump into 'app' with psql --single-transaction",
            ),
            (
                would(LoadMode::Create),
                "4/5 would create the database, then restore 0.0 MB of dump into 'app' with psql --single-transaction",
            ),
            (
                S::WouldRestore {
                    db: db(),
                    mode: LoadMode::Into,
                    dump_size: 2_460_000,
                    sessions: 1,
                },
                "4/5 would restore 2.5 MB of dump into 'app' with psql --single-transaction",
            ),
            (
                S::WouldRestore {
                    db: db(),
                    mode: LoadMode::Recreate,
                    dump_size: 2_460_000,
                    sessions: 2,
                },
                "4/5 would load 2.5 MB of dump on 2 sessions into a new database beside 'app', check it, then drop the database and rename the new one in its place",
            ),
            (
                S::WouldRestore {
                    db: db(),
                    mode: LoadMode::Create,
                    dump_size: 2_460_000,
                    sessions: 4,
                },
                "4/5 would load 2.5 MB of dump on 4 sessions into a new database beside 'app', check it, then rename it to that name",
            ),
            (
                S::WouldVerify { tables: 3 },
                "5/5 would verify the Alembic revision and 3 table row counts",
            ),
            (
                S::SafetySnapshotTaken { id, db: db() },
                "3/5 safety snapshot abababab of 'app' taken",
            ),
            (
                S::SafetySnapshotSkipped(SafetySkip::Empty),
                "3/5 safety snapshot: not needed (target empty or absent, or --no-safety-snapshot)",
            ),
            (
                S::SafetySnapshotSkipped(SafetySkip::NotWanted),
                "3/5 safety snapshot: not needed (target empty or absent, or --no-safety-snapshot)",
            ),
            (S::Restoring { db: db() }, "4/5 restoring into 'app'"),
            (S::Verified { checks: 4 }, "5/5 verified 4 checks"),
        ];
        for (step, line) in cases {
            assert_eq!(postgres_step(&step), line);
        }
    }
}
