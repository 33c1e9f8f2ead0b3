//! The mark set of a prune: chunk ids reachable from kept snapshots, kept
//! in their own column family so marking a large repository holds nothing
//! in memory, and the merge join that walks chunks and marks together.

use super::{ChunkEntry, Error, Index, Result, CF_CHUNKS, CF_MARKS};
use crate::id::ChunkId;
use rocksdb::{IteratorMode, WriteBatch};

impl Index {
    /// True when `id` is in the mark set.
    pub fn is_marked(&self, id: &ChunkId) -> Result<bool> {
        let db = self.db();
        let found = db
            .get_pinned_cf(Self::cf(&db, CF_MARKS), id.0)
            .map_err(|e| self.rocks(e))?
            .is_some();
        Ok(found)
    }

    /// Empties the mark set.
    pub fn clear_marks(&self) -> Result<()> {
        let db = self.db();
        let mut b = WriteBatch::default();
        b.delete_range_cf(Self::cf(&db, CF_MARKS), &[][..], &[0xffu8; 33][..]);
        db.write(b).map_err(|e| self.rocks(e))
    }

    /// Adds ids to the mark set.
    pub fn mark(&self, ids: &[ChunkId]) -> Result<()> {
        let db = self.db();
        let mut b = WriteBatch::default();
        for id in ids {
            b.put_cf(Self::cf(&db, CF_MARKS), id.0, []);
        }
        db.write(b).map_err(|e| self.rocks(e))
    }

    /// Walks the chunk entries and the mark set together, both in id order
    /// (a merge join: no lookups, nothing held in memory but the current
    /// keys), calling `f(id, entry, marked)` for every chunk.
    pub fn for_each_chunk_marked(
        &self,
        mut f: impl FnMut(ChunkId, ChunkEntry, bool),
    ) -> Result<()> {
        let db = self.db();
        let mut marks = db
            .iterator_cf(Self::cf(&db, CF_MARKS), IteratorMode::Start)
            .peekable();
        for item in db.iterator_cf(Self::cf(&db, CF_CHUNKS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let id = ChunkId::from_slice(&k).ok_or_else(|| Error::Malformed(hex::encode(&k)))?;
            let e = ChunkEntry::decode(&v).ok_or_else(|| Error::Malformed(id.to_hex()))?;
            let mut marked = false;
            loop {
                let ord = match marks.peek() {
                    None => break,
                    Some(Ok((mk, _))) => mk[..].cmp(&k[..]),
                    Some(Err(_)) => {
                        let err = marks.next().expect("peeked").expect_err("an error");
                        return Err(self.rocks(err));
                    }
                };
                match ord {
                    std::cmp::Ordering::Less => {
                        marks.next();
                    }
                    std::cmp::Ordering::Equal => {
                        marked = true;
                        marks.next();
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            f(id, e, marked);
        }
        Ok(())
    }
}
