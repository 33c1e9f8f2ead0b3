//! relic: a content-addressed, deduplicating backup store.
//!
//! The data path: a stream is split by FastCDC ([`chunker`]) into chunks
//! named by keyed BLAKE3; chunks the index does not know are compressed and
//! appended to pack files in a [`store`]; a [`snapshot`] names the tree of
//! items that holds them. [`repo`] ties it together; [`files`], [`postgres`],
//! [`docker`] and [`stack`] are the sources and targets of backups and
//! restores; [`check`], [`prune`], [`retention`] and [`sync`] keep a
//! repository whole, small and off-site. `docs/design.md` maps the modules.
//!
//! The public modules below are the API; the building blocks under them
//! (pack and index formats, compression, keys, the async runtime, libc
//! calls) are internal, reachable for the fuzz targets, benches and tests
//! only through the hidden [`internals`] module.

pub mod check;
pub mod chunker;
mod compress;
pub mod contents;
pub mod crypto;
pub mod delta;
pub mod diff;
pub mod docker;
pub mod files;
mod id;
mod index;
pub mod keycache;
mod keys;
pub mod lock;
pub mod notify;
pub mod objectlock;
mod pack;
pub mod plan;
pub mod postgres;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod report;
pub mod retention;
pub mod runs;
mod runtime;
pub mod schedule;
pub mod snapshot;
pub mod stack;
pub mod store;
pub mod sync;
mod sys;

pub use id::{ChunkId, PackId, SnapshotId};
pub use progress::{NoProgress, Progress};
pub use repo::{Repository, SnapshotOptions};
pub use snapshot::{Snapshot, Tier};

/// The internal building blocks, for relic's own fuzz targets, benches and
/// tests: not an API, and it changes without notice.
#[doc(hidden)]
pub mod internals {
    pub mod compress {
        pub use crate::compress::{Compressor, Decompressor, DeltaFormat};
    }
    pub mod index {
        pub use crate::index::{ChunkEntry, Error, Index, PackInfo};
    }
    pub mod keys {
        pub use crate::keys::Keys;
    }
    pub mod pack {
        pub use crate::pack::{decode_trailer, Base, BlobKind, Entry, Error};
    }
}
