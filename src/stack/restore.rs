//! Restoring a stack snapshot over the running stack through the safety
//! chain: disk space, verify, safety snapshot, restore of each part, hooks,
//! verification of what was restored.

use super::manifest::{human, manifest, DbPart, FilesSummary, Manifest};
use super::snapshot::{present_parts, snapshot};
use super::{redact, stack_items, verify_files, Error, Result, StackConfig};
use crate::docker::{self, Engine, ImageRecord};
use crate::postgres::{self, Check};
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{Item, Snapshot, Tier};
use crate::SnapshotId;
use serde::Serialize;
use std::path::PathBuf;
use std::process::Command;

/// Which parts a restore touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Db,
    Images,
    Files,
}

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Part, String> {
        match s {
            "db" => Ok(Part::Db),
            "images" => Ok(Part::Images),
            "files" => Ok(Part::Files),
            _ => Err(format!("'{s}' is not a part: db, images or files")),
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
}

/// What a restore did and checked.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub safety_snapshot: Option<String>,
    pub checks: Vec<Check>,
    pub restored: bool,
}

/// Whether the restore touches part `p` (all of them without `--only`).
pub(super) fn wants(opts: &RestoreOptions, p: Part) -> bool {
    opts.only.is_none_or(|o| o == p)
}

/// Restores a stack snapshot through the chain: disk space, verify, safety
/// snapshot, restore (databases, then images, then files), hooks, verify.
/// Each step must pass before the next; `say` hears each as it happens.
pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    cfg: &StackConfig,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<Report> {
    let m = manifest(id, snap)?;
    let plan = Plan::new(&m, cfg, opts)?;
    let engine = check_disk_space(&plan, say)?;
    verify_snapshot(repo, id, snap, opts, say)?;
    check_alembic_revisions(&plan, opts)?;
    if opts.dry_run {
        describe_dry_run(&plan, cfg, say);
        return Ok(Report::default());
    }
    let safety = take_safety_snapshot(repo, id, cfg, opts, engine.as_ref(), progress, say)?;
    let mut trail = Trail::new(repo, cfg, safety.as_deref());
    let items = stack_items(repo, snap)?;
    restore_databases(repo, &plan, &items, &mut trail, progress, say)?;
    let image_checks = restore_images(repo, snap, &plan, &mut trail, progress, say)?;
    restore_files(repo, snap, &plan, &mut trail, progress, say)?;
    run_hooks(cfg, &trail, say)?;
    let checks = verify_restored(&plan, &items, image_checks, &trail, say)?;
    Ok(Report {
        safety_snapshot: safety,
        checks,
        restored: true,
    })
}

/// What a restore touches: the parts of the manifest that `--only` selects,
/// each database with the conninfo the config gives it, and the directory
/// the files go under.
struct Plan<'m> {
    /// Each database part with the conninfo it is restored into.
    dbs: Vec<(&'m DbPart, String)>,
    images: &'m [ImageRecord],
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
                dbs.push((d, t.conninfo.clone()));
            }
        }
        Ok(Plan {
            dbs,
            images: if wants(opts, Part::Images) {
                &m.images
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
/// indexes). Connects to the Docker engine when images are restored, to find
/// its data root, and returns it for the safety snapshot.
fn check_disk_space(plan: &Plan, say: &dyn Fn(&str)) -> Result<Option<Engine>> {
    say("1/6 disk space");
    let engine = if plan.images.is_empty() {
        None
    } else {
        Some(Engine::connect()?)
    };
    let mut needs: Vec<(String, PathBuf, u64)> = Vec::new();
    for (d, conninfo) in &plan.dbs {
        if let Some(dir) = postgres::data_directory(conninfo) {
            // Tables and indexes take more room than their dump.
            needs.push((format!("database {}", d.name), dir, d.size + d.size / 2));
        }
    }
    if let Some(e) = &engine {
        if let Some(dir) = e.root_dir() {
            needs.push((
                "Docker data root".into(),
                dir,
                plan.images.iter().map(|i| i.size).sum(),
            ));
        }
    }
    if let Some(f) = plan.files {
        needs.push(("files".into(), plan.files_root.clone(), f.bytes));
    }
    let mut per_fs: std::collections::BTreeMap<u64, (u64, u64, Vec<String>)> = Default::default();
    for (what, dir, need) in &needs {
        match crate::sys::free_space(dir) {
            Some((free, dev)) => {
                let e = per_fs.entry(dev).or_insert((free, 0, Vec::new()));
                e.1 += need + need / 10 + (64 << 20);
                e.2.push(format!("{what} ({})", dir.display()));
            }
            None => say(&format!(
                "    {what}: free space unknown at {}",
                dir.display()
            )),
        }
    }
    for (free, need, whats) in per_fs.values() {
        say(&format!(
            "    {}: {} free, {} needed",
            whats.join(", "),
            human(*free),
            human(*need)
        ));
        if free < need {
            return Err(Error::Refused(format!(
                "not enough disk space for {}: {} free, {} needed (the parts' sizes plus 10% and 64 MiB); nothing was changed",
                whats.join(", "),
                human(*free),
                human(*need)
            )));
        }
    }
    Ok(engine)
}

/// Step 2: refuses a damaged snapshot, checked through the index and the
/// packs, or by reading every chunk with `--verify-data`.
fn verify_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &RestoreOptions,
    say: &dyn Fn(&str),
) -> Result<()> {
    say(&format!(
        "2/6 verify snapshot {} ({})",
        id.short(),
        if opts.verify_data {
            "reading every chunk"
        } else {
            "index and packs"
        }
    ));
    if let Some(problem) = crate::check::verify_snapshot(repo, snap, opts.verify_data)? {
        return Err(Error::Refused(format!(
            "snapshot {} is damaged: {problem}; nothing was changed",
            id.short()
        )));
    }
    Ok(())
}

/// Step 2, for a database restored alone (`--only db`): a database restored
/// alone must match the code that stays, so a running database at another
/// Alembic revision than the snapshot's is refused unless `--force`.
fn check_alembic_revisions(plan: &Plan, opts: &RestoreOptions) -> Result<()> {
    if opts.only != Some(Part::Db) {
        return Ok(());
    }
    for (d, conninfo) in &plan.dbs {
        if let Some(rev) = postgres::revision(conninfo)? {
            if Some(&rev) != d.alembic_revision.as_ref() && !opts.force {
                return Err(Error::Refused(format!(
                    "database '{}' is at Alembic revision {rev} but the snapshot is at {}: restoring it alone would mismatch code and schema; restore the whole stack, or --force",
                    d.name,
                    d.alembic_revision.as_deref().unwrap_or("no revision")
                )));
            }
        }
    }
    Ok(())
}

/// `--dry-run`, after the checks: says what steps 3 to 6 would do, and
/// changes nothing.
fn describe_dry_run(plan: &Plan, cfg: &StackConfig, say: &dyn Fn(&str)) {
    say("3/6 would take a safety snapshot of the parts present now (tier safety)");
    for (d, conninfo) in &plan.dbs {
        say(&format!(
            "4/6 would drop, recreate and restore database '{}' ({}) from {} of dump",
            d.name,
            redact(conninfo),
            human(d.size)
        ));
    }
    for i in plan.images {
        say(&format!("4/6 would load image {} ({})", i.reference, i.id));
    }
    if let Some(f) = plan.files {
        say(&format!(
            "4/6 would restore {} file entries ({}) under {}",
            f.entries,
            human(f.bytes),
            plan.files_root.display()
        ));
    }
    for h in &cfg.hooks.post_restore {
        say(&format!("5/6 would run: {h}"));
    }
    say("6/6 would verify row counts and revisions, image ids and file checksums");
}

/// Step 3: snapshots the parts of the stack present now (tier `safety`,
/// labelled with the snapshot being restored), so the restore can be
/// undone. Returns the safety snapshot's id, or None when it was skipped
/// (`--no-safety-snapshot`) or nothing was there to keep.
fn take_safety_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    cfg: &StackConfig,
    opts: &RestoreOptions,
    engine: Option<&Engine>,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<Option<String>> {
    if !opts.safety_snapshot {
        say("3/6 safety snapshot: skipped (--no-safety-snapshot)");
        return Ok(None);
    }
    let Some(current) = present_parts(cfg, opts, engine, say) else {
        say("3/6 safety snapshot: nothing there to keep");
        return Ok(None);
    };
    let safety = SnapshotOptions {
        name: format!("safety-{}", cfg.name),
        tier: Tier::Safety,
        labels: [("restoring".to_string(), id.to_hex())]
            .into_iter()
            .collect(),
        meta: Default::default(),
    };
    let (sid, _) = snapshot(repo, &current, &safety, progress)?;
    say(&format!("3/6 safety snapshot {} taken", sid.short()));
    Ok(Some(sid.to_hex()))
}

/// What the restore has changed so far, and how to go back: every failure
/// from step 4 on reports both.
struct Trail {
    /// The parts restored so far.
    done: Vec<String>,
    /// The command that restores the safety snapshot, or a note that none
    /// was taken.
    back: String,
}

impl Trail {
    fn new(repo: &Repository, cfg: &StackConfig, safety: Option<&str>) -> Trail {
        let back = match safety {
            Some(s) => format!(
                "To go back to the state before this restore: relic -r {} restore {} --config {}",
                repo.backend().root().display(),
                &s[..8],
                cfg.path.display()
            ),
            None => "No safety snapshot was taken.".to_string(),
        };
        Trail {
            done: Vec::new(),
            back,
        }
    }

    /// The error for `step` failing with `what`, saying what was already
    /// restored and how to go back.
    fn failed(&self, step: &str, what: String) -> Error {
        Error::Failed {
            step: step.to_string(),
            what,
            done: if self.done.is_empty() {
                "Nothing was changed before it.\n".to_string()
            } else {
                format!(
                    "Already restored: {}; nothing after it was touched.\n",
                    self.done.join(", ")
                )
            },
            back: self.back.clone(),
        }
    }
}

/// Step 4, databases: drops, recreates and loads each database from its
/// dump, one after the other.
fn restore_databases(
    repo: &Repository,
    plan: &Plan,
    items: &[Item],
    trail: &mut Trail,
    progress: &dyn Progress,
    say: &dyn Fn(&str),
) -> Result<()> {
    for (d, conninfo) in &plan.dbs {
        say(&format!(
            "4/6 restoring database '{}' into {}",
            d.name,
            redact(conninfo)
        ));
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| {
                trail.failed("database restore", format!("item {} is missing", d.item))
            })?;
        progress.start(
            &format!("restoring {}", d.name),
            Some(item.size),
            Unit::Bytes,
        );
        postgres::load_dump(
            repo,
            item,
            conninfo,
            postgres::LoadMode::Replace,
            "",
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
    say: &dyn Fn(&str),
) -> Result<Vec<Check>> {
    if plan.images.is_empty() {
        return Ok(Vec::new());
    }
    let checks = docker::restore(repo, snap, None, progress, say)
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
    say: &dyn Fn(&str),
) -> Result<()> {
    if plan.files.is_none() {
        return Ok(());
    }
    say(&format!(
        "4/6 restoring files under {}",
        plan.files_root.display()
    ));
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

/// Step 5: runs the config's post-restore hooks (`sh -c`, in the config's
/// directory), in order; one failing or exiting non-zero fails the restore.
fn run_hooks(cfg: &StackConfig, trail: &Trail, say: &dyn Fn(&str)) -> Result<()> {
    for h in &cfg.hooks.post_restore {
        say(&format!("5/6 running: {h}"));
        let st = Command::new("sh")
            .arg("-c")
            .arg(h)
            .current_dir(cfg.dir())
            .status()
            .map_err(|e| trail.failed("post-restore hook", format!("{h}: {e}")))?;
        if !st.success() {
            return Err(trail.failed("post-restore hook", format!("{h} exited with {st}")));
        }
    }
    Ok(())
}

/// Step 6: checks what was restored (each database's tables, row counts
/// and revision, each image tag's id from step 4, each file's size and
/// BLAKE3) and returns the checks; any mismatch fails the restore.
fn verify_restored(
    plan: &Plan,
    items: &[Item],
    image_checks: Vec<Check>,
    trail: &Trail,
    say: &dyn Fn(&str),
) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for (d, conninfo) in &plan.dbs {
        for mut c in postgres::verify_db(conninfo, &d.info())? {
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
    say(&format!("6/6 verified {} checks", checks.len()));
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
