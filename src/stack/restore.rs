//! Restoring a stack snapshot over the running stack through the safety
//! chain: disk space, verify, safety snapshot, restore of each part, hooks,
//! verification of what was restored. Each step is reported as a
//! [`RestoreStep`] as it happens.

use super::manifest::{manifest, DbPart, FilesSummary, Manifest};
use super::snapshot::{present_parts, snapshot};
use super::{redact, stack_items, verify_files, Error, HookEvent, Result, StackConfig};
use super::{Absent, RestoreStep, Room, SafetySkip, SpacePart, TargetRevision};
use crate::docker::volume::{self, VolumeRecord};
use crate::docker::{self, Engine, ImageRecord};
use crate::postgres::{self, Check};
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{Item, Snapshot, Tier};
use crate::SnapshotId;
use serde::Serialize;
use std::path::PathBuf;

mod volumes;

/// Which parts a restore touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Db,
    Images,
    Files,
    Volumes,
}

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Part, String> {
        match s {
            "db" => Ok(Part::Db),
            "images" => Ok(Part::Images),
            "files" => Ok(Part::Files),
            "volumes" => Ok(Part::Volumes),
            _ => Err(format!("'{s}' is not a part: db, images, files or volumes")),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub only: Option<Part>,
    pub dry_run: bool,
    pub verify_data: bool,
    pub safety_snapshot: bool,
    /// Restore a database alone despite an Alembic revision mismatch.
    pub force: bool,
    /// Stop the running containers that use a volume restored into (and
    /// start them again after); without it such a volume is refused.
    pub stop: bool,
    /// Sessions loading each database at once (see
    /// [`postgres::load_parallel`]); 0 or 1 loads in one transaction.
    pub jobs: usize,
}

/// What a restore did and checked.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub safety_snapshot: Option<String>,
    pub checks: Vec<Check>,
    pub restored: bool,
}

/// Whether the restore touches part `p` (all of them when `only` is None).
pub(super) fn wants(opts: &RestoreOptions, p: Part) -> bool {
    opts.only.is_none_or(|o| o == p)
}

/// Restores a stack snapshot through the chain: disk space, verify, safety
/// snapshot, restore (databases, then images, files and volumes), hooks,
/// verify.
/// Each step must pass before the next; `say` hears each as it happens. A
/// refusal before anything changed is [`Error::Refused`],
/// [`Error::NoRoom`] or [`Error::RevisionMismatch`]; a failure after is
/// [`Error::Failed`], which says what was restored and the safety snapshot.
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    cfg: &StackConfig,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<Report> {
    let m = manifest(id, snap)?;
    let plan = Plan::new(&m, cfg, opts)?;
    let engine = check_disk_space(&plan, say)?;
    verify_snapshot(repo, id, snap, opts, say)?;
    check_alembic_revisions(&plan, opts, say)?;
    let targets = volumes::check_in_use(&plan, engine.as_ref(), opts)?;
    if opts.dry_run {
        describe_dry_run(&plan, cfg, &targets, say);
        return Ok(Report::default());
    }
    let safety = take_safety_snapshot(repo, id, cfg, opts, engine.as_ref(), progress, say)?;
    let mut trail = Trail::new(safety.as_deref());
    let items = stack_items(repo, snap)?;
    run_hooks(cfg, "pre-restore", &trail, say)?;
    restore_databases(repo, &plan, &items, opts.jobs, &mut trail, progress, say)?;
    let image_checks = restore_images(repo, snap, &plan, &mut trail, progress, say)?;
    restore_files(repo, snap, &plan, &mut trail, progress, say)?;
    let e = engine.as_ref();
    volumes::restore(repo, snap, &plan, e, opts, &mut trail, progress, say)?;
    run_hooks(cfg, "post-restore", &trail, say)?;
    let checks = verify_restored(&plan, &items, image_checks, opts.jobs, &trail, say)?;
    Ok(Report {
        safety_snapshot: safety,
        checks,
        restored: true,
    })
}

/// What a restore touches: the parts of the manifest that `only` selects,
/// each database with the target the config gives it, and the directory
/// the files go under.
struct Plan<'m> {
    /// Each database part with where it is restored into.
    dbs: Vec<(&'m DbPart, postgres::Target)>,
    images: &'m [ImageRecord],
    volumes: &'m [VolumeRecord],
    files: Option<&'m FilesSummary>,
    files_root: PathBuf,
}

impl<'m> Plan<'m> {
    /// Selects the parts; refuses a database the config has no
    /// `[[database]]` for.
    fn new(m: &'m Manifest, cfg: &StackConfig, opts: &RestoreOptions) -> Result<Plan<'m>> {
        let mut dbs = Vec::new();
        if wants(opts, Part::Db) {
            for d in &m.databases {
                let t = cfg.database(&d.name).ok_or_else(|| {
                    Error::Refused(format!(
                        "the snapshot holds database '{}' but {} has no [[database]] named so",
                        d.name,
                        cfg.path.display()
                    ))
                })?;
                dbs.push((d, cfg.target(t)?));
            }
        }
        Ok(Plan {
            dbs,
            images: if wants(opts, Part::Images) {
                &m.images
            } else {
                &[]
            },
            volumes: if wants(opts, Part::Volumes) {
                &m.volumes
            } else {
                &[]
            },
            files: if wants(opts, Part::Files) {
                m.files.as_ref()
            } else {
                None
            },
            files_root: cfg.files_root(),
        })
    }
}

/// Step 1: refuses, before anything is changed, when a filesystem a part is
/// restored onto lacks room for it (the parts' sizes plus 10% and 64 MiB per
/// filesystem; a database counts half again its dump for tables and
/// indexes). Connects to the Docker engine when images or volumes are
/// restored, to find its data root (where local volumes are too), and
/// returns it for the safety snapshot and the volumes.
fn check_disk_space(plan: &Plan, say: &mut dyn FnMut(RestoreStep)) -> Result<Option<Engine>> {
    say(RestoreStep::DiskSpace);
    let engine = if plan.images.is_empty() && plan.volumes.is_empty() {
        None
    } else {
        Some(Engine::connect()?)
    };
    let mut needs: Vec<(SpacePart, PathBuf, u64)> = Vec::new();
    for (d, db_target) in &plan.dbs {
        if let Some(dir) = postgres::data_directory(db_target) {
            // Tables and indexes take more room than their dump.
            needs.push((
                SpacePart::Database(d.name.clone()),
                dir,
                d.size + d.size / 2,
            ));
        }
    }
    if let Some(e) = &engine {
        if let Some(dir) = e.root_dir() {
            needs.push((
                SpacePart::DockerRoot,
                dir,
                plan.images.iter().map(|i| i.size).sum::<u64>()
                    + plan.volumes.iter().map(|v| v.bytes).sum::<u64>(),
            ));
        }
    }
    if let Some(f) = plan.files {
        needs.push((SpacePart::Files, plan.files_root.clone(), f.bytes));
    }
    let mut per_fs: std::collections::BTreeMap<u64, Room> = Default::default();
    for (part, dir, need) in needs {
        // A directory the restore creates (the files' root on a new host)
        // takes its room from the nearest one there now.
        let probe = dir.ancestors().find(|d| d.exists()).unwrap_or(&dir);
        match crate::sys::free_space(probe) {
            Some((free, dev)) => {
                let r = per_fs.entry(dev).or_insert(Room {
                    parts: Vec::new(),
                    free,
                    need: 0,
                });
                r.need += need + need / 10 + (64 << 20);
                r.parts.push((part, dir));
            }
            None => say(RestoreStep::FreeSpaceUnknown { part, dir }),
        }
    }
    for room in per_fs.into_values() {
        say(RestoreStep::Room(room.clone()));
        if room.free < room.need {
            return Err(Error::NoRoom(room));
        }
    }
    Ok(engine)
}

/// Step 2: refuses a damaged snapshot, checked through the index and the
/// packs, or by reading every chunk when `verify_data` says so.
fn verify_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &RestoreOptions,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<()> {
    say(RestoreStep::Verify {
        snapshot: *id,
        read_data: opts.verify_data,
    });
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, opts.verify_data)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}; nothing was changed",
            id.short()
        )));
    }
    Ok(())
}

/// Step 2: says each database's Alembic revision in the snapshot beside
/// the target's now (a mismatch is what an emergency restore undoes, and
/// the dry run shows it). A database restored alone
/// ([`RestoreOptions::only`]) must match the code that stays, so a running
/// database at another revision than the snapshot's is refused unless
/// [`RestoreOptions::force`].
fn check_alembic_revisions(
    plan: &Plan,
    opts: &RestoreOptions,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<()> {
    for (d, db_target) in &plan.dbs {
        let target = postgres::revision(db_target);
        say(RestoreStep::Revision {
            part: d.name.clone(),
            snapshot: d.alembic_revision.clone(),
            target: match &target {
                Ok(r) => TargetRevision::At(r.clone()),
                Err(_) => TargetRevision::Unreachable,
            },
        });
        if opts.only != Some(Part::Db) {
            continue;
        }
        if let Some(rev) = target? {
            if Some(&rev) != d.alembic_revision.as_ref() && !opts.force {
                return Err(Error::RevisionMismatch {
                    part: d.name.clone(),
                    running: rev,
                    snapshot: d.alembic_revision.clone(),
                });
            }
        }
    }
    Ok(())
}

/// A dry run, after the checks: says what steps 3 to 6 would do, and
/// changes nothing.
fn describe_dry_run(
    plan: &Plan,
    cfg: &StackConfig,
    targets: &[volume::Target],
    say: &mut dyn FnMut(RestoreStep),
) {
    say(RestoreStep::WouldTakeSafetySnapshot);
    for (d, db_target) in &plan.dbs {
        say(RestoreStep::WouldRestoreDatabase {
            part: d.name.clone(),
            target: redact(db_target),
            dump_size: d.size,
        });
        // A server that cannot be asked now is the restore's to report.
        let _ = super::report_open_connections(&d.name, db_target, say);
    }
    for i in plan.images {
        say(RestoreStep::WouldLoadImage {
            reference: i.reference.clone(),
            id: i.id.clone(),
        });
    }
    if let Some(f) = plan.files {
        say(RestoreStep::WouldRestoreFiles {
            entries: f.entries,
            bytes: f.bytes,
            root: plan.files_root.clone(),
        });
    }
    volumes::describe(plan, targets, say);
    for (which, list) in [
        ("pre-restore", &cfg.hooks.pre_restore),
        ("post-restore", &cfg.hooks.post_restore),
    ] {
        for h in list {
            say(RestoreStep::WouldRunHook {
                command: format!("{which}: {h}"),
            });
        }
    }
    say(RestoreStep::WouldVerify);
}

/// Step 3: snapshots the parts of the stack present now (tier `safety`,
/// labelled with the snapshot being restored), so the restore can be
/// undone; each part not there now is reported. Returns the safety
/// snapshot's id, or None when it was not wanted or nothing was there to
/// keep.
fn take_safety_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    cfg: &StackConfig,
    opts: &RestoreOptions,
    engine: Option<&Engine>,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<Option<String>> {
    if !opts.safety_snapshot {
        say(RestoreStep::SafetySnapshotSkipped(SafetySkip::NotWanted));
        return Ok(None);
    }
    // present_parts keeps the parts there now; what it left out is told
    // from what it kept.
    let current = present_parts(cfg, opts, engine);
    for a in absent_parts(cfg, opts, current.as_ref()) {
        say(RestoreStep::NotInSafetySnapshot(a));
    }
    let Some(current) = current else {
        say(RestoreStep::SafetySnapshotSkipped(
            SafetySkip::NothingToKeep,
        ));
        return Ok(None);
    };
    let safety = SnapshotOptions {
        name: format!("safety-{}", cfg.name),
        tier: Tier::Safety,
        labels: [("restoring".to_string(), id.to_hex())]
            .into_iter()
            .collect(),
        meta: super::safety_meta(repo, id, engine)?,
        time_ns: None,
    };
    let mut on = |s| say(RestoreStep::Volume(s));
    let (sid, _) = snapshot(repo, &current, &safety, false, opts.stop, progress, &mut on)?;
    say(RestoreStep::SafetySnapshotTaken { id: sid });
    Ok(Some(sid.to_hex()))
}

/// The databases and images the restore touches that `present` (the
/// stack as present now, None when nothing is) lacks, in the config's
/// order: databases first, then images.
fn absent_parts(
    cfg: &StackConfig,
    opts: &RestoreOptions,
    present: Option<&StackConfig>,
) -> Vec<Absent> {
    let mut out = Vec::new();
    if wants(opts, Part::Db) {
        for d in &cfg.databases {
            if !present.is_some_and(|p| p.databases.iter().any(|k| k.name == d.name)) {
                out.push(Absent::Database(d.name.clone()));
            }
        }
    }
    if wants(opts, Part::Images) {
        for r in &cfg.images {
            if !present.is_some_and(|p| p.images.contains(r)) {
                out.push(Absent::Image(r.clone()));
            }
        }
    }
    volumes::absent(cfg, opts, present, &mut out);
    out
}

/// What the restore has changed so far, and the safety snapshot that
/// undoes it: every failure from step 4 on reports both.
struct Trail {
    /// The parts restored so far.
    done: Vec<String>,
    /// The safety snapshot (hex id), if one was taken.
    safety: Option<String>,
}

impl Trail {
    fn new(safety: Option<&str>) -> Trail {
        Trail {
            done: Vec::new(),
            safety: safety.map(str::to_string),
        }
    }

    /// The error for `step` failing with `what`, saying what was already
    /// restored and which safety snapshot goes back.
    fn failed(&self, step: &str, what: String) -> Error {
        Error::Failed {
            step: step.to_string(),
            what,
            done: self.done.clone(),
            safety_snapshot: self.safety.clone(),
        }
    }
}

/// Step 4, databases: loads each database from its dump beside it and
/// puts it in its place, one after the other (each on `jobs` sessions).
fn restore_databases(
    repo: &Repository,
    plan: &Plan,
    items: &[Item],
    jobs: usize,
    trail: &mut Trail,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<()> {
    for (d, db_target) in &plan.dbs {
        say(RestoreStep::RestoringDatabase {
            part: d.name.clone(),
            target: redact(db_target),
        });
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| {
                trail.failed("database restore", format!("item {} is missing", d.item))
            })?;
        super::report_open_connections(&d.name, db_target, say).map_err(|e| {
            trail.failed(&format!("restoring database '{}'", d.name), e.to_string())
        })?;
        progress.start(
            &format!("restoring {}", d.name),
            Some(item.size),
            Unit::Bytes,
        );
        postgres::load_parallel(
            repo,
            item,
            db_target,
            postgres::LoadMode::Replace,
            jobs,
            progress,
        )
        .map_err(|e| trail.failed(&format!("restoring database '{}'", d.name), e.to_string()))?;
        progress.finish();
        trail.done.push(format!("database {}", d.name));
    }
    Ok(())
}

/// Step 4, images: loads the snapshot's images into the engine; returns the
/// load's checks that every recorded tag points at its recorded image id.
fn restore_images(
    repo: &Repository,
    snap: &Snapshot,
    plan: &Plan,
    trail: &mut Trail,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<Vec<Check>> {
    if plan.images.is_empty() {
        return Ok(Vec::new());
    }
    let checks = docker::restore(repo, snap, None, progress, &mut |e| {
        say(RestoreStep::Images(e))
    })
    .map_err(|e| trail.failed("loading the images", e.to_string()))?;
    trail.done.push("images".into());
    Ok(checks)
}

/// Step 4, files: restores the snapshot's `files/` items under the stack's
/// files root; every item must be restored.
fn restore_files(
    repo: &Repository,
    snap: &Snapshot,
    plan: &Plan,
    trail: &mut Trail,
    progress: &dyn Progress,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<()> {
    if plan.files.is_none() {
        return Ok(());
    }
    say(RestoreStep::RestoringFiles {
        root: plan.files_root.clone(),
    });
    crate::files::restore_mapped(
        repo,
        snap,
        &plan.files_root,
        &|p| p.strip_prefix(b"files/").map(<[u8]>::to_vec),
        progress,
    )
    .and_then(crate::files::RestoreStats::ensure_complete)
    .map_err(|e| trail.failed("restoring the files", e.to_string()))?;
    trail.done.push("files".into());
    Ok(())
}

/// Runs the config's `which` hooks (pre-restore in step 4, before any
/// part changes; post-restore in step 5), in order; one failing fails the
/// restore.
fn run_hooks(
    cfg: &StackConfig,
    which: &str,
    trail: &Trail,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<()> {
    let list = if which == "pre-restore" {
        &cfg.hooks.pre_restore
    } else {
        &cfg.hooks.post_restore
    };
    super::hooks::run(cfg, which, list, &mut |e| {
        say(match e {
            HookEvent::Running(command) => RestoreStep::RunningHook {
                which: which.to_string(),
                command,
            },
            HookEvent::Output(text) => RestoreStep::HookOutput {
                which: which.to_string(),
                text,
            },
        })
    })
    .map_err(|e| trail.failed(&format!("{which} hook"), e.to_string()))
}

/// Step 6: checks what was restored (each database's tables, row counts
/// and revision, each image tag's id from step 4, each file's size and
/// BLAKE3) and returns the checks; any mismatch fails the restore.
fn verify_restored(
    plan: &Plan,
    items: &[Item],
    image_checks: Vec<Check>,
    jobs: usize,
    trail: &Trail,
    say: &mut dyn FnMut(RestoreStep),
) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for (d, db_target) in &plan.dbs {
        for mut c in postgres::verify_db_jobs(db_target, &d.info(), jobs)? {
            c.what = format!("{}: {}", d.name, c.what);
            checks.push(c);
        }
    }
    for mut c in image_checks {
        c.what = format!("image {}", c.what);
        checks.push(c);
    }
    if plan.files.is_some() {
        checks.extend(verify_files(items, &plan.files_root)?);
    }
    say(RestoreStep::Verified {
        checks: checks.len(),
    });
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("  {}: expected {}, found {}", c.what, c.expected, c.found))
        .collect();
    if !bad.is_empty() {
        return Err(trail.failed("verification", format!("\n{}", bad.join("\n"))));
    }
    Ok(checks)
}
