//! The end of restores and drills: the checks made, what was written
//! where, and the plans of `--dry-run`.

use anyhow::Result;
use indicatif::HumanBytes;
use relic::SnapshotId;
use serde_json::json;

/// How a restore (or drill) ended.
pub struct Restored<'a> {
    pub id: &'a SnapshotId,
    /// "snapshot 1a2b3c4d", "item db/main of snapshot 1a2b3c4d".
    pub what: &'a str,
    pub into: &'a str,
    pub checks: &'a [relic::check::Check],
    /// False for a dry run, and for a drill (it restores into scratch
    /// copies only).
    pub restored: bool,
    pub safety_snapshot: Option<&'a str>,
}

/// The end of a restore: the checks and what was done, or one JSON object
/// (`--json`) with the same.
pub fn restored(r: &Restored<'_>, done: &str, json: bool) -> Result<()> {
    if json {
        return super::json(&json!({
            "snapshot": r.id.to_hex(), "what": r.what, "into": r.into,
            "restored": r.restored, "ok": r.checks.iter().all(|c| c.ok),
            "checks": r.checks, "safety_snapshot": r.safety_snapshot,
        }));
    }
    checks(r.checks)?;
    if r.restored {
        report!("{done}");
        if let Some(s) = r.safety_snapshot {
            report!(
                "safety snapshot of the state before: {}",
                &s[..8.min(s.len())]
            );
        }
    }
    Ok(())
}

/// The table of what a restore verified; image ids shortened to 12 digits.
pub fn checks(checks: &[relic::postgres::Check]) -> Result<()> {
    if checks.is_empty() {
        return Ok(());
    }
    let short = |v: &str| {
        v.strip_prefix("sha256:")
            .map_or(v.to_string(), |h| h[..12.min(h.len())].to_string())
    };
    report!("{:<56}  {:>16}  {:>16}  OK", "CHECK", "EXPECTED", "FOUND");
    for c in checks {
        report!(
            "{:<56}  {:>16}  {:>16}  {}",
            c.what,
            short(&c.expected),
            short(&c.found),
            if c.ok { "yes" } else { "NO" }
        );
    }
    Ok(())
}

/// The summary of a restore into a directory, and every item left out
/// (as one JSON object with `--json`).
pub fn files_restored(
    id: &SnapshotId,
    dir: &std::path::Path,
    st: &relic::files::RestoreStats,
    json: bool,
) -> Result<()> {
    if json {
        let pairs = |v: &[(String, String)]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|(p, why)| json!({"path": p, "why": why}))
                .collect()
        };
        return super::json(&json!({
            "snapshot": id.to_hex(), "into": dir.display().to_string(), "restored": true,
            "files": st.files, "dirs": st.dirs, "links": st.links, "bytes": st.bytes,
            "damaged": pairs(&st.damaged), "refused": pairs(&st.refused),
        }));
    }
    note!(
        "restored snapshot {} into {}: {} files, {} directories, {} links, {}",
        id.short(),
        dir.display(),
        st.files,
        st.dirs,
        st.links,
        HumanBytes(st.bytes)
    );
    for (path, why) in &st.damaged {
        eprintln!("damaged, not restored: {path}: {why}");
    }
    for (path, why) in &st.refused {
        eprintln!("refused, not restored: {path}: {why}");
    }
    if !st.complete() {
        eprintln!(
            "error: {} item(s) damaged and {} refused; every other item was restored",
            st.damaged.len(),
            st.refused.len()
        );
    }
    Ok(())
}

/// `restore --dry-run` of a tree: what would be written where.
pub fn tree_plan(
    what: &str,
    dir: &std::path::Path,
    plan: &relic::files::RestoreStats,
    json: bool,
) -> Result<()> {
    if json {
        return super::json(&json!({
            "what": what, "into": dir.display().to_string(), "dry_run": true,
            "files": plan.files, "dirs": plan.dirs, "links": plan.links, "bytes": plan.bytes,
        }));
    }
    out!(
        "would restore {what} into {}: {} files, {} directories, {} links, {}; nothing was changed",
        dir.display(),
        plan.files,
        plan.dirs,
        plan.links,
        HumanBytes(plan.bytes)
    );
    Ok(())
}

/// `restore --dry-run` of one stream: where it would go.
pub fn stream_plan(
    what: &str,
    item: &relic::snapshot::Item,
    into: Option<&str>,
    json: bool,
) -> Result<()> {
    let into = into.unwrap_or("standard output");
    if json {
        return super::json(&json!({
            "what": what, "item": item.path_lossy(), "into": into,
            "bytes": item.size, "dry_run": true,
        }));
    }
    out!(
        "would write {what} ({}, {}) to {into}; nothing was changed",
        item.path_lossy().escape_debug(),
        HumanBytes(item.size)
    );
    Ok(())
}

/// `restore --into-docker --dry-run`: the images that would be loaded and
/// the tags that would point at them.
pub fn docker_plan(what: &str, images: &[relic::docker::ImageRecord], json: bool) -> Result<()> {
    if json {
        let v: Vec<_> = images
            .iter()
            .map(|i| json!({"id": i.id, "tags": i.tags}))
            .collect();
        return super::json(&json!({"what": what, "into": "docker", "dry_run": true, "images": v}));
    }
    for i in images {
        out!(
            "would load image {} and point {} at it",
            i.id,
            if i.tags.is_empty() {
                "no tag".to_string()
            } else {
                i.tags.join(", ")
            }
        );
    }
    out!("dry run of {what}: nothing was changed");
    Ok(())
}

/// The line after one stream was written to a file.
pub fn wrote_file(path: &std::path::Path, size: u64, id: &SnapshotId) {
    note!(
        "wrote {} ({}) from snapshot {}",
        path.display(),
        HumanBytes(size),
        id.short()
    );
}
