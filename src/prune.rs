//! Prune: free the space of blobs no snapshot needs.
//!
//! Plan, then execute. Marking walks every snapshot (its tree, its list
//! blobs, every item's chunks) into a mark set kept in RocksDB, so memory
//! does not grow with the repository; a merge join of the chunk index with
//! the mark set then gives each pack's live and dead bytes. Packs with no
//! live blob are deleted; packs whose live fraction is under the threshold
//! have their live blob bodies copied (still compressed and sealed: a body
//! is bound to its id, not to its pack) into new packs, and are deleted.
//!
//! A delta blob keeps its base alive: marking follows every live delta's
//! chain of bases (see [`mark_bases`]), and repacking copies a delta's
//! trailer entry (base and sketch) with its body.
//!
//! Order, so a kill at any moment leaves every snapshot restorable: new
//! packs are sealed and indexed first (the index then points live blobs at
//! them), only then are old packs deleted, and a pack deleted from disk is
//! forgotten by the index at the next open. A rerun finishes the work.
//! Prune holds the repository's exclusive lock for its whole run: backups
//! (which hold a shared lock) wait for it, and it waits for them.

use crate::id::{ChunkId, PackId};
use crate::pack::{self, PackWriter};
use crate::progress::{Progress, Unit};
use crate::repo::{Error, Repository, Result};
use crate::snapshot::ChunkList;
use serde::Serialize;
use std::collections::HashMap;

/// Packs whose live fraction is under this are repacked by default.
pub const DEFAULT_REPACK_BELOW: f64 = 0.5;

/// What prune will do (or did).
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub snapshots: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub chunks: u64,
    pub live_chunks: u64,
    pub live_bytes: u64,
    pub dead_bytes: u64,
    /// Packs with no live blob.
    pub delete: Vec<String>,
    /// Packs whose live blobs move to new packs.
    pub repack: Vec<String>,
    /// Bytes of live blobs to copy.
    pub repack_bytes: u64,
    /// Pack bytes that will be gone afterwards (deleted and repacked packs,
    /// less what is copied).
    pub frees: u64,
}

#[derive(Default, Clone, Copy)]
struct PackUse {
    size: u64,
    live: u64,
    total: u64,
}

fn mark_list(repo: &Repository, list: &ChunkList, batch: &mut Vec<ChunkId>) -> Result<()> {
    if let ChunkList::Indirect(blocks) = list {
        batch.extend_from_slice(blocks);
    }
    for id in repo.chunk_ids(list) {
        batch.push(id?);
        if batch.len() >= 16384 {
            repo.index().mark(batch)?;
            batch.clear();
        }
    }
    Ok(())
}

/// Extends the mark set with the bases of marked deltas, and theirs, so no
/// live delta loses its base. Each round adds one link of every chain;
/// chains are at most `delta_max_depth` long (and depths strictly fall
/// along one, so this ends even on a damaged index).
fn mark_bases(repo: &Repository) -> Result<()> {
    for _ in 0..=u8::MAX {
        let mut wanted = Vec::new();
        repo.index().for_each_chunk_marked(|_, e, marked| {
            if let (true, Some(b)) = (marked, e.base) {
                wanted.push(b.id);
            }
        })?;
        let mut new = Vec::new();
        for id in wanted {
            if !repo.index().is_marked(&id)? {
                new.push(id);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        new.sort_unstable();
        new.dedup();
        repo.index().mark(&new)?;
    }
    Ok(())
}

/// Marks what every snapshot needs and works out what to delete and repack.
pub fn plan(repo: &Repository, repack_below: f64, progress: &dyn Progress) -> Result<Plan> {
    let index = repo.index();
    index.clear_marks()?;
    let snaps = repo.snapshots()?;
    progress.start("marking", Some(snaps.len() as u64), Unit::Items);
    let mut batch = Vec::new();
    for (_, snap) in &snaps {
        mark_list(repo, &snap.tree, &mut batch)?;
        for item in repo.items(snap) {
            mark_list(repo, &item?.content, &mut batch)?;
        }
        progress.inc(1);
    }
    index.mark(&batch)?;
    mark_bases(repo)?;
    progress.finish();

    let mut usage: HashMap<PackId, PackUse> = HashMap::new();
    let mut plan = Plan {
        snapshots: snaps.len() as u64,
        ..Default::default()
    };
    for (id, info) in index.packs()? {
        usage.insert(
            id,
            PackUse {
                size: info.size,
                ..Default::default()
            },
        );
        plan.packs += 1;
        plan.pack_bytes += info.size;
    }
    index.for_each_chunk_marked(|_, e, marked| {
        let u = usage.entry(e.pack).or_default();
        u.total += e.length as u64;
        plan.chunks += 1;
        if marked {
            u.live += e.length as u64;
            plan.live_chunks += 1;
            plan.live_bytes += e.length as u64;
        } else {
            plan.dead_bytes += e.length as u64;
        }
    })?;
    let mut ids: Vec<_> = usage.into_iter().collect();
    ids.sort_by_key(|(id, _)| *id);
    for (id, u) in ids {
        let size = u.size;
        if u.live == 0 {
            plan.delete.push(id.to_hex());
            plan.frees += size;
        } else if (u.live as f64) < repack_below * u.total as f64 {
            plan.repack.push(id.to_hex());
            plan.repack_bytes += u.live;
            plan.frees += size.saturating_sub(u.live);
        }
    }
    Ok(plan)
}

/// Runs a prune: plan, then (unless `dry_run`) repack and delete.
pub fn prune(
    repo: &Repository,
    repack_below: f64,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<Plan> {
    if repo.index().is_secondary() {
        return Err(crate::index::Error::Busy.into());
    }
    let lock = repo.lock_exclusive(progress)?;
    let plan = plan(repo, repack_below, progress)?;
    if dry_run {
        drop(lock);
        return Ok(plan);
    }
    repack(repo, &plan.repack, progress)?;
    // Nothing is deleted unless the lock is still ours.
    lock.check_held()?;
    progress.start(
        "deleting packs",
        Some((plan.delete.len() + plan.repack.len()) as u64),
        Unit::Items,
    );
    for name in plan.delete.iter().chain(&plan.repack) {
        repo.remove_pack(name)?;
        repo.index()
            .remove_pack(&PackId::from_hex(name).expect("hex"))?;
        progress.inc(1);
    }
    progress.finish();
    repo.index().clear_marks()?;
    drop(lock);
    Ok(plan)
}

/// Copies the live blob bodies of `packs` into new packs, sealed and
/// indexed before anything is deleted.
fn repack(repo: &Repository, packs: &[String], progress: &dyn Progress) -> Result<()> {
    if packs.is_empty() {
        return Ok(());
    }
    let backend = repo.backend();
    let io = |source| Error::Io {
        path: backend.root().display().to_string(),
        source,
    };
    progress.start("repacking", Some(packs.len() as u64), Unit::Items);
    let mut writer: Option<PackWriter> = None;
    let r = repack_into(repo, packs, &mut writer, progress);
    // A failure (a full disk, say) leaves no temp file behind: what was
    // sealed is indexed and a rerun goes on from there.
    if let Some(w) = writer {
        match &r {
            Ok(()) if !w.is_empty() => {
                let sealed = w.seal(backend).map_err(io)?;
                repo.upload_pack(&sealed.id, sealed.size)?;
                repo.index()
                    .add_pack(sealed.id, sealed.size, &sealed.entries)?;
            }
            _ => w.abandon(),
        }
    }
    r?;
    progress.finish();
    Ok(())
}

/// The copying part of [`repack`]; the pack being filled stays in `writer`.
fn repack_into(
    repo: &Repository,
    packs: &[String],
    writer: &mut Option<PackWriter>,
    progress: &dyn Progress,
) -> Result<()> {
    let backend = repo.backend();
    let io = |source| Error::Io {
        path: backend.root().display().to_string(),
        source,
    };
    let mut body = Vec::new();
    for name in packs {
        let data = repo.pack_data(name)?;
        let f = data.reader();
        let entries = pack::read_trailer(name, f, data.len(), repo.keys().cipher())?;
        let pid = PackId::from_hex(name).expect("hex");
        for e in entries {
            // Live means: the index points this id at this pack and it is marked.
            let current = repo.index().get(&e.id)?;
            if current.map(|c| c.pack) != Some(pid) || !repo.index().is_marked(&e.id)? {
                continue;
            }
            body.resize(e.length as usize, 0);
            f.read_exact_at(&mut body, e.offset as u64).map_err(io)?;
            let w = match writer {
                Some(w) => w,
                None => writer.insert(PackWriter::create(backend, repo.keys()).map_err(io)?),
            };
            w.add(e, &body).map_err(io)?;
            if w.size() >= pack::TARGET_SIZE {
                let sealed = writer.take().expect("writer").seal(backend).map_err(io)?;
                repo.upload_pack(&sealed.id, sealed.size)?;
                repo.index()
                    .add_pack(sealed.id, sealed.size, &sealed.entries)?;
            }
        }
        progress.inc(1);
    }
    Ok(())
}
