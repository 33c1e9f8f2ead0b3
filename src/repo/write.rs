//! The write pipeline: workers compress (or delta-encode) and seal chunks,
//! one packer fills pack files, one sealer publishes and indexes them
//! (docs/design.md draws it).

use super::origin::Prefetched;
use super::{io_at, Error, Repository, Result, Writer};
use crate::compress::{Compressor, Decompressor, DeltaFormat};
use crate::delta;
use crate::id::{ChunkId, PackId};
use crate::index::ChunkEntry;
use crate::pack::{self, Base, BlobKind, Entry, PackWriter};
use crate::progress::Progress;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Packs uploaded at once to a bucket.
const UPLOADS: usize = 4;
/// A delta against a chain's root is preferred to one against the newest
/// similar chunk when at most ROOT_FACTOR times as large plus ROOT_SLACK
/// bytes (docs/design.md).
pub(super) const ROOT_SLACK: usize = 128;

pub(super) const ROOT_FACTOR: usize = 4;

/// Totals of one write session.
#[derive(Clone, Debug, Default)]
pub struct WriteStats {
    pub new_chunks: u64,
    pub new_bytes: u64,
    pub stored_bytes: u64,
    /// New blobs stored as deltas: count, raw and stored bytes.
    pub delta_chunks: u64,
    pub delta_raw: u64,
    pub delta_stored: u64,
    pub packs: u64,
    /// Bytes of the pack files written.
    pub pack_bytes: u64,
    pub duration: Duration,
}

pub(super) struct Job {
    pub(super) kind: BlobKind,
    pub(super) chunks: Vec<Vec<u8>>,
    pub(super) reply: Sender<Result<Vec<ChunkId>>>,
}

pub(super) struct Blob {
    pub(super) entry: Entry,
    pub(super) body: Vec<u8>,
}

/// What a worker thread keeps between chunks.
pub(super) struct WorkCtx {
    pub(super) comp: Compressor,
    /// Set when the repository stores deltas: decodes bases.
    pub(super) dec: Option<Decompressor>,
    pub(super) scratch: Vec<u8>,
    pub(super) base: Vec<u8>,
    /// The plaintext of `base`'s chain root.
    pub(super) root: Vec<u8>,
    pub(super) delta: Vec<u8>,
    /// Bodies of the delta bases a batch may use, fetched at once from a
    /// bucket (empty for a directory, read blob by blob).
    pub(super) pre: Prefetched,
    /// Sketches of the batch's new chunks computed while fetching bases.
    pub(super) sketches: std::collections::HashMap<ChunkId, Option<delta::Sketch>>,
}

/// State shared by the threads of a write session.
pub(super) struct Shared<'r> {
    pub(super) repo: &'r Repository,
    /// Blobs claimed by this session and not yet in the index.
    pub(super) pending: Mutex<HashSet<ChunkId>>,
    /// Packs holding chunks (and their delta bases) this session found
    /// already stored and did not write again.
    pub(super) reused_packs: Mutex<HashSet<PackId>>,
    pub(super) new_chunks: AtomicU64,
    pub(super) new_bytes: AtomicU64,
    pub(super) stored_bytes: AtomicU64,
    pub(super) delta_chunks: AtomicU64,
    pub(super) delta_raw: AtomicU64,
    pub(super) delta_stored: AtomicU64,
    pub(super) packs: AtomicU64,
    pub(super) pack_bytes: AtomicU64,
    /// Count the packs, write none (`--dry-run`).
    pub(super) dry_run: bool,
}

impl Repository {
    /// Runs `f` with a [`Writer`] whose blobs are packed and indexed by a
    /// pool of threads; returns once every pack is sealed and indexed. The
    /// caller holds a shared lock (see [`Self::backup`]) from before the
    /// first lookup until the snapshot naming the blobs is written.
    pub fn write<T>(
        &self,
        progress: &dyn Progress,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T>,
    ) -> Result<(T, WriteStats, HashSet<PackId>)> {
        let shared = Shared {
            repo: self,
            pending: Mutex::new(HashSet::new()),
            reused_packs: Mutex::new(HashSet::new()),
            new_chunks: AtomicU64::new(0),
            new_bytes: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            delta_chunks: AtomicU64::new(0),
            delta_raw: AtomicU64::new(0),
            delta_stored: AtomicU64::new(0),
            packs: AtomicU64::new(0),
            pack_bytes: AtomicU64::new(0),
            dry_run: self.is_dry_run(),
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        // Workers of a bucket's backup also wait on the bases they fetch:
        // more of them keep the cores busy meanwhile.
        let workers = if self.origin.is_some() {
            cores * 3
        } else {
            cores
        };
        let started = Instant::now();
        let shared = &shared;
        let compressor = self.work_ctx(false).map_err(Error::Input)?;
        let result = std::thread::scope(|s| {
            let (job_tx, job_rx) = bounded::<Job>(workers * 2);
            let (blob_tx, blob_rx) = bounded::<Blob>(64);
            // A bucket's packs are uploaded by the sealers, several at once.
            let sealers = if self.origin.is_some() { UPLOADS } else { 1 };
            let (seal_tx, seal_rx) = bounded::<PackWriter>(sealers);
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (rx, tx) = (job_rx.clone(), blob_tx.clone());
                    s.spawn(move || shared.work(rx, tx))
                })
                .collect();
            drop(job_rx);
            let packer = s.spawn(move || shared.pack(blob_rx, seal_tx));
            let sealer: Vec<_> = (0..sealers)
                .map(|_| {
                    let rx = seal_rx.clone();
                    s.spawn(move || shared.seal(rx))
                })
                .collect();
            drop(seal_rx);
            let mut w = Writer::new(shared, job_tx, blob_tx, compressor, progress);
            let r = f(&mut w);
            drop(w);
            for h in handles {
                h.join().expect("worker panicked");
            }
            let p = packer.join().expect("packer panicked");
            let q: Result<()> = sealer
                .into_iter()
                .map(|h| h.join().expect("sealer panicked"))
                .collect::<Vec<_>>()
                .into_iter()
                .collect();
            // A failure of the packer or sealer is the cause of any
            // "pipeline closed" seen upstream (and of a source that failed
            // on it): report the real cause.
            match (r, p, q) {
                (Ok(t), Ok(()), Ok(())) => Ok(t),
                (r, p, q) => {
                    let mut errs: Vec<Error> =
                        [r.err(), p.err(), q.err()].into_iter().flatten().collect();
                    errs.sort_by_key(|e| match e {
                        Error::PipelineClosed => 2,
                        Error::SourceFailed => 1,
                        _ => 0,
                    });
                    Err(errs.into_iter().next().unwrap_or(Error::PipelineClosed))
                }
            }
        })?;
        let stats = WriteStats {
            new_chunks: shared.new_chunks.load(Ordering::Relaxed),
            new_bytes: shared.new_bytes.load(Ordering::Relaxed),
            stored_bytes: shared.stored_bytes.load(Ordering::Relaxed),
            delta_chunks: shared.delta_chunks.load(Ordering::Relaxed),
            delta_raw: shared.delta_raw.load(Ordering::Relaxed),
            delta_stored: shared.delta_stored.load(Ordering::Relaxed),
            packs: shared.packs.load(Ordering::Relaxed),
            pack_bytes: shared.pack_bytes.load(Ordering::Relaxed),
            duration: started.elapsed(),
        };
        let reused = std::mem::take(&mut *shared.reused_packs.lock().expect("reused lock"));
        Ok((result, stats, reused))
    }

    /// Fails unless every pack in `packs` is on disk: the last check before
    /// a snapshot that deduplicated against them is written.
    pub(super) fn verify_packs_present(&self, packs: &HashSet<PackId>) -> Result<()> {
        if let Some(p) = self.packs_missing(packs)?.first() {
            return Err(Error::RepositoryChanged(format!(
                "pack {} that this backup shares chunks with is gone (pruned?)",
                p.short()
            )));
        }
        Ok(())
    }

    /// The whole chunk at the end of a delta's chain of bases, if indexed.
    pub(super) fn chain_root(&self, e: &ChunkEntry) -> Result<Option<(ChunkId, ChunkEntry)>> {
        let mut at = *e;
        let mut root = None;
        while let Some(b) = at.base {
            match self.index.get(&b.id)? {
                Some(next) if next.depth() < at.depth() => {
                    root = Some((b.id, next));
                    at = next;
                }
                _ => return Ok(None),
            }
        }
        Ok(root)
    }

    pub(super) fn work_ctx(&self, deltas: bool) -> io::Result<WorkCtx> {
        Ok(WorkCtx {
            comp: Compressor::with_deltas(
                self.config.compression_level,
                if self.config.version >= 3 {
                    DeltaFormat::Copy
                } else {
                    DeltaFormat::ZstdDict
                },
            )?,
            dec: if deltas {
                Some(Decompressor::new()?)
            } else {
                None
            },
            scratch: Vec::new(),
            base: Vec::new(),
            root: Vec::new(),
            delta: Vec::new(),
            pre: Prefetched::default(),
            sketches: Default::default(),
        })
    }
}

impl Shared<'_> {
    /// True when the caller is the one to store this blob: it is neither in
    /// the index nor claimed by another thread of this session.
    pub(super) fn claim(&self, id: &ChunkId) -> Result<bool> {
        if self.pending.lock().expect("pending lock").contains(id) {
            return Ok(false);
        }
        // A stored delta whose chain of bases is broken (a dead delta left
        // in a kept pack after a prune removed its dead base) is no copy
        // of this chunk: it is stored again.
        if let Some(e) = self.repo.index.get(id)? {
            if self.reuse(e)? {
                return Ok(false);
            }
        }
        Ok(self.pending.lock().expect("pending lock").insert(*id))
    }

    /// Records the pack of a reused chunk and those of its delta bases;
    /// false (nothing recorded) when a base of its chain is not indexed.
    pub(super) fn reuse(&self, e: ChunkEntry) -> Result<bool> {
        let mut packs = vec![e.pack];
        let mut at = e;
        while let Some(b) = at.base {
            match self.repo.index.get(&b.id)? {
                Some(next) if next.depth() < at.depth() => {
                    packs.push(next.pack);
                    at = next;
                }
                _ => return Ok(false),
            }
        }
        let mut reused = self.reused_packs.lock().expect("reused lock");
        reused.extend(packs);
        Ok(true)
    }

    /// Compresses and hands over one blob if nobody has it yet: as a delta
    /// against a similar stored chunk when that is clearly smaller.
    pub(super) fn store(
        &self,
        id: ChunkId,
        kind: BlobKind,
        data: &[u8],
        ctx: &mut WorkCtx,
        blobs: &Sender<Blob>,
    ) -> Result<()> {
        if !self.claim(&id)? {
            return Ok(());
        }
        let mut entry = Entry::new(id, kind, data.len() as u32);
        let mut body = Vec::new();
        if kind == BlobKind::Data && self.repo.config.delta_max_depth > 0 {
            // Computed already when the batch's bases were fetched.
            entry.sketch = match ctx.sketches.remove(&id) {
                Some(sk) => sk,
                None => delta::sketch(data),
            };
        }
        if let Some(sk) = &entry.sketch {
            if let Some(base) = self.best_delta(data, sk, ctx)? {
                // A tiny delta is taken at once; otherwise only when
                // clearly smaller than the whole chunk compressed.
                let take = ctx.delta.len() < data.len() / 16 || {
                    ctx.comp.encode(data, &mut body).map_err(Error::Input)?;
                    ctx.delta.len() + 64 < body.len() - body.len() / 8
                };
                if take {
                    std::mem::swap(&mut body, &mut ctx.delta);
                    entry.base = Some(base);
                    // The base and its chain must still be there when the
                    // snapshot is written.
                    if let Some(be) = self.repo.index.get(&base.id)? {
                        self.reuse(be)?;
                    }
                }
            }
        }
        if body.is_empty() {
            ctx.comp.encode(data, &mut body).map_err(Error::Input)?;
        }
        if let Some(c) = self.repo.keys.cipher() {
            c.seal(&id.0, &mut body);
        }
        self.new_chunks.fetch_add(1, Ordering::Relaxed);
        self.new_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.stored_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if entry.base.is_some() {
            self.delta_chunks.fetch_add(1, Ordering::Relaxed);
            self.delta_raw
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            self.delta_stored
                .fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        blobs
            .send(Blob { entry, body })
            .map_err(|_| Error::PipelineClosed)
    }

    /// Encodes `data` as a delta against the most similar stored chunk
    /// (or its chain's root) into `ctx.delta`; the base it used, if any.
    pub(super) fn best_delta(
        &self,
        data: &[u8],
        sk: &delta::Sketch,
        ctx: &mut WorkCtx,
    ) -> Result<Option<Base>> {
        let max_depth = self.repo.config.delta_max_depth;
        let Some(dec) = ctx.dec.as_mut() else {
            return Ok(None);
        };
        let found = match self.repo.index.similar(sk)? {
            // The newest similar chunk ends a full chain: encode against
            // the chain's root instead (a longer reach, but a chain of
            // one), so a long series never stores everything whole again.
            Some((_, e)) if e.depth() >= max_depth => self.repo.chain_root(&e)?,
            f => f,
        };
        let Some((bid, be)) = found else {
            return Ok(None);
        };
        if be.kind != BlobKind::Data || be.depth() >= max_depth {
            return Ok(None);
        }
        // Decoding the base's chain yields its root's plaintext on the way.
        ctx.base.clear();
        ctx.root.clear();
        let root = (be.depth() >= 1).then_some(&mut ctx.root);
        // A base that cannot be read (a damaged pack) only means this
        // chunk is stored whole: `check` reports the damage.
        if self
            .repo
            .read_chain(
                &bid,
                &be,
                dec,
                &mut ctx.scratch,
                &mut ctx.base,
                root,
                Some(&ctx.pre),
            )
            .is_err()
            || !delta::usable_base(&ctx.base)
        {
            return Ok(None);
        }
        if !ctx
            .comp
            .encode_delta(data, &ctx.base, &mut ctx.delta)
            .map_err(Error::Input)?
        {
            return Ok(None);
        }
        let mut base = Base {
            id: bid,
            depth: be.depth() + 1,
        };
        // The chain's root, when nearly as good, keeps the chain short:
        // restore decodes 2 blobs instead of depth + 1, and forgetting
        // the days in between frees them (a chain pins every base in it).
        if be.depth() >= 1 && ctx.delta.len() > ROOT_SLACK && delta::usable_base(&ctx.root) {
            if let Some((rid, _)) = self.repo.chain_root(&be)? {
                let ok = ctx
                    .comp
                    .encode_delta(data, &ctx.root, &mut ctx.scratch)
                    .map_err(Error::Input)?;
                if ok && ctx.scratch.len() <= ctx.delta.len() * ROOT_FACTOR + ROOT_SLACK {
                    std::mem::swap(&mut ctx.delta, &mut ctx.scratch);
                    base = Base { id: rid, depth: 1 };
                }
            }
        }
        Ok(Some(base))
    }

    /// For a repository in a bucket: fetches, in one call per pack, the
    /// bases the new chunks of a batch will likely be encoded against (a
    /// GET per base would leave the workers waiting on the network).
    fn prefetch_bases(&self, job: &Job, ids: &[ChunkId], ctx: &mut WorkCtx) -> Result<()> {
        ctx.pre = Prefetched::default();
        ctx.sketches.clear();
        let max_depth = self.repo.config.delta_max_depth;
        if self.repo.origin.is_none() || job.kind != BlobKind::Data || max_depth == 0 {
            return Ok(());
        }
        let mut want = Vec::new();
        for (c, id) in job.chunks.iter().zip(ids) {
            if self.repo.index.get(id)?.is_some() {
                continue;
            }
            let sketch = delta::sketch(c);
            ctx.sketches.insert(*id, sketch);
            let Some(sk) = sketch else {
                continue;
            };
            if let Some((_, e)) = self.repo.index.similar(&sk)? {
                if e.depth() >= max_depth {
                    if let Some((_, root)) = self.repo.chain_root(&e)? {
                        want.push(root);
                    }
                } else {
                    want.push(e);
                }
            }
        }
        // A base that cannot be fetched only means whole chunks; the
        // reads that follow say why if it matters.
        ctx.pre = self.repo.prefetch(&want).unwrap_or_default();
        Ok(())
    }

    /// Worker: hashes chunks, skips known ones, compresses new ones.
    pub(super) fn work(&self, jobs: Receiver<Job>, blobs: Sender<Blob>) {
        let mut ctx = match self.repo.work_ctx(self.repo.config.delta_max_depth > 0) {
            Ok(c) => c,
            Err(_) => return,
        };
        for job in jobs {
            let ids: Vec<ChunkId> = job
                .chunks
                .iter()
                .map(|c| self.repo.keys.chunk_id(c))
                .collect();
            let r = self.prefetch_bases(&job, &ids, &mut ctx).and_then(|()| {
                for (c, id) in job.chunks.iter().zip(&ids) {
                    self.store(*id, job.kind, c, &mut ctx, &blobs)?;
                }
                Ok(ids)
            });
            let _ = job.reply.send(r);
        }
    }

    /// Packer: appends blobs to the current pack, handing full packs to the sealer.
    pub(super) fn pack(&self, blobs: Receiver<Blob>, seal: Sender<PackWriter>) -> Result<()> {
        if self.dry_run {
            return self.count_packs(blobs);
        }
        let backend = &self.repo.backend;
        let mut current: Option<PackWriter> = None;
        let r = (|| {
            for b in blobs.iter() {
                let w = match &mut current {
                    Some(w) => w,
                    None => current.insert(
                        PackWriter::create(backend, &self.repo.keys)
                            .map_err(io_at(backend.root()))?,
                    ),
                };
                w.add(b.entry, &b.body).map_err(io_at(backend.root()))?;
                if w.size() >= pack::TARGET_SIZE {
                    seal.send(current.take().expect("current pack"))
                        .map_err(|_| Error::PipelineClosed)?;
                }
            }
            if let Some(w) = current.take() {
                if !w.is_empty() {
                    seal.send(w).map_err(|_| Error::PipelineClosed)?;
                }
            }
            Ok(())
        })();
        if let Some(w) = current {
            w.abandon();
        }
        r
    }

    /// The packer of a dry run: counts the packs the blobs would make and
    /// their size; writes and indexes nothing.
    fn count_packs(&self, blobs: Receiver<Blob>) -> Result<()> {
        let mut sizer = pack::PackSizer::new(&self.repo.keys);
        let done = |sizer: &pack::PackSizer| {
            self.packs.fetch_add(1, Ordering::Relaxed);
            self.pack_bytes
                .fetch_add(sizer.sealed_size(), Ordering::Relaxed);
        };
        for b in blobs.iter() {
            sizer.add(b.entry, b.body.len());
            if sizer.size() >= pack::TARGET_SIZE {
                done(&sizer);
                sizer = pack::PackSizer::new(&self.repo.keys);
            }
        }
        if !sizer.is_empty() {
            done(&sizer);
        }
        Ok(())
    }

    /// Sealer: fsyncs and publishes packs, then indexes their blobs.
    pub(super) fn seal(&self, packs: Receiver<PackWriter>) -> Result<()> {
        let backend = &self.repo.backend;
        let mut packs = packs.into_iter();
        let r = (|| {
            for w in packs.by_ref() {
                let sealed = w.seal(backend).map_err(io_at(backend.root()))?;
                self.repo.upload_pack(&sealed.id, sealed.size)?;
                self.repo
                    .index
                    .add_pack(sealed.id, sealed.size, &sealed.entries)?;
                self.packs.fetch_add(1, Ordering::Relaxed);
                self.pack_bytes.fetch_add(sealed.size, Ordering::Relaxed);
                let mut pending = self.pending.lock().expect("pending lock");
                for e in &sealed.entries {
                    pending.remove(&e.id);
                }
            }
            Ok(())
        })();
        for w in packs {
            w.abandon();
        }
        r
    }
}
