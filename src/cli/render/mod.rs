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
mod stack;
mod volume;

pub use diff::diff;
pub use ls::ls;
pub use manifest::{manifest, manifest_json};
pub use postgres::postgres_step;
pub use stack::{
    drill_error, drill_step, hook_event, load_step, stack_error, stack_hint, stack_step,
    target_change,
};
pub use volume::{volume_error, volume_plan, volume_restored, volume_step};

use anyhow::Result;
use indicatif::HumanBytes;
use relic::{Snapshot, SnapshotId};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{self, Write};

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

/// An error and its causes, on stderr.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// `v` as pretty JSON on stdout (the `--json` form of most reports).
pub fn json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A snapshot's time as the tables show it (local time).
fn time(s: &Snapshot) -> String {
    s.time().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// The line (or JSON object) a backup ends with.
pub fn backup(id: &SnapshotId, snap: &Snapshot, json: bool) -> Result<()> {
    let s = &snap.summary;
    let secs = (s.duration_ms as f64 / 1000.0).max(1e-3);
    if json {
        println!(
            "{}",
            json!({
                "id": id.to_hex(), "name": snap.name, "tier": snap.tier.as_str(),
                "size": s.size, "items": s.items, "chunks": s.chunks,
                "new_chunks": s.new_chunks, "new_bytes": s.new_bytes,
                "stored_bytes": s.stored_bytes, "duration_ms": s.duration_ms,
            })
        );
    } else {
        println!(
            "snapshot {} ({}, {}) saved: {} read, {} new, {} stored, {:.1}s ({}/s)",
            id.short(),
            snap.name,
            snap.tier,
            HumanBytes(s.size),
            HumanBytes(s.new_bytes),
            HumanBytes(s.stored_bytes),
            secs,
            HumanBytes((s.size as f64 / secs) as u64)
        );
    }
    Ok(())
}

/// The table of what a restore verified; image ids shortened to 12 digits.
pub fn checks(checks: &[relic::postgres::Check]) {
    if checks.is_empty() {
        return;
    }
    let short = |v: &str| {
        v.strip_prefix("sha256:")
            .map_or(v.to_string(), |h| h[..12.min(h.len())].to_string())
    };
    println!("{:<56}  {:>16}  {:>16}  OK", "CHECK", "EXPECTED", "FOUND");
    for c in checks {
        println!(
            "{:<56}  {:>16}  {:>16}  {}",
            c.what,
            short(&c.expected),
            short(&c.found),
            if c.ok { "yes" } else { "NO" }
        );
    }
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
                    "items": s.summary.items, "meta": s.meta,
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
        "{:<8}  {:<20}  {:<24}  {:<10}  {:>10}  {:>10}",
        "ID", "TIME", "NAME", "TIER", "SIZE", "STORED"
    )?;
    for (id, s) in snaps {
        writeln!(
            out,
            "{:<8}  {:<20}  {:<24}  {:<10}  {:>10}  {:>10}{}",
            id.short(),
            time(s),
            // Names made before names were checked may hold control
            // characters: shown escaped, never interpreted by the terminal.
            s.name.escape_debug().to_string(),
            s.tier.as_str(),
            HumanBytes(s.summary.size).to_string(),
            HumanBytes(s.summary.stored_bytes).to_string(),
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
    println!(
        "{:<2}{:<10}  {:<28}  {:<16}  KDF",
        "", "ID", "CREATED", "HOST"
    );
    for (id, s) in slots {
        let cur = if current == Some(id.as_str()) {
            "*"
        } else {
            ""
        };
        println!(
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
) -> Result<()> {
    if json {
        let v: Vec<_> = decisions
            .iter()
            .zip(chosen)
            .map(|(d, (id, s))| json!({"id": id.to_hex(), "name": s.name, "tier": s.tier.as_str(), "time": s.time().to_string(), "keep": d.keep, "reasons": d.reasons}))
            .collect();
        return self::json(&v);
    }
    println!(
        "{:<8}  {:<20}  {:<20}  {:<10}  {:<6}  REASONS",
        "ID", "TIME", "NAME", "TIER", "ACTION"
    );
    for (d, (id, s)) in decisions.iter().zip(chosen) {
        println!(
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
    println!(
        "{} snapshots, {} packs ({}), {} of {} blobs live ({} live, {} dead)",
        plan.snapshots,
        plan.packs,
        HumanBytes(plan.pack_bytes),
        plan.live_chunks,
        plan.chunks,
        HumanBytes(plan.live_bytes),
        HumanBytes(plan.dead_bytes)
    );
    println!(
        "{} {} packs, repack {} ({} to copy): frees about {}",
        if dry_run { "would delete" } else { "deleted" },
        plan.delete.len(),
        plan.repack.len(),
        HumanBytes(plan.repack_bytes),
        HumanBytes(plan.frees)
    );
    if !dry_run {
        println!(
            "packs: {} before, {} after: {} freed",
            HumanBytes(before),
            HumanBytes(after),
            HumanBytes(before.saturating_sub(after))
        );
    }
    Ok(())
}

/// A check's problems and totals (the verdict line is the caller's).
pub fn check(report: &relic::check::CheckReport, read_data: bool) {
    for p in &report.problems {
        println!("{p}");
    }
    println!(
        "{} packs, {} blobs, {} snapshots checked{}",
        report.packs,
        report.blobs,
        report.snapshots,
        if read_data {
            format!(", {} read", HumanBytes(report.bytes_read))
        } else {
            String::new()
        }
    );
    for (id, name) in &report.damaged_snapshots {
        println!("damaged snapshot: {} ({name})", &id[..8]);
    }
}

/// Sizes and ratios.
pub fn stats(s: &relic::check::Stats) {
    println!("snapshots:          {}", s.snapshots);
    println!("total size:         {}", HumanBytes(s.total_size));
    println!(
        "unique data:        {} in {} chunks",
        HumanBytes(s.data_raw),
        s.data_chunks
    );
    println!("stored data:        {}", HumanBytes(s.data_stored));
    println!(
        "of which deltas:    {} chunks of {} stored in {}",
        s.delta_chunks,
        HumanBytes(s.delta_raw),
        HumanBytes(s.delta_stored)
    );
    println!(
        "metadata:           {} in {} blobs",
        HumanBytes(s.meta_stored),
        s.meta_blobs
    );
    println!(
        "packs:              {} ({})",
        s.packs,
        HumanBytes(s.pack_bytes)
    );
    println!("dedup ratio:        {:.2}", s.dedup_ratio);
    println!("compression ratio:  {:.2}", s.compression_ratio);
    println!("total ratio:        {:.2}", s.total_ratio);
}

/// What a sync sent (or would send), and the Object Lock it set.
pub fn sync(r: &relic::sync::Report, mode: relic::objectlock::Mode, dry_run: bool, verify: bool) {
    println!(
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
        println!(
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
}

/// What a repair rebuilt and found.
pub fn repair(r: &relic::check::RepairReport) {
    println!(
        "index rebuilt from {} packs ({} blobs, {} snapshots)",
        r.rebuild.packs, r.rebuild.blobs, r.rebuild.snapshots
    );
    damaged_packs(&r.rebuild);
    for p in &r.check.problems {
        println!("{p}");
    }
    for (id, name) in &r.check.damaged_snapshots {
        println!("damaged snapshot: {} ({name})", &id[..8]);
    }
    println!(
        "{} of {} snapshots intact; nothing was deleted",
        r.intact_snapshots, r.check.snapshots
    );
}

/// What `index rebuild` found.
pub fn rebuild(r: &relic::repo::RebuildReport) {
    println!(
        "index rebuilt: {} packs, {} blobs, {} snapshots",
        r.packs, r.blobs, r.snapshots
    );
    damaged_packs(r);
}

/// What a rebuild did with packs whose trailer was damaged.
fn damaged_packs(r: &relic::repo::RebuildReport) {
    for p in &r.damaged_packs {
        println!(
            "pack {} is damaged ({}): {} blobs salvaged into new packs, {} lost; the pack was moved to damaged/packs/",
            p.pack, p.why, p.salvaged_blobs, p.lost_blobs
        );
    }
    if r.restored_snapshots > 0 {
        println!(
            "{} damaged snapshot object(s) rewritten from the index's copies (the damaged files are in damaged/snapshots/)",
            r.restored_snapshots
        );
    }
}

/// The summary of a restore into a directory, and every item left out.
pub fn files_restored(id: &SnapshotId, dir: &std::path::Path, st: &relic::files::RestoreStats) {
    eprintln!(
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
}

/// The line after one stream was written to a file.
pub fn wrote_file(path: &std::path::Path, size: u64, id: &SnapshotId) {
    eprintln!(
        "wrote {} ({}) from snapshot {}",
        path.display(),
        HumanBytes(size),
        id.short()
    );
}

/// The audit records of retired baselines.
pub fn audit(log: &[relic::repo::AuditRecord]) {
    for r in log {
        let t = jiff::Timestamp::from_nanosecond(i128::from(r.time_ns))
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        println!(
            "{t}  {}  {} ({})  by {}@{}  {}",
            r.action,
            r.name,
            r.tiers.join(", "),
            r.user,
            r.host,
            r.reason
        );
    }
}
