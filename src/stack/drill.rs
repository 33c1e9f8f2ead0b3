//! Restore drills: proving a snapshot restores without touching production,
//! into scratch databases, scratch image tags and a scratch directory. Each
//! step is reported as a [`DrillStep`] as it happens.

use super::manifest::manifest;
use super::{redact, stack_items, verify_under, DrillStep, Error, Result, StackConfig};
use crate::docker::{self, Engine};
use crate::postgres::{self, Check, DbInfo};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{Item, ItemKind, Snapshot};
use crate::SnapshotId;

/// Proves a snapshot restores without touching production: reads and
/// verifies every chunk, restores each database into a scratch database,
/// loads each image under scratch tags, restores the files into a scratch
/// directory, verifies all of it, and removes the scratch copies.
///
/// A snapshot that is not a stack snapshot is drilled by what it holds: a
/// database backup (`source` = `postgres`) is restored into a scratch
/// database and checked against the revision and row counts it recorded;
/// an image backup is loaded under scratch tags; a tree of files is
/// restored into a scratch directory and every file checked; anything
/// else (a stream) is read back item by item.
///
/// The scratch databases are made on `on.server` (a conninfo; its database
/// is replaced) when given, each loaded on `on.jobs` sessions; else a stack's databases on the servers `cfg`
/// gives them (the relic.toml the snapshot stores, with the targets of
/// `cfg` when given), a database backup
/// on the server it recorded, or libpq's defaults when it recorded none.
/// `say` hears each step as it happens.
/// Where and how a drill makes its scratch databases.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scratch<'a> {
    /// The server (a conninfo) instead of the ones the snapshot gives.
    pub server: Option<&'a str>,
    /// Sessions loading each database (see [`postgres::load_verified`]).
    pub jobs: usize,
}

pub fn drill(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    cfg: Option<&StackConfig>,
    on: Scratch<'_>,
    progress: &dyn Progress,
    say: &mut dyn FnMut(DrillStep),
) -> Result<Vec<Check>> {
    say(DrillStep::Verify { snapshot: *id });
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, true)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}; it would not restore",
            id.short()
        )));
    }
    let tag = format!("{}", std::process::id());
    let Ok(m) = manifest(id, snap) else {
        return drill_plain(repo, id, snap, on, &tag, progress, say);
    };
    let mut checks = Vec::new();
    let items = stack_items(repo, snap)?;
    let targets = if m.databases.is_empty() || on.server.is_some() {
        None
    } else {
        Some(StackConfig::for_snapshot(repo, id, snap, cfg.cloned())?.0)
    };
    for d in &m.databases {
        let target = match on.server {
            Some(s) => postgres::Target::Host(s.to_string()),
            None => {
                let cfg = targets.as_ref().expect("resolved above");
                cfg.target(cfg.database(&d.name).ok_or_else(|| {
                    Error::Refused(format!(
                        "{} has no [[database]] named '{}'",
                        cfg.path.display(),
                        d.name
                    ))
                })?)?
            }
        };
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| Error::Refused(format!("item {} is missing", d.item)))?;
        let r = scratch_database(
            repo,
            item,
            &target,
            &d.name,
            &d.info(),
            &tag,
            on.jobs,
            progress,
            say,
        );
        checks.extend(r?);
    }
    if !m.images.is_empty() {
        checks.extend(scratch_images(repo, snap, &tag, progress, say)?);
    }
    if m.files.is_some() {
        checks.extend(scratch_files(
            repo, snap, &items, b"files/", &tag, progress, say,
        )?);
    }
    Ok(checks)
}

/// A snapshot that is not a stack snapshot, drilled by what it holds (see
/// [`drill`]).
fn drill_plain(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    on: Scratch<'_>,
    tag: &str,
    progress: &dyn Progress,
    say: &mut dyn FnMut(DrillStep),
) -> Result<Vec<Check>> {
    let items = stack_items(repo, snap)?;
    if let Ok(info) = DbInfo::from_snapshot(id, snap) {
        let item = items
            .iter()
            .find(|i| i.path == postgres::DUMP_ITEM.as_bytes())
            .ok_or_else(|| postgres::Error::NotADump(id.short()))?;
        // The server given, else the container the backup was taken in,
        // else the server it recorded.
        let target = match (on.server, snap.meta.get("pg.container")) {
            (Some(s), _) => postgres::Target::Host(s.to_string()),
            (None, Some(c)) => postgres::Target::Container {
                container: c.clone(),
                conninfo: String::new(),
            },
            (None, None) => {
                postgres::Target::Host(postgres::recorded_server(&snap.meta).unwrap_or_default())
            }
        };
        let name = if info.database.is_empty() {
            "db"
        } else {
            &info.database
        };
        return scratch_database(
            repo, item, &target, name, &info, tag, on.jobs, progress, say,
        );
    }
    if !docker::records(snap)?.is_empty() {
        return scratch_images(repo, snap, tag, progress, say);
    }
    if items.iter().any(|i| i.kind != ItemKind::Stream) {
        return scratch_files(repo, snap, &items, b"", tag, progress, say);
    }
    say(DrillStep::NotAStack);
    for item in &items {
        repo.restore_item(item, &mut std::io::sink(), progress)?;
    }
    let n = items.len().to_string();
    Ok(vec![Check {
        what: "items read back, size and blake3".into(),
        expected: n.clone(),
        found: n,
        ok: true,
    }])
}

/// Restores the dump `item` into the scratch database
/// `relic_drill_<name>_<tag>` on the server of `target`, checks it
/// against `info` (the Alembic revision and every table's row count) and
/// drops it, whether the restore and checks passed or not. The checks are
/// named after `name`.
#[allow(clippy::too_many_arguments)]
fn scratch_database(
    repo: &Repository,
    item: &Item,
    target: &postgres::Target,
    name: &str,
    info: &DbInfo,
    tag: &str,
    jobs: usize,
    progress: &dyn Progress,
    say: &mut dyn FnMut(DrillStep),
) -> Result<Vec<Check>> {
    let scratch = with_scratch_db(target, &format!("relic_drill_{name}_{tag}"));
    say(DrillStep::RestoringDatabase {
        part: name.to_string(),
        scratch: redact(&scratch),
    });
    let r = postgres::load_verified(
        repo,
        item,
        &scratch,
        postgres::LoadMode::Recreate,
        jobs,
        info,
        progress,
    );
    let dropped = postgres::drop_database(&scratch);
    let mut checks = r?;
    dropped?;
    say(DrillStep::DroppedDatabase {
        scratch: redact(&scratch),
    });
    for c in &mut checks {
        c.what = format!("{name}: {}", c.what);
    }
    Ok(checks)
}

/// Loads a snapshot's images under scratch tags (`relic-drill-<tag>/…`),
/// checks their ids and removes the tags.
fn scratch_images(
    repo: &Repository,
    snap: &Snapshot,
    tag: &str,
    progress: &dyn Progress,
    say: &mut dyn FnMut(DrillStep),
) -> Result<Vec<Check>> {
    say(DrillStep::LoadingImages);
    let rename = |t: &str| {
        let clean: String = t
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("relic-drill-{tag}/{clean}:drill")
    };
    let (checks, scratch) = docker::load_scratch(repo, snap, &rename, progress)?;
    let engine = Engine::connect()?;
    for s in &scratch {
        engine.untag(s)?;
    }
    Ok(checks)
}

/// Restores the snapshot's items under `prefix` (without it) into the
/// scratch directory `relic-drill-<tag>` under the temp dir, checks every
/// file's size and BLAKE3, and removes the directory.
fn scratch_files(
    repo: &Repository,
    snap: &Snapshot,
    items: &[Item],
    prefix: &[u8],
    tag: &str,
    progress: &dyn Progress,
    say: &mut dyn FnMut(DrillStep),
) -> Result<Vec<Check>> {
    let dir = std::env::temp_dir().join(format!("relic-drill-{tag}"));
    say(DrillStep::RestoringFiles { dir: dir.clone() });
    let r = crate::files::restore_mapped(
        repo,
        snap,
        &dir,
        &|p| p.strip_prefix(prefix).map(<[u8]>::to_vec),
        progress,
    )
    .and_then(crate::files::RestoreStats::ensure_complete)
    .map_err(Error::from)
    .and_then(|_| verify_under(items, &dir, prefix));
    let _ = crate::files::user::remove_tree(&dir);
    r
}

/// `target`'s server, at a scratch database.
fn with_scratch_db(target: &postgres::Target, name: &str) -> postgres::Target {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    target.with_database(&clean)
}
