//! Making a stack snapshot (every part in one snapshot, with its manifest),
//! choosing the parts present now that a restore's safety snapshot keeps,
//! and finding the newest immaculate baseline of a stack.

use super::manifest::{manifest, DbPart, FilesSummary, GitState, Manifest, MANIFEST_KEY};
use super::restore::{wants, Part, RestoreOptions};
use super::{Error, Result, StackConfig};
use crate::docker::{self, Engine};
use crate::postgres;
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{Snapshot, Tier};
use crate::SnapshotId;
use std::path::Path;
use std::process::Command;

/// Backs up every part of the stack into one snapshot. The engine and every
/// image are looked up and the git state read before anything is written;
/// any part failing leaves no snapshot.
pub fn snapshot(
    repo: &Repository,
    cfg: &StackConfig,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let engine = if cfg.images.is_empty() {
        None
    } else {
        Some(Engine::connect()?)
    };
    let found = match &engine {
        Some(e) => cfg
            .images
            .iter()
            .map(|r| e.inspect(r))
            .collect::<docker::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let git = match &cfg.git {
        Some(g) => Some(git_state(
            &cfg.resolve(g.path.as_deref().unwrap_or(&cfg.files_root())),
        )?),
        None => None,
    };
    let mut m = Manifest {
        stack: cfg.name.clone(),
        config: cfg.path.display().to_string(),
        git,
        ..Default::default()
    };
    repo.backup(opts, progress, |w| {
        for d in &cfg.databases {
            progress.start(&format!("dumping {}", d.name), None, Unit::Bytes);
            let pg = postgres::config(Some(&d.conninfo))?;
            let (info, s) = postgres::dump_into(w, Some(&d.conninfo), &pg)?;
            let item = format!("db/{}.sql", d.name);
            m.databases.push(DbPart {
                name: d.name.clone(),
                item: item.clone(),
                database: info.database,
                server_version: info.server_version,
                alembic_revision: info.alembic_revision,
                tables: info.tables,
                size: s.size,
                blake3: hex::encode(s.hash),
            });
            w.add_item(&s.into_item(&item, 0o600))?;
        }
        if let Some(e) = &engine {
            for (r, info) in cfg.images.iter().zip(&found) {
                m.images.push(docker::export_into(w, e, r, info, progress)?);
            }
        }
        if let Some(f) = &cfg.files {
            progress.start("files", None, Unit::Bytes);
            let root = cfg.files_root();
            let (items0, bytes0) = w.totals();
            crate::files::backup_under(w, &root, &f.paths, "files")?;
            let (items1, bytes1) = w.totals();
            m.files = Some(FilesSummary {
                root: root.display().to_string(),
                paths: f.paths.iter().map(|p| p.display().to_string()).collect(),
                entries: items1 - items0,
                bytes: bytes1 - bytes0,
            });
        }
        let root = repo.backend().root();
        m.restore_command = format!(
            "relic -r {} restore <this snapshot> --config {}",
            crate::files::user::canonical(root).display(),
            cfg.path.display()
        );
        w.set_meta(
            MANIFEST_KEY,
            serde_json::to_string(&m).expect("manifest serializes"),
        );
        if !m.images.is_empty() {
            w.set_meta(
                docker::META_KEY,
                serde_json::to_string(&m.images).expect("records serialize"),
            );
        }
        Ok(())
    })
}

fn git_state(path: &Path) -> Result<GitState> {
    let run = |args: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(path)
            .args(args)
            .output()
            .map_err(|e| Error::Config {
                path: path.display().to_string(),
                what: format!("cannot run git: {e}"),
            })?;
        if !out.status.success() {
            return Err(Error::Config {
                path: path.display().to_string(),
                what: format!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    Ok(GitState {
        path: path.display().to_string(),
        commit: run(&["rev-parse", "HEAD"])?,
        dirty: !run(&["status", "--porcelain"])?.is_empty(),
    })
}

/// The stack with only the parts that exist now (for the safety snapshot):
/// reachable databases, images in the engine, files on disk; None when
/// nothing exists.
pub(super) fn present_parts(
    cfg: &StackConfig,
    opts: &RestoreOptions,
    engine: Option<&Engine>,
) -> Option<StackConfig> {
    let mut c = cfg.clone();
    c.git = None;
    c.databases
        .retain(|d| wants(opts, Part::Db) && postgres::revision(&d.conninfo).is_ok());
    c.images
        .retain(|r| wants(opts, Part::Images) && engine.is_some_and(|e| e.inspect(r).is_ok()));
    let root = cfg.files_root();
    if let Some(f) = &mut c.files {
        if wants(opts, Part::Files) {
            f.paths
                .retain(|p| crate::files::user::exists_no_follow(&root.join(p)));
        } else {
            f.paths.clear();
        }
        if f.paths.is_empty() {
            c.files = None;
        }
    }
    if c.databases.is_empty() && c.images.is_empty() && c.files.is_none() {
        return None;
    }
    Some(c)
}

/// The newest immaculate stack snapshot of this stack.
pub fn newest_baseline(repo: &Repository, cfg: &StackConfig) -> Result<(SnapshotId, Snapshot)> {
    let snaps = repo.snapshots()?;
    snaps
        .into_iter()
        .rev()
        .find(|(id, s)| {
            s.tier == Tier::Immaculate && manifest(id, s).is_ok_and(|m| m.stack == cfg.name)
        })
        .ok_or_else(|| Error::NoBaseline {
            stack: cfg.name.clone(),
        })
}
