//! Keeping the index a faithful copy of what is on disk: the reconcile that
//! runs on open and after a lock, and the salvaging rebuild of `repair`.

use super::{io_at, origin, Error, Repository, Result};
use crate::compress::Decompressor;
use crate::id::{ChunkId, PackId, SnapshotId};
use crate::index::{self, ChunkEntry};
use crate::pack::{self, BlobKind, Entry, PackWriter};
use crate::progress::{Progress, Unit};
use crate::store::Kind;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;

impl Repository {
    /// Indexes packs the index does not know (written by a crashed or a
    /// concurrent process), forgets packs that are gone, catalogs snapshots,
    /// and removes temp files of dead processes. A secondary keeps what it
    /// learns in memory.
    pub(super) fn reconcile(&self, progress: &dyn Progress) -> Result<()> {
        let root = self.backend.root();
        if !self.catalog_only {
            self.reconcile_packs(progress)?;
        }
        let snaps: HashSet<String> = self
            .backend
            .list(Kind::Snapshot)
            .map_err(io_at(root))?
            .into_iter()
            .collect();
        let cataloged: HashSet<String> = self
            .index
            .snapshots()?
            .into_iter()
            .map(|(id, _)| id.to_hex())
            .collect();
        for name in snaps.difference(&cataloged) {
            // A damaged object stays out of the catalog; `check` reports it.
            if let Ok(bytes) = self.read_snapshot_object(name) {
                self.index
                    .put_snapshot(&SnapshotId::from_hex(name).expect("hex"), &bytes)?;
            }
        }
        for name in cataloged.difference(&snaps) {
            self.index
                .remove_snapshot(&SnapshotId::from_hex(name).expect("hex"))?;
        }
        self.backend.remove_stale_temp_files();
        Ok(())
    }

    /// The packs part of [`Self::reconcile`].
    fn reconcile_packs(&self, progress: &dyn Progress) -> Result<()> {
        let on_disk: HashMap<String, u64> = self.pack_list()?.into_iter().collect();
        let indexed: HashSet<String> = self
            .index
            .packs()?
            .into_iter()
            .map(|(id, _)| id.to_hex())
            .collect();
        let new: Vec<(&String, &u64)> = on_disk
            .iter()
            .filter(|(n, _)| !indexed.contains(*n))
            .collect();
        // Trailers of a bucket's packs come by ranged GETs, several at once.
        crate::runtime::parallel(&new, origin::FETCH_JOBS, |(name, size)| -> Result<()> {
            match self.pack_trailer(name, **size) {
                Ok(entries) => {
                    let id = PackId::from_hex(name).expect("listed names are hex");
                    self.index.add_pack(id, **size, &entries)?;
                }
                Err(e) => progress.warn(&format!("not indexing {e}")),
            }
            Ok(())
        })?;
        for name in indexed.iter().filter(|n| !on_disk.contains_key(*n)) {
            self.index
                .remove_pack(&PackId::from_hex(name).expect("hex"))?;
        }
        Ok(())
    }

    /// Makes the index a faithful copy of the packs and snapshots on disk,
    /// from scratch, without ever losing what the old index still knew:
    ///
    /// - every trailer is read before the index is touched; an I/O error
    ///   (not damage) stops the rebuild with the index as it was;
    /// - a pack whose trailer is damaged (a flipped byte, a pack cut short)
    ///   has its blobs salvaged, still through the old index: it located
    ///   them, each body still in the file is checked (authenticated, or
    ///   decoded through its base and rehashed) and copied into a new pack;
    /// - a damaged snapshot object whose copy in the old index's catalog
    ///   still hashes to its name is written back from that copy;
    /// - only then is the index cleared and refilled, and the damaged packs
    ///   moved to `damaged/packs/` (never deleted).
    ///
    /// A read-only repository's cache index is rebuilt without salvaging.
    /// The caller holds the exclusive lock.
    pub fn rebuild_index(&self, progress: &dyn Progress) -> Result<RebuildReport> {
        if self.index.is_secondary() {
            return Err(index::Error::Busy.into());
        }
        let names = self.pack_list()?;
        progress.start(
            "reading pack trailers",
            Some(names.len() as u64),
            Unit::Items,
        );
        let mut report = RebuildReport::default();
        let mut good = Vec::new();
        let mut bad: Vec<(PackId, String)> = Vec::new();
        for (name, size) in &names {
            match self.pack_trailer(name, *size) {
                Ok(entries) => good.push((PackId::from_hex(name).expect("hex"), *size, entries)),
                Err(e @ pack::Error::Corrupt { .. }) => {
                    progress.warn(&format!("{e}: salvaging its blobs"));
                    bad.push((PackId::from_hex(name).expect("hex"), e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
            progress.inc(1);
        }
        progress.finish();
        // What only the old index knows: where the blobs of the damaged
        // packs are, and verified copies of the snapshot objects.
        let bad_ids: HashSet<PackId> = bad.iter().map(|(p, _)| *p).collect();
        let mut known: HashMap<PackId, Vec<(ChunkId, ChunkEntry)>> = HashMap::new();
        if !bad.is_empty() {
            self.index.for_each_chunk(|id, e| {
                if bad_ids.contains(&e.pack) {
                    known.entry(e.pack).or_default().push((id, e));
                }
                Ok::<(), Error>(())
            })?;
        }
        let mut salvaged = Vec::new();
        // A bucket's damaged packs are reported, not salvaged or moved.
        if !self.read_only && self.origin.is_none() {
            for (pack, why) in &bad {
                let found = known.remove(pack).unwrap_or_default();
                let (saved, lost, packs) = self.salvage(pack, found)?;
                salvaged.extend(packs);
                report.salvaged_blobs += saved;
                report.lost_blobs += lost;
                report.damaged_packs.push(DamagedPack {
                    pack: pack.to_hex(),
                    why: why.clone(),
                    salvaged_blobs: saved,
                    lost_blobs: lost,
                });
            }
            let catalog: HashMap<SnapshotId, Vec<u8>> =
                self.index.snapshots()?.into_iter().collect();
            report.restored_snapshots = self.restore_snapshot_objects(&catalog)?;
        } else {
            for (pack, why) in &bad {
                let lost = known.get(pack).map_or(0, |v| v.len() as u64);
                report.lost_blobs += lost;
                report.damaged_packs.push(DamagedPack {
                    pack: pack.to_hex(),
                    why: why.clone(),
                    salvaged_blobs: 0,
                    lost_blobs: lost,
                });
            }
        }

        self.index.clear()?;
        for (id, size, entries) in good.iter().chain(&salvaged) {
            report.blobs += entries.len() as u64;
            self.index.add_pack(*id, *size, entries)?;
        }
        report.packs = good.len() as u64;
        self.index.flush()?;
        if !self.read_only && self.origin.is_none() {
            for (pack, _) in &bad {
                self.backend
                    .set_aside(Kind::Pack, &pack.to_hex())
                    .map_err(io_at(self.backend.root()))?;
            }
        }
        self.reconcile(progress)?;
        report.snapshots = self.index.snapshots()?.len() as u64;
        self.index.flush()?;
        Ok(report)
    }

    /// Copies the blobs the old index located in a damaged pack, those
    /// whose bodies still check out, into new sealed packs (not yet
    /// indexed); (saved, lost, the new packs).
    pub(super) fn salvage(
        &self,
        pack: &PackId,
        mut found: Vec<(ChunkId, ChunkEntry)>,
    ) -> Result<(u64, u64, Vec<SealedPack>)> {
        let mut out = Vec::new();
        if found.is_empty() {
            return Ok((0, 0, out));
        }
        let name = pack.to_hex();
        let f = self
            .backend
            .open(Kind::Pack, &name)
            .map_err(io_at(&self.backend.path(Kind::Pack, &name)))?;
        let len = f.metadata().map_err(io_at(self.backend.root()))?.len();
        // Bases before the deltas made against them.
        found.sort_by_key(|(id, e)| (e.depth(), e.offset, *id));
        let mut dec = Decompressor::new().map_err(Error::Input)?;
        let mut plain: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        let mut writer: Option<PackWriter> = None;
        let (mut saved, mut lost) = (0u64, 0u64);
        let io = io_at(self.backend.root());
        let r = (|| -> Result<()> {
            for (id, e) in &found {
                let mut body = vec![0u8; e.length as usize];
                let end = e.offset as u64 + e.length as u64;
                if e.offset < pack::HEADER.len() as u32
                    || end > len
                    || f.read_exact_at(&mut body, e.offset as u64).is_err()
                    || !self.body_checks_out(id, e, &body, &mut dec, &mut plain)
                {
                    lost += 1;
                    continue;
                }
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(
                        PackWriter::create(&self.backend, &self.keys)
                            .map_err(io_at(self.backend.root()))?,
                    ),
                };
                let mut entry = Entry::new(*id, e.kind, e.raw_length);
                entry.base = e.base;
                w.add(entry, &body).map_err(io_at(self.backend.root()))?;
                saved += 1;
                if w.size() >= pack::TARGET_SIZE {
                    let sealed = writer
                        .take()
                        .expect("writer")
                        .seal(&self.backend)
                        .map_err(io_at(self.backend.root()))?;
                    out.push((sealed.id, sealed.size, sealed.entries));
                }
            }
            Ok(())
        })();
        if let Some(w) = writer {
            match &r {
                Ok(()) if !w.is_empty() => {
                    let sealed = w.seal(&self.backend).map_err(io)?;
                    out.push((sealed.id, sealed.size, sealed.entries));
                }
                _ => w.abandon(),
            }
        }
        r?;
        Ok((saved, lost, out))
    }

    /// True when a blob body read from a damaged pack is what `e` says:
    /// authenticated with its id (encrypted), or decoded (through its base)
    /// and rehashed to its id. Keeps plaintexts for later deltas.
    pub(super) fn body_checks_out(
        &self,
        id: &ChunkId,
        e: &ChunkEntry,
        body: &[u8],
        dec: &mut Decompressor,
        plain: &mut HashMap<ChunkId, Vec<u8>>,
    ) -> bool {
        if let Some(c) = self.keys.cipher() {
            let mut b = body.to_vec();
            return c.open(&id.0, &mut b).is_ok();
        }
        let base = match e.base {
            None => None,
            Some(b) => match plain.get(&b.id) {
                Some(p) => Some(p.clone()),
                None => match self.read_blob(&b.id) {
                    Ok(p) => Some(p),
                    Err(_) => return false,
                },
            },
        };
        let mut out = Vec::with_capacity(e.raw_length as usize);
        if dec
            .decode_with(body, base.as_deref(), e.raw_length as usize, &mut out)
            .is_err()
            || self.keys.chunk_id(&out) != *id
        {
            return false;
        }
        if e.kind == BlobKind::Data {
            plain.insert(*id, out);
        }
        true
    }

    /// Writes back every snapshot object on disk that no longer hashes to
    /// its name from the old catalog's copy, when that copy does; returns
    /// how many. The good copy is complete on disk before the damaged file
    /// is replaced (kept in `damaged/snapshots/`).
    pub(super) fn restore_snapshot_objects(
        &self,
        catalog: &HashMap<SnapshotId, Vec<u8>>,
    ) -> Result<u64> {
        let mut n = 0;
        let root = self.backend.root();
        for name in self.backend.list(Kind::Snapshot).map_err(io_at(root))? {
            if self.read_snapshot_object(&name).is_ok() {
                continue;
            }
            let id = SnapshotId::from_hex(&name).expect("hex");
            let Some(copy) = catalog.get(&id) else {
                continue;
            };
            let mut h = self.keys.object_hasher();
            h.update(copy);
            if h.finalize().to_hex().as_str() != name {
                continue;
            }
            self.backend
                .rewrite_damaged(Kind::Snapshot, &name, copy)
                .map_err(io_at(&self.backend.path(Kind::Snapshot, &name)))?;
            n += 1;
        }
        Ok(n)
    }
}

/// A pack written and sealed, not yet indexed: id, size, trailer entries.
pub(super) type SealedPack = (PackId, u64, Vec<Entry>);

/// What `index rebuild` found.
#[derive(Debug, Default, Serialize)]
pub struct RebuildReport {
    pub packs: u64,
    pub blobs: u64,
    pub snapshots: u64,
    /// Packs whose trailer could not be read, now in `damaged/packs/`.
    pub damaged_packs: Vec<DamagedPack>,
    /// Blobs of damaged packs copied into new packs.
    pub salvaged_blobs: u64,
    /// Blobs of damaged packs that were cut off or failed their check.
    pub lost_blobs: u64,
    /// Damaged snapshot objects written back from the index's copies.
    pub restored_snapshots: u64,
}

/// A pack set aside by a rebuild.
#[derive(Debug, Serialize)]
pub struct DamagedPack {
    pub pack: String,
    pub why: String,
    pub salvaged_blobs: u64,
    pub lost_blobs: u64,
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backup, repo};
    use super::super::Repository;
    use crate::snapshot::Tier;
    use crate::store::Kind;
    use crate::NoProgress;

    /// Moves every object of a kind out of the repository; returns where.
    fn take(r: &Repository, kind: Kind, to: &std::path::Path) -> Vec<String> {
        let names = r.backend().list(kind).unwrap();
        std::fs::create_dir_all(to).unwrap();
        for n in &names {
            std::fs::rename(r.backend().path(kind, n), to.join(n)).unwrap();
        }
        names
    }

    #[test]
    fn reconcile_follows_packs_and_snapshots_that_come_and_go() {
        let (d, r) = repo();
        let id = backup(&r, "a", Tier::Daily, &vec![7u8; 200_000]);
        let packs = take(&r, Kind::Pack, &d.path().join("packs"));
        let snaps = take(&r, Kind::Snapshot, &d.path().join("snaps"));
        r.refresh().unwrap();
        assert!(r.index().packs().unwrap().is_empty());
        assert!(r.snapshots().unwrap().is_empty());
        // Written by another process: found on the next refresh.
        for p in &packs {
            std::fs::rename(
                d.path().join("packs").join(p),
                r.backend().path(Kind::Pack, p),
            )
            .unwrap();
        }
        for s in &snaps {
            std::fs::rename(
                d.path().join("snaps").join(s),
                r.backend().path(Kind::Snapshot, s),
            )
            .unwrap();
        }
        r.refresh().unwrap();
        assert_eq!(r.index().packs().unwrap().len(), packs.len());
        let (_, snap) = r.find_snapshot(&id.to_hex()).unwrap();
        let item = r.items(&snap).next().unwrap().unwrap();
        let mut out = Vec::new();
        r.restore_item(&item, &mut out, &NoProgress).unwrap();
        assert_eq!(out, vec![7u8; 200_000]);
    }

    #[test]
    fn rebuild_salvages_the_blobs_of_a_pack_with_a_damaged_trailer() {
        let (_d, r) = repo();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let id = backup(&r, "a", Tier::Daily, &data);
        let [pack] = r.backend().list(Kind::Pack).unwrap().try_into().unwrap();
        // Cut the footer off: the trailer cannot be read, the blobs can.
        let path = r.backend().path(Kind::Pack, &pack);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 10).unwrap();
        drop(f);
        let report = r.rebuild_index(&NoProgress).unwrap();
        assert_eq!(report.damaged_packs.len(), 1);
        assert_eq!(report.lost_blobs, 0);
        assert!(report.salvaged_blobs > 0);
        assert!(!r.backend().exists(Kind::Pack, &pack));
        assert!(r
            .backend()
            .root()
            .join("damaged/packs")
            .join(&pack)
            .exists());
        let (_, snap) = r.find_snapshot(&id.to_hex()).unwrap();
        let item = r.items(&snap).next().unwrap().unwrap();
        let mut out = Vec::new();
        r.restore_item(&item, &mut out, &NoProgress).unwrap();
        assert_eq!(out, data);
    }
}
