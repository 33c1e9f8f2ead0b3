//! Restoring a stack snapshot over the running stack through the safety
//! chain: disk space, verify, safety snapshot, restore of each part, hooks,
//! verification of what was restored.

use super::manifest::{human, manifest, DbPart};
use super::snapshot::snapshot;
use super::{redact, stack_items, verify_files, Error, Result, StackConfig};
use crate::docker::{self, Engine};
use crate::postgres::{self, Check};
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, SnapshotOptions};
use crate::snapshot::{Snapshot, Tier};
use crate::SnapshotId;
use serde::Serialize;
use std::path::{Path, PathBuf};
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

fn wants(opts: &RestoreOptions, p: Part) -> bool {
    opts.only.is_none_or(|o| o == p)
}

/// Free bytes and device of the filesystem holding `path` (or its nearest
/// existing ancestor).
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut p = path;
    loop {
        if let Ok(m) = std::fs::metadata(p) {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: statvfs fills the struct we own from a valid C string.
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return None;
            }
            return Some((st.f_bavail as u64 * st.f_frsize as u64, m.dev()));
        }
        p = p.parent()?;
    }
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
    let mut report = Report::default();
    let dbs: Vec<&DbPart> = if wants(opts, Part::Db) {
        m.databases.iter().collect()
    } else {
        Vec::new()
    };
    let images = if wants(opts, Part::Images) {
        m.images.clone()
    } else {
        Vec::new()
    };
    let files = if wants(opts, Part::Files) {
        m.files.clone()
    } else {
        None
    };
    let mut targets = Vec::new();
    for d in &dbs {
        let t = cfg.database(&d.name).ok_or_else(|| {
            Error::Refused(format!(
                "the snapshot holds database '{}' but {} has no [[database]] named so",
                d.name,
                cfg.path.display()
            ))
        })?;
        targets.push(t.conninfo.clone());
    }
    let files_root = cfg.files_root();

    // 1. Disk space at every target.
    say("1/6 disk space");
    let engine = if images.is_empty() {
        None
    } else {
        Some(Engine::connect()?)
    };
    let mut needs: Vec<(String, PathBuf, u64)> = Vec::new();
    for (d, conninfo) in dbs.iter().zip(&targets) {
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
                images.iter().map(|i| i.size).sum(),
            ));
        }
    }
    if let Some(f) = &files {
        needs.push(("files".into(), files_root.clone(), f.bytes));
    }
    let mut per_fs: std::collections::BTreeMap<u64, (u64, u64, Vec<String>)> = Default::default();
    for (what, dir, need) in &needs {
        match free_space(dir) {
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

    // 2. The snapshot is whole.
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
    // A database restored alone must match the code that stays.
    if opts.only == Some(Part::Db) {
        for (d, conninfo) in dbs.iter().zip(&targets) {
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
    }

    if opts.dry_run {
        say("3/6 would take a safety snapshot of the parts present now (tier safety)");
        for (d, conninfo) in dbs.iter().zip(&targets) {
            say(&format!(
                "4/6 would drop, recreate and restore database '{}' ({}) from {} of dump",
                d.name,
                redact(conninfo),
                human(d.size)
            ));
        }
        for i in &images {
            say(&format!("4/6 would load image {} ({})", i.reference, i.id));
        }
        if let Some(f) = &files {
            say(&format!(
                "4/6 would restore {} file entries ({}) under {}",
                f.entries,
                human(f.bytes),
                files_root.display()
            ));
        }
        for h in &cfg.hooks.post_restore {
            say(&format!("5/6 would run: {h}"));
        }
        say("6/6 would verify row counts and revisions, image ids and file checksums");
        return Ok(report);
    }

    // 3. Safety snapshot of what is there now.
    if opts.safety_snapshot {
        let present = present_parts(cfg, opts, engine.as_ref(), say);
        match present {
            Some(current) => {
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
                report.safety_snapshot = Some(sid.to_hex());
            }
            None => say("3/6 safety snapshot: nothing there to keep"),
        }
    } else {
        say("3/6 safety snapshot: skipped (--no-safety-snapshot)");
    }
    let back = match &report.safety_snapshot {
        Some(s) => format!(
            "To go back to the state before this restore: relic -r {} restore {} --config {}",
            repo.backend().root().display(),
            &s[..8],
            cfg.path.display()
        ),
        None => "No safety snapshot was taken.".to_string(),
    };
    let mut done: Vec<String> = Vec::new();
    let failed = |step: &str, what: String, done: &[String]| Error::Failed {
        step: step.to_string(),
        what,
        done: if done.is_empty() {
            "Nothing was changed before it.\n".to_string()
        } else {
            format!(
                "Already restored: {}; nothing after it was touched.\n",
                done.join(", ")
            )
        },
        back: back.clone(),
    };

    // 4. Restore: databases, images, files.
    let items = stack_items(repo, snap)?;
    for (d, conninfo) in dbs.iter().zip(&targets) {
        say(&format!(
            "4/6 restoring database '{}' into {}",
            d.name,
            redact(conninfo)
        ));
        let item = items
            .iter()
            .find(|i| i.path == d.item.as_bytes())
            .ok_or_else(|| {
                failed(
                    "database restore",
                    format!("item {} is missing", d.item),
                    &done,
                )
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
        .map_err(|e| {
            failed(
                &format!("restoring database '{}'", d.name),
                e.to_string(),
                &done,
            )
        })?;
        progress.finish();
        done.push(format!("database {}", d.name));
    }
    let mut image_checks = Vec::new();
    if !images.is_empty() {
        image_checks = docker::restore(repo, snap, None, progress, say)
            .map_err(|e| failed("loading the images", e.to_string(), &done))?;
        done.push("images".into());
    }
    if files.is_some() {
        say(&format!(
            "4/6 restoring files under {}",
            files_root.display()
        ));
        crate::files::restore_mapped(
            repo,
            snap,
            &files_root,
            &|p| p.strip_prefix(b"files/").map(<[u8]>::to_vec),
            progress,
        )
        .and_then(crate::files::RestoreStats::ensure_complete)
        .map_err(|e| failed("restoring the files", e.to_string(), &done))?;
        done.push("files".into());
    }
    report.restored = true;

    // 5. Hooks.
    for h in &cfg.hooks.post_restore {
        say(&format!("5/6 running: {h}"));
        let st = Command::new("sh")
            .arg("-c")
            .arg(h)
            .current_dir(cfg.dir())
            .status()
            .map_err(|e| failed("post-restore hook", format!("{h}: {e}"), &done))?;
        if !st.success() {
            return Err(failed(
                "post-restore hook",
                format!("{h} exited with {st}"),
                &done,
            ));
        }
    }

    // 6. Verify.
    for (d, conninfo) in dbs.iter().zip(&targets) {
        for mut c in postgres::verify_db(conninfo, &d.info())? {
            c.what = format!("{}: {}", d.name, c.what);
            report.checks.push(c);
        }
    }
    for mut c in image_checks {
        c.what = format!("image {}", c.what);
        report.checks.push(c);
    }
    if files.is_some() {
        report.checks.extend(verify_files(&items, &files_root)?);
    }
    say(&format!("6/6 verified {} checks", report.checks.len()));
    let bad: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("  {}: expected {}, found {}", c.what, c.expected, c.found))
        .collect();
    if !bad.is_empty() {
        return Err(failed(
            "verification",
            format!("\n{}", bad.join("\n")),
            &done,
        ));
    }
    Ok(report)
}

/// The stack with only the parts that exist now (for the safety snapshot);
/// None when nothing exists.
fn present_parts(
    cfg: &StackConfig,
    opts: &RestoreOptions,
    engine: Option<&Engine>,
    say: &dyn Fn(&str),
) -> Option<StackConfig> {
    let mut c = cfg.clone();
    c.git = None;
    c.databases.retain(|d| {
        let ok = wants(opts, Part::Db) && postgres::revision(&d.conninfo).is_ok();
        if !ok && wants(opts, Part::Db) {
            say(&format!(
                "    database '{}' is not reachable now: not in the safety snapshot",
                d.name
            ));
        }
        ok
    });
    c.images.retain(|r| {
        let ok = wants(opts, Part::Images) && engine.is_some_and(|e| e.inspect(r).is_ok());
        if !ok && wants(opts, Part::Images) {
            say(&format!(
                "    image {r} is not in the engine now: not in the safety snapshot"
            ));
        }
        ok
    });
    let root = cfg.files_root();
    if let Some(f) = &mut c.files {
        if wants(opts, Part::Files) {
            f.paths
                .retain(|p| std::fs::symlink_metadata(root.join(p)).is_ok());
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
