//! The repository: init and open, the write session that streams data in,
//! and the read paths that stream it back out.
//!
//! Write order is packs → index → snapshot. A blob enters the index only
//! after its pack is sealed (fsynced and linked into place), and a snapshot
//! is written only after every pack it needs is sealed, so a crash at any
//! moment leaves garbage at worst, never a snapshot pointing at nothing.

use crate::backend::{Kind, Local};
use crate::chunker::{Chunker, ChunkerParams, Segmented, StreamChunker, Whole};
use crate::compress::{Compressor, Decompressor};
use crate::crypto::{KdfParams, KeySlot};
use crate::delta;
use crate::id::{ChunkId, PackId, SnapshotId};
use crate::index::{self, ChunkEntry, Index};
use crate::keys::Keys;
use crate::lock::{self, Lock};
use crate::pack::{self, Base, BlobKind, Entry, PackWriter};
use crate::progress::{Progress, Unit};
use crate::snapshot::{self, ChunkList, Item, Snapshot, LIST_MAX};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Version of the repository format this build reads and writes.
/// The format this relic writes. Version 2 added delta blobs (trailer
/// flags 0x10/0x20, `delta_max_depth` in the config); version 1
/// repositories are read and written as before, without deltas.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this relic reads.
pub const OLDEST_FORMAT: u32 = 1;
/// Raw bytes handed to a worker at once.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight per stream; bounds memory to about this many MiB.
const WINDOW: usize = 8;
/// Chunks a restore worker reads at once (about 1 MiB at the default size).
const READ_BATCH: usize = 32;
/// Items of at most this many chunks are restored without a thread pool.
const SMALL_ITEM_CHUNKS: usize = 4;
/// A delta against a chain's root is preferred to one against the newest
/// similar chunk when at most ROOT_FACTOR times as large plus ROOT_SLACK
/// bytes (docs/design.md).
const ROOT_SLACK: usize = 128;
const ROOT_FACTOR: usize = 4;
/// How long a backup waits for an exclusive lock (a prune) to go away.
const LOCK_WAIT: Duration = Duration::from_secs(3600);

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
    #[error("{0}")]
    Source(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// False when the directory cannot be written (a read-only mount).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: access() reads a valid C string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Associated data of sealed audit records.
const AUDIT_AAD: &[u8] = b"relic audit";

/// What `relic baseline retire` leaves behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    pub action: String,
    pub name: String,
    pub snapshots: Vec<String>,
    pub tiers: Vec<String>,
    pub time_ns: i64,
    pub host: String,
    pub user: String,
    pub reason: String,
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
    backend: Local,
    config: Config,
    keys: Keys,
    chunker: Chunker,
    index: Index,
    open_packs: Mutex<HashMap<PackId, Arc<File>>>,
    /// The key slot the passphrase opened.
    unlocked_slot: Option<String>,
    /// The directory cannot be written: reads only, index in the cache.
    read_only: bool,
}

impl Repository {
    /// Creates a repository in an empty or missing directory.
    pub fn init(path: &Path, opts: &InitOptions) -> Result<Repository> {
        if path.join("config").exists()
            || (path.exists()
                && std::fs::read_dir(path)
                    .map_err(io_at(path))?
                    .next()
                    .is_some())
        {
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
            id: hex::encode(rand::random::<[u8; 16]>()),
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
                &keys,
                KeySlot::create(keys.master(), pass, opts.kdf)?,
            )?;
        }
        config.mac = keys.meta_mac(&config.mac_input());
        let bytes = serde_json::to_vec_pretty(&config).expect("config serializes");
        // The config is written last: its presence marks a complete repository.
        backend
            .write_once(Kind::Config, "config", &bytes)
            .map_err(io_at(path))?;
        Repository::open(path, opts.passphrase.as_deref())
    }

    /// Reads a repository's config without unlocking it.
    pub fn read_config(path: &Path) -> Result<Config> {
        let cfg_path = path.join("config");
        let bytes = match std::fs::read(&cfg_path) {
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

    /// Opens a repository (an encrypted one with its passphrase) and brings
    /// its index up to date with the packs and snapshots on disk.
    pub fn open(path: &Path, passphrase: Option<&[u8]>) -> Result<Repository> {
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
                let (slot, master) = unlock(&backend, pass)?;
                (Keys::from_master(*master, true), Some(slot))
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
        let read_only = !writable(path);
        let index_dir = if read_only {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("relic/index")
                .join(&config.id)
        } else {
            path.join("index")
        };
        let index = Index::open(&index_dir)?;
        let repo = Repository {
            read_only,
            backend,
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
                        progress.warn("waiting for other relic processes to close the index");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The key slots: id → slot.
    pub fn key_slots(&self) -> Result<Vec<(String, KeySlot)>> {
        read_slots(&self.backend)
    }

    /// Key slots that do not parse or whose MAC does not match: id → why.
    pub fn key_slot_damage(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for id in self
            .backend
            .list(Kind::Key)
            .map_err(io_at(self.backend.root()))?
        {
            let path = self.backend.path(Kind::Key, &id);
            let bytes = std::fs::read(&path).map_err(io_at(&path))?;
            if blake3::hash(&bytes).to_hex().as_str() != id {
                out.push((id, "content does not match its name".into()));
                continue;
            }
            match serde_json::from_slice::<KeySlot>(&bytes) {
                Err(e) => out.push((id, format!("cannot parse: {e}"))),
                Ok(slot) if self.keys.meta_mac(&slot.mac_input()) != slot.mac => {
                    out.push((id, "MAC does not match: the slot was altered".into()))
                }
                Ok(_) => {}
            }
        }
        Ok(out)
    }

    /// The id of the slot this session was unlocked with.
    pub fn unlocked_slot(&self) -> Option<&str> {
        self.unlocked_slot.as_deref()
    }

    /// Adds a key slot for another passphrase; returns its id.
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<String> {
        if self.keys.cipher().is_none() {
            return Err(Error::KeySlot("the repository is not encrypted".into()));
        }
        write_slot(
            &self.backend,
            &self.keys,
            KeySlot::create(self.keys.master(), passphrase, kdf)?,
        )
    }

    /// Removes a key slot by id prefix. The slot in use and the last slot
    /// are refused: a repository must stay openable.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let slots = self.key_slots()?;
        let hits: Vec<_> = slots
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        let id = match hits.as_slice() {
            [(id, _)] => id.clone(),
            [] => return Err(Error::KeySlot(format!("no key slot matches '{prefix}'"))),
            _ => {
                return Err(Error::KeySlot(format!(
                    "'{prefix}' matches several key slots"
                )))
            }
        };
        if slots.len() == 1 {
            return Err(Error::KeySlot(
                "refusing to remove the last key slot".into(),
            ));
        }
        if self.unlocked_slot.as_deref() == Some(id.as_str()) {
            return Err(Error::KeySlot(
                "refusing to remove the slot of the passphrase in use; use `key passwd` to replace it".into(),
            ));
        }
        self.backend
            .remove(Kind::Key, &id)
            .map_err(io_at(self.backend.root()))?;
        Ok(id)
    }

    /// Replaces the slot in use by one for a new passphrase.
    pub fn change_passphrase(&self, new: &[u8], kdf: KdfParams) -> Result<String> {
        let old = self
            .unlocked_slot
            .clone()
            .ok_or_else(|| Error::KeySlot("the repository is not encrypted".into()))?;
        let id = self.add_key(new, kdf)?;
        self.backend
            .remove(Kind::Key, &old)
            .map_err(io_at(self.backend.root()))?;
        Ok(id)
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

    /// The names of the pack files on disk.
    pub fn pack_names(&self) -> Result<Vec<String>> {
        self.backend
            .list(Kind::Pack)
            .map_err(io_at(self.backend.root()))
    }

    /// Brings the index up to date with what other processes wrote since
    /// this one opened the repository.
    pub fn refresh(&self) -> Result<()> {
        self.index.catch_up()?;
        self.reconcile(&crate::progress::NoProgress)
    }

    /// Indexes packs the index does not know (written by a crashed or a
    /// concurrent process), forgets packs that are gone, catalogs snapshots,
    /// and removes temp files of dead processes. A secondary keeps what it
    /// learns in memory.
    fn reconcile(&self, progress: &dyn Progress) -> Result<()> {
        let root = self.backend.root();
        let on_disk: HashSet<String> = self
            .backend
            .list(Kind::Pack)
            .map_err(io_at(root))?
            .into_iter()
            .collect();
        let indexed: HashSet<String> = self
            .index
            .packs()?
            .into_iter()
            .map(|(id, _)| id.to_hex())
            .collect();
        for name in on_disk.difference(&indexed) {
            match self.read_pack_trailer(name) {
                Ok((size, entries)) => {
                    let id = PackId::from_hex(name).expect("listed names are hex");
                    self.index.add_pack(id, size, &entries)?;
                }
                Err(e) => progress.warn(&format!("not indexing {e}")),
            }
        }
        for name in indexed.difference(&on_disk) {
            self.index
                .remove_pack(&PackId::from_hex(name).expect("hex"))?;
        }
        let snaps: HashSet<String> = self
            .backend
            .list(Kind::Snapshot)
            .map_err(io_at(root))?
            .into_iter()
            .collect();
        let cataloged: HashSet<String> = self
            .index
            .snapshots()?
            .into_iter()
            .map(|(id, _)| id.to_hex())
            .collect();
        for name in snaps.difference(&cataloged) {
            // A damaged object stays out of the catalog; `check` reports it.
            if let Ok(bytes) = self.read_snapshot_object(name) {
                self.index
                    .put_snapshot(&SnapshotId::from_hex(name).expect("hex"), &bytes)?;
            }
        }
        for name in cataloged.difference(&snaps) {
            self.index
                .remove_snapshot(&SnapshotId::from_hex(name).expect("hex"))?;
        }
        for tmp in self.backend.stale_temp_files().map_err(io_at(root))? {
            let _ = std::fs::remove_file(tmp);
        }
        Ok(())
    }

    fn read_pack_trailer(
        &self,
        name: &str,
    ) -> std::result::Result<(u64, Vec<pack::Entry>), pack::Error> {
        let io = |source| pack::Error::Io {
            pack: name.to_string(),
            source,
        };
        let f = self.backend.open(Kind::Pack, name).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        Ok((len, pack::read_trailer(name, &f, len, self.keys.cipher())?))
    }

    /// Reads a snapshot object and checks that its bytes hash to its name.
    fn read_snapshot_object(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.backend.path(Kind::Snapshot, name);
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        let mut h = self.keys.object_hasher();
        h.update(&bytes);
        if h.finalize().to_hex().as_str() != name {
            return Err(snapshot::Error::Corrupt {
                id: name.to_string(),
                what: "content does not match its id".into(),
            }
            .into());
        }
        Ok(bytes)
    }

    /// Every snapshot object: the readable ones oldest first, and those that
    /// could not be read or decoded. With `from_disk` every object is read
    /// and its name verified (for `check`); otherwise the catalog is used.
    pub fn load_snapshots(&self, from_disk: bool) -> Result<SnapshotList> {
        let mut cached: HashMap<SnapshotId, Vec<u8>> = if from_disk {
            HashMap::new()
        } else {
            self.index.snapshots()?.into_iter().collect()
        };
        let mut list = SnapshotList::default();
        for name in self
            .backend
            .list(Kind::Snapshot)
            .map_err(io_at(self.backend.root()))?
        {
            let id = SnapshotId::from_hex(&name).expect("hex");
            let decoded = match cached.remove(&id) {
                Some(b) => Ok(b),
                None => self.read_snapshot_object(&name),
            }
            .and_then(|b| Ok(Snapshot::decode(&name, &b, self.keys.cipher())?));
            match decoded {
                Ok(s) => list.ok.push((id, s)),
                // Forgotten since it was listed: not damage.
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => list.damaged.push((name, e)),
            }
        }
        list.ok.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok(list)
    }

    /// Every readable snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.load_snapshots(false)?.ok)
    }

    /// Finds a snapshot by `latest`, name or id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let snaps = self.snapshots()?;
        Ok(snapshot::select(&snaps, spec)?.clone())
    }

    /// Removes snapshot objects (their data stays until a prune). Refuses
    /// immaculate and sacred snapshots: only `baseline retire` may.
    pub fn forget(&self, ids: &[SnapshotId]) -> Result<()> {
        let snaps = self.snapshots()?;
        for id in ids {
            if let Some((_, s)) = snaps.iter().find(|(i, _)| i == id) {
                if matches!(s.tier, snapshot::Tier::Immaculate | snapshot::Tier::Sacred) {
                    return Err(snapshot::Error::Protected {
                        what: format!(
                            "snapshot {} ({}) is {}: it can never be forgotten",
                            id.short(),
                            s.name,
                            s.tier
                        ),
                    }
                    .into());
                }
            }
        }
        let _lock = Lock::acquire(&self.backend, false, LOCK_WAIT)?;
        for id in ids {
            match self.backend.remove(Kind::Snapshot, &id.to_hex()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(self.backend.root())(e)),
            }
            self.index.remove_snapshot(id)?;
        }
        Ok(())
    }

    /// Gives a snapshot a new name: a new snapshot object is written, then
    /// the old one removed. Immaculate and sacred snapshots never change,
    /// and no snapshot may take an immaculate baseline's name.
    pub fn rename(&self, id: &SnapshotId, new_name: &str) -> Result<SnapshotId> {
        let snaps = self.snapshots()?;
        let (_, old) = snaps
            .iter()
            .find(|(i, _)| i == id)
            .ok_or_else(|| Error::Source(format!("no snapshot {}", id.short())))?;
        if matches!(
            old.tier,
            snapshot::Tier::Immaculate | snapshot::Tier::Sacred
        ) {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "snapshot {} ({}) is {}: it can never be renamed or changed; make a new baseline instead",
                    id.short(),
                    old.name,
                    old.tier
                ),
            }
            .into());
        }
        snapshot::validate_name(new_name)?;
        let _lock = self.lock_shared(&crate::progress::NoProgress)?;
        let _guard = self.name_guard(new_name)?;
        let snaps = self.snapshots()?;
        self.check_name_free(
            &snaps,
            &SnapshotOptions {
                name: new_name.to_string(),
                tier: old.tier,
                labels: Default::default(),
                meta: Default::default(),
            },
        )?;
        let taken = snaps
            .iter()
            .any(|(_, s)| s.name == new_name && s.tier == snapshot::Tier::Immaculate)
            || self.audit_log()?.iter().any(|r| r.name == new_name);
        if taken {
            return Err(snapshot::Error::Protected {
                what: format!("the name '{new_name}' belongs to an immaculate baseline"),
            }
            .into());
        }
        let mut renamed = old.clone();
        renamed.name = new_name.to_string();
        renamed.parent = snaps
            .iter()
            .rev()
            .find(|(i, s)| s.name == new_name && i != id)
            .map(|(i, _)| *i);
        let new_id = self.save_snapshot(&renamed)?;
        self.forget(&[*id])?;
        Ok(new_id)
    }

    /// Retires the immaculate or sacred snapshots named `name`: writes an
    /// audit record (sealed in an encrypted repository) naming them, then
    /// deletes them. Their data goes with the next prune; the name stays
    /// reserved for immaculate baselines.
    pub fn retire(&self, name: &str, reason: &str) -> Result<Vec<SnapshotId>> {
        let snaps = self.snapshots()?;
        let victims: Vec<&(SnapshotId, Snapshot)> = snaps
            .iter()
            .filter(|(_, s)| {
                s.name == name
                    && matches!(s.tier, snapshot::Tier::Immaculate | snapshot::Tier::Sacred)
            })
            .collect();
        if victims.is_empty() {
            return Err(Error::Source(format!(
                "no immaculate or sacred snapshot is named '{name}' (`relic snapshots` lists them)"
            )));
        }
        let _lock = Lock::acquire(&self.backend, false, LOCK_WAIT)?;
        let record = AuditRecord {
            action: "retire".into(),
            name: name.to_string(),
            snapshots: victims.iter().map(|(id, _)| id.to_hex()).collect(),
            tiers: victims.iter().map(|(_, s)| s.tier.to_string()).collect(),
            time_ns: now_ns(),
            host: lock::hostname(),
            user: std::env::var("USER").unwrap_or_default(),
            reason: reason.to_string(),
        };
        let mut bytes = serde_json::to_vec_pretty(&record).expect("record serializes");
        if let Some(c) = self.keys.cipher() {
            c.seal(AUDIT_AAD, &mut bytes);
        }
        let dir = self.backend.root().join("audit");
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let id = blake3::hash(&bytes).to_hex().to_string();
        self.backend
            .write_once(Kind::Audit, &id, &bytes)
            .map_err(io_at(self.backend.root()))?;
        for (sid, _) in &victims {
            self.backend
                .remove(Kind::Snapshot, &sid.to_hex())
                .map_err(io_at(self.backend.root()))?;
            self.index.remove_snapshot(sid)?;
        }
        Ok(victims.iter().map(|(id, _)| *id).collect())
    }

    /// The audit records, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditRecord>> {
        let names = match self.backend.list(Kind::Audit) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(self.backend.root())(e)),
        };
        let mut out = Vec::new();
        for n in names {
            let path = self.backend.path(Kind::Audit, &n);
            let mut bytes = std::fs::read(&path).map_err(io_at(&path))?;
            if let Some(c) = self.keys.cipher() {
                c.open(AUDIT_AAD, &mut bytes)?;
            }
            let r: AuditRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                path: path.display().to_string(),
                what: format!("audit record unreadable: {e}"),
            })?;
            out.push(r);
        }
        out.sort_by_key(|r| r.time_ns);
        Ok(out)
    }

    /// Writes a snapshot object (the last step of a backup).
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let bytes = snap.encode(self.keys.cipher());
        let mut h = self.keys.object_hasher();
        h.update(&bytes);
        let id = SnapshotId::from(h.finalize());
        self.backend
            .write_once(Kind::Snapshot, &id.to_hex(), &bytes)
            .map_err(io_at(self.backend.root()))?;
        self.index.put_snapshot(&id, &bytes)?;
        Ok(id)
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
        let lock = match Lock::acquire(&self.backend, exclusive, Duration::ZERO) {
            Ok(l) => l,
            Err(lock::Error::Held { holder }) => {
                progress.warn(&format!(
                    "waiting for other commands to finish (the repository is locked {holder})"
                ));
                Lock::acquire(&self.backend, exclusive, LOCK_WAIT)?
            }
            Err(e) => return Err(e.into()),
        };
        self.refresh()?;
        Ok(lock)
    }

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
            packs: AtomicU64::new(0),
        };
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let started = Instant::now();
        let shared = &shared;
        let compressor = self.work_ctx(false).map_err(Error::Input)?;
        let result = std::thread::scope(|s| {
            let (job_tx, job_rx) = bounded::<Job>(workers * 2);
            let (blob_tx, blob_rx) = bounded::<Blob>(64);
            let (seal_tx, seal_rx) = bounded::<PackWriter>(1);
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (rx, tx) = (job_rx.clone(), blob_tx.clone());
                    s.spawn(move || shared.work(rx, tx))
                })
                .collect();
            drop(job_rx);
            let packer = s.spawn(move || shared.pack(blob_rx, seal_tx));
            let sealer = s.spawn(move || shared.seal(seal_rx));
            let mut w = Writer {
                shared,
                jobs: job_tx,
                blobs: blob_tx,
                compressor,
                window: VecDeque::new(),
                tree_buf: Vec::new(),
                tree: ListBuilder::default(),
                items: 0,
                size: 0,
                chunks: 0,
                meta: Default::default(),
                progress,
            };
            let r = f(&mut w);
            drop(w);
            for h in handles {
                h.join().expect("worker panicked");
            }
            let p = packer.join().expect("packer panicked");
            let q = sealer.join().expect("sealer panicked");
            // A failure of the packer or sealer is the cause of any
            // "pipeline closed" seen upstream: report the real cause.
            match (r, p, q) {
                (Ok(t), Ok(()), Ok(())) => Ok(t),
                (r, p, q) => Err([r.err(), p.err(), q.err()]
                    .into_iter()
                    .flatten()
                    .find(|e| !matches!(e, Error::PipelineClosed))
                    .unwrap_or(Error::PipelineClosed)),
            }
        })?;
        let stats = WriteStats {
            new_chunks: shared.new_chunks.load(Ordering::Relaxed),
            new_bytes: shared.new_bytes.load(Ordering::Relaxed),
            stored_bytes: shared.stored_bytes.load(Ordering::Relaxed),
            packs: shared.packs.load(Ordering::Relaxed),
            duration: started.elapsed(),
        };
        let reused = std::mem::take(&mut *shared.reused_packs.lock().expect("reused lock"));
        Ok((result, stats, reused))
    }

    /// Fails unless every pack in `packs` is on disk: the last check before
    /// a snapshot that deduplicated against them is written.
    fn verify_packs_present(&self, packs: &HashSet<PackId>) -> Result<()> {
        for p in packs {
            let path = self.backend.path(Kind::Pack, &p.to_hex());
            if !path.exists() {
                return Err(Error::RepositoryChanged(format!(
                    "pack {} that this backup shares chunks with is gone (pruned?)",
                    p.short()
                )));
            }
        }
        Ok(())
    }

    /// The whole chunk at the end of a delta's chain of bases, if indexed.
    fn chain_root(&self, e: &ChunkEntry) -> Result<Option<(ChunkId, ChunkEntry)>> {
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

    fn work_ctx(&self, deltas: bool) -> io::Result<WorkCtx> {
        Ok(WorkCtx {
            comp: Compressor::new(self.config.compression_level)?,
            dec: if deltas {
                Some(Decompressor::new()?)
            } else {
                None
            },
            scratch: Vec::new(),
            base: Vec::new(),
            root: Vec::new(),
            delta: Vec::new(),
        })
    }

    fn pack_file(&self, pack: &PackId) -> Result<Arc<File>> {
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
    /// `out`; a delta is decoded through its chain of bases.
    fn read_blob_into(
        &self,
        id: &ChunkId,
        e: &ChunkEntry,
        dec: &mut Decompressor,
        body: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.read_chain(id, e, dec, body, out, None)
    }

    /// [`Self::read_blob_into`], also appending the plaintext of the
    /// chain's root (the whole chunk it ends in) to `root` when given.
    fn read_chain(
        &self,
        id: &ChunkId,
        e: &ChunkEntry,
        dec: &mut Decompressor,
        body: &mut Vec<u8>,
        out: &mut Vec<u8>,
        mut root: Option<&mut Vec<u8>>,
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
                self.read_chain(&b.id, &be, dec, body, &mut plain, root.take())?;
                Some(plain)
            }
        };
        let f = self.pack_file(&e.pack)?;
        body.resize(e.length as usize, 0);
        f.read_exact_at(body, e.offset as u64)
            .map_err(|err| damaged(format!("cannot read: {err}")))?;
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

    /// Reads one blob by id.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let e = self
            .index
            .get(id)?
            .ok_or_else(|| Error::MissingChunk(id.to_hex()))?;
        let mut dec = Decompressor::new().map_err(Error::Input)?;
        let (mut body, mut out) = (Vec::new(), Vec::new());
        self.read_blob_into(id, &e, &mut dec, &mut body, &mut out)?;
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
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8)
            // One more than the cores: this thread hashes and writes, and
            // while it waits on a batch the cores stay busy.
            + 1;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        // A small item (most files of a tree) is read on this thread:
        // starting a pool of readers per file costs more than reading it.
        if let ChunkList::Inline(ids) = &item.content {
            if ids.len() <= SMALL_ITEM_CHUNKS {
                return self.restore_small(item, ids, out, progress);
            }
        }
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = bounded::<ReadJob>(workers * 2);
            for _ in 0..workers {
                let rx = rx.clone();
                s.spawn(move || self.read_worker(rx));
            }
            drop(rx);
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
                let batch = ids
                    .by_ref()
                    .take(READ_BATCH)
                    .collect::<Result<Vec<ChunkId>>>()?;
                let (rtx, rrx) = bounded(1);
                tx.send(ReadJob {
                    ids: batch,
                    buf: spare.pop().unwrap_or_default(),
                    reply: rtx,
                })
                .map_err(|_| Error::PipelineClosed)?;
                window.push_back(rrx);
                if window.len() > WINDOW {
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
    fn restore_small(
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
            for id in ids {
                let e = self
                    .index
                    .get(id)?
                    .ok_or_else(|| Error::MissingChunk(id.to_hex()))?;
                data.clear();
                self.read_blob_into(id, &e, dec, &mut body, &mut data)?;
                hasher.update(&data);
                size += data.len() as u64;
                out.write_all(&data).map_err(Error::Output)?;
                progress.inc(data.len() as u64);
            }
            Ok(())
        })?;
        finish_item(item, size, &hasher, out)
    }

    fn read_worker(&self, jobs: Receiver<ReadJob>) {
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
                for id in &job.ids {
                    let e = self
                        .index
                        .get(id)?
                        .ok_or_else(|| Error::MissingChunk(id.to_hex()))?;
                    self.read_blob_into(id, &e, &mut dec, &mut body, &mut out)?;
                }
                Ok(out)
            })();
            let _ = job.reply.send(r);
        }
    }

    /// Makes the index a faithful copy of the packs and snapshots on disk,
    /// from scratch, without ever losing what the old index still knew:
    ///
    /// - every trailer is read before the index is touched; an I/O error
    ///   (not damage) stops the rebuild with the index as it was;
    /// - a pack whose trailer is damaged (a flipped byte, a pack cut short)
    ///   has its blobs salvaged, still through the old index: it located
    ///   them, each body still in the file is checked (authenticated, or
    ///   decoded through its base and rehashed) and copied into a new pack;
    /// - a damaged snapshot object whose copy in the old index's catalog
    ///   still hashes to its name is written back from that copy;
    /// - only then is the index cleared and refilled, and the damaged packs
    ///   moved to `damaged/packs/` (never deleted).
    ///
    /// A read-only repository's cache index is rebuilt without salvaging.
    /// The caller holds the exclusive lock.
    pub fn rebuild_index(&self, progress: &dyn Progress) -> Result<RebuildReport> {
        if self.index.is_secondary() {
            return Err(index::Error::Busy.into());
        }
        let names = self
            .backend
            .list(Kind::Pack)
            .map_err(io_at(self.backend.root()))?;
        progress.start(
            "reading pack trailers",
            Some(names.len() as u64),
            Unit::Items,
        );
        let mut report = RebuildReport::default();
        let mut good = Vec::new();
        let mut bad: Vec<(PackId, String)> = Vec::new();
        for name in &names {
            match self.read_pack_trailer(name) {
                Ok((size, entries)) => {
                    good.push((PackId::from_hex(name).expect("hex"), size, entries))
                }
                Err(e @ pack::Error::Corrupt { .. }) => {
                    progress.warn(&format!("{e}: salvaging its blobs"));
                    bad.push((PackId::from_hex(name).expect("hex"), e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
            progress.inc(1);
        }
        progress.finish();
        // What only the old index knows: where the blobs of the damaged
        // packs are, and verified copies of the snapshot objects.
        let bad_ids: HashSet<PackId> = bad.iter().map(|(p, _)| *p).collect();
        let mut known: HashMap<PackId, Vec<(ChunkId, ChunkEntry)>> = HashMap::new();
        if !bad.is_empty() {
            self.index.for_each_chunk(|id, e| {
                if bad_ids.contains(&e.pack) {
                    known.entry(e.pack).or_default().push((id, e));
                }
                Ok::<(), Error>(())
            })?;
        }
        let mut salvaged = Vec::new();
        if !self.read_only {
            for (pack, why) in &bad {
                let found = known.remove(pack).unwrap_or_default();
                let (saved, lost, packs) = self.salvage(pack, found)?;
                salvaged.extend(packs);
                report.salvaged_blobs += saved;
                report.lost_blobs += lost;
                report.damaged_packs.push(DamagedPack {
                    pack: pack.to_hex(),
                    why: why.clone(),
                    salvaged_blobs: saved,
                    lost_blobs: lost,
                });
            }
            let catalog: HashMap<SnapshotId, Vec<u8>> =
                self.index.snapshots()?.into_iter().collect();
            report.restored_snapshots = self.restore_snapshot_objects(&catalog)?;
        } else {
            for (pack, why) in &bad {
                let lost = known.get(pack).map_or(0, |v| v.len() as u64);
                report.lost_blobs += lost;
                report.damaged_packs.push(DamagedPack {
                    pack: pack.to_hex(),
                    why: why.clone(),
                    salvaged_blobs: 0,
                    lost_blobs: lost,
                });
            }
        }

        self.index.clear()?;
        for (id, size, entries) in good.iter().chain(&salvaged) {
            report.blobs += entries.len() as u64;
            self.index.add_pack(*id, *size, entries)?;
        }
        report.packs = good.len() as u64;
        self.index.flush()?;
        if !self.read_only {
            for (pack, _) in &bad {
                self.set_aside(Kind::Pack, &pack.to_hex())?;
            }
        }
        self.reconcile(progress)?;
        report.snapshots = self.index.snapshots()?.len() as u64;
        self.index.flush()?;
        Ok(report)
    }

    /// Copies the blobs the old index located in a damaged pack, those
    /// whose bodies still check out, into new sealed packs (not yet
    /// indexed); (saved, lost, the new packs).
    fn salvage(
        &self,
        pack: &PackId,
        mut found: Vec<(ChunkId, ChunkEntry)>,
    ) -> Result<(u64, u64, Vec<SealedPack>)> {
        let mut out = Vec::new();
        if found.is_empty() {
            return Ok((0, 0, out));
        }
        let name = pack.to_hex();
        let f = self
            .backend
            .open(Kind::Pack, &name)
            .map_err(io_at(&self.backend.path(Kind::Pack, &name)))?;
        let len = f.metadata().map_err(io_at(self.backend.root()))?.len();
        // Bases before the deltas made against them.
        found.sort_by_key(|(id, e)| (e.depth(), e.offset, *id));
        let mut dec = Decompressor::new().map_err(Error::Input)?;
        let mut plain: HashMap<ChunkId, Vec<u8>> = HashMap::new();
        let mut writer: Option<PackWriter> = None;
        let (mut saved, mut lost) = (0u64, 0u64);
        let io = io_at(self.backend.root());
        let r = (|| -> Result<()> {
            for (id, e) in &found {
                let mut body = vec![0u8; e.length as usize];
                let end = e.offset as u64 + e.length as u64;
                if e.offset < pack::HEADER.len() as u32
                    || end > len
                    || f.read_exact_at(&mut body, e.offset as u64).is_err()
                    || !self.body_checks_out(id, e, &body, &mut dec, &mut plain)
                {
                    lost += 1;
                    continue;
                }
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(
                        PackWriter::create(&self.backend, &self.keys)
                            .map_err(io_at(self.backend.root()))?,
                    ),
                };
                let mut entry = Entry::new(*id, e.kind, e.raw_length);
                entry.base = e.base;
                w.add(entry, &body).map_err(io_at(self.backend.root()))?;
                saved += 1;
                if w.size() >= pack::TARGET_SIZE {
                    let sealed = writer
                        .take()
                        .expect("writer")
                        .seal(&self.backend)
                        .map_err(io_at(self.backend.root()))?;
                    out.push((sealed.id, sealed.size, sealed.entries));
                }
            }
            Ok(())
        })();
        if let Some(w) = writer {
            match &r {
                Ok(()) if !w.is_empty() => {
                    let sealed = w.seal(&self.backend).map_err(io)?;
                    out.push((sealed.id, sealed.size, sealed.entries));
                }
                _ => w.abandon(),
            }
        }
        r?;
        Ok((saved, lost, out))
    }

    /// True when a blob body read from a damaged pack is what `e` says:
    /// authenticated with its id (encrypted), or decoded (through its base)
    /// and rehashed to its id. Keeps plaintexts for later deltas.
    fn body_checks_out(
        &self,
        id: &ChunkId,
        e: &ChunkEntry,
        body: &[u8],
        dec: &mut Decompressor,
        plain: &mut HashMap<ChunkId, Vec<u8>>,
    ) -> bool {
        if let Some(c) = self.keys.cipher() {
            let mut b = body.to_vec();
            return c.open(&id.0, &mut b).is_ok();
        }
        let base = match e.base {
            None => None,
            Some(b) => match plain.get(&b.id) {
                Some(p) => Some(p.clone()),
                None => match self.read_blob(&b.id) {
                    Ok(p) => Some(p),
                    Err(_) => return false,
                },
            },
        };
        let mut out = Vec::with_capacity(e.raw_length as usize);
        if dec
            .decode_with(body, base.as_deref(), e.raw_length as usize, &mut out)
            .is_err()
            || self.keys.chunk_id(&out) != *id
        {
            return false;
        }
        if e.kind == BlobKind::Data {
            plain.insert(*id, out);
        }
        true
    }

    /// Moves a damaged pack out of the repository's listing, into
    /// `damaged/packs/`, where forensic tools can still find it.
    fn set_aside(&self, kind: Kind, name: &str) -> Result<()> {
        debug_assert_eq!(kind, Kind::Pack);
        let dir = self.backend.root().join("damaged").join("packs");
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let from = self.backend.path(kind, name);
        std::fs::rename(&from, dir.join(name)).map_err(io_at(&from))?;
        crate::backend::sync_dir(&dir).map_err(io_at(&dir))?;
        Ok(())
    }

    /// Writes back every snapshot object on disk that no longer hashes to
    /// its name from the old catalog's copy, when that copy does; returns
    /// how many. The good copy is complete on disk before the damaged file
    /// is replaced (linked into `damaged/snapshots/` first).
    fn restore_snapshot_objects(&self, catalog: &HashMap<SnapshotId, Vec<u8>>) -> Result<u64> {
        let mut n = 0;
        let root = self.backend.root();
        for name in self.backend.list(Kind::Snapshot).map_err(io_at(root))? {
            if self.read_snapshot_object(&name).is_ok() {
                continue;
            }
            let id = SnapshotId::from_hex(&name).expect("hex");
            let Some(copy) = catalog.get(&id) else {
                continue;
            };
            let mut h = self.keys.object_hasher();
            h.update(copy);
            if h.finalize().to_hex().as_str() != name {
                continue;
            }
            let dir = root.join("damaged").join("snapshots");
            std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            let at = self.backend.path(Kind::Snapshot, &name);
            match std::fs::hard_link(&at, dir.join(&name)) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_at(&dir)(e)),
                _ => {}
            }
            let (tmp, mut f) = self.backend.temp_file().map_err(io_at(root))?;
            let r = (|| {
                f.write_all(copy)?;
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, &at)?;
                crate::backend::sync_dir(at.parent().expect("object has a parent"))
            })();
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_at(&at)(e));
            }
            n += 1;
        }
        Ok(n)
    }
}

/// The end of an item's restore: flushes `out` and checks the size and
/// whole-content BLAKE3 recorded at backup.
fn finish_item(item: &Item, size: u64, hasher: &blake3::Hasher, out: &mut dyn Write) -> Result<()> {
    out.flush().map_err(Error::Output)?;
    if size != item.size || *hasher.finalize().as_bytes() != item.hash {
        return Err(Error::ContentMismatch {
            path: item.path_lossy(),
        });
    }
    Ok(())
}

/// A pack written and sealed, not yet indexed: id, size, trailer entries.
type SealedPack = (PackId, u64, Vec<Entry>);

/// Snapshots as found on disk.
#[derive(Debug, Default)]
pub struct SnapshotList {
    /// Readable snapshots, oldest first.
    pub ok: Vec<(SnapshotId, Snapshot)>,
    /// Objects that could not be read or decoded: name → why.
    pub damaged: Vec<(String, Error)>,
}

/// What `index rebuild` found.
#[derive(Debug, Default, Serialize)]
pub struct RebuildReport {
    pub packs: u64,
    pub blobs: u64,
    pub snapshots: u64,
    /// Packs whose trailer could not be read, now in `damaged/packs/`.
    pub damaged_packs: Vec<DamagedPack>,
    /// Blobs of damaged packs copied into new packs.
    pub salvaged_blobs: u64,
    /// Blobs of damaged packs that were cut off or failed their check.
    pub lost_blobs: u64,
    /// Damaged snapshot objects written back from the index's copies.
    pub restored_snapshots: u64,
}

/// A pack set aside by a rebuild.
#[derive(Debug, Serialize)]
pub struct DamagedPack {
    pub pack: String,
    pub why: String,
    pub salvaged_blobs: u64,
    pub lost_blobs: u64,
}

/// Totals of one write session.
#[derive(Clone, Debug, Default)]
pub struct WriteStats {
    pub new_chunks: u64,
    pub new_bytes: u64,
    pub stored_bytes: u64,
    pub packs: u64,
    pub duration: Duration,
}

struct Job {
    kind: BlobKind,
    chunks: Vec<Vec<u8>>,
    reply: Sender<Result<Vec<ChunkId>>>,
}

struct ReadJob {
    ids: Vec<ChunkId>,
    /// A buffer to fill (recycled: fresh 2 MiB buffers cost page faults).
    buf: Vec<u8>,
    reply: Sender<Result<Vec<u8>>>,
}

struct Blob {
    entry: Entry,
    body: Vec<u8>,
}

/// What a worker thread keeps between chunks.
struct WorkCtx {
    comp: Compressor,
    /// Set when the repository stores deltas: decodes bases.
    dec: Option<Decompressor>,
    scratch: Vec<u8>,
    base: Vec<u8>,
    /// The plaintext of `base`'s chain root.
    root: Vec<u8>,
    delta: Vec<u8>,
}

/// State shared by the threads of a write session.
struct Shared<'r> {
    repo: &'r Repository,
    /// Blobs claimed by this session and not yet in the index.
    pending: Mutex<HashSet<ChunkId>>,
    /// Packs holding chunks (and their delta bases) this session found
    /// already stored and did not write again.
    reused_packs: Mutex<HashSet<PackId>>,
    new_chunks: AtomicU64,
    new_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    packs: AtomicU64,
}

impl Shared<'_> {
    /// True when the caller is the one to store this blob: it is neither in
    /// the index nor claimed by another thread of this session.
    fn claim(&self, id: &ChunkId) -> Result<bool> {
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
    fn reuse(&self, e: ChunkEntry) -> Result<bool> {
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
    fn store(
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
            entry.sketch = delta::sketch(data);
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
        blobs
            .send(Blob { entry, body })
            .map_err(|_| Error::PipelineClosed)
    }

    /// Encodes `data` as a delta against the most similar stored chunk
    /// (or its chain's root) into `ctx.delta`; the base it used, if any.
    fn best_delta(
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
            .read_chain(&bid, &be, dec, &mut ctx.scratch, &mut ctx.base, root)
            .is_err()
            || !delta::usable_base(&ctx.base)
        {
            return Ok(None);
        }
        ctx.comp
            .encode_delta(data, &ctx.base, &mut ctx.delta)
            .map_err(Error::Input)?;
        let mut base = Base {
            id: bid,
            depth: be.depth() + 1,
        };
        // The chain's root, when nearly as good, keeps the chain short:
        // restore decodes 2 blobs instead of depth + 1.
        if be.depth() >= 1 && ctx.delta.len() > ROOT_SLACK && delta::usable_base(&ctx.root) {
            if let Some((rid, _)) = self.repo.chain_root(&be)? {
                ctx.comp
                    .encode_delta(data, &ctx.root, &mut ctx.scratch)
                    .map_err(Error::Input)?;
                if ctx.scratch.len() <= ctx.delta.len() * ROOT_FACTOR + ROOT_SLACK {
                    std::mem::swap(&mut ctx.delta, &mut ctx.scratch);
                    base = Base { id: rid, depth: 1 };
                }
            }
        }
        Ok(Some(base))
    }

    /// Worker: hashes chunks, skips known ones, compresses new ones.
    fn work(&self, jobs: Receiver<Job>, blobs: Sender<Blob>) {
        let mut ctx = match self.repo.work_ctx(self.repo.config.delta_max_depth > 0) {
            Ok(c) => c,
            Err(_) => return,
        };
        for job in jobs {
            let r = job
                .chunks
                .iter()
                .map(|c| {
                    let id = self.repo.keys.chunk_id(c);
                    self.store(id, job.kind, c, &mut ctx, &blobs)?;
                    Ok(id)
                })
                .collect();
            let _ = job.reply.send(r);
        }
    }

    /// Packer: appends blobs to the current pack, handing full packs to the sealer.
    fn pack(&self, blobs: Receiver<Blob>, seal: Sender<PackWriter>) -> Result<()> {
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

    /// Sealer: fsyncs and publishes packs, then indexes their blobs.
    fn seal(&self, packs: Receiver<PackWriter>) -> Result<()> {
        let backend = &self.repo.backend;
        let mut packs = packs.into_iter();
        let r = (|| {
            for w in packs.by_ref() {
                let sealed = w.seal(backend).map_err(io_at(backend.root()))?;
                self.repo
                    .index
                    .add_pack(sealed.id, sealed.size, &sealed.entries)?;
                self.packs.fetch_add(1, Ordering::Relaxed);
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

/// Builds a [`ChunkList`], spilling full blocks of ids into list blobs.
#[derive(Default)]
struct ListBuilder {
    current: Vec<ChunkId>,
    blocks: Vec<ChunkId>,
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
            mtime_ns: now_ns(),
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

impl Writer<'_> {
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
    fn store_now(&mut self, kind: BlobKind, data: &[u8]) -> Result<ChunkId> {
        let id = self.shared.repo.keys.chunk_id(data);
        self.shared
            .store(id, kind, data, &mut self.compressor, &self.blobs)?;
        Ok(id)
    }

    fn list_push(&mut self, list: &mut ListBuilder, id: ChunkId) -> Result<()> {
        if list.current.len() == LIST_MAX {
            let block = snapshot::encode_list(&list.current);
            let bid = self.store_now(BlobKind::Meta, &block)?;
            list.blocks.push(bid);
            list.current.clear();
        }
        list.current.push(id);
        Ok(())
    }

    fn list_finish(&mut self, mut list: ListBuilder) -> Result<ChunkList> {
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

    fn collect_one(&mut self, list: &mut ListBuilder) -> Result<()> {
        let r = self.window.pop_front().expect("window not empty");
        let ids = r.recv().map_err(|_| Error::PipelineClosed)??;
        for id in ids {
            self.list_push(list, id)?;
        }
        Ok(())
    }

    fn submit(
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
    fn flush_tree(&mut self, last: bool) -> Result<()> {
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

/// What a new snapshot is called and how it is protected.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    pub name: String,
    pub tier: snapshot::Tier,
    pub labels: std::collections::BTreeMap<String, String>,
    pub meta: std::collections::BTreeMap<String, String>,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Repository {
    /// Runs `f` to store items, then writes the snapshot naming them. Nothing
    /// is listed unless `f` and every pack write succeed.
    pub fn backup(
        &self,
        opts: &SnapshotOptions,
        progress: &dyn Progress,
        f: impl FnOnce(&mut Writer<'_>) -> Result<()>,
    ) -> Result<(SnapshotId, Snapshot)> {
        snapshot::validate_name(&opts.name)?;
        // Held from before the first lookup in the index until the
        // snapshot is written: a prune (exclusive) can neither delete a
        // chunk this backup counts as stored, nor miss the new snapshot.
        let lock = self.lock_shared(progress)?;
        let snaps = self.snapshots()?;
        self.check_name_free(&snaps, opts)?;
        let parent = snaps
            .iter()
            .rev()
            .find(|(_, s)| s.name == opts.name)
            .map(|(id, _)| *id);
        let time_ns = now_ns();
        let (
            FinishedTree {
                tree,
                mut summary,
                meta,
            },
            stats,
            reused,
        ) = self.write(progress, |w| {
            f(w)?;
            w.finish_tree()
        })?;
        self.verify_packs_present(&reused)?;
        summary.new_chunks = stats.new_chunks;
        summary.new_bytes = stats.new_bytes;
        summary.stored_bytes = stats.stored_bytes;
        summary.duration_ms = stats.duration.as_millis() as u64;
        let snap = Snapshot {
            name: opts.name.clone(),
            tier: opts.tier,
            labels: opts.labels.clone(),
            host: lock::hostname(),
            time_ns,
            parent,
            tree,
            summary,
            meta: opts.meta.clone().into_iter().chain(meta).collect(),
        };
        // The name is checked again, atomically with the write: two
        // backups of one name cannot both pass while neither is written.
        let guard = self.name_guard(&opts.name)?;
        self.refresh()?;
        self.check_name_free(&self.snapshots()?, opts)?;
        lock.check_held()?;
        let id = self.save_snapshot(&snap)?;
        drop(guard);
        drop(lock);
        Ok((id, snap))
    }

    /// An exclusive `flock` on a file of this name's own, held while a
    /// snapshot of that name is checked and written (released by the
    /// kernel if the process dies, so it is never stale).
    fn name_guard(&self, name: &str) -> Result<File> {
        let path = self.backend.root().join("locks").join(format!(
            "name-{}.flock",
            &blake3::hash(name.as_bytes()).to_hex()[..32]
        ));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
            return Err(io_at(&path)(io::Error::last_os_error()));
        }
        Ok(f)
    }

    /// Refuses a backup whose name is taken: by an immaculate baseline (or
    /// for an immaculate one, by any snapshot), by a retired baseline, or
    /// by snapshots of another tier (a name belongs to one tier).
    fn check_name_free(
        &self,
        snaps: &[(SnapshotId, Snapshot)],
        opts: &SnapshotOptions,
    ) -> Result<()> {
        if let Some((id, s)) = snaps.iter().find(|(_, s)| {
            s.name == opts.name && s.tier != opts.tier && s.tier != snapshot::Tier::Immaculate
        }) {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "the name '{}' belongs to the {} snapshots (newest {}): a name belongs to one tier, so `restore {}` always means one thing; choose another name",
                    opts.name,
                    s.tier,
                    id.short(),
                    opts.name
                ),
            }
            .into());
        }
        if let Some((id, s)) = snaps.iter().find(|(_, s)| {
            s.name == opts.name
                && (s.tier == snapshot::Tier::Immaculate || opts.tier == snapshot::Tier::Immaculate)
        }) {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "the name '{}' is taken by {} snapshot {}: an immaculate baseline is never updated; make a new one under a new name",
                    opts.name,
                    s.tier,
                    id.short()
                ),
            }
            .into());
        }
        if opts.tier == snapshot::Tier::Immaculate
            && self.audit_log()?.iter().any(|r| r.name == opts.name)
        {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "the name '{}' belonged to a retired baseline: an immaculate name is never reused; choose a new one",
                    opts.name
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Backs up one stream (stdin, a dump) as a one-item snapshot.
    pub fn backup_stream(
        &self,
        opts: &SnapshotOptions,
        item_name: &str,
        reader: impl Read,
        progress: &dyn Progress,
    ) -> Result<(SnapshotId, Snapshot)> {
        self.backup(opts, progress, |w| {
            let s = w.store_stream(reader)?;
            w.add_item(&s.into_item(item_name, 0o644))
        })
    }
}

/// MACs a key slot and writes it under the hash of its JSON; returns its id.
fn write_slot(backend: &Local, keys: &Keys, mut slot: KeySlot) -> Result<String> {
    slot.mac = keys.meta_mac(&slot.mac_input());
    let bytes = serde_json::to_vec_pretty(&slot).expect("slot serializes");
    let id = blake3::hash(&bytes).to_hex().to_string();
    backend
        .write_once(Kind::Key, &id, &bytes)
        .map_err(io_at(backend.root()))?;
    Ok(id)
}

/// Key slots that parse and match their names.
type Slots = Vec<(String, KeySlot)>;

/// The sound key slots, and the ids of those that are damaged (skipped
/// here, since another slot may still open the repository; `check` reports
/// them).
fn read_slots_and_damage(backend: &Local) -> Result<(Slots, Vec<String>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for id in backend.list(Kind::Key).map_err(io_at(backend.root()))? {
        let path = backend.path(Kind::Key, &id);
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        match serde_json::from_slice(&bytes) {
            Ok(slot) if blake3::hash(&bytes).to_hex().as_str() == id => out.push((id, slot)),
            _ => damaged.push(id),
        }
    }
    Ok((out, damaged))
}

fn read_slots(backend: &Local) -> Result<Slots> {
    Ok(read_slots_and_damage(backend)?.0)
}

/// Tries the passphrase on every key slot.
fn unlock(backend: &Local, pass: &[u8]) -> Result<(String, zeroize::Zeroizing<[u8; 32]>)> {
    let (slots, damaged) = read_slots_and_damage(backend)?;
    for (id, slot) in &slots {
        match slot.open(pass) {
            Ok(master) => return Ok((id.clone(), master)),
            Err(crate::crypto::Error::WrongPassphrase) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if !damaged.is_empty() {
        return Err(Error::KeySlot(format!(
            "no key slot opens with this passphrase, and key slot(s) {} are damaged (content does not match the name): restore keys/ from a copy, or use another passphrase",
            damaged.iter().map(|d| &d[..8]).collect::<Vec<_>>().join(", ")
        )));
    }
    if slots.is_empty() {
        return Err(Error::KeySlot("the repository has no key slots".into()));
    }
    Err(crate::crypto::Error::WrongPassphrase.into())
}
