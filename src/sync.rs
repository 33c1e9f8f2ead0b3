//! Off-site copies: `relic sync --to DEST` copies what DEST lacks, packs
//! first, then snapshot objects, so DEST is a consistent repository at every
//! moment. DEST is a directory or S3-compatible object storage
//! (`s3://bucket/prefix`), laid out exactly like a local repository, so a
//! synced copy is opened, checked and restored from like any other.
//!
//! Objects are content-addressed and written once: a copy never replaces an
//! object at the destination (a directory: temp file, fsync, no-replace
//! link; S3: `If-None-Match: *`, or a HEAD before a multipart upload), and
//! sync never deletes anything there, so immaculate and sacred snapshots
//! stay wherever they were sent.

use crate::backend::{Kind, Local};
use crate::id::{ChunkId, PackId};
use crate::objectlock;
use crate::progress::{Progress, Unit};
use crate::repo::Repository;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Objects bigger than this go up in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{dest}: {what}")]
    Dest { dest: String, what: String },
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
    #[error("{dest} holds another repository (id {theirs}, this one is {ours}); choose another destination")]
    Foreign {
        dest: String,
        theirs: String,
        ours: String,
    },
    #[error("verification failed at {dest}: {what}")]
    Verify { dest: String, what: String },
    #[error("object lock at {dest}: {why}")]
    ObjectLock {
        dest: String,
        why: objectlock::Error,
    },
}

impl Error {
    /// Whether running the same sync again can finish it: not when DEST
    /// is another repository or cannot lock objects.
    pub fn resumable(&self) -> bool {
        !matches!(
            self,
            Error::Foreign { .. }
                | Error::ObjectLock {
                    why: objectlock::Error::NotEnabled { .. }
                        | objectlock::Error::NotS3
                        | objectlock::Error::Unsupported(_),
                    ..
                }
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where objects go: a directory or an S3 bucket prefix.
pub trait Dest: Send + Sync {
    fn describe(&self) -> String;
    /// Names of the objects of a kind there.
    fn list(&self, kind: Kind) -> Result<HashSet<String>>;
    /// Copies a local file; false when the object was already there.
    fn put_file(&self, kind: Kind, name: &str, src: &Path, size: u64) -> Result<bool>;
    /// Plain BLAKE3 and size of an object there.
    fn hash(&self, kind: Kind, name: &str) -> Result<([u8; 32], u64)>;
    /// A small object's bytes.
    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>>;
    /// Streams an object into a local file (created or truncated); returns
    /// its size.
    fn get_file(&self, kind: Kind, name: &str, dst: &Path) -> Result<u64>;
    /// Writes a small object unless one of that name exists; false then.
    fn put_bytes(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool>;
    /// Deletes an object; gone already is fine.
    fn remove(&self, kind: Kind, name: &str) -> Result<()>;
    /// Fails unless objects here can be put under S3 Object Lock.
    fn object_lock_check(&self) -> Result<()> {
        Err(Error::ObjectLock {
            dest: self.describe(),
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

/// Opens `--to`: `s3://bucket/prefix` or a directory.
pub fn open_dest(to: &str) -> Result<Box<dyn Dest>> {
    if let Some(rest) = to.strip_prefix("s3://") {
        Ok(Box::new(S3Dest::new(rest)?))
    } else {
        Ok(Box::new(DirDest::new(PathBuf::from(to))))
    }
}

fn object_path(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Config => "config".to_string(),
        Kind::Pack => format!("packs/{}/{name}", &name[..2]),
        Kind::Snapshot => format!("snapshots/{name}"),
        Kind::Key => format!("keys/{name}"),
        Kind::Audit => format!("audit/{name}"),
        Kind::Lock => format!("locks/{name}"),
    }
}

/// A local directory.
pub struct DirDest {
    backend: Local,
}

impl DirDest {
    /// A directory; temp files a killed sync left there are removed.
    pub fn new(root: PathBuf) -> Self {
        let backend = Local::new(root);
        for t in backend.stale_temp_files().unwrap_or_default() {
            let _ = std::fs::remove_file(t);
        }
        DirDest { backend }
    }

    fn err(&self, e: io::Error) -> Error {
        Error::Dest {
            dest: self.describe(),
            what: e.to_string(),
        }
    }
}

impl Dest for DirDest {
    fn describe(&self) -> String {
        self.backend.root().display().to_string()
    }

    fn list(&self, kind: Kind) -> Result<HashSet<String>> {
        if kind == Kind::Config {
            return Ok(if self.backend.path(Kind::Config, "config").exists() {
                ["config".to_string()].into()
            } else {
                HashSet::new()
            });
        }
        match self.backend.list(kind) {
            Ok(v) => Ok(v.into_iter().collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn put_file(&self, kind: Kind, name: &str, src: &Path, _size: u64) -> Result<bool> {
        let r = (|| {
            if !self.backend.root().join("tmp").exists() {
                self.backend.create_layout()?;
            }
            let dst = self.backend.path(kind, name);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let (tmp, mut f) = self.backend.temp_file()?;
            let copied = (|| {
                let mut s = std::fs::File::open(src)?;
                io::copy(&mut s, &mut f)?;
                f.sync_all()?;
                drop(f);
                self.backend.publish(&tmp, kind, name)
            })();
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            copied
        })();
        r.map_err(|e| self.err(e))
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        std::fs::read(self.backend.path(kind, name)).map_err(|e| self.err(e))
    }

    fn get_file(&self, kind: Kind, name: &str, dst: &Path) -> Result<u64> {
        std::fs::copy(self.backend.path(kind, name), dst).map_err(|e| self.err(e))
    }

    fn put_bytes(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool> {
        if !self.backend.root().join("tmp").exists() {
            self.backend.create_layout().map_err(|e| self.err(e))?;
        }
        self.backend
            .write_once(kind, name, bytes)
            .map_err(|e| self.err(e))
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        match self.backend.remove(kind, name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.err(e)),
            _ => Ok(()),
        }
    }

    fn hash(&self, kind: Kind, name: &str) -> Result<([u8; 32], u64)> {
        let path = self.backend.path(kind, name);
        hash_reader(std::fs::File::open(&path).map_err(|e| self.err(e))?).map_err(|e| self.err(e))
    }
}

fn hash_reader(mut r: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut h = blake3::Hasher::new();
    let n = io::copy(&mut r, &mut h)?;
    Ok((*h.finalize().as_bytes(), n))
}

/// An S3-compatible bucket (AWS, MinIO, Ceph, Garage, R2, B2…), configured
/// from the variables the AWS tools read: AWS_ENDPOINT_URL, AWS_REGION,
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Path-style requests; plain
/// http allowed when the endpoint says so.
pub struct S3Dest {
    store: AmazonS3,
    /// Signed requests object_store has no call for (Object Lock).
    lock: objectlock::Client,
    bucket: String,
    prefix: String,
    rt: tokio::runtime::Runtime,
}

impl S3Dest {
    pub fn new(bucket_and_prefix: &str) -> Result<Self> {
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        let describe = format!("s3://{bucket_and_prefix}");
        let bad = |what: String| Error::Dest {
            dest: describe.clone(),
            what,
        };
        if bucket.is_empty() {
            return Err(bad("no bucket: write s3://BUCKET/PREFIX".into()));
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let client_options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(600))
            .with_allow_http(
                endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..Default::default()
            })
            .with_client_options(client_options.clone());
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        let region = b
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let store = b.build().map_err(|e| bad(e.to_string()))?;
        let lock = objectlock::Client::new(
            &client_options,
            store.credentials().clone(),
            region,
            endpoint,
            bucket.to_string(),
        )
        .map_err(|e| bad(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(S3Dest {
            store,
            lock,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            rt,
        })
    }

    fn path(&self, kind: Kind, name: &str) -> ObjectPath {
        let p = object_path(kind, name);
        if self.prefix.is_empty() {
            ObjectPath::from(p)
        } else {
            ObjectPath::from(format!("{}/{p}", self.prefix))
        }
    }

    fn err(&self, e: object_store::Error) -> Error {
        let s = e.to_string();
        let what = match &e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                format!("access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({s})")
            }
            // A refused list request comes back as a generic error: the S3
            // error code in the body says what it was.
            _ if [
                "<Code>SignatureDoesNotMatch<",
                "<Code>InvalidAccessKeyId<",
                "<Code>AccessDenied<",
            ]
            .iter()
            .any(|c| s.contains(c)) =>
            {
                format!("access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({s})")
            }
            _ if s.contains("error sending request") => format!(
                "cannot reach {}: {s}",
                std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS S3".into())
            ),
            _ => s,
        };
        Error::Dest {
            dest: self.describe(),
            what,
        }
    }
}

impl Dest for S3Dest {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn list(&self, kind: Kind) -> Result<HashSet<String>> {
        let sub = match kind {
            Kind::Config => {
                let head = self
                    .rt
                    .block_on(self.store.head(&self.path(Kind::Config, "config")));
                return match head {
                    Ok(_) => Ok(["config".to_string()].into()),
                    Err(object_store::Error::NotFound { .. }) => Ok(HashSet::new()),
                    Err(e) => Err(self.err(e)),
                };
            }
            Kind::Pack => "packs",
            Kind::Snapshot => "snapshots",
            Kind::Key => "keys",
            Kind::Audit => "audit",
            Kind::Lock => "locks",
        };
        let dir = if self.prefix.is_empty() {
            ObjectPath::from(sub)
        } else {
            ObjectPath::from(format!("{}/{sub}", self.prefix))
        };
        self.rt.block_on(async {
            let mut out = HashSet::new();
            let mut s = self.store.list(Some(&dir));
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.err(e))?;
                if let Some(name) = m.location.filename() {
                    out.insert(name.to_string());
                }
            }
            Ok(out)
        })
    }

    fn put_file(&self, kind: Kind, name: &str, src: &Path, size: u64) -> Result<bool> {
        let path = self.path(kind, name);
        let io_err = |e: io::Error| Error::Io(format!("{}: {e}", src.display()));
        self.rt.block_on(async {
            if size > MULTIPART_ABOVE {
                // Multipart uploads cannot be conditional: look first. The
                // object is content-addressed, so a racing writer would put
                // the same bytes.
                match self.store.head(&path).await {
                    Ok(_) => return Ok(false),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(e)),
                }
                let mut up = self
                    .store
                    .put_multipart(&path)
                    .await
                    .map_err(|e| self.err(e))?;
                let r = async {
                    let mut f = std::fs::File::open(src).map_err(io_err)?;
                    let mut parts = Vec::new();
                    loop {
                        let mut buf = vec![0u8; PART_SIZE];
                        let n = crate::files::read_full(&mut f, &mut buf).map_err(io_err)?;
                        if n == 0 {
                            break;
                        }
                        buf.truncate(n);
                        parts.push(up.put_part(PutPayload::from(buf)));
                        if parts.len() >= 4 {
                            for p in parts.drain(..) {
                                p.await.map_err(|e| self.err(e))?;
                            }
                        }
                    }
                    for p in parts {
                        p.await.map_err(|e| self.err(e))?;
                    }
                    up.complete().await.map_err(|e| self.err(e))?;
                    Ok(true)
                }
                .await;
                if r.is_err() {
                    let _ = up.abort().await;
                }
                r
            } else {
                let bytes = std::fs::read(src).map_err(io_err)?;
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match self
                    .store
                    .put_opts(&path, PutPayload::from(bytes), opts)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
        })
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        self.rt.block_on(async {
            let r = self.store.get(&path).await.map_err(|e| self.err(e))?;
            Ok(r.bytes().await.map_err(|e| self.err(e))?.to_vec())
        })
    }

    fn get_file(&self, kind: Kind, name: &str, dst: &Path) -> Result<u64> {
        let path = self.path(kind, name);
        let io_err = |e: io::Error| Error::Io(format!("{}: {e}", dst.display()));
        self.rt.block_on(async {
            use std::io::Write;
            let r = self.store.get(&path).await.map_err(|e| self.err(e))?;
            let file = std::fs::File::create(dst).map_err(io_err)?;
            let mut f = io::BufWriter::with_capacity(1 << 20, file);
            let mut s = r.into_stream();
            let mut n = 0u64;
            while let Some(b) = s.next().await {
                let b = b.map_err(|e| self.err(e))?;
                n += b.len() as u64;
                f.write_all(&b).map_err(io_err)?;
            }
            f.into_inner()
                .map_err(|e| io_err(e.into_error()))?
                .sync_all()
                .map_err(io_err)?;
            Ok(n)
        })
    }

    fn put_bytes(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path(kind, name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.rt.block_on(async {
            match self
                .store
                .put_opts(&path, PutPayload::from(bytes.to_vec()), opts)
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        self.rt.block_on(async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn object_lock_check(&self) -> Result<()> {
        self.rt
            .block_on(self.lock.check_enabled())
            .map_err(|why| Error::ObjectLock {
                dest: self.describe(),
                why,
            })
    }

    fn retain(
        &self,
        kind: Kind,
        name: &str,
        mode: objectlock::Mode,
        min: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> Result<bool> {
        let key = self.path(kind, name);
        self.rt
            .block_on(async {
                if let Some(now) = self.lock.retention(key.as_ref()).await? {
                    if now >= min {
                        return Ok(false);
                    }
                }
                self.lock.retain(key.as_ref(), mode, until).await?;
                Ok(true)
            })
            .map_err(|why| Error::ObjectLock {
                dest: self.describe(),
                why,
            })
    }

    fn hash(&self, kind: Kind, name: &str) -> Result<([u8; 32], u64)> {
        let path = self.path(kind, name);
        self.rt.block_on(async {
            let r = self.store.get(&path).await.map_err(|e| self.err(e))?;
            let mut s = r.into_stream();
            let mut h = blake3::Hasher::new();
            let mut n = 0u64;
            while let Some(b) = s.next().await {
                let b = b.map_err(|e| self.err(e))?;
                n += b.len() as u64;
                h.update(&b);
            }
            Ok((*h.finalize().as_bytes(), n))
        })
    }
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dest: String,
    pub created: bool,
    pub packs: u64,
    pub pack_bytes: u64,
    pub snapshots: u64,
    pub other: u64,
    pub verified: u64,
    pub skipped_existing: u64,
    /// Objects of immaculate and sacred snapshots under `--object-lock`
    /// (snapshot objects and every pack holding their chunks or delta
    /// bases).
    pub lock_objects: u64,
    /// Of those, objects whose retention this sync set or extended.
    pub locked: u64,
    /// The retain-until date set (RFC 3339).
    pub locked_until: Option<String>,
    pub seconds: f64,
}

/// `--object-lock DAYS`: keep the objects of immaculate and sacred
/// snapshots at DEST under S3 Object Lock.
#[derive(Clone, Copy, Debug)]
pub struct ObjectLock {
    pub days: u32,
    pub mode: objectlock::Mode,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub dry_run: bool,
    pub verify: bool,
    pub jobs: usize,
    pub object_lock: Option<ObjectLock>,
}

/// Copies what `dest` lacks: the config and key slots (when DEST holds no
/// repository yet), then packs (in parallel), then snapshot objects and
/// audit records. Never deletes or replaces anything at `dest`.
pub fn sync(
    repo: &Repository,
    dest: &dyn Dest,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    // Before anything travels: can DEST lock at all, and what must it lock?
    let protect = match opts.object_lock {
        Some(lock) => {
            dest.object_lock_check()?;
            Some((lock, protected_objects(repo)?))
        }
        None => None,
    };
    let mut report = sync_from(
        repo.backend(),
        repo.index(),
        &repo.config().id,
        dest,
        opts,
        progress,
    )?;
    let Some((lock, objects)) = protect else {
        return Ok(report);
    };
    report.lock_objects = objects.len() as u64;
    let (min, until) = retention_window(jiff::Timestamp::now(), lock.days);
    report.locked_until = Some(until.to_string());
    if opts.dry_run {
        return Ok(report);
    }
    let started = std::time::Instant::now();
    progress.start("locking", Some(objects.len() as u64), Unit::Items);
    let changed = AtomicU64::new(0);
    let locked = parallel(&objects, opts.jobs, |(kind, name)| {
        if dest.retain(*kind, name, lock.mode, min, until)? {
            changed.fetch_add(1, Ordering::Relaxed);
        }
        progress.inc(1);
        Ok(())
    });
    progress.finish();
    locked?;
    report.locked = changed.into_inner();
    report.seconds += started.elapsed().as_secs_f64();
    Ok(report)
}

/// The retention `--object-lock DAYS` asks for at `now`: objects retained
/// until at least `now + DAYS` are left alone; others get the end of that
/// UTC day, so syncs later the same day send no further requests.
pub fn retention_window(now: jiff::Timestamp, days: u32) -> (jiff::Timestamp, jiff::Timestamp) {
    let min = now + jiff::SignedDuration::from_hours(24 * i64::from(days));
    let secs = min.as_second();
    let until = jiff::Timestamp::from_second(secs - secs.rem_euclid(86_400) + 86_400)
        .expect("a date within jiff's range");
    (min, until)
}

/// Every object an immaculate or sacred snapshot needs: its snapshot
/// object, the packs holding its tree, its lists, its chunks and,
/// transitively, their delta bases, and the config and key slots without
/// which none of it can be read. Packs first.
pub fn protected_objects(repo: &Repository) -> Result<Vec<(Kind, String)>> {
    use crate::snapshot::{ChunkList, Tier};
    let index = repo.index();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut packs: HashSet<PackId> = HashSet::new();
    let mut snaps = Vec::new();
    let mut visit = |id: ChunkId| -> Result<()> {
        let mut next = Some(id);
        while let Some(id) = next.take() {
            if !seen.insert(id) {
                break;
            }
            let e = index
                .get(&id)
                .map_err(|e| Error::Repo(e.into()))?
                .ok_or_else(|| Error::Repo(crate::repo::Error::MissingChunk(id.to_hex())))?;
            packs.insert(e.pack);
            next = e.base.map(|b| b.id);
        }
        Ok(())
    };
    let walk = |list: &ChunkList, visit: &mut dyn FnMut(ChunkId) -> Result<()>| {
        if let ChunkList::Indirect(blocks) = list {
            for b in blocks {
                visit(*b)?;
            }
        }
        for id in repo.chunk_ids(list) {
            visit(id?)?;
        }
        Ok::<(), Error>(())
    };
    for (id, snap) in repo.snapshots()? {
        if !matches!(snap.tier, Tier::Immaculate | Tier::Sacred) {
            continue;
        }
        walk(&snap.tree, &mut visit)?;
        for item in repo.items(&snap) {
            walk(&item?.content, &mut visit)?;
        }
        snaps.push((Kind::Snapshot, id.to_hex()));
    }
    if snaps.is_empty() {
        return Ok(Vec::new());
    }
    // Without the config and a key slot the packs cannot be read.
    snaps.push((Kind::Config, "config".into()));
    for k in repo
        .backend()
        .list(Kind::Key)
        .map_err(|e| Error::Io(e.to_string()))?
    {
        snaps.push((Kind::Key, k));
    }
    let mut packs: Vec<PackId> = packs.into_iter().collect();
    packs.sort_unstable();
    let mut out: Vec<(Kind, String)> = packs.iter().map(|p| (Kind::Pack, p.to_hex())).collect();
    out.extend(snaps);
    Ok(out)
}

/// [`sync`] from a repository's directory and index, without its key (the
/// objects travel as they are).
pub fn sync_from(
    src: &Local,
    index: &crate::index::Index,
    id: &str,
    dest: &dyn Dest,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let started = std::time::Instant::now();
    let mut report = Report {
        dest: dest.describe(),
        ..Default::default()
    };
    let io_src = |e: io::Error| Error::Io(format!("{}: {e}", src.root().display()));
    let ours = id.to_string();

    // The destination is empty, or this very repository.
    if dest.list(Kind::Config)?.is_empty() {
        report.created = true;
    } else {
        let theirs = dest_config_id(dest)?;
        if theirs != ours {
            return Err(Error::Foreign {
                dest: dest.describe(),
                theirs,
                ours,
            });
        }
    }

    let have_packs = dest.list(Kind::Pack)?;
    let have_snaps = dest.list(Kind::Snapshot)?;
    let mut todo_packs = Vec::new();
    for name in src.list(Kind::Pack).map_err(io_src)? {
        if have_packs.contains(&name) {
            report.skipped_existing += 1;
            continue;
        }
        let path = src.path(Kind::Pack, &name);
        let size = std::fs::metadata(&path).map_err(io_src)?.len();
        todo_packs.push((name, path, size));
    }
    let todo_snaps: Vec<String> = src
        .list(Kind::Snapshot)
        .map_err(io_src)?
        .into_iter()
        .filter(|n| !have_snaps.contains(n))
        .collect();
    report.packs = todo_packs.len() as u64;
    report.pack_bytes = todo_packs.iter().map(|p| p.2).sum();
    report.snapshots = todo_snaps.len() as u64;
    if opts.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    // 1. Config and key slots first: without them nothing else is readable,
    // and with them alone DEST is a valid, empty repository... but only
    // once the packs it names exist, which is why snapshots come last.
    let mut singles: Vec<(Kind, String)> = Vec::new();
    if report.created {
        for k in src.list(Kind::Key).map_err(io_src)? {
            singles.push((Kind::Key, k));
        }
    } else {
        let have = dest.list(Kind::Key)?;
        for k in src.list(Kind::Key).map_err(io_src)? {
            if !have.contains(&k) {
                singles.push((Kind::Key, k));
            }
        }
    }
    for (kind, name) in &singles {
        let path = src.path(*kind, name);
        let size = std::fs::metadata(&path).map_err(io_src)?.len();
        if dest.put_file(*kind, name, &path, size)? {
            report.other += 1;
        }
    }
    if report.created {
        let path = src.path(Kind::Config, "config");
        let size = std::fs::metadata(&path).map_err(io_src)?.len();
        dest.put_file(Kind::Config, "config", &path, size)?;
        report.other += 1;
    }

    // 2. Packs, in parallel, in waves: a pack holding delta bases is sent
    // (completely) before any pack with deltas against them.
    let waves = pack_waves(index, &todo_packs)?;
    progress.start("sending packs", Some(report.pack_bytes), Unit::Bytes);
    let verified = AtomicU64::new(0);
    let sent = waves.into_iter().try_for_each(|wave| {
        let wave: Vec<&(String, PathBuf, u64)> = wave.iter().map(|&i| &todo_packs[i]).collect();
        parallel(&wave, opts.jobs, |(name, path, size)| {
            if send(dest, Kind::Pack, name, path, *size, opts.verify)? {
                verified.fetch_add(1, Ordering::Relaxed);
            }
            progress.inc(*size);
            Ok(())
        })
    });
    progress.finish();
    sent?;

    // 3. Snapshots and audit records: only now do they name packs that are
    // all there.
    for name in &todo_snaps {
        let path = src.path(Kind::Snapshot, name);
        let size = std::fs::metadata(&path).map_err(io_src)?.len();
        if send(dest, Kind::Snapshot, name, &path, size, opts.verify)? {
            verified.fetch_add(1, Ordering::Relaxed);
        }
    }
    let have_audit = dest.list(Kind::Audit)?;
    if let Ok(audit) = src.list(Kind::Audit) {
        for name in audit.into_iter().filter(|n| !have_audit.contains(n)) {
            let path = src.path(Kind::Audit, &name);
            let size = std::fs::metadata(&path).map_err(io_src)?.len();
            dest.put_file(Kind::Audit, &name, &path, size)?;
            report.other += 1;
        }
    }
    report.verified = verified.into_inner();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs `f` on every item, `jobs` threads at a time; at the first failure
/// no further item is started, and that failure is returned.
pub(crate) fn parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 32).min(items.len()) {
            s.spawn(|| {
                while failure.lock().expect("failure lock").is_none() {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    if let Err(e) = f(item) {
                        failure.lock().expect("failure lock").get_or_insert(e);
                    }
                }
            });
        }
    });
    failure
        .into_inner()
        .expect("failure lock")
        .map_or(Ok(()), Err)
}

/// Orders the packs to send (indexes into `todo`) into waves: wave 0 holds
/// packs none of whose deltas has its base in another pack still to send;
/// wave n+1 packs whose bases are in waves up to n. Packs that (after
/// repacking) depend on each other go in one wave.
fn pack_waves(
    index: &crate::index::Index,
    todo: &[(String, PathBuf, u64)],
) -> Result<Vec<Vec<usize>>> {
    let at: HashMap<PackId, usize> = todo
        .iter()
        .enumerate()
        .filter_map(|(i, (name, _, _))| PackId::from_hex(name).map(|p| (p, i)))
        .collect();
    // Edges pack → packs holding its deltas' bases, both still to send.
    let mut deps: Vec<HashSet<usize>> = vec![HashSet::new(); todo.len()];
    let mut bases: Vec<(usize, ChunkId)> = Vec::new();
    index
        .for_each_chunk(|_, e| -> std::result::Result<(), crate::index::Error> {
            if let (Some(&i), Some(b)) = (at.get(&e.pack), e.base) {
                bases.push((i, b.id));
            }
            Ok(())
        })
        .map_err(|e| Error::Io(e.to_string()))?;
    for (i, base) in bases {
        let found = index.get(&base).map_err(|e| Error::Io(e.to_string()))?;
        if let Some(j) = found.and_then(|b| at.get(&b.pack)) {
            if *j != i {
                deps[i].insert(*j);
            }
        }
    }
    // Longest-path levels; a cycle stops growing at the bound and its
    // packs simply travel in one wave.
    let mut level = vec![0usize; todo.len()];
    for _ in 0..todo.len().min(256) {
        let mut changed = false;
        for i in 0..todo.len() {
            let want = deps[i].iter().map(|&j| level[j] + 1).max().unwrap_or(0);
            if want > level[i] && want <= 256 {
                level[i] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut waves: Vec<Vec<usize>> = vec![Vec::new(); level.iter().max().map_or(0, |m| m + 1)];
    for (i, l) in level.into_iter().enumerate() {
        waves[l].push(i);
    }
    Ok(waves)
}

/// Sends one object; with `verify`, re-reads it at the destination and
/// compares its BLAKE3 with the source's. Returns whether it was verified.
fn send(
    dest: &dyn Dest,
    kind: Kind,
    name: &str,
    path: &Path,
    size: u64,
    verify: bool,
) -> Result<bool> {
    dest.put_file(kind, name, path, size)?;
    if !verify {
        return Ok(false);
    }
    let (want, want_len) = hash_reader(
        std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?,
    )
    .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let (got, got_len) = dest.hash(kind, name)?;
    if got != want || got_len != want_len {
        return Err(Error::Verify {
            dest: dest.describe(),
            what: format!(
                "{} differs from the source ({got_len} bytes there, {want_len} here)",
                object_path(kind, name)
            ),
        });
    }
    Ok(true)
}

/// The repository id in DEST's config.
fn dest_config_id(dest: &dyn Dest) -> Result<String> {
    let bytes = dest.read(Kind::Config, "config")?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Dest {
        dest: dest.describe(),
        what: format!("its config does not parse: {e}"),
    })?;
    Ok(v.get("id")
        .and_then(|i| i.as_str())
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_ends_at_the_utc_midnight_after_the_period() {
        let now: jiff::Timestamp = "2026-11-22T10:15:00Z".parse().unwrap();
        let (min, until) = retention_window(now, 30);
        assert_eq!(min.to_string(), "2026-12-22T10:15:00Z");
        assert_eq!(until.to_string(), "2026-12-23T00:00:00Z");
        // Later the same day the same date comes out: nothing to extend.
        let later: jiff::Timestamp = "2026-11-22T23:59:59Z".parse().unwrap();
        let (min2, until2) = retention_window(later, 30);
        assert_eq!(until2, until);
        assert!(until >= min2);
        // The next day it moves on by one day.
        let next: jiff::Timestamp = "2026-11-23T00:00:01Z".parse().unwrap();
        let (min3, until3) = retention_window(next, 30);
        assert!(until < min3);
        assert_eq!(until3.to_string(), "2026-12-24T00:00:00Z");
    }
}
