//! `check` and `stats`: what the repository holds and whether all of it is
//! intact.
//!
//! The structural check reads every pack trailer and walks every snapshot,
//! making sure each chunk it needs is indexed and in a sound pack. With
//! `read_data` every pack is read whole: its bytes must hash to its name and
//! every blob must decompress to content that hashes to its id. Damage is
//! reported per pack and blob, with the snapshots it touches.

use crate::id::{ChunkId, PackId, SnapshotId};
use crate::pack::{self, BlobKind};
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, Result};
use crate::snapshot::Snapshot;
use crossbeam_channel::bounded;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

/// One comparison of a restore's verify step (a database's tables, an
/// image's id, the restored files): what was expected, what was found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub what: String,
    pub expected: String,
    pub found: String,
    pub ok: bool,
}

/// Outcome of `check`.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub packs: u64,
    pub blobs: u64,
    pub snapshots: u64,
    pub bytes_read: u64,
    /// The packs whose every byte was read (all, a slice, or none).
    pub packs_read: u64,
    /// The slice read, `[index, of]` (index from 0), when only a slice was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice: Option<(u32, u32)>,
    /// Unreferenced deltas (in packs kept for their other blobs) whose
    /// bases were pruned: they cannot be decoded and are not needed.
    pub dead_deltas: u64,
    /// Every problem found, one line each.
    pub problems: Vec<String>,
    /// Snapshots that cannot be fully restored: id → name.
    pub damaged_snapshots: BTreeMap<String, String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How much pack data a check reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadData {
    /// Pack trailers and snapshot trees only.
    None,
    /// Every byte of every pack.
    All,
    /// Every byte of the packs of slice `index` (from 0) of `of`: packs
    /// are assigned to slices by their name (a hash), so the slices are
    /// about equal and each pack is in exactly one.
    Slice { index: u32, of: u32 },
}

impl ReadData {
    /// Whether the pack `name` is read whole.
    pub fn reads(self, name: &str) -> bool {
        match self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Slice { index, of } => {
                let head = &name[..name.len().min(16)];
                u64::from_str_radix(head, 16).is_ok_and(|n| n % u64::from(of) == u64::from(index))
            }
        }
    }

    /// `N/T` as restic writes it: slice N (from 1) of T.
    pub fn parse_subset(s: &str) -> std::result::Result<ReadData, String> {
        let bad = || format!("'{s}' is not a subset: use N/T (slice N of T, from 1) such as 2/20");
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        let (n, t): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            t.trim().parse().map_err(|_| bad())?,
        );
        if t == 0 || n == 0 || n > t {
            return Err(bad());
        }
        Ok(if t == 1 {
            ReadData::All
        } else {
            ReadData::Slice {
                index: n - 1,
                of: t,
            }
        })
    }
}

#[derive(Default)]
struct Damage {
    packs: HashSet<PackId>,
    chunks: HashSet<ChunkId>,
    problems: Vec<String>,
    blobs: u64,
    bytes: u64,
    /// Dead deltas whose bases were pruned.
    unverifiable: u64,
}

/// Checks one pack; with `read_data`, reads and verifies all of it.
fn check_pack(repo: &Repository, (name, size): (&str, u64), read_data: bool, d: &Mutex<Damage>) {
    let id = PackId::from_hex(name).expect("listed names are hex");
    let mut local = Damage::default();
    let result = (|| -> std::result::Result<(), String> {
        if !read_data {
            // The trailer alone (ranged reads from a bucket).
            let entries = repo.pack_trailer(name, size).map_err(|e| e.to_string())?;
            local.blobs += entries.len() as u64;
            return Ok(());
        }
        // Every byte, read once; the trailer from memory.
        let data = repo.pack_data(name).map_err(|e| e.to_string())?;
        let bytes = data.bytes().map_err(|e| e.to_string())?;
        let entries = pack::read_trailer(name, &*bytes, data.len(), repo.keys().cipher())
            .map_err(|e| e.to_string())?;
        local.blobs += entries.len() as u64;
        local.bytes += bytes.len() as u64;
        let mut h = repo.keys().object_hasher();
        h.update(&bytes);
        if PackId::from(h.finalize()) != id {
            local
                .problems
                .push(format!("pack {name}: content does not match its name"));
            local.packs.insert(id);
        }
        let mut dec = crate::compress::Decompressor::new().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut body = Vec::new();
        for e in &entries {
            body.clear();
            body.extend_from_slice(&bytes[e.offset as usize..(e.offset + e.length) as usize]);
            if let Some(c) = repo.keys().cipher() {
                if c.open(&e.id.0, &mut body).is_err() {
                    local.problems.push(format!(
                        "pack {name}: blob {} is damaged: authentication failed",
                        e.id
                    ));
                    local.chunks.insert(e.id);
                    continue;
                }
            }
            out.clear();
            // A delta is decoded through its base, read by the index.
            let base = match &e.base {
                None => None,
                Some(b) => match repo.read_blob(&b.id) {
                    Ok(plain) => Some(plain),
                    // A base (or a base of the base) that is in no pack was
                    // pruned: this delta is garbage in a pack prune kept for
                    // its other blobs (a live delta keeps its whole chain
                    // alive, and the snapshot walk below names any snapshot
                    // that lost a link).
                    Err(
                        crate::repo::Error::MissingChunk(_)
                        | crate::repo::Error::MissingBase { .. },
                    ) => {
                        local.unverifiable += 1;
                        continue;
                    }
                    Err(err) => {
                        local.problems.push(format!(
                            "pack {name}: blob {} cannot be decoded: its delta base {} is unreadable: {err}",
                            e.id, b.id
                        ));
                        local.chunks.insert(e.id);
                        continue;
                    }
                },
            };
            let decoded = dec.decode_with(&body, base.as_deref(), e.raw_length as usize, &mut out);
            let what = match decoded {
                Err(err) => Some(err.to_string()),
                Ok(()) if repo.keys().chunk_id(&out) != e.id => {
                    Some("content does not match its id".to_string())
                }
                Ok(()) => None,
            };
            if let Some(what) = what {
                local
                    .problems
                    .push(format!("pack {name}: blob {} is damaged: {what}", e.id));
                local.chunks.insert(e.id);
            }
        }
        Ok(())
    })();
    if let Err(what) = result {
        local.problems.push(format!("pack {name}: {what}"));
        local.packs.insert(id);
    }
    let mut d = d.lock().expect("damage lock");
    d.packs.extend(local.packs);
    d.chunks.extend(local.chunks);
    d.problems.extend(local.problems);
    d.blobs += local.blobs;
    d.bytes += local.bytes;
    d.unverifiable += local.unverifiable;
}

/// Checks the whole repository.
pub fn check(repo: &Repository, read: ReadData, progress: &dyn Progress) -> Result<CheckReport> {
    let names = repo.pack_list()?;
    let read_data = read != ReadData::None;
    let packs_read = names.iter().filter(|(n, _)| read.reads(n)).count() as u64;
    // Reading data is counted in bytes (packs differ in size), checking
    // their trailers in packs.
    if read_data {
        let total = names
            .iter()
            .filter(|(n, _)| read.reads(n))
            .map(|(_, size)| size)
            .sum();
        progress.start("reading packs", Some(total), Unit::Bytes);
    } else {
        progress.start("checking packs", Some(names.len() as u64), Unit::Items);
    }
    let damage = Mutex::new(Damage::default());
    let threads = if read_data {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8)
    } else if repo.origin().is_some() {
        crate::repo::FETCH_JOBS
    } else {
        1
    };
    std::thread::scope(|s| {
        let (tx, rx) = bounded::<(&str, u64)>(threads * 2);
        for _ in 0..threads {
            let rx = rx.clone();
            let damage = &damage;
            s.spawn(move || {
                for name in rx {
                    let whole = read.reads(name.0);
                    check_pack(repo, name, whole, damage);
                    if whole || !read_data {
                        progress.inc(if read_data { name.1 } else { 1 });
                    }
                }
            });
        }
        for (n, size) in &names {
            if tx.send((n.as_str(), *size)).is_err() {
                break;
            }
        }
    });
    progress.finish();
    let damage = damage.into_inner().expect("damage lock");
    let mut report = CheckReport {
        packs: names.len() as u64,
        blobs: damage.blobs,
        bytes_read: damage.bytes,
        packs_read,
        slice: match read {
            ReadData::Slice { index, of } => Some((index, of)),
            _ => None,
        },
        dead_deltas: damage.unverifiable,
        problems: damage.problems,
        ..Default::default()
    };

    let crate::repo::SnapshotList { ok: snaps, damaged } = repo.load_snapshots(true)?;
    progress.start(
        "checking snapshots",
        Some((snaps.len() + damaged.len()) as u64),
        Unit::Items,
    );
    report.snapshots = (snaps.len() + damaged.len()) as u64;
    for (name, e) in damaged {
        report
            .problems
            .push(format!("snapshot {}: {e}", &name[..8]));
        report.damaged_snapshots.insert(name, "(unreadable)".into());
    }
    for (id, e) in repo.key_slot_damage()? {
        report.problems.push(format!("key slot {}: {e}", &id[..8]));
    }
    // Every pack a listed snapshot needs was sealed before the snapshot was
    // written: refreshing now makes them all visible, even when a
    // concurrent backup wrote them, and the packs are listed again (a pack
    // sealed after the first listing is not missing; under the shared lock
    // packs only ever come, never go). The nightly model caught the stale
    // listing as "in pack … which is missing".
    repo.refresh()?;
    let on_disk: HashSet<PackId> = repo
        .pack_names()?
        .iter()
        .filter_map(|n| PackId::from_hex(n))
        .collect();
    for (id, snap) in &snaps {
        if let Some(problem) = check_snapshot(repo, snap, &on_disk, &damage.packs, &damage.chunks) {
            report.problems.push(format!(
                "snapshot {} ({}): {problem}",
                id.short(),
                snap.name
            ));
            report
                .damaged_snapshots
                .insert(id.to_hex(), snap.name.clone());
        }
        progress.inc(1);
    }
    progress.finish();
    Ok(report)
}

/// The first problem that keeps a snapshot from restoring, if any.
fn check_snapshot(
    repo: &Repository,
    snap: &Snapshot,
    on_disk: &HashSet<PackId>,
    bad_packs: &HashSet<PackId>,
    bad_chunks: &HashSet<ChunkId>,
) -> Option<String> {
    // A delta needs its whole chain of bases.
    let verify = |id: &ChunkId| -> Option<String> {
        let mut at = *id;
        let mut depth = u8::MAX;
        loop {
            let what = if at == *id {
                format!("chunk {id}")
            } else {
                format!("chunk {id} needs delta base {at}, which")
            };
            match repo.index().get(&at) {
                Err(e) => return Some(e.to_string()),
                Ok(None) => return Some(format!("{what} is missing")),
                Ok(Some(e)) if !on_disk.contains(&e.pack) => {
                    return Some(format!("{what} is in pack {} which is missing", e.pack))
                }
                Ok(Some(e)) if bad_packs.contains(&e.pack) => {
                    return Some(format!("{what} is in damaged pack {}", e.pack))
                }
                Ok(Some(_)) if bad_chunks.contains(&at) => {
                    return Some(format!("{what} is damaged"))
                }
                Ok(Some(e)) => match e.base {
                    None => return None,
                    Some(b) if b.depth < depth => {
                        depth = b.depth;
                        at = b.id;
                    }
                    Some(_) => return Some(format!("{what} has a delta chain that does not end")),
                },
            }
        }
    };
    let lists = |list: &crate::snapshot::ChunkList| -> Option<String> {
        if let crate::snapshot::ChunkList::Indirect(blocks) = list {
            return blocks.iter().find_map(verify);
        }
        None
    };
    if let Some(p) = lists(&snap.tree) {
        return Some(p);
    }
    for id in repo.chunk_ids(&snap.tree) {
        match id {
            Err(e) => return Some(e.to_string()),
            Ok(id) => {
                if let Some(p) = verify(&id) {
                    return Some(p);
                }
            }
        }
    }
    for item in repo.items(snap) {
        let item = match item {
            Ok(i) => i,
            Err(e) => return Some(e.to_string()),
        };
        if let Some(p) = lists(&item.content) {
            return Some(format!("{}: {p}", item.path_lossy()));
        }
        for id in repo.chunk_ids(&item.content) {
            match id {
                Err(e) => return Some(format!("{}: {e}", item.path_lossy())),
                Ok(id) => {
                    if let Some(p) = verify(&id) {
                        return Some(format!("{}: {p}", item.path_lossy()));
                    }
                }
            }
        }
    }
    None
}

/// What restoring one snapshot reads.
#[derive(Debug, Serialize)]
pub struct RestoreNeeds {
    pub snapshot: String,
    /// Bytes of data it restores.
    pub size: u64,
    /// Distinct blobs it needs, delta bases included.
    pub blobs: u64,
    /// Their stored (compressed, sealed) bytes: what a restore reads.
    pub stored_bytes: u64,
    pub packs: u64,
}

/// The stored blobs a snapshot needs and their size.
pub fn restore_needs(repo: &Repository, id: &SnapshotId, snap: &Snapshot) -> Result<RestoreNeeds> {
    let mut n = RestoreNeeds {
        snapshot: id.to_hex(),
        size: snap.summary.size,
        blobs: 0,
        stored_bytes: 0,
        packs: 0,
    };
    let mut packs = HashSet::new();
    repo.snapshot_blobs(snap, |_, e| {
        n.blobs += 1;
        n.stored_bytes += e.length as u64;
        packs.insert(e.pack);
    })?;
    n.packs = packs.len() as u64;
    Ok(n)
}

/// What the repository holds.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub snapshots: u64,
    /// Sum of the content sizes of all snapshots.
    pub total_size: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub data_chunks: u64,
    /// Unique chunk bytes before and after compression.
    pub data_raw: u64,
    pub data_stored: u64,
    /// Data chunks stored as deltas against a similar chunk (counted in
    /// the data figures too).
    pub delta_chunks: u64,
    pub delta_raw: u64,
    pub delta_stored: u64,
    pub meta_blobs: u64,
    pub meta_stored: u64,
    /// total_size / data_raw
    pub dedup_ratio: f64,
    /// data_raw / data_stored
    pub compression_ratio: f64,
    /// total_size / pack_bytes
    pub total_ratio: f64,
}

pub fn stats(repo: &Repository) -> Result<Stats> {
    let mut s = Stats::default();
    for (_, snap) in repo.snapshots()? {
        s.snapshots += 1;
        s.total_size += snap.summary.size;
    }
    for (_, info) in repo.index().packs()? {
        s.packs += 1;
        s.pack_bytes += info.size;
    }
    repo.index().for_each_chunk(|_, e| -> Result<()> {
        match e.kind {
            BlobKind::Data => {
                s.data_chunks += 1;
                s.data_raw += e.raw_length as u64;
                s.data_stored += e.length as u64;
                if e.base.is_some() {
                    s.delta_chunks += 1;
                    s.delta_raw += e.raw_length as u64;
                    s.delta_stored += e.length as u64;
                }
            }
            BlobKind::Meta => {
                s.meta_blobs += 1;
                s.meta_stored += e.length as u64;
            }
        }
        Ok(())
    })?;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.dedup_ratio = ratio(s.total_size, s.data_raw);
    s.compression_ratio = ratio(s.data_raw, s.data_stored);
    s.total_ratio = ratio(s.total_size, s.pack_bytes);
    Ok(s)
}

/// Whether a snapshot can be restored: every chunk it needs is indexed and
/// in a pack on disk; with `read_data`, every item is read back, opened,
/// decompressed and checked against its BLAKE3. The first problem, if any.
pub fn verify_snapshot(
    repo: &Repository,
    snap: &Snapshot,
    read_data: bool,
) -> Result<Option<String>> {
    let on_disk: HashSet<PackId> = repo
        .pack_names()?
        .iter()
        .filter_map(|n| PackId::from_hex(n))
        .collect();
    if let Some(p) = check_snapshot(repo, snap, &on_disk, &HashSet::new(), &HashSet::new()) {
        return Ok(Some(p));
    }
    if read_data {
        for item in repo.items(snap) {
            let item = item?;
            if matches!(
                item.kind,
                crate::snapshot::ItemKind::File | crate::snapshot::ItemKind::Stream
            ) {
                if let Err(e) =
                    repo.restore_item(&item, &mut std::io::sink(), &crate::progress::NoProgress)
                {
                    return Ok(Some(format!("{}: {e}", item.path_lossy())));
                }
            }
        }
    }
    Ok(None)
}

/// The file in which `repair` records the snapshots it found damaged
/// (advisory: `snapshots` flags them; `check` is the truth).
pub const DAMAGED_FILE: &str = "damaged.json";

/// What `repair` found and did.
#[derive(Debug, Serialize)]
pub struct RepairReport {
    pub rebuild: crate::repo::RebuildReport,
    pub check: CheckReport,
    /// Snapshots every chunk of which is intact.
    pub intact_snapshots: u64,
}

/// Rebuilds the index from the packs on disk (a damaged pack's blobs are
/// left out), reads and verifies every byte, and records the damaged
/// snapshots in `damaged.json`. Deletes nothing: damaged packs stay for
/// forensic tools, damaged snapshots stay listed (their intact items still
/// restore), and a later `check` tells whether anything changed.
pub fn repair(repo: &Repository, progress: &dyn Progress) -> Result<RepairReport> {
    let rebuild = repo.rebuild_index(progress)?;
    let check = check(repo, ReadData::All, progress)?;
    record_damage(repo, &check.damaged_snapshots)?;
    let intact_snapshots = check.snapshots - check.damaged_snapshots.len() as u64;
    Ok(RepairReport {
        rebuild,
        check,
        intact_snapshots,
    })
}

/// Makes `damaged.json` say exactly `damaged`: called after every byte was
/// read (`repair`, `check --read-data`), so a mark clears once a check
/// proves the snapshot whole again, and a new one appears when it is not.
pub fn record_damage(repo: &Repository, damaged: &BTreeMap<String, String>) -> Result<()> {
    let bytes =
        (!damaged.is_empty()).then(|| serde_json::to_vec_pretty(damaged).expect("map serializes"));
    repo.backend()
        .write_state(DAMAGED_FILE, bytes.as_deref())
        .map_err(|source| crate::repo::Error::Io {
            path: repo
                .backend()
                .root()
                .join(DAMAGED_FILE)
                .display()
                .to_string(),
            source,
        })
}

/// Snapshots the last `repair` found damaged: id → name.
pub fn damaged_snapshots(repo: &Repository) -> BTreeMap<String, String> {
    repo.backend()
        .read_state(DAMAGED_FILE)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
