//! What the index stores per chunk ([`ChunkEntry`]: pack, offset,
//! lengths, kind, delta base) and per pack ([`PackInfo`]), and how an
//! entry is laid out in the `chunks` column family.

use super::{CHUNK_VALUE_LEN, DELTA_VALUE_LEN};
use crate::id::{ChunkId, PackId};
use crate::pack::{Base, BlobKind, Entry};

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub kind: BlobKind,
    /// Set when the blob is a delta against another chunk.
    pub base: Option<Base>,
}

impl ChunkEntry {
    /// The value stored in the `chunks` column family: 45 bytes, or 78 for
    /// a delta.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(DELTA_VALUE_LEN);
        v.extend_from_slice(&self.pack.0);
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.length.to_le_bytes());
        v.extend_from_slice(&self.raw_length.to_le_bytes());
        v.push(self.kind as u8);
        if let Some(b) = &self.base {
            v.extend_from_slice(&b.id.0);
            v.push(b.depth);
        }
        v
    }

    /// Reads a `chunks` value; None for anything malformed.
    pub fn decode(v: &[u8]) -> Option<Self> {
        let base = match v.len() {
            CHUNK_VALUE_LEN => None,
            DELTA_VALUE_LEN if v[CHUNK_VALUE_LEN + 32] > 0 => Some(Base {
                id: ChunkId::from_slice(&v[CHUNK_VALUE_LEN..CHUNK_VALUE_LEN + 32])?,
                depth: v[CHUNK_VALUE_LEN + 32],
            }),
            _ => return None,
        };
        let u = |at: usize| u32::from_le_bytes(v[at..at + 4].try_into().expect("4"));
        Some(ChunkEntry {
            pack: PackId::from_slice(&v[..32])?,
            offset: u(32),
            length: u(36),
            raw_length: u(40),
            kind: BlobKind::from_u8(v[44])?,
            base,
        })
    }

    pub(super) fn from_trailer(pack: PackId, e: &Entry) -> Self {
        ChunkEntry {
            pack,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            kind: e.kind,
            base: e.base,
        }
    }

    /// Decodes this blob needs: itself and its base chain.
    pub fn depth(&self) -> u8 {
        self.base.map_or(0, |b| b.depth)
    }
}

pub(super) fn sketch_key(n: usize, value: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = n as u8;
    k[1..].copy_from_slice(&value.to_be_bytes());
    k
}

/// Size and blob count of a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackInfo {
    pub size: u64,
    pub blobs: u32,
}
