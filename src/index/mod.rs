//! The local RocksDB index: chunk id → where its blob lives, pack sizes, and a
//! catalog of snapshot objects for fast listing.
//!
//! It is only a cache. Everything in it can be rebuilt from pack trailers and
//! snapshot objects (`relic index rebuild`), and `Repository::open` reconciles
//! it with the packs and snapshots on disk, so a crash between sealing a pack
//! and indexing it loses nothing.
//!
//! RocksDB admits one writer process. A second relic process that finds the
//! index locked opens it as a read-only secondary and keeps what it writes in
//! memory; the next process that opens the index as primary indexes those
//! packs from their trailers.

use crate::delta::Sketch;
use crate::id::{ChunkId, PackId, SnapshotId};
use crate::pack::Entry;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, DB,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use thiserror::Error;

mod entry;
mod marks;

use entry::sketch_key;
pub use entry::{ChunkEntry, PackInfo};

const CF_CHUNKS: &str = "chunks";
const CF_PACKS: &str = "packs";
const CF_SNAPSHOTS: &str = "snapshots";
/// Prune's mark set: ids of reachable blobs, empty values.
const CF_MARKS: &str = "marks";
/// Resemblance index: super-feature number and value → the newest chunk
/// with that super-feature (see delta.rs). Rebuilt from pack trailers.
const CF_SKETCHES: &str = "sketches";
const CFS: [&str; 5] = [CF_CHUNKS, CF_PACKS, CF_SNAPSHOTS, CF_MARKS, CF_SKETCHES];
const CHUNK_VALUE_LEN: usize = 32 + 4 + 4 + 4 + 1;
/// A delta's value adds its base id and depth.
const DELTA_VALUE_LEN: usize = CHUNK_VALUE_LEN + 32 + 1;

#[derive(Debug, Error)]
pub enum Error {
    #[error("index at {path}: {source}")]
    Rocks {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("index at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index entry for {0} is malformed; run `relic index rebuild`")]
    Malformed(String),
    #[error("the index is in use by another relic process; retry when it has finished")]
    Busy,
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct Index {
    /// Behind a lock so a secondary can be reopened in place (see
    /// [`Index::catch_up`]).
    db: RwLock<DB>,
    path: PathBuf,
    /// Set when opened as a secondary: the secondary's own directory and the
    /// entries this process added (RocksDB will not take them).
    secondary: Option<(Mutex<PathBuf>, Mutex<Overlay>)>,
}

/// What a secondary adds in memory.
#[derive(Default)]
struct Overlay {
    chunks: HashMap<ChunkId, ChunkEntry>,
    packs: HashMap<PackId, PackInfo>,
    /// Packs deleted from disk since the primary indexed them (a prune
    /// that ran while this process had the index open as a secondary):
    /// entries pointing into them are hidden, so a backup never counts a
    /// deleted chunk as stored.
    gone: HashSet<PackId>,
}

fn options() -> (Options, Vec<ColumnFamilyDescriptor>) {
    let mut db = Options::default();
    db.create_if_missing(true);
    db.create_missing_column_families(true);
    db.set_max_open_files(256);
    db.set_keep_log_file_num(2);
    // Warnings and errors only: at info level each open wrote a 100 KB
    // dump of the options into LOG, kept twice more in old logs.
    db.set_log_level(rocksdb::LogLevel::Warn);
    db.set_max_background_jobs(2);
    db.set_max_total_wal_size(32 << 20);
    let cache = Cache::new_lru_cache(16 << 20);
    let cfs = CFS
        .iter()
        .map(|name| {
            let mut t = BlockBasedOptions::default();
            t.set_bloom_filter(10.0, false);
            t.set_block_cache(&cache);
            // Index and filter blocks stay in the table readers (about 2.5 MB
            // per million chunks) instead of competing with data blocks for
            // the cache: evicted, every lookup re-read and re-checksummed them.
            t.set_cache_index_and_filter_blocks(false);
            let mut o = Options::default();
            o.set_block_based_table_factory(&t);
            o.set_write_buffer_size(8 << 20);
            o.set_max_write_buffer_number(2);
            o.set_compression_type(rocksdb::DBCompressionType::None);
            ColumnFamilyDescriptor::new(*name, o)
        })
        .collect();
    (db, cfs)
}

impl Index {
    /// Opens (creating if needed) the index at `path`, as primary if it is
    /// free and as a read-only secondary if another process holds it.
    pub fn open(path: &Path) -> Result<Self> {
        crate::store::local::create_dir(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match Self::open_exclusive(path) {
            Err(Error::Busy) => Self::open_secondary(path),
            r => r,
        }
    }

    /// Opens as primary only; `Busy` when another process holds the index
    /// (no secondary is opened to find that out).
    pub fn open_exclusive(path: &Path) -> Result<Self> {
        let (opts, cfs) = options();
        match DB::open_cf_descriptors(&opts, path, cfs) {
            Ok(db) => Ok(Index {
                db: RwLock::new(db),
                path: path.to_path_buf(),
                secondary: None,
            }),
            Err(e) if is_lock_error(&e) => Err(Error::Busy),
            Err(source) => Err(Error::Rocks {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn open_secondary(path: &Path) -> Result<Self> {
        let (db, sec) = Self::secondary_db(path)?;
        Ok(Index {
            db: RwLock::new(db),
            path: path.to_path_buf(),
            secondary: Some((Mutex::new(sec), Mutex::new(Overlay::default()))),
        })
    }

    /// A new secondary instance of the index at `path`, in a directory of
    /// its own.
    fn secondary_db(path: &Path) -> Result<(DB, PathBuf)> {
        let sec = path.with_file_name(format!(
            "index-secondary-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (mut opts, _) = options();
        opts.set_max_open_files(-1);
        let db =
            DB::open_cf_as_secondary(&opts, path, &sec, CFS).map_err(|source| Error::Rocks {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((db, sec))
    }

    fn db(&self) -> RwLockReadGuard<'_, DB> {
        self.db.read().expect("index lock")
    }

    /// Where the index lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_secondary(&self) -> bool {
        self.secondary.is_some()
    }

    fn rocks(&self, source: rocksdb::Error) -> Error {
        Error::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    fn cf<'d>(db: &'d DB, name: &str) -> &'d rocksdb::ColumnFamily {
        db.cf_handle(name).expect("column family opened")
    }

    pub fn get(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        if let Some((_, overlay)) = &self.secondary {
            let any_gone = {
                let o = overlay.lock().expect("overlay lock");
                if let Some(e) = o.chunks.get(id) {
                    return Ok(Some(*e));
                }
                !o.gone.is_empty()
            };
            // The RocksDB read runs without the overlay's mutex held.
            let found = self.get_stored(id)?;
            if any_gone {
                if let Some(e) = &found {
                    if overlay.lock().expect("overlay lock").gone.contains(&e.pack) {
                        return Ok(None);
                    }
                }
            }
            return Ok(found);
        }
        self.get_stored(id)
    }

    fn get_stored(&self, id: &ChunkId) -> Result<Option<ChunkEntry>> {
        let db = self.db();
        let found = db
            .get_pinned_cf(Self::cf(&db, CF_CHUNKS), id.0)
            .map_err(|e| self.rocks(e))?;
        match found {
            None => Ok(None),
            Some(v) => ChunkEntry::decode(&v)
                .map(Some)
                .ok_or_else(|| Error::Malformed(id.to_hex())),
        }
    }

    /// Records a sealed pack and all its blobs in one atomic batch.
    pub fn add_pack(&self, pack: PackId, size: u64, entries: &[Entry]) -> Result<()> {
        let db = self.db();
        if let Some((_, overlay)) = &self.secondary {
            let mut o = overlay.lock().expect("overlay lock");
            for e in entries {
                o.chunks.insert(e.id, ChunkEntry::from_trailer(pack, e));
            }
            let blobs = entries.len() as u32;
            o.packs.insert(pack, PackInfo { size, blobs });
            o.gone.remove(&pack);
            return Ok(());
        }
        let mut b = WriteBatch::default();
        for e in entries {
            b.put_cf(
                Self::cf(&db, CF_CHUNKS),
                e.id.0,
                ChunkEntry::from_trailer(pack, e).encode(),
            );
            for (n, value) in e.sketch.iter().flatten().enumerate() {
                b.put_cf(Self::cf(&db, CF_SKETCHES), sketch_key(n, *value), e.id.0);
            }
        }
        let mut info = [0u8; 12];
        info[..8].copy_from_slice(&size.to_le_bytes());
        info[8..].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        b.put_cf(Self::cf(&db, CF_PACKS), pack.0, info);
        db.write(b).map_err(|e| self.rocks(e))
    }

    /// The stored chunk most like one with sketch `sk`: the chunk named by
    /// most of its super-features (each names the newest chunk that had
    /// it), if it is still indexed. A secondary sees what the primary had.
    pub fn similar(&self, sk: &Sketch) -> Result<Option<(ChunkId, ChunkEntry)>> {
        let db = self.db();
        let keys: Vec<[u8; 9]> = sk
            .iter()
            .enumerate()
            .map(|(n, v)| sketch_key(n, *v))
            .collect();
        let cf = Self::cf(&db, CF_SKETCHES);
        let mut votes: Vec<(ChunkId, u32)> = Vec::with_capacity(keys.len());
        for r in db.batched_multi_get_cf(cf, &keys, false) {
            let Some(v) = r.map_err(|e| self.rocks(e))? else {
                continue;
            };
            let Some(id) = ChunkId::from_slice(&v) else {
                continue;
            };
            match votes.iter_mut().find(|(c, _)| *c == id) {
                Some((_, n)) => *n += 1,
                None => votes.push((id, 1)),
            }
        }
        votes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        for (id, _) in votes {
            if let Some(e) = self.get(&id)? {
                return Ok(Some((id, e)));
            }
        }
        Ok(None)
    }

    /// Forgets a pack and every chunk entry that points into it (a
    /// secondary hides them in memory and leaves the rest to the primary).
    pub fn remove_pack(&self, pack: &PackId) -> Result<usize> {
        let db = self.db();
        if let Some((_, overlay)) = &self.secondary {
            let mut o = overlay.lock().expect("overlay lock");
            o.packs.remove(pack);
            o.chunks.retain(|_, e| e.pack != *pack);
            o.gone.insert(*pack);
            return Ok(0);
        }
        let mut b = WriteBatch::default();
        let mut n = 0;
        for item in db.iterator_cf(Self::cf(&db, CF_CHUNKS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if v.len() >= 32 && v[..32] == pack.0 {
                b.delete_cf(Self::cf(&db, CF_CHUNKS), k);
                n += 1;
            }
        }
        b.delete_cf(Self::cf(&db, CF_PACKS), pack.0);
        db.write(b).map_err(|e| self.rocks(e))?;
        Ok(n)
    }

    pub fn packs(&self) -> Result<Vec<(PackId, PackInfo)>> {
        let db = self.db();
        let mut out = Vec::new();
        let gone = self.gone();
        for item in db.iterator_cf(Self::cf(&db, CF_PACKS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let id = PackId::from_slice(&k).ok_or_else(|| Error::Malformed(hex::encode(&k)))?;
            if v.len() != 12 {
                return Err(Error::Malformed(id.to_hex()));
            }
            if gone.contains(&id) {
                continue;
            }
            out.push((
                id,
                PackInfo {
                    size: u64::from_le_bytes(v[..8].try_into().expect("8")),
                    blobs: u32::from_le_bytes(v[8..].try_into().expect("4")),
                },
            ));
        }
        if let Some((_, overlay)) = &self.secondary {
            out.extend(
                overlay
                    .lock()
                    .expect("overlay lock")
                    .packs
                    .iter()
                    .map(|(k, v)| (*k, *v)),
            );
        }
        Ok(out)
    }

    /// A secondary catches up with what the primary has written since by
    /// opening anew: RocksDB's incremental catch-up can return stale
    /// entries after the primary flushed or was reopened
    /// (facebook/rocksdb#14444), and a stale entry could name a pack a
    /// prune deleted. The overlay (what this process wrote) is kept.
    pub fn catch_up(&self) -> Result<()> {
        if let Some((dir, _)) = &self.secondary {
            let (fresh, fresh_dir) = Self::secondary_db(&self.path)?;
            let old = std::mem::replace(&mut *self.db.write().expect("index lock"), fresh);
            drop(old);
            let old_dir = std::mem::replace(&mut *dir.lock().expect("secondary dir"), fresh_dir);
            let _ = crate::store::local::remove_dir(&old_dir);
        }
        Ok(())
    }

    /// Packs a secondary saw deleted (empty for the primary).
    fn gone(&self) -> HashSet<PackId> {
        match &self.secondary {
            Some((_, o)) => o.lock().expect("overlay lock").gone.clone(),
            None => HashSet::new(),
        }
    }

    /// Calls `f` for every chunk entry, in id order.
    pub fn for_each_chunk<E: From<Error>>(
        &self,
        mut f: impl FnMut(ChunkId, ChunkEntry) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let db = self.db();
        let gone = self.gone();
        for item in db.iterator_cf(Self::cf(&db, CF_CHUNKS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let id = ChunkId::from_slice(&k).ok_or_else(|| Error::Malformed(hex::encode(&k)))?;
            let e = ChunkEntry::decode(&v).ok_or_else(|| Error::Malformed(id.to_hex()))?;
            if gone.contains(&e.pack) {
                continue;
            }
            f(id, e)?;
        }
        if let Some((_, overlay)) = &self.secondary {
            for (id, e) in overlay.lock().expect("overlay lock").chunks.iter() {
                f(*id, *e)?;
            }
        }
        Ok(())
    }

    pub fn put_snapshot(&self, id: &SnapshotId, bytes: &[u8]) -> Result<()> {
        let db = self.db();
        if self.is_secondary() {
            return Ok(());
        }
        db.put_cf(Self::cf(&db, CF_SNAPSHOTS), id.0, bytes)
            .map_err(|e| self.rocks(e))
    }

    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let db = self.db();
        if self.is_secondary() {
            return Ok(());
        }
        db.delete_cf(Self::cf(&db, CF_SNAPSHOTS), id.0)
            .map_err(|e| self.rocks(e))
    }

    /// The cached snapshot objects, by id.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
        let db = self.db();
        let mut out = Vec::new();
        for item in db.iterator_cf(Self::cf(&db, CF_SNAPSHOTS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let id = SnapshotId::from_slice(&k).ok_or_else(|| Error::Malformed(hex::encode(&k)))?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    /// Removes every entry (before a rebuild).
    pub fn clear(&self) -> Result<()> {
        let db = self.db();
        if self.is_secondary() {
            return Err(Error::Busy);
        }
        for name in CFS {
            let mut b = WriteBatch::default();
            b.delete_range_cf(Self::cf(&db, name), &[][..], &[0xffu8; 33][..]);
            db.write(b).map_err(|e| self.rocks(e))?;
        }
        Ok(())
    }

    /// Flushes memtables to disk (after a rebuild, so a crash keeps it).
    pub fn flush(&self) -> Result<()> {
        let db = self.db();
        for name in CFS {
            db.flush_cf(Self::cf(&db, name))
                .map_err(|e| self.rocks(e))?;
        }
        Ok(())
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Some((dir, _)) = &self.secondary {
            let _ = crate::store::local::remove_dir(&dir.lock().expect("secondary dir"));
        }
    }
}

fn is_lock_error(e: &rocksdb::Error) -> bool {
    let s = e.to_string();
    s.contains("lock")
        && (s.contains("Resource temporarily unavailable")
            || s.contains("No locks available")
            || s.contains("lock hold"))
}

#[cfg(test)]
mod tests;
