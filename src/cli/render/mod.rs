//! Everything the CLI shows people: error chains, `--json` output, and the
//! text reports and tables of each command (sizes through
//! `indicatif::HumanBytes`, times, rates). Commands gather the data; the
//! words and columns are here: in this file for most commands, in `diff`
//! for `relic diff`, in `manifest` for `relic manifest`, in `stack` for the
//! stack restore and drill steps, in `postgres` for the database restore's steps.

mod diff;
mod ls;
mod manifest;
mod postgres;
mod restore;
mod schedule;
mod stack;
mod stats;
mod volume;

pub use diff::diff;
pub use ls::ls;
pub use manifest::{manifest, manifest_json};
pub use postgres::postgres_step;
pub use restore::{
    checks, docker_plan, files_restored, restored, stream_plan, tree_plan, wrote_file, Restored,
};
pub use schedule::{schedule_status, ScheduleStatus};
pub use stack::{
    drill_error, drill_step, hook_event, load_step, stack_error, stack_hint, stack_step,
    target_change,
};
pub use stats::{backup, name_stats, snapshot_stats, stats};
pub use volume::{volume_error, volume_plan, volume_restored, volume_step};

use anyhow::Result;
use indicatif::HumanBytes;
use relic::{Snapshot, SnapshotId};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The verify step of a restore's safety chain (a stack's or a database's).
fn verify_step(n: &str, snapshot: &SnapshotId, read_data: bool) -> String {
    format!(
        "{n} verify snapshot {} ({})",
        snapshot.short(),
        if read_data {
            "reading every chunk"
        } else {
            "index and packs"
        }
    )
}

/// The sessions connected to a database that a restore is about to drop:
/// `2/5 database 'app' has 1 open connection: it will be terminated`.
fn open_connections(n: &str, db: &str, count: i64) -> String {
    match count {
        0 => format!("{n} database '{db}' has no open connection"),
        1 => format!("{n} database '{db}' has 1 open connection: it will be terminated"),
        _ => format!("{n} database '{db}' has {count} open connections: they will be terminated"),
    }
}

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `-q` and `-v`, set once before the command runs.
pub fn set_verbosity(quiet: bool, verbose: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// `-q`: print nothing on success.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `-v`: say each step.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// An error and its causes, on stderr.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// `v` as pretty JSON on stdout (the `--json` form of most reports).
pub fn json(v: &impl serde::Serialize) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A snapshot's time as the tables show it (local time).
pub(crate) fn time(s: &Snapshot) -> String {
    s.time().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// The snapshot list; `damaged` holds the hex ids `repair` recorded.
pub fn snapshots(
    snaps: &[(SnapshotId, Snapshot)],
    damaged: &BTreeMap<String, String>,
    json: bool,
) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                json!({
                    "id": id.to_hex(), "name": s.name, "tier": s.tier.as_str(),
                    "time": s.time().to_string(), "host": s.host, "labels": s.labels,
                    "parent": s.parent.map(|p| p.to_hex()),
                    "size": s.summary.size, "stored_size": s.summary.stored_bytes,
                    "items": s.summary.items, "meta": meta_json(&s.meta),
                    "added": s.costs().added,
                    "damaged": damaged.contains_key(&id.to_hex()),
                    "partial": s.partial(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<8}  {:<20}  {:<24}  {:<10}  {:>10}  {:>10}  LABELS",
        "ID", "TIME", "NAME", "TIER", "SIZE", "ADDED"
    )?;
    for (id, s) in snaps {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}").escape_debug().to_string())
            .collect();
        writeln!(
            out,
            "{:<8}  {:<20}  {:<24}  {:<10}  {:>10}  {:>10}  {}{}",
            id.short(),
            time(s),
            // Names made before names were checked may hold control
            // characters: shown escaped, never interpreted by the terminal.
            s.name.escape_debug().to_string(),
            s.tier.as_str(),
            HumanBytes(s.summary.size).to_string(),
            HumanBytes(s.costs().added).to_string(),
            labels.join(","),
            match (damaged.contains_key(&id.to_hex()), s.partial().is_empty()) {
                (true, _) => "  DAMAGED (relic repair)",
                (false, false) => "  PARTIAL (relic manifest says what it lacks)",
                (false, true) => "",
            }
        )?;
    }
    writeln!(out, "{} snapshots", snaps.len())?;
    Ok(())
}

/// A snapshot's metadata as JSON: values that hold JSON (row counts,
/// image records) as that JSON, the others as strings.
fn meta_json(meta: &BTreeMap<String, String>) -> serde_json::Value {
    meta.iter()
        .map(|(k, v)| {
            let parsed = (v.starts_with('[') || v.starts_with('{'))
                .then(|| serde_json::from_str(v).ok())
                .flatten();
            (k.clone(), parsed.unwrap_or_else(|| json!(v)))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One snapshot named in a line of `forget`: id, name, tier, time.
pub fn snapshot_line(id: &SnapshotId, s: &Snapshot) -> String {
    format!(
        "{} ({}, {}, {})",
        id.short(),
        s.name.escape_debug(),
        s.tier,
        time(s)
    )
}

/// The key slots; `current` is the one this process unlocked with.
pub fn key_slots(
    slots: &[(String, relic::crypto::KeySlot)],
    current: Option<&str>,
    json: bool,
) -> Result<()> {
    if json {
        let v: Vec<_> = slots
            .iter()
            .map(|(id, s)| json!({"id": id, "current": current == Some(id.as_str()), "created": s.created, "host": s.host, "kdf": s.kdf, "params": s.params}))
            .collect();
        return self::json(&v);
    }
    out!(
        "{:<2}{:<10}  {:<28}  {:<16}  KDF",
        "",
        "ID",
        "CREATED",
        "HOST"
    );
    for (id, s) in slots {
        let cur = if current == Some(id.as_str()) {
            "*"
        } else {
            ""
        };
        out!(
            "{cur:<2}{:<10}  {:<28}  {:<16}  {} {} MiB, {} passes",
            &id[..8],
            s.created,
            s.host,
            s.kdf,
            s.params.memory_kib / 1024,
            s.params.iterations
        );
    }
    Ok(())
}

/// What a retention policy decided for each snapshot, and why.
pub fn decisions(
    decisions: &[relic::retention::Decision],
    chosen: &[(SnapshotId, Snapshot)],
    json: bool,
    dry_run: bool,
) -> Result<()> {
    if json {
        let v: Vec<_> = decisions
            .iter()
            .zip(chosen)
            .map(|(d, (id, s))| json!({"id": id.to_hex(), "name": s.name, "tier": s.tier.as_str(), "time": s.time().to_string(), "keep": d.keep, "reasons": d.reasons}))
            .collect();
        return self::json(&v);
    }
    if quiet() && !dry_run {
        return Ok(());
    }
    out!(
        "{:<8}  {:<20}  {:<20}  {:<10}  {:<6}  REASONS",
        "ID",
        "TIME",
        "NAME",
        "TIER",
        "ACTION"
    );
    for (d, (id, s)) in decisions.iter().zip(chosen) {
        out!(
            "{:<8}  {:<20}  {:<20}  {:<10}  {:<6}  {}",
            id.short(),
            // jiff's strftime Display ignores the width: this column has
            // always been printed unpadded.
            s.time().strftime("%Y-%m-%d %H:%M:%S"),
            s.name,
            s.tier.as_str(),
            if d.keep { "keep" } else { "forget" },
            d.reasons.join(", ")
        );
    }
    Ok(())
}

/// What a prune planned and did; `before`/`after` are the packs' total size.
pub fn prune(
    plan: &relic::prune::Plan,
    before: u64,
    after: u64,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    if json {
        return self::json(
            &json!({"plan": plan, "pack_bytes_before": before, "pack_bytes_after": after, "dry_run": dry_run}),
        );
    }
    report!(
        "{} snapshots, {} packs ({}), {} of {} blobs live ({} live, {} dead)",
        plan.snapshots,
        plan.packs,
        HumanBytes(plan.pack_bytes),
        plan.live_chunks,
        plan.chunks,
        HumanBytes(plan.live_bytes),
        HumanBytes(plan.dead_bytes)
    );
    report!(
        "{} {} packs, repack {} ({} to copy): frees about {}",
        if dry_run { "would delete" } else { "deleted" },
        plan.delete.len(),
        plan.repack.len(),
        HumanBytes(plan.repack_bytes),
        HumanBytes(plan.frees)
    );
    if !dry_run {
        report!(
            "packs: {} before, {} after: {} freed",
            HumanBytes(before),
            HumanBytes(after),
            HumanBytes(before.saturating_sub(after))
        );
    }
    Ok(())
}

/// A check's problems and totals (the verdict line is the caller's).
pub fn check(report: &relic::check::CheckReport, read_data: bool) -> Result<()> {
    for p in &report.problems {
        out!("{p}");
    }
    report!(
        "{} packs, {} blobs, {} snapshots checked{}",
        report.packs,
        report.blobs,
        report.snapshots,
        match (read_data, report.slice) {
            (true, Some((i, of))) => format!(
                ", {} read ({} packs: slice {} of {of})",
                HumanBytes(report.bytes_read),
                report.packs_read,
                i + 1
            ),
            (true, None) => format!(", {} read", HumanBytes(report.bytes_read)),
            _ => String::new(),
        }
    );
    for (id, name) in &report.damaged_snapshots {
        out!("damaged snapshot: {} ({name})", &id[..8]);
    }
    Ok(())
}

/// What a sync sent (or would send), and the Object Lock it set.
pub fn sync(
    r: &relic::sync::Report,
    mode: relic::objectlock::Mode,
    dry_run: bool,
    verify: bool,
) -> Result<()> {
    report!(
        "{}{}: {} packs ({}), {} snapshots, {} other objects{}{}, {:.1}s ({}/s)",
        if dry_run {
            "would sync to "
        } else {
            "synced to "
        },
        r.dest,
        r.packs,
        HumanBytes(r.pack_bytes),
        r.snapshots,
        r.other,
        if r.created {
            ", repository created"
        } else {
            ""
        },
        if verify {
            format!(", {} verified", r.verified)
        } else {
            String::new()
        },
        r.seconds,
        HumanBytes((r.pack_bytes as f64 / r.seconds.max(1e-3)) as u64)
    );
    if let Some(until) = &r.locked_until {
        report!(
            "object lock ({}): {} objects of immaculate and sacred snapshots {} until {until}{}",
            mode.as_str(),
            r.lock_objects,
            if dry_run {
                "would be retained"
            } else {
                "retained"
            },
            if dry_run {
                String::new()
            } else {
                format!(" ({} set or extended now)", r.locked)
            }
        );
    }
    Ok(())
}

/// What a repair rebuilt and found.
pub fn repair(r: &relic::check::RepairReport) -> Result<()> {
    report!(
        "index rebuilt from {} packs ({} blobs, {} snapshots)",
        r.rebuild.packs,
        r.rebuild.blobs,
        r.rebuild.snapshots
    );
    damaged_packs(&r.rebuild)?;
    for p in &r.check.problems {
        out!("{p}");
    }
    for (id, name) in &r.check.damaged_snapshots {
        out!("damaged snapshot: {} ({name})", &id[..8]);
    }
    report!(
        "{} of {} snapshots intact; nothing was deleted",
        r.intact_snapshots,
        r.check.snapshots
    );
    Ok(())
}

/// What `index rebuild` found.
pub fn rebuild(r: &relic::repo::RebuildReport) -> Result<()> {
    report!(
        "index rebuilt: {} packs, {} blobs, {} snapshots",
        r.packs,
        r.blobs,
        r.snapshots
    );
    damaged_packs(r)?;
    Ok(())
}

/// What a rebuild did with packs whose trailer was damaged.
fn damaged_packs(r: &relic::repo::RebuildReport) -> Result<()> {
    for p in &r.damaged_packs {
        out!(
            "pack {} is damaged ({}): {} blobs salvaged into new packs, {} lost; the pack was moved to damaged/packs/",
            p.pack, p.why, p.salvaged_blobs, p.lost_blobs
        );
    }
    if r.restored_snapshots > 0 {
        out!(
            "{} damaged snapshot object(s) rewritten from the index's copies (the damaged files are in damaged/snapshots/)",
            r.restored_snapshots
        );
    }
    Ok(())
}

/// The audit records of retired baselines.
pub fn audit(log: &[relic::repo::AuditRecord]) -> Result<()> {
    for r in log {
        let t = jiff::Timestamp::from_nanosecond(i128::from(r.time_ns))
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        out!(
            "{t}  {}  {} ({})  by {}@{}  {}",
            r.action,
            r.name,
            r.tiers.join(", "),
            r.user,
            r.host,
            r.reason
        );
    }
    Ok(())
}
