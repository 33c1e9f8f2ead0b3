//! The read path: blobs from packs (deltas through their bases), chunk
//! lists, a snapshot's items, and an item's content streamed back out.

use super::origin::Prefetched;
use super::{io_at, Error, Repository, Result, WINDOW};
use crate::compress::Decompressor;
use crate::id::{ChunkId, PackId};
use crate::index::ChunkEntry;
use crate::pack::BlobKind;
use crate::progress::Progress;
use crate::snapshot::{self, ChunkList, Item, Snapshot};
use crate::store::{Kind, ObjectFile};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;

/// Chunks a restore worker reads at once (about 1 MiB at the default size).
pub(super) const READ_BATCH: usize = 32;

/// Items of at most this many chunks are restored without a thread pool.
pub(super) const SMALL_ITEM_CHUNKS: usize = 4;

/// Readers of a restore from a bucket (each with one batch, about 4 MiB,
/// in flight).
const REMOTE_READERS: usize = 12;

pub(super) struct ReadJob {
    pub(super) ids: Vec<ChunkId>,
    /// A buffer to fill (recycled: fresh 2 MiB buffers cost page faults).
    pub(super) buf: Vec<u8>,
    pub(super) reply: Sender<Result<Vec<u8>>>,
}

impl Repository {
    pub(super) fn pack_file(&self, pack: &PackId) -> Result<Arc<ObjectFile>> {
        let mut open = self.open_packs.lock().expect("pack cache lock");
        if let Some(f) = open.get(pack) {
            return Ok(f.clone());
        }
        if open.len() >= 64 {
            open.clear();
        }
        let name = pack.to_hex();
        let f = Arc::new(self.backend.open(Kind::Pack, &name).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::DamagedBlob {
                    chunk: String::new(),
                    pack: name.clone(),
                    what: "pack file is missing".into(),
                }
            } else {
                io_at(&self.backend.path(Kind::Pack, &name))(e)
            }
        })?);
        open.insert(*pack, f.clone());
        Ok(f)
    }

    /// Reads, opens, decompresses and verifies one blob, appending it to
    /// `out`; a delta is decoded through its chain of bases, and the
    /// plaintext of the chain's root (the whole chunk it ends in) is also
    /// appended to `root` when given.
    // The scratch buffers and the prefetched bodies travel down the
    // recursion through a chain of bases.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_chain(
        &self,
        id: &ChunkId,
        e: &ChunkEntry,
        dec: &mut Decompressor,
        body: &mut Vec<u8>,
        out: &mut Vec<u8>,
        mut root: Option<&mut Vec<u8>>,
        pre: Option<&Prefetched>,
    ) -> Result<()> {
        let damaged = |what: String| Error::DamagedBlob {
            chunk: id.to_hex(),
            pack: e.pack.to_hex(),
            what,
        };
        let base = match e.base {
            None => None,
            Some(b) => {
                let be = self.index.get(&b.id)?.ok_or_else(|| Error::MissingBase {
                    chunk: id.to_hex(),
                    base: b.id.to_hex(),
                })?;
                // Depths strictly fall along a chain, so it always ends.
                if be.depth() >= b.depth || be.kind != BlobKind::Data {
                    return Err(damaged(format!(
                        "its delta base {} is not a shallower data chunk",
                        b.id
                    )));
                }
                let mut plain = Vec::with_capacity(be.raw_length as usize);
                self.read_chain(&b.id, &be, dec, body, &mut plain, root.take(), pre)?;
                Some(plain)
            }
        };
        self.read_body(e, body, pre).map_err(|err| match err {
            // The pack is gone: read_body says so itself.
            Error::DamagedBlob { what, .. } => damaged(what),
            err => damaged(format!("cannot read: {err}")),
        })?;
        if let Some(c) = self.keys.cipher() {
            c.open(&id.0, body)
                .map_err(|_| damaged("authentication failed".into()))?;
        }
        let start = out.len();
        dec.decode_with(body, base.as_deref(), e.raw_length as usize, out)
            .map_err(|err| damaged(err.to_string()))?;
        // A sealed body is authenticated with its id as associated data, so
        // rehashing adds nothing; `check --read-data` still does it.
        if self.keys.cipher().is_none() && self.keys.chunk_id(&out[start..]) != *id {
            return Err(damaged("content does not match its id".into()));
        }
        if let (None, Some(root)) = (e.base, root) {
            root.extend_from_slice(&out[start..]);
        }
        Ok(())
    }

    /// Every blob a snapshot needs, each once: the blocks of its tree and
    /// of its items' lists, their chunks and, transitively, their delta
    /// bases. What restoring all of it reads.
    pub fn snapshot_blobs(
        &self,
        snap: &Snapshot,
        mut visit: impl FnMut(&ChunkId, &ChunkEntry),
    ) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut one = |id: ChunkId| -> Result<()> {
            let mut next = Some(id);
            while let Some(id) = next.take() {
                if !seen.insert(id) {
                    break;
                }
                let e = self
                    .index
                    .get(&id)?
                    .ok_or_else(|| Error::MissingChunk(id.to_hex()))?;
                visit(&id, &e);
                next = e.base.map(|b| b.id);
            }
            Ok(())
        };
        let mut walk = |list: &ChunkList| -> Result<()> {
            if let ChunkList::Indirect(blocks) = list {
                for b in blocks {
                    one(*b)?;
                }
            }
            for id in self.chunk_ids(list) {
                one(id?)?;
            }
            Ok(())
        };
        walk(&snap.tree)?;
        for item in self.items(snap) {
            walk(&item?.content)?;
        }
        Ok(())
    }

    /// The index entries of `ids`, in order.
    pub(super) fn entries(&self, ids: &[ChunkId]) -> Result<Vec<ChunkEntry>> {
        ids.iter()
            .map(|id| {
                self.index
                    .get(id)?
                    .ok_or_else(|| Error::MissingChunk(id.to_hex()))
            })
            .collect()
    }

    /// Reads one blob by id.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let e = self
            .index
            .get(id)?
            .ok_or_else(|| Error::MissingChunk(id.to_hex()))?;
        let mut dec = Decompressor::new().map_err(Error::Input)?;
        let (mut body, mut out) = (Vec::new(), Vec::new());
        self.read_chain(id, &e, &mut dec, &mut body, &mut out, None, None)?;
        Ok(out)
    }

    /// The chunk ids of a list in order, loading list blobs one at a time.
    pub fn chunk_ids<'a>(
        &'a self,
        list: &'a ChunkList,
    ) -> impl Iterator<Item = Result<ChunkId>> + 'a {
        let (inline, blocks): (&[ChunkId], &[ChunkId]) = match list {
            ChunkList::Inline(ids) => (ids, &[]),
            ChunkList::Indirect(blocks) => (&[], blocks),
        };
        let mut current: Vec<ChunkId> = inline.to_vec();
        let mut at = 0;
        let mut blocks = blocks.iter();
        std::iter::from_fn(move || loop {
            if let Some(id) = current.get(at) {
                at += 1;
                return Some(Ok(*id));
            }
            let block = blocks.next()?;
            at = 0;
            match self.read_blob(block).and_then(|b| {
                snapshot::decode_list(&b).ok_or_else(|| Error::DamagedBlob {
                    chunk: block.to_hex(),
                    pack: String::new(),
                    what: "not a chunk list".into(),
                })
            }) {
                Ok(ids) => current = ids,
                Err(e) => return Some(Err(e)),
            }
        })
    }

    /// Every item of a snapshot, in order, without holding the tree in memory.
    pub fn items<'a>(&'a self, snap: &'a Snapshot) -> impl Iterator<Item = Result<Item>> + 'a {
        let mut ids = self.chunk_ids(&snap.tree);
        let mut buf: Vec<u8> = Vec::new();
        let mut at = 0usize;
        let mut done = false;
        std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            match snapshot::decode_item(&buf[at..]) {
                Ok(Some((item, n))) => {
                    at += n;
                    return Some(Ok(item));
                }
                Ok(None) => {}
                Err(what) => {
                    done = true;
                    return Some(Err(snapshot::Error::Corrupt {
                        id: snap.name.clone(),
                        what,
                    }
                    .into()));
                }
            }
            buf.drain(..at);
            at = 0;
            match ids.next() {
                Some(Ok(id)) => match self.read_blob(&id) {
                    Ok(b) => buf.extend_from_slice(&b),
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                },
                Some(Err(e)) => {
                    done = true;
                    return Some(Err(e));
                }
                None => {
                    done = true;
                    if !buf.is_empty() {
                        return Some(Err(snapshot::Error::Corrupt {
                            id: snap.name.clone(),
                            what: "item stream ends inside an item".into(),
                        }
                        .into()));
                    }
                    return None;
                }
            }
        })
    }

    /// Streams an item's content into `out`: batches of chunk ids go to a
    /// pool of threads that look them up, read, open and decompress them
    /// into one buffer per batch; this thread writes the buffers in order
    /// and checks the whole-stream BLAKE3 and size.
    pub fn restore_item(
        &self,
        item: &Item,
        out: &mut dyn Write,
        progress: &dyn Progress,
    ) -> Result<()> {
        // A small item (most files of a tree) is read on this thread:
        // starting a pool of readers per file costs more than reading it.
        if let ChunkList::Inline(ids) = &item.content {
            if ids.len() <= SMALL_ITEM_CHUNKS {
                return self.restore_small(item, ids, out, progress);
            }
        }
        // Asked after the small items went: std reads the cgroup's CPU
        // quota files at every call (3 opens, 1 ms of a small file's
        // restore).
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8)
            // One more than the cores: this thread hashes and writes, and
            // while it waits on a batch the cores stay busy.
            + 1;
        // From a bucket the readers mostly wait on requests: more of them,
        // and as many batches ahead, keep the link busy.
        let (workers, window, batch) = if self.origin.is_some() {
            (REMOTE_READERS, REMOTE_READERS, 2 * READ_BATCH)
        } else {
            (workers, WINDOW, READ_BATCH)
        };
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = bounded::<ReadJob>(workers * 2);
            for _ in 0..workers {
                let rx = rx.clone();
                s.spawn(move || self.read_worker(rx));
            }
            drop(rx);
            let ahead = window;
            let mut window: VecDeque<Receiver<Result<Vec<u8>>>> = VecDeque::new();
            let mut spare: Vec<Vec<u8>> = Vec::new();
            let mut emit = |r: Receiver<Result<Vec<u8>>>, spare: &mut Vec<Vec<u8>>| -> Result<()> {
                let data = r.recv().map_err(|_| Error::PipelineClosed)??;
                hasher.update(&data);
                size += data.len() as u64;
                out.write_all(&data).map_err(Error::Output)?;
                progress.inc(data.len() as u64);
                spare.push(data);
                Ok(())
            };
            let mut ids = self.chunk_ids(&item.content).peekable();
            while ids.peek().is_some() {
                let batch = ids.by_ref().take(batch).collect::<Result<Vec<ChunkId>>>()?;
                let (rtx, rrx) = bounded(1);
                tx.send(ReadJob {
                    ids: batch,
                    buf: spare.pop().unwrap_or_default(),
                    reply: rtx,
                })
                .map_err(|_| Error::PipelineClosed)?;
                window.push_back(rrx);
                if window.len() > ahead {
                    emit(window.pop_front().expect("non-empty"), &mut spare)?;
                }
            }
            drop(tx);
            while let Some(r) = window.pop_front() {
                emit(r, &mut spare)?;
            }
            Ok(())
        })?;
        finish_item(item, size, &hasher, out)
    }

    /// [`Self::restore_item`] of a few chunks, without threads.
    pub(super) fn restore_small(
        &self,
        item: &Item,
        ids: &[ChunkId],
        out: &mut dyn Write,
        progress: &dyn Progress,
    ) -> Result<()> {
        thread_local! {
            static DEC: std::cell::RefCell<Option<Decompressor>> = const { std::cell::RefCell::new(None) };
        }
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        DEC.with(|cell| -> Result<()> {
            let mut slot = cell.borrow_mut();
            let dec = match &mut *slot {
                Some(d) => d,
                None => slot.insert(Decompressor::new().map_err(Error::Input)?),
            };
            let (mut body, mut data) = (Vec::new(), Vec::new());
            let entries = self.entries(ids)?;
            let pre = self.prefetch(&entries)?;
            for (id, e) in ids.iter().zip(&entries) {
                data.clear();
                self.read_chain(id, e, dec, &mut body, &mut data, None, Some(&pre))?;
                hasher.update(&data);
                size += data.len() as u64;
                out.write_all(&data).map_err(Error::Output)?;
                progress.inc(data.len() as u64);
            }
            Ok(())
        })?;
        finish_item(item, size, &hasher, out)
    }

    pub(super) fn read_worker(&self, jobs: Receiver<ReadJob>) {
        let mut dec = match Decompressor::new() {
            Ok(d) => d,
            Err(_) => return,
        };
        let mut body = Vec::new();
        for job in jobs {
            let mut out = job.buf;
            let r = (|| {
                out.clear();
                out.reserve(job.ids.len() * self.config.chunker.avg_size as usize * 2);
                let entries = self.entries(&job.ids)?;
                let pre = self.prefetch(&entries)?;
                for (id, e) in job.ids.iter().zip(&entries) {
                    self.read_chain(id, e, &mut dec, &mut body, &mut out, None, Some(&pre))?;
                }
                Ok(out)
            })();
            let _ = job.reply.send(r);
        }
    }
}

/// The end of an item's restore: flushes `out` and checks the size and
/// whole-content BLAKE3 recorded at backup.
pub(super) fn finish_item(
    item: &Item,
    size: u64,
    hasher: &blake3::Hasher,
    out: &mut dyn Write,
) -> Result<()> {
    out.flush().map_err(Error::Output)?;
    if size != item.size || *hasher.finalize().as_bytes() != item.hash {
        return Err(Error::ContentMismatch {
            path: item.path_lossy(),
        });
    }
    Ok(())
}
