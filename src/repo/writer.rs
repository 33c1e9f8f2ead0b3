//! [`Writer`]: what a backup uses to stream data into the write pipeline
//! and to build the tree of items a snapshot names.

use super::write::{Blob, Job, Shared, WorkCtx};
use super::{Error, Result, WINDOW};
use crate::chunker::{Segmented, StreamChunker, Whole};
use crate::id::ChunkId;
use crate::pack::BlobKind;
use crate::progress::Progress;
use crate::snapshot::{self, ChunkList, Item, LIST_MAX};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::io::Read;

/// Raw bytes handed to a worker at once.
pub(super) const BATCH_BYTES: usize = 1 << 20;

/// Builds a [`ChunkList`], spilling full blocks of ids into list blobs.
#[derive(Default)]
pub(super) struct ListBuilder {
    pub(super) current: Vec<ChunkId>,
    pub(super) blocks: Vec<ChunkId>,
}

/// The result of storing one stream.
#[derive(Clone, Debug)]
pub struct StoredStream {
    pub content: ChunkList,
    pub size: u64,
    pub hash: [u8; 32],
}

impl StoredStream {
    /// The snapshot item naming this stream, dated now.
    pub fn into_item(self, path: &str, mode: u32) -> Item {
        Item {
            path: path.as_bytes().to_vec(),
            kind: snapshot::ItemKind::Stream,
            mode,
            uid: 0,
            gid: 0,
            // A stream has no modification time (the snapshot's time says
            // when it was read): 0, so that the same stream backed up again
            // yields the same tree blob and writes nothing new.
            mtime_ns: 0,
            size: self.size,
            hash: self.hash,
            target: None,
            content: self.content,
        }
    }
}

/// Streams data into the repository during [`Repository::write`].
pub struct Writer<'s> {
    shared: &'s Shared<'s>,
    jobs: Sender<Job>,
    blobs: Sender<Blob>,
    compressor: WorkCtx,
    window: VecDeque<Receiver<Result<Vec<ChunkId>>>>,
    tree_buf: Vec<u8>,
    tree: ListBuilder,
    items: u64,
    size: u64,
    chunks: u64,
    meta: std::collections::BTreeMap<String, String>,
    progress: &'s dyn Progress,
}

impl<'s> Writer<'s> {
    /// A writer feeding the pipeline of [`Repository::write`].
    pub(super) fn new(
        shared: &'s Shared<'s>,
        jobs: Sender<Job>,
        blobs: Sender<Blob>,
        compressor: WorkCtx,
        progress: &'s dyn Progress,
    ) -> Self {
        Writer {
            shared,
            jobs,
            blobs,
            compressor,
            window: VecDeque::new(),
            tree_buf: Vec::new(),
            tree: ListBuilder::default(),
            items: 0,
            size: 0,
            chunks: 0,
            meta: Default::default(),
            progress,
        }
    }
    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    /// Leaves an entry out of the snapshot, warning about it; the count is
    /// recorded as `files.skipped`.
    /// Records a file that kept changing while it was read: stored as
    /// read, counted in the snapshot's `files.changed`.
    pub fn changed(&mut self, path: &str) {
        self.progress.warn(&format!(
            "{path} changed while it was read (twice); stored as read, it may be inconsistent"
        ));
        let n = self
            .meta
            .get("files.changed")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.meta
            .insert("files.changed".into(), (n + 1).to_string());
    }

    pub fn skip(&mut self, what: &str) {
        self.progress.warn(&format!("skipping {what}"));
        let n = self
            .meta
            .get("files.skipped")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.meta
            .insert("files.skipped".into(), (n + 1).to_string());
    }

    /// Items added so far and their content bytes.
    pub fn totals(&self) -> (u64, u64) {
        (self.items, self.size)
    }

    /// Records a metadata entry in the snapshot being written.
    pub fn set_meta(&mut self, key: &str, value: impl Into<String>) {
        self.meta.insert(key.to_string(), value.into());
    }

    /// Stores one blob from this thread; returns its id.
    pub(super) fn store_now(&mut self, kind: BlobKind, data: &[u8]) -> Result<ChunkId> {
        let id = self.shared.repo.keys.chunk_id(data);
        self.shared
            .store(id, kind, data, &mut self.compressor, &self.blobs)?;
        Ok(id)
    }

    pub(super) fn list_push(&mut self, list: &mut ListBuilder, id: ChunkId) -> Result<()> {
        if list.current.len() == LIST_MAX {
            let block = snapshot::encode_list(&list.current);
            let bid = self.store_now(BlobKind::Meta, &block)?;
            list.blocks.push(bid);
            list.current.clear();
        }
        list.current.push(id);
        Ok(())
    }

    pub(super) fn list_finish(&mut self, mut list: ListBuilder) -> Result<ChunkList> {
        if list.blocks.is_empty() {
            return Ok(ChunkList::Inline(list.current));
        }
        if !list.current.is_empty() {
            let block = snapshot::encode_list(&list.current);
            let bid = self.store_now(BlobKind::Meta, &block)?;
            list.blocks.push(bid);
        }
        Ok(ChunkList::Indirect(list.blocks))
    }

    pub(super) fn collect_one(&mut self, list: &mut ListBuilder) -> Result<()> {
        let r = self.window.pop_front().expect("window not empty");
        let ids = r.recv().map_err(|_| Error::PipelineClosed)??;
        for id in ids {
            self.list_push(list, id)?;
        }
        Ok(())
    }

    pub(super) fn submit(
        &mut self,
        kind: BlobKind,
        chunks: Vec<Vec<u8>>,
        list: &mut ListBuilder,
    ) -> Result<()> {
        let (tx, rx) = bounded(1);
        self.jobs
            .send(Job {
                kind,
                chunks,
                reply: tx,
            })
            .map_err(|_| Error::PipelineClosed)?;
        self.window.push_back(rx);
        while self.window.len() > WINDOW {
            self.collect_one(list)?;
        }
        Ok(())
    }

    /// Chunks, deduplicates and stores a whole stream.
    pub fn store_stream(&mut self, reader: impl Read) -> Result<StoredStream> {
        self.store_segments(Whole(reader))
    }

    /// Stores a stream as one item, with a chunk boundary forced at the end
    /// of every segment.
    pub fn store_segments(&mut self, reader: impl Segmented) -> Result<StoredStream> {
        let mut sc = StreamChunker::new(reader, self.shared.repo.chunker.clone());
        let mut hasher = blake3::Hasher::new();
        let mut list = ListBuilder::default();
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut size = 0u64;
        loop {
            while let Some(c) = sc.next_chunk().map_err(Error::Input)? {
                hasher.update(c);
                size += c.len() as u64;
                batch_bytes += c.len();
                self.progress.inc(c.len() as u64);
                batch.push(c.to_vec());
                if batch_bytes >= BATCH_BYTES {
                    self.chunks += batch.len() as u64;
                    self.submit(BlobKind::Data, std::mem::take(&mut batch), &mut list)?;
                    batch_bytes = 0;
                }
            }
            if !sc.next_segment().map_err(Error::Input)? {
                break;
            }
        }
        if !batch.is_empty() {
            self.chunks += batch.len() as u64;
            self.submit(BlobKind::Data, batch, &mut list)?;
        }
        while !self.window.is_empty() {
            self.collect_one(&mut list)?;
        }
        Ok(StoredStream {
            content: self.list_finish(list)?,
            size,
            hash: *hasher.finalize().as_bytes(),
        })
    }

    /// Appends an item to the snapshot's tree.
    pub fn add_item(&mut self, item: &Item) -> Result<()> {
        snapshot::encode_item(item, &mut self.tree_buf);
        self.items += 1;
        self.size += item.size;
        if self.tree_buf.len() >= 4 << 20 {
            self.flush_tree(false)?;
        }
        Ok(())
    }

    /// Stores the complete chunks of the tree buffer (all of it when `last`).
    pub(super) fn flush_tree(&mut self, last: bool) -> Result<()> {
        let chunker = self.shared.repo.chunker.clone();
        let max = chunker.params().max_size as usize;
        let buf = std::mem::take(&mut self.tree_buf);
        let mut at = 0;
        let mut tree = std::mem::take(&mut self.tree);
        while at < buf.len() && (last || buf.len() - at >= max) {
            let n = chunker.next_len(&buf[at..]);
            let id = self.store_now(BlobKind::Meta, &buf[at..at + n])?;
            self.list_push(&mut tree, id)?;
            at += n;
        }
        self.tree = tree;
        self.tree_buf = buf[at..].to_vec();
        Ok(())
    }

    /// Stores the tree; returns its chunk list, the totals and the
    /// metadata recorded, from which the caller builds the snapshot.
    pub fn finish_tree(&mut self) -> Result<FinishedTree> {
        self.flush_tree(true)?;
        let tree = std::mem::take(&mut self.tree);
        Ok(FinishedTree {
            tree: self.list_finish(tree)?,
            summary: snapshot::Summary {
                size: self.size,
                items: self.items,
                chunks: self.chunks,
                ..Default::default()
            },
            meta: std::mem::take(&mut self.meta),
        })
    }
}

/// A stored tree, ready to be named by a snapshot.
pub struct FinishedTree {
    pub tree: ChunkList,
    pub summary: snapshot::Summary,
    pub meta: std::collections::BTreeMap<String, String>,
}
