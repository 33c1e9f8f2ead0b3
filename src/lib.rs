//! relic: a content-addressed, deduplicating backup store.
//!
//! The data path: a stream is split by FastCDC ([`chunker`]) into chunks
//! named by keyed BLAKE3 ([`keys`]); chunks the [`index`] does not know are
//! compressed ([`compress`]) and appended to [`pack`] files; a [`snapshot`]
//! names the tree of items that holds them. [`repo`] ties it together;
//! [`files`] walks and restores directories; [`check`] verifies.

pub mod check;
pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod delta;
pub mod diff;
pub mod docker;
pub mod files;
pub mod id;
pub mod index;
pub mod keys;
pub mod lock;
pub mod objectlock;
pub mod pack;
pub mod postgres;
pub mod progress;
pub mod prune;
pub mod remote;
pub mod repo;
pub mod retention;
pub mod runtime;
pub mod snapshot;
pub mod stack;
pub mod store;
pub mod sync;
pub mod sys;

pub use id::{ChunkId, PackId, SnapshotId};
pub use progress::{NoProgress, Progress};
pub use repo::{Repository, SnapshotOptions};
pub use snapshot::{Snapshot, Tier};
