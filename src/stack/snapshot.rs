//! Making a stack snapshot (every part in one snapshot, with its manifest),
//! choosing the parts present now that a restore's safety snapshot keeps,
//! and finding the newest immaculate baseline of a stack.

use super::manifest::{manifest, DbPart, FilesSummary, GitState, Manifest, MANIFEST_KEY};
use super::restore::{wants, Part, RestoreOptions};
use super::{config::CONFIG_ITEM, Error, HookEvent, Result, StackConfig};
use crate::docker::volume::{self, VolumeStep};
use crate::docker::{self, Engine};
use crate::postgres;
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{PartFailure, Snapshot, Tier, PARTIAL_KEY};
use crate::SnapshotId;
use std::path::Path;
use std::process::Command;

/// A stack's backup as its relic.toml describes it: the pre-backup hooks
/// (one failing: no snapshot), the [`snapshot`], then the post-backup
/// hooks (one failing fails the backup; the snapshot stays). `said`
/// hears each hook and its output, `volumes` what the volume copies do.
#[allow(clippy::too_many_arguments)]
pub fn backup(
    repo: &Repository,
    cfg: &StackConfig,
    opts: &SnapshotOptions,
    allow_partial: bool,
    stop: bool,
    progress: &dyn Progress,
    said: &mut dyn FnMut(HookEvent),
    volumes: &mut dyn FnMut(VolumeStep),
) -> Result<(SnapshotId, Snapshot)> {
    super::hooks::run(cfg, "pre-backup", &cfg.hooks.pre_backup, said)?;
    let done = snapshot(repo, cfg, opts, allow_partial, stop, progress, volumes)?;
    super::hooks::run(cfg, "post-backup", &cfg.hooks.post_backup, said).map_err(|e| {
        Error::Hook {
            which: "post-backup".into(),
            command: String::new(),
            what: format!("{e} (snapshot {} was written)", done.0.short()),
        }
    })?;
    Ok(done)
}

/// Backs up every part of the stack into one snapshot (no hooks: a
/// restore's safety snapshot is one too). The engine, every image and
/// volume are looked up and the git state read before anything is
/// written. `stop`: the running containers that use a volume are stopped
/// while it is copied (else a running database's volume fails); `say`
/// hears what the volume copies do.
/// Any part failing leaves no snapshot, unless `allow_partial`: then the
/// parts that succeeded are stored and the snapshot is marked partial
/// ([`crate::snapshot::PARTIAL_KEY`], and the manifest's `partial`) with
/// what failed and why. A partial snapshot is never a baseline: with an
/// immaculate or sacred tier, `allow_partial` is refused up front.
pub fn snapshot(
    repo: &Repository,
    cfg: &StackConfig,
    opts: &SnapshotOptions,
    allow_partial: bool,
    stop: bool,
    progress: &dyn Progress,
    say: &mut dyn FnMut(VolumeStep),
) -> Result<(SnapshotId, Snapshot)> {
    if allow_partial && matches!(opts.tier, Tier::Immaculate | Tier::Sacred) {
        return Err(Error::PartialBaseline { tier: opts.tier });
    }
    let mut failed: Vec<PartFailure> = Vec::new();
    // A part's failure: the snapshot's when partial snapshots are allowed,
    // else the whole command's.
    let fail = |failed: &mut Vec<PartFailure>, part: String, e: Error| {
        if allow_partial {
            failed.push(PartFailure {
                part,
                error: e.to_string(),
            });
            Ok(())
        } else {
            Err(e)
        }
    };
    let wants_engine = !cfg.images.is_empty()
        || !cfg.volumes.is_empty()
        || cfg.compose
        || cfg.databases.iter().any(|d| d.service.is_some());
    let engine = if !wants_engine {
        None
    } else {
        match Engine::connect() {
            Ok(e) => Some(e),
            Err(e) => {
                let part = if cfg.images.is_empty() {
                    "volumes"
                } else {
                    "images"
                };
                fail(&mut failed, part.into(), e.into())?;
                None
            }
        }
    };
    // The compose project's containers: the images when the stack lists
    // none, and the names compose runs each image by.
    let containers = match &engine {
        Some(e) => match e.compose_containers(&cfg.project()) {
            Ok(c) => c,
            Err(err) => {
                fail(&mut failed, "images".into(), err.into())?;
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let images = if cfg.compose && cfg.images.is_empty() {
        if engine.is_some() && containers.is_empty() {
            fail(
                &mut failed,
                "images".into(),
                Error::Refused(format!(
                    "compose project '{}' has no containers (is it up? set `project` in relic.toml to its name)",
                    cfg.project()
                )),
            )?;
        }
        super::compose::image_names(&containers)
    } else {
        cfg.images.clone()
    };
    let mut found = Vec::new();
    if let Some(e) = &engine {
        for r in &images {
            match e.inspect(r) {
                Ok(info) => found.push((r, info)),
                Err(err) => fail(&mut failed, format!("images/{r}"), err.into())?,
            }
        }
    }
    let mut volumes = Vec::new();
    if let Some(e) = &engine {
        for v in &cfg.volumes {
            match e.volume(v) {
                Ok(_) => volumes.push(v),
                Err(err) => fail(&mut failed, volume::item_name(v), err.into())?,
            }
        }
    }
    let git = match &cfg.git {
        Some(g) => match git_state(&cfg.resolve(g.path.as_deref().unwrap_or(&cfg.files_root()))) {
            Ok(g) => Some(g),
            Err(e) => {
                fail(&mut failed, "git".into(), e)?;
                None
            }
        },
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
            let dumped = cfg.target(d).and_then(|t| Ok(postgres::dump_into(w, &t)?));
            let (info, s) = match dumped {
                Ok(done) => done,
                Err(e) => {
                    fail(&mut failed, format!("db/{}", d.name), e)?;
                    continue;
                }
            };
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
            for (r, info) in &found {
                match docker::export_into(w, e, r, info, progress) {
                    Ok(mut record) => {
                        record.compose_tags =
                            super::compose::compose_tags(&containers, &record.id, &record.tags);
                        m.images.push(record)
                    }
                    Err(err) => fail(&mut failed, format!("images/{r}"), err.into())?,
                }
            }
        }
        if let Some(f) = &cfg.files {
            progress.start("files", None, Unit::Bytes);
            let root = cfg.files_root();
            let (items0, bytes0) = w.totals();
            match crate::files::backup_under(w, &root, &f.paths, "files") {
                Ok(()) => {
                    let (items1, bytes1) = w.totals();
                    m.files = Some(FilesSummary {
                        root: root.display().to_string(),
                        paths: f.paths.iter().map(|p| p.display().to_string()).collect(),
                        entries: items1 - items0,
                        bytes: bytes1 - bytes0,
                    });
                }
                Err(e) => fail(&mut failed, "files".into(), e.into())?,
            }
        }
        if let Some(e) = &engine {
            for v in &volumes {
                match volume::backup_into(w, e, v, stop, progress, say) {
                    Ok(record) => m.volumes.push(record),
                    Err(err) => fail(&mut failed, volume::item_name(v), err.into())?,
                }
            }
        }
        // The relic.toml itself: the snapshot restores with nothing else.
        let s = w.store_stream(cfg.text.as_bytes())?;
        w.add_item(&s.into_item(CONFIG_ITEM, 0o600))?;
        let root = repo.backend().root();
        m.restore_command = format!(
            "relic -r {} restore <this snapshot>",
            crate::files::user::canonical(root).display(),
        );
        if !failed.is_empty() {
            w.set_meta(
                PARTIAL_KEY,
                serde_json::to_string(&failed).expect("failures serialize"),
            );
            m.partial = failed;
        }
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
        if !m.volumes.is_empty() {
            w.set_meta(
                volume::META_KEY,
                serde_json::to_string(&m.volumes).expect("records serialize"),
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
/// reachable databases, images and volumes in the engine, files on disk;
/// None when nothing exists.
pub(super) fn present_parts(
    cfg: &StackConfig,
    opts: &RestoreOptions,
    engine: Option<&Engine>,
) -> Option<StackConfig> {
    let mut c = cfg.clone();
    c.git = None;
    c.databases.retain(|d| {
        wants(opts, Part::Db) && cfg.target(d).is_ok_and(|t| postgres::revision(&t).is_ok())
    });
    c.images
        .retain(|r| wants(opts, Part::Images) && engine.is_some_and(|e| e.inspect(r).is_ok()));
    c.volumes
        .retain(|v| wants(opts, Part::Volumes) && engine.is_some_and(|e| e.volume(v).is_ok()));
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
    if c.databases.is_empty() && c.images.is_empty() && c.volumes.is_empty() && c.files.is_none() {
        return None;
    }
    Some(c)
}

/// The newest immaculate baseline of stack `stack`, or, with None, the
/// newest immaculate snapshot of the repository (stack or not).
pub fn newest_baseline(repo: &Repository, stack: Option<&str>) -> Result<(SnapshotId, Snapshot)> {
    let snaps = repo.snapshots()?;
    snaps
        .into_iter()
        .rev()
        .find(|(id, s)| {
            s.tier == Tier::Immaculate
                && stack.is_none_or(|name| manifest(id, s).is_ok_and(|m| m.stack == name))
        })
        .ok_or_else(|| Error::NoBaseline {
            stack: stack.unwrap_or("(any)").to_string(),
        })
}

/// The stacks that have an immaculate baseline in the repository, sorted.
pub fn stacks_with_baselines(repo: &Repository) -> Result<Vec<String>> {
    let mut out: Vec<String> = repo
        .snapshots()?
        .iter()
        .filter(|(_, s)| s.tier == Tier::Immaculate)
        .filter_map(|(id, s)| manifest(id, s).ok().map(|m| m.stack))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}
