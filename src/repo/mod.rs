//! The repository: init and open, locks, and the submodules that hold the
//! rest of it:
//!
//! - [`keyslots`]: passphrase-wrapped master keys;
//! - [`catalog`]: snapshot objects, names, forget, retire, the audit log;
//! - [`reconcile`]: keeping the index true to the packs, and `repair`;
//! - [`read`]: blobs, chunk lists, items and their content back out;
//! - [`write`]: the pipeline (workers, packer, sealer) and [`writer`], the
//!   API a backup streams data through; [`backup`]: the snapshot at the end.
//!
//! Write order is packs → index → snapshot. A blob enters the index only
//! after its pack is sealed (fsynced and linked into place), and a snapshot
//! is written only after every pack it needs is sealed, so a crash at any
//! moment leaves garbage at worst, never a snapshot pointing at nothing.

use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::{KdfParams, KeySlot};
use crate::id::PackId;
use crate::index::{self, Index};
use crate::keys::Keys;
use crate::lock::{self, Lock};
use crate::pack;
use crate::progress::Progress;
use crate::snapshot;
use crate::store::{self, Kind, Local, ObjectFile, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

mod backup;
mod catalog;
mod keyslots;
mod origin;
mod read;
mod reconcile;
mod write;
mod writer;

pub use backup::SnapshotOptions;
pub use catalog::{AuditRecord, SnapshotList};
use keyslots::{unlock, write_slot};
pub use origin::{cache_root, PackData, FETCH_JOBS};
pub use reconcile::{DamagedPack, RebuildReport};
pub use write::WriteStats;
pub use writer::{FinishedTree, StoredStream, Writer};

/// The format this relic writes. Version 2 added delta blobs (trailer
/// flags 0x10/0x20, `delta_max_depth` in the config); version 3 writes
/// them as copy/insert lists (blob tag 3) instead of zstd frames with a
/// dictionary (tag 2). Older repositories are read and written as before:
/// version 1 without deltas, version 2 with tag-2 deltas.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this relic reads.
pub const OLDEST_FORMAT: u32 = 1;
/// Batches in flight per stream; bounds memory to about this many MiB.
const WINDOW: usize = 8;
/// A pack sealed in a bucket repository's cache this long ago and still
/// there was left by a process that died before uploading it.
const STALE_UPLOAD: Duration = Duration::from_secs(3600);
/// How long a backup waits for an exclusive lock (a prune) to go away.

#[derive(Debug, Error)]
pub enum Error {
    #[error("no relic repository at {0} (create one with `relic -r {0} init`)")]
    NotARepository(String),
    #[error("{0} already exists and is not empty; choose a new directory for the repository")]
    AlreadyExists(String),
    #[error("repository config {path}: {what}")]
    Config { path: String, what: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Index(#[from] index::Error),
    #[error(transparent)]
    Pack(#[from] pack::Error),
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    #[error(transparent)]
    Lock(#[from] lock::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("chunk {0} is missing from the repository; run `relic check`")]
    MissingChunk(String),
    #[error("chunk {chunk} cannot be decoded: its delta base {base} is missing from the repository; run `relic check`")]
    MissingBase { chunk: String, base: String },
    #[error("blob {chunk} in pack {pack} is damaged ({what}); run `relic check --read-data`")]
    DamagedBlob {
        chunk: String,
        pack: String,
        what: String,
    },
    #[error("restored {path} does not match its recorded BLAKE3 or size; the repository is damaged, run `relic check --read-data`")]
    ContentMismatch { path: String },
    #[error("reading the input: {0}")]
    Input(io::Error),
    #[error("writing the output: {0}")]
    Output(io::Error),
    #[error("the repository changed under this command: {0}; nothing was written, run it again")]
    RepositoryChanged(String),
    #[error("the write pipeline stopped")]
    PipelineClosed,
    #[error(transparent)]
    Crypto(#[from] crate::crypto::Error),
    #[error("the repository is encrypted: give its passphrase (RELIC_PASSWORD, RELIC_PASSWORD_FILE, RELIC_PASSWORD_COMMAND or the prompt)")]
    PassphraseRequired,
    #[error("key slot: {0}")]
    KeySlot(String),
    /// Only seen inside [`Repository::backup`], which returns the source's
    /// own error instead.
    #[error("the source of the backup failed")]
    SourceFailed,
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The `config` file (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    pub id: String,
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    /// Longest chain of delta blobs (0: no deltas, as in version 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delta_max_depth: u8,
    /// "xchacha20poly1305" (the master key lives wrapped in `keys/`), or
    /// "none" (the master key is stored here in the clear).
    pub encryption: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    /// Keyed BLAKE3 of this config with an empty `mac`.
    #[serde(default)]
    pub mac: String,
}

pub const ENCRYPTION: &str = "xchacha20poly1305";

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Config {
    /// What can be checked of a config without its key: a format version
    /// this relic reads, a delta depth that version allows, chunk sizes
    /// FastCDC takes.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&self.version) {
            return Err(format!(
                "format version {} is not supported by this relic (it reads versions {OLDEST_FORMAT} to {FORMAT_VERSION})",
                self.version
            ));
        }
        if self.delta_max_depth > 0 && self.version < 2 || self.delta_max_depth > 64 {
            return Err(format!(
                "delta_max_depth {} is not valid for format version {}",
                self.delta_max_depth, self.version
            ));
        }
        self.chunker.validate()
    }

    /// The bytes the config's MAC covers: the config without its MAC.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.mac.clear();
        serde_json::to_vec(&c).expect("config serializes")
    }
}

/// Options for a new repository.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    /// Longest delta chain; 0 stores every chunk whole.
    pub delta_max_depth: u8,
    /// Encrypt with a key slot for this passphrase; `None`: no encryption.
    pub passphrase: Option<Vec<u8>>,
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression_level: 1,
            delta_max_depth: crate::delta::MAX_DEPTH,
            passphrase: None,
            kdf: KdfParams::default(),
        }
    }
}

pub struct Repository {
    /// The repository's directory, or the local cache of one in a bucket.
    backend: Local,
    /// The bucket that holds every object, when the repository is not a
    /// directory (see [`origin`]).
    origin: Option<Arc<dyn Store>>,
    /// Where locks live: the origin, else the directory.
    locks: Arc<dyn Store>,
    config: Config,
    keys: Keys,
    chunker: Chunker,
    index: Index,
    open_packs: Mutex<HashMap<PackId, Arc<ObjectFile>>>,
    /// The key slot the passphrase opened.
    unlocked_slot: Option<String>,
    /// The directory cannot be written: reads only, index in the cache.
    read_only: bool,
    /// Opened to list snapshots only: the index's packs are not brought
    /// up to date with the bucket (see [`Self::open_remote_catalog`]).
    catalog_only: bool,
    /// Backups read, chunk and count, and write nothing (`--dry-run`).
    dry_run: std::sync::atomic::AtomicBool,
}

impl Repository {
    /// Creates a repository in an empty or missing directory.
    pub fn init(path: &Path, opts: &InitOptions) -> Result<Repository> {
        Self::init_in(path, None, opts)
    }

    /// Creates a repository in a store that holds none (a bucket), with
    /// its cache under [`cache_root`].
    pub fn init_remote(origin: Arc<dyn Store>, opts: &InitOptions) -> Result<Repository> {
        if !origin.list(Kind::Config)?.is_empty() {
            return Err(Error::AlreadyExists(origin.describe()));
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let cache = cache_root().join(&id);
        Self::init_with_id(&cache, Some(origin), id, opts)
    }

    fn init_in(
        path: &Path,
        origin: Option<Arc<dyn Store>>,
        opts: &InitOptions,
    ) -> Result<Repository> {
        Self::init_with_id(path, origin, hex::encode(rand::random::<[u8; 16]>()), opts)
    }

    fn init_with_id(
        path: &Path,
        origin: Option<Arc<dyn Store>>,
        id: String,
        opts: &InitOptions,
    ) -> Result<Repository> {
        if !Local::new(path).is_vacant().map_err(io_at(path))? {
            return Err(Error::AlreadyExists(path.display().to_string()));
        }
        opts.chunker.validate().map_err(|what| Error::Config {
            path: path.display().to_string(),
            what,
        })?;
        let backend = Local::new(path);
        backend.create_layout().map_err(io_at(path))?;
        let encrypt = opts.passphrase.is_some();
        let keys = Keys::generate(encrypt);
        let mut config = Config {
            version: FORMAT_VERSION,
            id,
            chunker: opts.chunker,
            compression_level: opts.compression_level,
            delta_max_depth: opts.delta_max_depth,
            encryption: if encrypt { ENCRYPTION } else { "none" }.into(),
            master_key: (!encrypt).then(|| hex::encode(keys.master())),
            mac: String::new(),
        };
        if let Some(pass) = &opts.passphrase {
            write_slot(
                &backend,
                origin.as_deref(),
                &keys,
                KeySlot::create(keys.master(), pass, opts.kdf)?,
            )?;
        }
        config.mac = keys.meta_mac(&config.mac_input());
        let bytes = serde_json::to_vec_pretty(&config).expect("config serializes");
        // The config is written last: its presence marks a complete
        // repository (a bucket that got one meanwhile is not taken over).
        if !origin::write_through(&backend, origin.as_deref(), Kind::Config, "config", &bytes)? {
            return Err(Error::AlreadyExists(
                origin
                    .as_ref()
                    .map_or_else(|| path.display().to_string(), |o| o.describe()),
            ));
        }
        Repository::open_in(path, origin, opts.passphrase.as_deref(), false)
    }

    /// Reads a repository's config without unlocking it.
    pub fn read_config(path: &Path) -> Result<Config> {
        let cfg_path = path.join("config");
        let bytes = match Local::new(path).read(Kind::Config, "config") {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotARepository(path.display().to_string()))
            }
            Err(e) => return Err(io_at(&cfg_path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: cfg_path.display().to_string(),
            what: e.to_string(),
        })
    }

    /// Reads the config of a repository in a bucket.
    pub fn read_remote_config(origin: &dyn Store) -> Result<Config> {
        Ok(Self::remote_config(origin)?.0)
    }

    fn remote_config(origin: &dyn Store) -> Result<(Config, Vec<u8>)> {
        let bytes = match origin.read(Kind::Config, "config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(Error::NotARepository(origin.describe())),
            Err(e) => return Err(e.into()),
        };
        let config = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: format!("{}/config", origin.describe()),
            what: e.to_string(),
        })?;
        Ok((config, bytes))
    }

    /// Opens a repository in a bucket through its cache (made or brought
    /// up to date here; see [`origin`]).
    pub fn open_remote(origin: Arc<dyn Store>, passphrase: Option<&[u8]>) -> Result<Repository> {
        Self::open_remote_as(origin, passphrase, false)
    }

    /// Opens a repository in a bucket to list its snapshots, and nothing
    /// else: its snapshot objects are read, its packs' trailers are not
    /// (a new host lists snapshots after reading the snapshots alone).
    /// Nothing may be read or written through it but the snapshot list.
    pub fn open_remote_catalog(
        origin: Arc<dyn Store>,
        passphrase: Option<&[u8]>,
    ) -> Result<Repository> {
        Self::open_remote_as(origin, passphrase, true)
    }

    fn open_remote_as(
        origin: Arc<dyn Store>,
        passphrase: Option<&[u8]>,
        catalog_only: bool,
    ) -> Result<Repository> {
        let (config, bytes) = Self::remote_config(origin.as_ref())?;
        if config.id.is_empty() || !config.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Config {
                path: format!("{}/config", origin.describe()),
                what: format!("repository id {:?} is not hex", config.id),
            });
        }
        let cache = Local::new(cache_root().join(&config.id));
        cache.create_layout().map_err(io_at(cache.root()))?;
        if cache.read(Kind::Config, "config").ok().as_deref() != Some(&bytes[..]) {
            cache
                .replace(Kind::Config, "config", &bytes)
                .map_err(io_at(cache.root()))?;
        }
        origin::refresh_small(&cache, origin.as_ref())?;
        Self::open_in(cache.root(), Some(origin), passphrase, catalog_only)
    }

    /// Opens a repository (an encrypted one with its passphrase) and brings
    /// its index up to date with the packs and snapshots on disk.
    pub fn open(path: &Path, passphrase: Option<&[u8]>) -> Result<Repository> {
        Self::open_in(path, None, passphrase, false)
    }

    fn open_in(
        path: &Path,
        origin: Option<Arc<dyn Store>>,
        passphrase: Option<&[u8]>,
        catalog_only: bool,
    ) -> Result<Repository> {
        let config = Self::read_config(path)?;
        let cfg_path = path.join("config");
        let bad = |what: String| Error::Config {
            path: cfg_path.display().to_string(),
            what,
        };
        config.check().map_err(bad)?;
        let backend = Local::new(path);
        let (keys, unlocked_slot) = match (config.encryption.as_str(), &config.master_key) {
            ("none", Some(hexkey)) => {
                let mut master = [0u8; 32];
                hex::decode_to_slice(hexkey, &mut master)
                    .map_err(|e| bad(format!("master key: {e}")))?;
                (Keys::from_master(master, false), None)
            }
            (ENCRYPTION, None) => {
                let pass = passphrase.ok_or(Error::PassphraseRequired)?;
                let (keys, slot) = unlock(&backend, &config, pass)?;
                (keys, Some(slot))
            }
            (e, _) => return Err(bad(format!("unknown or inconsistent encryption '{e}'"))),
        };
        if keys.meta_mac(&config.mac_input()) != config.mac {
            return Err(bad(
                "the config was altered (its MAC does not match); restore it from a copy".into(),
            ));
        }
        let chunker = Chunker::new(config.chunker, keys.gear_seed());
        // A repository on a read-only filesystem (a mounted backup disk)
        // is read with an index of its own in the user's cache.
        let read_only = !backend.is_writable();
        let index_dir = if read_only {
            cache_root().join("index").join(&config.id)
        } else {
            path.join("index")
        };
        let index = Index::open(&index_dir)?;
        if origin.is_some() {
            // Packs a killed backup sealed and did not upload: never
            // indexed, never named by a snapshot. (A pack of a backup
            // running beside this command is younger and is left alone.)
            backend.remove_older_than(Kind::Pack, STALE_UPLOAD);
        }
        let locks: Arc<dyn Store> = match &origin {
            Some(o) => o.clone(),
            None => Arc::new(backend.clone()),
        };
        let repo = Repository {
            catalog_only,
            dry_run: Default::default(),
            read_only,
            backend,
            origin,
            locks,
            config,
            keys,
            chunker,
            index,
            open_packs: Mutex::new(HashMap::new()),
            unlocked_slot,
        };
        repo.reconcile(&crate::progress::NoProgress)?;
        Ok(repo)
    }

    /// Waits (up to `wait`) until this process holds the RocksDB index as
    /// primary: prune, repair and `index rebuild` change it, so they wait
    /// for other relic processes to close it. Holds no lock while waiting,
    /// so a backup that holds the index is never blocked by this one.
    pub fn wait_for_index(&mut self, wait: Duration, progress: &dyn Progress) -> Result<()> {
        let started = Instant::now();
        let mut said = false;
        while self.index.is_secondary() {
            match Index::open_exclusive(self.index.path()) {
                Ok(primary) => {
                    self.index = primary;
                    self.reconcile(progress)?;
                }
                Err(index::Error::Busy) if started.elapsed() < wait => {
                    if !said {
                        progress.warn(&format!(
                            "waiting up to {} for other relic processes to close the index",
                            crate::progress::duration(wait)
                        ));
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// True when the repository's directory cannot be written (a mounted
    /// backup disk): nothing is locked or recorded there.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn backend(&self) -> &Local {
        &self.backend
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The names of the packs.
    pub fn pack_names(&self) -> Result<Vec<String>> {
        Ok(self.pack_list()?.into_iter().map(|(n, _)| n).collect())
    }

    /// Brings the index up to date with what other processes wrote since
    /// this one opened the repository.
    pub fn refresh(&self) -> Result<()> {
        self.index.catch_up()?;
        self.refresh_cache()?;
        self.reconcile(&crate::progress::NoProgress)
    }

    /// A shared lock: held by backups, restores and checks, so a prune
    /// (exclusive) never deletes a pack under them. Waits, saying so, while
    /// a prune runs.
    ///
    /// Once held, the index is brought up to date with the packs on disk:
    /// a prune that ran before (or while this process waited) may have
    /// deleted packs this process's view of the index still lists, and a
    /// chunk in such a pack must never count as stored.
    pub fn lock_shared(&self, progress: &dyn Progress) -> Result<Lock> {
        if self.read_only {
            return Ok(Lock::read_only());
        }
        self.lock(false, progress)
    }

    /// The exclusive lock (prune, repair, index rebuild): waits, saying for
    /// whom, while other commands run, then brings the index up to date.
    pub fn lock_exclusive(&self, progress: &dyn Progress) -> Result<Lock> {
        if self.read_only {
            return Ok(Lock::read_only());
        }
        self.lock(true, progress)
    }

    fn lock(&self, exclusive: bool, progress: &dyn Progress) -> Result<Lock> {
        let lock = match Lock::acquire(&self.locks, exclusive, Duration::ZERO) {
            Ok(l) => l,
            Err(lock::Error::Held { holder }) => {
                progress.warn(&format!(
                    "waiting up to {} for other commands to finish (the repository is locked {holder})",
                    crate::progress::duration(lock::wait())
                ));
                Lock::acquire(&self.locks, exclusive, lock::wait())?
            }
            // Read-only credentials for a bucket (a host that only
            // restores): reading goes ahead unlocked, as from a read-only
            // disk; anything that writes fails at its first write.
            Err(lock::Error::Store(e @ store::Error::AccessDenied { .. })) if !exclusive => {
                progress.warn(&format!("no lock taken ({e}); going on without one"));
                Lock::read_only()
            }
            Err(e) => return Err(e.into()),
        };
        self.refresh()?;
        Ok(lock)
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A small unencrypted repository in a temp dir, for the unit tests of the
/// submodules, and a backup helper.
#[cfg(test)]
pub(crate) mod testing;
