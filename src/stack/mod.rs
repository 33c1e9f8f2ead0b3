//! Stacks: everything a docker-compose stack depends on (its databases, its
//! images, its files, the git commit of its checkout) in ONE immutable
//! snapshot, described by `relic.toml`, restored through one safety chain.
//!
//! A stack snapshot holds the items `db/<name>.sql` (pg_dump streams),
//! `images/<reference>.tar` (docker save tars, split at their entries),
//! `volumes/<name>/<path>` (named volumes' files) and `files/<path>` (files
//! and directories relative to the stack's root), and a
//! manifest in its metadata (`stack.manifest`, JSON) that says what each part
//! is, how big, its checksums, Alembic revision, image ids and git commit,
//! and the command that restores it.
//!
//! This module owns the stack's error type, the steps the restore chain
//! and drills report as they happen ([`RestoreStep`], [`DrillStep`]: data,
//! which the CLI words), and the helpers restore and drill share; its
//! children own `relic.toml` (`config.rs`), the manifest (`manifest.rs`),
//! making snapshots (`snapshot.rs`), the restore chain (`restore.rs`) and
//! drills (`drill.rs`). Comparing two snapshots is [`crate::diff`], which
//! reads manifests; this module never uses it.

pub mod compose;
mod config;
mod drill;
pub mod hooks;
mod manifest;
mod restore;
mod snapshot;

pub use config::{DatabasePart, FilesPart, GitPart, StackConfig, TargetChange, CONFIG_ITEM};
pub use drill::{drill, Scratch};
pub use hooks::{Hook, HookEvent, Hooks};
pub use manifest::{manifest, DbPart, FilesSummary, GitState, Manifest, MANIFEST_KEY};
pub use restore::{restore, Part, Report, RestoreOptions};
pub use snapshot::{backup, newest_baseline, snapshot, stacks_with_baselines};

use crate::docker;
use crate::postgres::{self, Check};
use crate::repo::{self, Repository};
use crate::snapshot::{Item, ItemKind, Snapshot};
use crate::SnapshotId;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {what}")]
    Config { path: String, what: String },
    /// The stack's `relic.toml` could not be read.
    #[error("{path}: {source}")]
    ConfigUnreadable {
        path: String,
        source: std::io::Error,
    },
    /// A restore or drill of the stack's newest baseline found none.
    #[error("refusing to restore: stack '{stack}' has no immaculate baseline")]
    NoBaseline { stack: String },
    /// An emergency restore named no stack, and the repository holds
    /// baselines of several (or of none).
    #[error("the repository holds immaculate baselines of {} stacks{}: say which", .0.len(), if .0.is_empty() { String::new() } else { format!(" ({})", .0.join(", ")) })]
    WhichStack(Vec<String>),
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(
        "snapshot {0} is not a stack snapshot (it has no manifest; `relic snapshot` makes them)"
    )]
    NotAStack(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
    /// A hook failed (`which`: pre-backup, post-backup, pre-restore,
    /// post-restore).
    #[error("{which} hook failed: {command}: {what}")]
    Hook {
        which: String,
        command: String,
        what: String,
    },
    /// A partial snapshot was asked for with a baseline's tier.
    #[error("a {tier} baseline is whole or nothing: it cannot be a partial snapshot")]
    PartialBaseline { tier: crate::snapshot::Tier },
    /// Step 1 found a filesystem without room for the parts restored onto
    /// it; nothing was changed.
    #[error("refusing to restore: not enough disk space on the filesystem of {}: {} bytes free, {} bytes needed; nothing was changed", room_dirs(.0), .0.free, .0.need)]
    NoRoom(Room),
    /// A database restored alone is at another Alembic revision than the
    /// snapshot's (and `force` is off); nothing was changed.
    #[error("refusing to restore: database '{part}' is at Alembic revision {running} but the snapshot is at {}: restoring it alone would mismatch code and schema", .snapshot.as_deref().unwrap_or("no revision"))]
    RevisionMismatch {
        part: String,
        running: String,
        snapshot: Option<String>,
    },
    /// A stack snapshot taken before relic stored its relic.toml, and no
    /// relic.toml given: its targets are unknown.
    #[error("stack snapshot {0} is older than stack snapshots that store their relic.toml: the stack's relic.toml must say where its parts go")]
    NoConfig(String),
    /// `step` failed with `what` after the restore began changing things:
    /// `done` lists the parts already restored, `safety_snapshot` (hex id)
    /// is the snapshot that holds the stack as it was before, if one was
    /// taken.
    #[error("{step} failed: {what} ({})", failed_note(.done, .safety_snapshot.as_deref()))]
    Failed {
        step: String,
        what: String,
        done: Vec<String>,
        safety_snapshot: Option<String>,
    },
}

/// The directories of the parts a [`Room`] is about, for its error.
fn room_dirs(r: &Room) -> String {
    let dirs: Vec<String> = r
        .parts
        .iter()
        .map(|(_, d)| d.display().to_string())
        .collect();
    dirs.join(", ")
}

/// What a failed restore had restored, and its safety snapshot.
fn failed_note(done: &[String], safety: Option<&str>) -> String {
    format!(
        "restored before it: {}; safety snapshot: {}",
        if done.is_empty() {
            "nothing".to_string()
        } else {
            done.join(", ")
        },
        safety.map_or("none", |s| &s[..8.min(s.len())])
    )
}

pub type Result<T> = std::result::Result<T, Error>;

/// One filesystem a restore writes to: the parts restored onto it (each
/// with its directory), its free bytes, and the bytes they need (their
/// sizes plus 10% and 64 MiB; a database counts half again its dump).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub parts: Vec<(SpacePart, PathBuf)>,
    pub free: u64,
    pub need: u64,
}

/// A part of a stack that takes room on a filesystem when restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpacePart {
    /// A database (the part's name), in its server's data directory.
    Database(String),
    /// The images, in the Docker engine's data root.
    DockerRoot,
    /// The files, under the stack's files root.
    Files,
}

/// A restore target's Alembic revision, as step 2 found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRevision {
    /// The database could not be reached (missing, or its server down):
    /// the restore creates it.
    Unreachable,
    /// It is at this revision (None: no `alembic_version`).
    At(Option<String>),
}

/// Why a restore took no safety snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetySkip {
    /// [`RestoreOptions::safety_snapshot`] was off.
    NotWanted,
    /// None of the parts restored exists now.
    NothingToKeep,
}

/// A part left out of the safety snapshot because it is not there now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Absent {
    /// A database (the part's name) that cannot be reached.
    Database(String),
    /// An image reference the engine does not have.
    Image(String),
    /// A volume the engine does not have.
    Volume(String),
}

/// One step of a stack restore's safety chain, reported as it happens;
/// [`RestoreStep::number`] says which of the chain's [`RESTORE_STEPS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreStep {
    /// Step 1 begins: free space on each filesystem restored onto.
    DiskSpace,
    /// The free space of a part's directory could not be read.
    FreeSpaceUnknown { part: SpacePart, dir: PathBuf },
    /// One filesystem's free space and need (a refusal follows when short).
    Room(Room),
    /// Step 2: the snapshot is verified (`read_data`: every chunk read).
    Verify {
        snapshot: SnapshotId,
        read_data: bool,
    },
    /// Step 2: a database's Alembic revision in the snapshot (None: no
    /// `alembic_version`) beside its target's now.
    Revision {
        part: String,
        snapshot: Option<String>,
        target: TargetRevision,
    },
    /// A dry run, step 3: a safety snapshot would be taken.
    WouldTakeSafetySnapshot,
    /// A dry run, step 4: a database would be replaced from `dump_size`
    /// bytes of dump; `target` is the database and host, no password.
    WouldRestoreDatabase {
        part: String,
        target: String,
        dump_size: u64,
    },
    /// Step 4 (and a dry run's): `count` sessions are connected to the
    /// database `db` of part `part` now; replacing it will terminate them.
    OpenConnections {
        part: String,
        db: String,
        count: i64,
    },
    /// A dry run, step 4: an image would be loaded.
    WouldLoadImage { reference: String, id: String },
    /// A dry run, step 4: `entries` file entries of `bytes` would be
    /// restored under `root`.
    WouldRestoreFiles {
        entries: u64,
        bytes: u64,
        root: PathBuf,
    },
    /// A dry run, step 4: `entries` entries of `bytes` would be written
    /// into `volume` (`exists`: it is there now, and would be emptied
    /// first), stopping the running containers `stops` meanwhile.
    WouldRestoreVolume {
        volume: String,
        entries: u64,
        bytes: u64,
        exists: bool,
        stops: Vec<String>,
    },
    /// A dry run, step 5: a post-restore hook would run.
    WouldRunHook { command: String },
    /// A dry run, step 6: what was restored would be verified.
    WouldVerify,
    /// Step 3: a part is not there now, so the safety snapshot leaves it out.
    NotInSafetySnapshot(Absent),
    /// Step 3: no safety snapshot, and why.
    SafetySnapshotSkipped(SafetySkip),
    /// Step 3: the safety snapshot was taken.
    SafetySnapshotTaken { id: SnapshotId },
    /// Step 4: a database is being replaced (`target` as above).
    RestoringDatabase { part: String, target: String },
    /// Step 4: the images are being loaded, as the engine goes.
    Images(docker::LoadStep),
    /// Step 4: the files are being restored under `root`.
    RestoringFiles { root: PathBuf },
    /// Steps 3 and 4: what a volume's copy (the safety snapshot's) or
    /// restore does.
    Volume(docker::volume::VolumeStep),
    /// Step 4 (pre-restore, before any part is restored) or 5
    /// (post-restore): a hook runs.
    RunningHook { which: String, command: String },
    /// What the hook that ran printed.
    HookOutput { which: String, text: String },
    /// Step 6: what was restored was verified by `checks` checks.
    Verified { checks: usize },
}

/// The number of steps in a stack restore's chain.
pub const RESTORE_STEPS: u8 = 6;

impl RestoreStep {
    /// Which step of the chain (1 to [`RESTORE_STEPS`]) this belongs to.
    pub fn number(&self) -> u8 {
        use RestoreStep as S;
        match self {
            S::DiskSpace | S::FreeSpaceUnknown { .. } | S::Room(_) => 1,
            S::Verify { .. } | S::Revision { .. } => 2,
            S::WouldTakeSafetySnapshot
            | S::NotInSafetySnapshot(_)
            | S::SafetySnapshotSkipped(_)
            | S::SafetySnapshotTaken { .. } => 3,
            S::WouldRestoreDatabase { .. }
            | S::WouldLoadImage { .. }
            | S::WouldRestoreFiles { .. }
            | S::RestoringDatabase { .. }
            | S::OpenConnections { .. }
            | S::Images(_)
            | S::RestoringFiles { .. }
            | S::WouldRestoreVolume { .. }
            | S::Volume(_) => 4,
            S::RunningHook { which, .. } | S::HookOutput { which, .. }
                if which == "pre-restore" =>
            {
                4
            }
            S::WouldRunHook { .. } | S::RunningHook { .. } | S::HookOutput { .. } => 5,
            S::WouldVerify | S::Verified { .. } => 6,
        }
    }
}

/// One step of a drill, reported as it happens; [`DrillStep::number`] says
/// which of its [`DRILL_STEPS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrillStep {
    /// Step 1: every chunk of the snapshot is read and verified.
    Verify { snapshot: SnapshotId },
    /// Step 2, for a snapshot that is neither a stack snapshot nor a
    /// database, image or files backup (a stream): every item is read back
    /// and checked instead.
    NotAStack,
    /// Step 2: a database is restored into a scratch database (`scratch`:
    /// its name and host, no password).
    RestoringDatabase { part: String, scratch: String },
    /// Step 2: the scratch database was dropped (`scratch` as above).
    DroppedDatabase { scratch: String },
    /// Step 3: the images are loaded under scratch tags.
    LoadingImages,
    /// Step 4: the files are restored into the scratch directory `dir`.
    RestoringFiles { dir: PathBuf },
}

/// The number of steps in a drill.
pub const DRILL_STEPS: u8 = 4;

impl DrillStep {
    /// Which step of the drill (1 to [`DRILL_STEPS`]) this belongs to.
    pub fn number(&self) -> u8 {
        match self {
            DrillStep::Verify { .. } => 1,
            DrillStep::NotAStack
            | DrillStep::RestoringDatabase { .. }
            | DrillStep::DroppedDatabase { .. } => 2,
            DrillStep::LoadingImages => 3,
            DrillStep::RestoringFiles { .. } => 4,
        }
    }
}

/// A target without its password, for messages: `db@host`, or the
/// database and its container.
fn redact(target: &postgres::Target) -> String {
    match target {
        postgres::Target::Host(c) => redact_conninfo(c),
        t => t.display(),
    }
}

fn redact_conninfo(conninfo: &str) -> String {
    postgres::config(Some(conninfo))
        .map(|c| {
            format!(
                "{}@{}",
                c.get_dbname().unwrap_or("?"),
                c.get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(h) => h.clone(),
                        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .unwrap_or_else(|| "local socket".into())
            )
        })
        .unwrap_or_else(|_| "?".into())
}

/// The stacks whose every immaculate baseline is named `name`: retiring
/// `name` leaves them none, and an emergency restore of them nothing to
/// restore. Sorted, each once.
pub fn last_baseline_of(repo: &Repository, name: &str) -> Result<Vec<String>> {
    // Per stack: whether it has a baseline named `name`, and another.
    let mut stacks: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
    for (id, s) in repo.snapshots()? {
        if s.tier != crate::snapshot::Tier::Immaculate {
            continue;
        }
        if let Ok(m) = manifest(&id, &s) {
            let e = stacks.entry(m.stack).or_default();
            if s.name == name {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    Ok(stacks
        .into_iter()
        .filter(|(_, (named, other))| *named && !*other)
        .map(|(stack, _)| stack)
        .collect())
}

/// Reports the sessions connected to the database `target` names, which
/// replacing it terminates; an error when the server cannot be asked.
fn report_open_connections(
    part: &str,
    target: &postgres::Target,
    say: &mut dyn FnMut(RestoreStep),
) -> postgres::Result<()> {
    let count = postgres::open_connections(target)?;
    let db = target.database()?;
    say(RestoreStep::OpenConnections {
        part: part.to_string(),
        db,
        count,
    });
    Ok(())
}

/// The snapshot metadata key in which a stack restore's safety snapshot
/// records the tags the restore moves off other images, and the tags that
/// keep those images (JSON: [`docker::Replaced`]s).
pub const REPLACED_TAGS_KEY: &str = "stack.replaced_tags";

/// The metadata a restore's safety snapshot records besides its parts:
/// the tags loading the images of snapshot `id` will move off other images
/// ([`REPLACED_TAGS_KEY`]), when `engine` is given (images are restored)
/// and there are any.
fn safety_meta(
    repo: &Repository,
    id: &SnapshotId,
    engine: Option<&docker::Engine>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut meta = std::collections::BTreeMap::new();
    let Some(engine) = engine else {
        return Ok(meta);
    };
    let snaps = repo.snapshots()?;
    let Some((_, snap)) = snaps.iter().find(|(i, _)| i == id) else {
        return Ok(meta);
    };
    let replaced = docker::replacements(engine, &manifest(id, snap)?.images)?;
    if !replaced.is_empty() {
        meta.insert(
            REPLACED_TAGS_KEY.to_string(),
            serde_json::to_string(&replaced).expect("tags serialize"),
        );
    }
    Ok(meta)
}

/// Every item of a stack snapshot, read once: restore and verification
/// both look items up by path (items are small; content stays in packs).
fn stack_items(repo: &Repository, snap: &Snapshot) -> Result<Vec<Item>> {
    Ok(repo.items(snap).collect::<repo::Result<Vec<_>>>()?)
}

/// Re-reads every restored file and compares size and BLAKE3.
fn verify_files(items: &[Item], root: &Path) -> Result<Vec<Check>> {
    verify_under(items, root, b"files/")
}

/// Re-reads every file item whose path starts with `prefix`, restored
/// under `root` without that prefix, and compares size and BLAKE3.
fn verify_under(items: &[Item], root: &Path, prefix: &[u8]) -> Result<Vec<Check>> {
    let mut checked = 0u64;
    let mut bad = Vec::new();
    for it in items.iter().filter(|i| i.kind == ItemKind::File) {
        let Some(rel) = it.path.strip_prefix(prefix) else {
            continue;
        };
        let path = crate::files::target_path(root, rel)?;
        let found = crate::files::user::hash_file(&path);
        checked += 1;
        match found {
            Ok((n, h)) if n == it.size && h == it.hash => {}
            Ok(_) => bad.push(format!("{} differs", path.display())),
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(vec![Check {
        what: "files: size and blake3".into(),
        expected: format!("{checked} match"),
        found: if bad.is_empty() {
            format!("{checked} match")
        } else {
            bad.join("; ")
        },
        ok: bad.is_empty(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's refusals and failures name no flag of the CLI, nor
    /// its commands: the CLI words those.
    #[test]
    fn errors_name_no_flags_nor_commands() {
        let errors = [
            Error::NoRoom(Room {
                parts: vec![(SpacePart::Files, PathBuf::from("/tiny"))],
                free: 1,
                need: 2,
            }),
            Error::RevisionMismatch {
                part: "main".into(),
                running: "r2".into(),
                snapshot: Some("r1".into()),
            },
            Error::NoConfig("0123abcd".into()),
            Error::Failed {
                step: "post-restore hook".into(),
                what: "false exited with exit status: 1".into(),
                done: vec!["files".into()],
                safety_snapshot: Some("0123456789abcdef".into()),
            },
        ];
        for e in errors {
            let m = e.to_string();
            assert!(!m.contains("--") && !m.contains("relic "), "{m}");
        }
    }

    #[test]
    fn steps_know_their_number() {
        assert_eq!(RestoreStep::DiskSpace.number(), 1);
        assert_eq!(RestoreStep::WouldVerify.number(), RESTORE_STEPS);
        assert_eq!(
            RestoreStep::Images(docker::LoadStep::Engine(String::new())).number(),
            4
        );
        assert_eq!(DrillStep::NotAStack.number(), 2);
        assert_eq!(
            DrillStep::RestoringFiles {
                dir: PathBuf::new()
            }
            .number(),
            DRILL_STEPS
        );
    }
}
