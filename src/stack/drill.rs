//! Restore drills: proving a snapshot restores without touching production,
//! into scratch databases, scratch image tags and a scratch directory. Each
//! step is reported as a [`DrillStep`] as it happens.

use super::manifest::manifest;
use super::{redact, stack_items, verify_files, DrillStep, Error, Result, StackConfig};
use crate::docker::{self, Engine};
use crate::postgres::{self, Check};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{ItemKind, Snapshot};
use crate::SnapshotId;

/// Proves a snapshot restores without touching production: reads and
/// verifies every chunk, restores each database into a scratch database,
/// loads each image under scratch tags, restores the files into a scratch
/// directory, verifies all of it, and removes the scratch copies. A
/// snapshot that is not a stack snapshot is read back item by item. `say`
/// hears each step as it happens. The scratch databases go on the servers
/// of the relic.toml the snapshot stores, or of `cfg` when given (its
/// targets override the stored ones, as in a restore).
pub fn drill(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    cfg: Option<&StackConfig>,
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
    let mut checks = Vec::new();
    let Ok(m) = manifest(id, snap) else {
        say(DrillStep::NotAStack);
        let mut n = 0u64;
        for item in repo.items(snap) {
            let item = item?;
            if matches!(item.kind, ItemKind::File | ItemKind::Stream) {
                repo.restore_item(&item, &mut std::io::sink(), progress)?;
                n += 1;
            }
        }
        checks.push(Check {
            what: "items read back, size and blake3".into(),
            expected: n.to_string(),
            found: n.to_string(),
            ok: true,
        });
        return Ok(checks);
    };
    let tag = format!("{}", std::process::id());
    let items = stack_items(repo, snap)?;
    let targets = if m.databases.is_empty() {
        None
    } else {
        Some(StackConfig::for_snapshot(repo, id, snap, cfg.cloned())?.0)
    };
    for d in &m.databases {
        let cfg = targets.as_ref().expect("resolved above");
        let part = cfg.database(&d.name).ok_or_else(|| {
            Error::Refused(format!(
                "{} has no [[database]] named '{}'",
                cfg.path.display(),
                d.name
            ))
        })?;
        let scratch = with_scratch_db(&part.conninfo, &format!("relic_drill_{}_{tag}", d.name));
        say(DrillStep::RestoringDatabase {
            part: d.name.clone(),
            scratch: redact(&scratch),
        });
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| Error::Refused(format!("item {} is missing", d.item)))?;
        let r = postgres::load_dump(
            repo,
            item,
            &scratch,
            postgres::LoadMode::Recreate,
            "",
            progress,
        )
        .and_then(|()| postgres::verify_db(&scratch, &d.info()));
        let dropped = postgres::drop_database(&scratch);
        for mut c in r? {
            c.what = format!("{}: {}", d.name, c.what);
            checks.push(c);
        }
        dropped?;
    }
    if !m.images.is_empty() {
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
        let (image_checks, scratch) = docker::load_scratch(repo, snap, &rename, progress)?;
        let engine = Engine::connect()?;
        for s in &scratch {
            engine.untag(s)?;
        }
        checks.extend(image_checks);
    }
    if m.files.is_some() {
        let dir = std::env::temp_dir().join(format!("relic-drill-{tag}"));
        say(DrillStep::RestoringFiles { dir: dir.clone() });
        let r = crate::files::restore_mapped(
            repo,
            snap,
            &dir,
            &|p| p.strip_prefix(b"files/").map(<[u8]>::to_vec),
            progress,
        )
        .and_then(crate::files::RestoreStats::ensure_complete)
        .map_err(Error::from)
        .and_then(|_| verify_files(&items, &dir));
        let _ = crate::files::user::remove_tree(&dir);
        checks.extend(r?);
    }
    Ok(checks)
}

/// `conninfo` pointed at a scratch database.
fn with_scratch_db(conninfo: &str, name: &str) -> String {
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
    postgres::with_dbname(conninfo, &clean)
}
