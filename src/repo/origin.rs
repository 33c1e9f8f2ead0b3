//! Repositories that live in a bucket (`-r s3://bucket/prefix`), worked on
//! through a local cache and never a copy of the data.
//!
//! The repository's [`Store`] (the origin) holds every object. The local
//! directory, under `$XDG_CACHE_HOME/relic/<repository id>/`, is a cache
//! that can be deleted at any time: the RocksDB index (rebuilt from the
//! packs' trailers, read with ranged GETs), the config, key slots,
//! snapshot objects and audit records (small objects, copied as they are).
//! Its size is bounded by the index, not by the data.
//!
//! - Packs are read by ranges: the blobs a restore needs, a pack's tail
//!   for its trailer; a whole pack only when every byte of it is wanted
//!   (`check --read-data`, repacking).
//! - A sealed pack is uploaded, then indexed and removed from the cache;
//!   a snapshot is written only after every pack it needs is uploaded, so
//!   the bucket is a consistent repository at every moment.
//! - Small objects are written to the bucket first, then to the cache, and
//!   removed from both; [`refresh_small`] brings the cache in step with
//!   what other hosts wrote and removed.

use super::{io_at, Repository, Result};
use crate::id::PackId;
use crate::index::ChunkEntry;
use crate::pack::{self, ReadAt};
use crate::store::{Kind, Local, ObjectFile, Store};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

/// Small objects the cache keeps a copy of.
const CACHED: [Kind; 3] = [Kind::Key, Kind::Snapshot, Kind::Audit];
/// The tail of a pack fetched first to read its trailer: a small pack's
/// whole trailer (up to about 200 blobs); a longer one costs one more GET
/// of exactly its bytes (a full pack of 64 KiB chunks: about 40 KiB).
const TRAILER_TAIL: u64 = 16 << 10;
/// Requests in flight while a cache is filled (trailers, snapshots).
pub const FETCH_JOBS: usize = 8;

/// The directory of relic's caches: `$XDG_CACHE_HOME/relic`, else
/// `~/.cache/relic`.
pub fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("relic")
}

/// A whole pack, wherever it was read from.
pub enum PackData {
    File(ObjectFile, u64),
    Bytes(Vec<u8>),
}

impl PackData {
    pub fn len(&self) -> u64 {
        match self {
            PackData::File(_, n) => *n,
            PackData::Bytes(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reader(&self) -> &dyn ReadAt {
        match self {
            PackData::File(f, _) => f,
            PackData::Bytes(b) => b,
        }
    }

    /// Every byte (read from the file if it is one).
    pub fn bytes(&self) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            PackData::File(f, n) => {
                let mut b = vec![0; *n as usize];
                f.read_exact_at(&mut b, 0)?;
                Ok(b.into())
            }
            PackData::Bytes(b) => Ok(b[..].into()),
        }
    }
}

/// Blob bodies fetched ahead for a batch of reads: (pack, offset) → body.
#[derive(Default)]
pub(super) struct Prefetched(HashMap<(PackId, u32), Vec<u8>>);

impl Prefetched {
    pub(super) fn get(&self, e: &ChunkEntry) -> Option<&[u8]> {
        self.0.get(&(e.pack, e.offset)).map(|b| &b[..])
    }
}

/// Writes a small object unless it exists: in the origin first, when there
/// is one, then in the local directory. False when it was there already
/// (in the origin, or without one in the directory).
pub(super) fn write_through(
    local: &Local,
    origin: Option<&dyn Store>,
    kind: Kind,
    name: &str,
    bytes: &[u8],
) -> Result<bool> {
    let created = origin.map(|o| o.put_bytes(kind, name, bytes)).transpose()?;
    let here = local
        .write_once(kind, name, bytes)
        .map_err(io_at(&local.path(kind, name)))?;
    Ok(created.unwrap_or(here))
}

/// Brings the cached copies of the small objects in step with the origin:
/// fetches what it has and the cache lacks, drops what it no longer has.
pub(super) fn refresh_small(local: &Local, origin: &dyn Store) -> Result<()> {
    local.create_layout().map_err(io_at(local.root()))?;
    for kind in CACHED {
        let there = origin.list(kind)?;
        let here = Store::list(local, kind)?;
        for gone in here.difference(&there) {
            Store::remove(local, kind, gone)?;
        }
        let missing: Vec<&String> = there.difference(&here).collect();
        crate::runtime::parallel(&missing, FETCH_JOBS, |name| -> Result<()> {
            let bytes = match origin.read(kind, name) {
                Ok(b) => b,
                // Removed since the listing.
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            local
                .write_once(kind, name, &bytes)
                .map_err(io_at(&local.path(kind, name)))?;
            Ok(())
        })?;
    }
    Ok(())
}

impl Repository {
    /// The store every object of this repository lives in, when it is not
    /// the local directory (a bucket).
    pub fn origin(&self) -> Option<&dyn Store> {
        self.origin.as_deref()
    }

    /// Where every object is: the origin, else the directory.
    pub fn store(&self) -> &dyn Store {
        self.origin.as_deref().unwrap_or(&self.backend)
    }

    /// Names and sizes of the packs (one listing of the origin).
    pub fn pack_list(&self) -> Result<Vec<(String, u64)>> {
        Ok(self.store().list_sized(Kind::Pack)?)
    }

    /// Writes a small object unless it exists: in the origin first, then
    /// in the local copy.
    pub(super) fn write_object(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool> {
        write_through(&self.backend, self.origin.as_deref(), kind, name, bytes)
    }

    /// Removes an object from the origin and the local copy; gone already
    /// is fine.
    pub(super) fn remove_object(&self, kind: Kind, name: &str) -> Result<()> {
        if let Some(o) = &self.origin {
            o.remove(kind, name)?;
        }
        Ok(Store::remove(&self.backend, kind, name)?)
    }

    /// Brings the cached small objects in step with the origin.
    pub(super) fn refresh_cache(&self) -> Result<()> {
        match &self.origin {
            Some(o) => refresh_small(&self.backend, o.as_ref()),
            None => Ok(()),
        }
    }

    /// A pack of `len` bytes (as listed): the blobs its trailer lists,
    /// read from its file, or from the origin by one ranged GET of its
    /// tail (two when the trailer is longer than [`TRAILER_TAIL`]).
    pub fn pack_trailer(
        &self,
        name: &str,
        len: u64,
    ) -> std::result::Result<Vec<pack::Entry>, pack::Error> {
        let Some(o) = &self.origin else {
            let io = |source| pack::Error::Io {
                pack: name.to_string(),
                source,
            };
            let f = self.backend.open(Kind::Pack, name).map_err(io)?;
            let len = f.metadata().map_err(io)?.len();
            return pack::read_trailer(name, &f, len, self.keys.cipher());
        };
        let fetch = |tail: u64| -> std::result::Result<pack::Tail, pack::Error> {
            let r = pack::trailer_range(len, tail);
            let bytes = o
                .read_ranges(Kind::Pack, name, std::slice::from_ref(&r))
                .map_err(|e| pack::Error::Io {
                    pack: name.to_string(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .pop()
                .unwrap_or_default();
            Ok(pack::Tail {
                start: r.start,
                bytes,
            })
        };
        let mut tail = fetch(TRAILER_TAIL)?;
        let tlen = pack::trailer_len(&tail.bytes).unwrap_or(0);
        if tlen + pack::FOOTER_LEN as u64 > TRAILER_TAIL && tlen < len {
            tail = fetch(tlen + pack::FOOTER_LEN as u64)?;
        }
        pack::read_trailer_at_end(name, &tail, len, self.keys.cipher())
    }

    /// A whole pack: its file, or its bytes from the origin.
    pub fn pack_data(&self, name: &str) -> Result<PackData> {
        match &self.origin {
            Some(o) => {
                let mut b = Vec::new();
                o.get_into(Kind::Pack, name, &mut b)?;
                Ok(PackData::Bytes(b))
            }
            None => {
                let path = self.backend.path(Kind::Pack, name);
                let f = self.backend.open(Kind::Pack, name).map_err(io_at(&path))?;
                let n = f.metadata().map_err(io_at(&path))?.len();
                Ok(PackData::File(f, n))
            }
        }
    }

    /// Reads one blob body into `body`.
    pub(super) fn read_body(
        &self,
        e: &ChunkEntry,
        body: &mut Vec<u8>,
        pre: Option<&Prefetched>,
    ) -> Result<()> {
        if let Some(b) = pre.and_then(|p| p.get(e)) {
            body.clear();
            body.extend_from_slice(b);
            return Ok(());
        }
        let at = e.offset as u64;
        match &self.origin {
            Some(o) => {
                let mut got = o.read_ranges(
                    Kind::Pack,
                    &e.pack.to_hex(),
                    std::slice::from_ref(&(at..at + e.length as u64)),
                )?;
                *body = got.pop().unwrap_or_default();
                Ok(())
            }
            None => {
                let f = self.pack_file(&e.pack)?;
                body.resize(e.length as usize, 0);
                f.read_exact_at(body, at)
                    .map_err(io_at(&self.backend.path(Kind::Pack, &e.pack.to_hex())))
            }
        }
    }

    /// For a repository on object storage: fetches the bodies the blobs
    /// `entries` (and their delta bases) need, one request per run of
    /// nearby blobs of a pack, several at once. Nothing for a local one,
    /// which reads each body where it is.
    pub(super) fn prefetch(&self, entries: &[ChunkEntry]) -> Result<Prefetched> {
        let mut pre = Prefetched::default();
        let Some(o) = &self.origin else {
            return Ok(pre);
        };
        let mut by_pack: HashMap<PackId, Vec<Range<u64>>> = HashMap::new();
        let mut seen = HashSet::new();
        let mut todo: Vec<ChunkEntry> = entries.to_vec();
        while let Some(e) = todo.pop() {
            if !seen.insert((e.pack, e.offset)) {
                continue;
            }
            let at = e.offset as u64;
            by_pack
                .entry(e.pack)
                .or_default()
                .push(at..at + e.length as u64);
            if let Some(b) = e.base {
                if let Some(be) = self.index.get(&b.id)? {
                    if be.depth() < e.depth() {
                        todo.push(be);
                    }
                }
            }
        }
        let packs: Vec<(PackId, Vec<Range<u64>>)> = by_pack.into_iter().collect();
        let got = std::sync::Mutex::new(Vec::new());
        crate::runtime::parallel(&packs, 4, |(pack, ranges)| -> Result<()> {
            let bodies = o.read_ranges(Kind::Pack, &pack.to_hex(), ranges)?;
            got.lock()
                .expect("prefetch lock")
                .push((*pack, ranges.clone(), bodies));
            Ok(())
        })?;
        for (pack, ranges, bodies) in got.into_inner().expect("prefetch lock") {
            for (r, b) in ranges.iter().zip(bodies) {
                pre.0.insert((pack, r.start as u32), b);
            }
        }
        Ok(pre)
    }

    /// After a pack is sealed in the local directory: for a repository on
    /// object storage, uploads it and removes the local file (the pack is
    /// durable in the bucket when this returns).
    pub fn upload_pack(&self, id: &PackId, size: u64) -> Result<()> {
        let Some(o) = &self.origin else {
            return Ok(());
        };
        let name = id.to_hex();
        let path = self.backend.path(Kind::Pack, &name);
        o.put_file(Kind::Pack, &name, &path, size)?;
        self.backend.remove(Kind::Pack, &name).map_err(io_at(&path))
    }

    /// Deletes a pack (prune): from the origin, or its file; gone already
    /// is fine.
    pub fn remove_pack(&self, name: &str) -> Result<()> {
        self.remove_object(Kind::Pack, name)
    }

    /// Which of `packs` the repository no longer has.
    pub(super) fn packs_missing(&self, packs: &HashSet<PackId>) -> Result<Vec<PackId>> {
        if packs.is_empty() {
            return Ok(Vec::new());
        }
        match &self.origin {
            Some(o) => {
                let there = o.list(Kind::Pack)?;
                Ok(packs
                    .iter()
                    .filter(|p| !there.contains(&p.to_hex()))
                    .copied()
                    .collect())
            }
            None => Ok(packs
                .iter()
                .filter(|p| !self.backend.exists(Kind::Pack, &p.to_hex()))
                .copied()
                .collect()),
        }
    }
}
