//! What snapshots and the repository cost: the line a backup ends with,
//! `stats`, `stats NAME` and `stats SNAPSHOT`.

use super::{time, verbose};
use anyhow::Result;
use indicatif::HumanBytes;
use relic::{Snapshot, SnapshotId};
use serde_json::json;

/// The line (or JSON object) a backup ends with; `-v` adds how the bytes
/// read were saved.
pub fn backup(id: &SnapshotId, snap: &Snapshot, json: bool, dry_run: bool) -> Result<()> {
    let s = &snap.summary;
    let c = snap.costs();
    let secs = (s.duration_ms as f64 / 1000.0).max(1e-3);
    if json {
        out!(
            "{}",
            json!({
                "id": id.to_hex(), "name": snap.name, "tier": snap.tier.as_str(),
                "size": s.size, "items": s.items, "chunks": s.chunks,
                "new_chunks": s.new_chunks, "new_bytes": s.new_bytes,
                "stored_bytes": s.stored_bytes, "added_bytes": c.added,
                "costs": c, "duration_ms": s.duration_ms, "dry_run": dry_run,
            })
        );
        return Ok(());
    }
    if dry_run {
        out!(
            "dry run: snapshot ({}, {}) would add {} to the repository ({} read, {} new chunks); nothing was written",
            snap.name,
            snap.tier,
            HumanBytes(c.added),
            HumanBytes(s.size),
            s.new_chunks
        );
        if verbose() {
            out!("  {}", savings(&c));
        }
        return Ok(());
    }
    report!(
        "snapshot {} ({}, {}) saved: {} read, {} added to the repository, {:.1}s ({}/s)",
        id.short(),
        snap.name,
        snap.tier,
        HumanBytes(s.size),
        HumanBytes(c.added),
        secs,
        HumanBytes((s.size as f64 / secs) as u64)
    );
    if verbose() {
        report!("  {}", savings(&c));
    }
    Ok(())
}

/// How a snapshot's bytes were saved: "45.6 MiB deduplicated, 120 chunks
/// (5.1 MiB) as deltas in 150.0 KiB, 1.0 MiB compressed to 200.0 KiB, 2.0
/// KiB pack overhead".
pub fn savings(c: &relic::snapshot::Costs) -> String {
    format!(
        "{} deduplicated, {} chunks ({}) as deltas in {}, {} compressed to {}, {} pack overhead",
        HumanBytes(c.deduplicated),
        c.delta_chunks,
        HumanBytes(c.delta_raw),
        HumanBytes(c.delta_stored),
        HumanBytes(c.compressed_raw),
        HumanBytes(c.compressed_stored),
        HumanBytes(c.overhead)
    )
}

/// Sizes and ratios.
pub fn stats(s: &relic::check::Stats) -> Result<()> {
    out!("snapshots:          {}", s.snapshots);
    out!("total size:         {}", HumanBytes(s.total_size));
    out!(
        "unique data:        {} in {} chunks",
        HumanBytes(s.data_raw),
        s.data_chunks
    );
    out!("stored data:        {}", HumanBytes(s.data_stored));
    out!(
        "of which deltas:    {} chunks of {} stored in {}",
        s.delta_chunks,
        HumanBytes(s.delta_raw),
        HumanBytes(s.delta_stored)
    );
    out!(
        "metadata:           {} in {} blobs",
        HumanBytes(s.meta_stored),
        s.meta_blobs
    );
    out!(
        "packs:              {} ({})",
        s.packs,
        HumanBytes(s.pack_bytes)
    );
    out!("dedup ratio:        {:.2}", s.dedup_ratio);
    out!("compression ratio:  {:.2}", s.compression_ratio);
    out!("total ratio:        {:.2}", s.total_ratio);
    Ok(())
}

/// `stats SNAPSHOT`: what it cost, and what restoring it reads.
pub fn snapshot_stats(
    id: &SnapshotId,
    snap: &Snapshot,
    n: &relic::check::RestoreNeeds,
    json: bool,
) -> Result<()> {
    let c = snap.costs();
    if json {
        let mut v = serde_json::to_value(n)?;
        v["id"] = json!(id.to_hex());
        v["name"] = json!(snap.name);
        v["time"] = json!(snap.time().to_string());
        v["costs"] = serde_json::to_value(&c)?;
        return super::json(&v);
    }
    out!(
        "snapshot:           {} ({}, {}, {})",
        id.short(),
        snap.name,
        snap.tier,
        time(snap)
    );
    out!("raw size:           {}", HumanBytes(c.size));
    out!(
        "added to the repo:  {}{}",
        HumanBytes(c.added),
        if c.added_exact {
            ""
        } else {
            " (estimated: made before relic recorded it)"
        }
    );
    out!("saved by:           {}", savings(&c));
    out!(
        "restoring it reads: {} stored in {} blobs of {} packs",
        HumanBytes(n.stored_bytes),
        n.blobs,
        n.packs
    );
    Ok(())
}

/// `stats NAME`: what each snapshot of that name cost, and in all.
pub fn name_stats(name: &str, snaps: &[&(SnapshotId, Snapshot)], json: bool) -> Result<()> {
    let rows: Vec<_> = snaps.iter().map(|(id, s)| (id, s, s.costs())).collect();
    let sum = |f: fn(&relic::snapshot::Costs) -> u64| rows.iter().map(|r| f(&r.2)).sum::<u64>();
    let (size, added) = (sum(|c| c.size), sum(|c| c.added));
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(id, s, c)| json!({"id": id.to_hex(), "time": s.time().to_string(), "tier": s.tier.as_str(), "costs": c}))
            .collect();
        return super::json(
            &json!({"name": name, "snapshots": list, "size": size, "added": added}),
        );
    }
    out!(
        "{:<8}  {:<20}  {:<10}  {:>10}  {:>10}  {:>12}  {:>10}  {:>10}",
        "ID",
        "TIME",
        "TIER",
        "RAW",
        "ADDED",
        "DEDUPLICATED",
        "DELTAS",
        "COMPRESSED"
    );
    for (id, s, c) in &rows {
        out!(
            "{:<8}  {:<20}  {:<10}  {:>10}  {:>10}  {:>12}  {:>10}  {:>10}",
            id.short(),
            time(s),
            s.tier.as_str(),
            HumanBytes(c.size).to_string(),
            HumanBytes(c.added).to_string(),
            HumanBytes(c.deduplicated).to_string(),
            HumanBytes(c.delta_raw).to_string(),
            HumanBytes(c.compressed_raw).to_string()
        );
    }
    out!(
        "{} snapshots of '{name}': {} read, {} added to the repository",
        rows.len(),
        HumanBytes(size),
        HumanBytes(added)
    );
    Ok(())
}
