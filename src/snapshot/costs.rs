//! What a snapshot cost: the bytes its backup added to the repository
//! (recorded in its metadata) and how the rest was saved.

use super::Snapshot;
use serde::Serialize;

/// The metadata key a backup records what it added to the repository
/// under: the bytes of the pack files it wrote (decimal).
pub const ADDED_KEY: &str = "stats.added";
/// The metadata key of the new chunks a backup stored as deltas: "chunks
/// raw stored" (decimal, space-separated).
pub const DELTAS_KEY: &str = "stats.deltas";

/// What a snapshot cost: how its bytes were saved, and what it added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Costs {
    /// Bytes of content (and metadata) the backup read.
    pub size: u64,
    /// Bytes the repository's pack files grew by (for snapshots made
    /// before relic recorded it: the stored bytes of its new blobs).
    pub added: u64,
    /// False when `added` is that estimate.
    pub added_exact: bool,
    /// Bytes found already stored (deduplicated).
    pub deduplicated: u64,
    /// New chunks stored as deltas against similar stored ones: count,
    /// raw bytes, stored bytes.
    pub delta_chunks: u64,
    pub delta_raw: u64,
    pub delta_stored: u64,
    /// New chunks stored whole, compressed: raw and stored bytes.
    pub compressed_raw: u64,
    pub compressed_stored: u64,
    /// Pack headers, trailers and blob framing: `added` minus the blobs.
    pub overhead: u64,
}

impl Snapshot {
    /// What this snapshot cost (see [`Costs`]).
    pub fn costs(&self) -> Costs {
        let s = &self.summary;
        let num = |k: &str| self.meta.get(k).and_then(|v| v.parse::<u64>().ok());
        let deltas: Vec<u64> = self
            .meta
            .get(DELTAS_KEY)
            .map(|v| v.split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        let (delta_chunks, delta_raw, delta_stored) = match deltas[..] {
            [c, r, st] => (c, r, st),
            _ => (0, 0, 0),
        };
        let added = num(ADDED_KEY);
        let total = added.unwrap_or(s.stored_bytes);
        Costs {
            size: s.size,
            added: total,
            added_exact: added.is_some(),
            deduplicated: s.size.saturating_sub(s.new_bytes),
            delta_chunks,
            delta_raw,
            delta_stored,
            compressed_raw: s.new_bytes.saturating_sub(delta_raw),
            compressed_stored: s.stored_bytes.saturating_sub(delta_stored),
            overhead: total.saturating_sub(s.stored_bytes),
        }
    }
}
