//! Where a repository's objects live: the bottom layer of relic.
//!
//! An object is named by its [`Kind`] and a name (64 hex digits, or
//! `config`), is written once and never overwritten. Two places hold
//! objects, laid out alike (`packs/<2 hex>/<name>`, `snapshots/<name>`, …):
//!
//! - [`Local`]: a directory, the repository itself, a mirror or a `sync`
//!   destination. Every file access of a repository goes through it: the
//!   write-once objects, temp files, the index directory, the few
//!   repository-local state files, name locks;
//! - [`S3`]: a bucket prefix on S3-compatible storage.
//!
//! Both implement [`Store`], the object-level interface `sync` and the S3
//! repository path use, so a destination is one trait object whatever it is.

pub mod local;
pub mod s3;

pub use local::{Local, ObjectFile, TempObject};
pub use s3::S3;

use crate::objectlock;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What an object is; decides where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Config,
    Pack,
    Snapshot,
    Lock,
    Key,
    /// Records of baselines retired (`relic baseline retire`).
    Audit,
}

impl Kind {
    /// The directory of this kind's objects, relative to the root.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Pack => "packs",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
            Kind::Key => "keys",
            Kind::Audit => "audit",
        }
    }
}

/// The path of an object relative to the root of any store.
pub fn object_path(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Config => "config".to_string(),
        Kind::Pack => format!("packs/{}/{name}", &name[..2]),
        _ => format!("{}/{name}", kind.dir()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{store}: {source}")]
    Io { store: String, source: io::Error },
    #[error("{store}: access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({what})")]
    AccessDenied { store: String, what: String },
    #[error("{store}: cannot reach {endpoint}: {what}")]
    Unreachable {
        store: String,
        endpoint: String,
        what: String,
    },
    #[error("{store}: {what}")]
    Remote { store: String, what: String },
    #[error("object lock at {store}: {why}")]
    ObjectLock {
        store: String,
        why: objectlock::Error,
    },
}

impl Error {
    /// True when the object (or the store) is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Objects of a repository, wherever they are. Every method names what it
/// does to one object; none overwrites one.
pub trait Store: Send + Sync {
    /// Where this is, for people: a path or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Names and sizes of the objects of a kind (nothing when the store
    /// is empty): one listing, no request per object.
    fn list_sized(&self, kind: Kind) -> Result<Vec<(String, u64)>>;
    /// Names of the objects of a kind (nothing when the store is empty).
    fn list(&self, kind: Kind) -> Result<HashSet<String>> {
        Ok(self.list_sized(kind)?.into_iter().map(|(n, _)| n).collect())
    }
    /// The file holding an object and its size, when the store is a
    /// directory.
    fn local_file(&self, _kind: Kind, _name: &str) -> Result<Option<(PathBuf, u64)>> {
        Ok(None)
    }
    /// Copies a local file in; false when the object was already there.
    fn put_file(&self, kind: Kind, name: &str, src: &Path, size: u64) -> Result<bool>;
    /// Plain BLAKE3 and size of an object.
    fn hash(&self, kind: Kind, name: &str) -> Result<([u8; 32], u64)>;
    /// A small object's bytes.
    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>>;
    /// The bytes of each of `ranges` of an object (offsets; each within
    /// its size), in order: what a reader of a few blobs of a pack needs,
    /// never the whole object. Object storage coalesces nearby ranges into
    /// one request and sends several at once.
    fn read_ranges(&self, kind: Kind, name: &str, ranges: &[Range<u64>]) -> Result<Vec<Vec<u8>>>;
    /// Streams an object into `out`; returns its size.
    fn get_into(&self, kind: Kind, name: &str, out: &mut dyn Write) -> Result<u64>;
    /// Writes a small object unless one of that name exists; false then.
    fn put_bytes(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool>;
    /// Replaces a lock object's bytes (its holder refreshing it): the one
    /// kind of object ever rewritten.
    fn rewrite_lock(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Deletes an object; gone already is fine.
    fn remove(&self, kind: Kind, name: &str) -> Result<()>;
    /// Fails unless objects here can be put under S3 Object Lock.
    fn object_lock_check(&self) -> Result<()> {
        Err(Error::ObjectLock {
            store: self.describe(),
            why: objectlock::Error::NotS3,
        })
    }
    /// Retains an object under Object Lock until `until`, unless it is
    /// already retained until at least `min`; true when it was changed.
    fn retain(
        &self,
        _kind: Kind,
        _name: &str,
        _mode: objectlock::Mode,
        _min: jiff::Timestamp,
        _until: jiff::Timestamp,
    ) -> Result<bool> {
        self.object_lock_check().map(|()| false)
    }
}

/// Opens a store: `s3://bucket/prefix` or a directory (temp files a killed
/// writer left in a directory are removed).
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    if let Some(rest) = url.strip_prefix("s3://") {
        Ok(Box::new(S3::new(rest)?))
    } else {
        let dir = Local::new(PathBuf::from(url));
        dir.remove_stale_temp_files();
        Ok(Box::new(dir))
    }
}

/// Plain BLAKE3 and length of everything `r` yields.
fn hash_reader(mut r: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut h = blake3::Hasher::new();
    let n = io::copy(&mut r, &mut h)?;
    Ok((*h.finalize().as_bytes(), n))
}
