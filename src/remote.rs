//! Repositories that live on S3-compatible object storage
//! (`-r s3://bucket/prefix`).
//!
//! relic works on a local mirror of the repository, a complete repository
//! in the usual layout under the cache directory
//! (`$XDG_CACHE_HOME/relic/remote/<hash of the URL>`):
//!
//! - [`Remote::pull`] brings the mirror up to date before a command: what
//!   the bucket has and the mirror lacks is fetched (packs in parallel),
//!   what the bucket no longer has (forgotten snapshots, pruned packs,
//!   removed key slots) is dropped from the mirror;
//! - the command runs on the mirror as on any local repository (its index
//!   and snapshot cache stay local, so listing and restoring cost no
//!   requests beyond the pull);
//! - [`Remote::push`] then sends what the command wrote, packs first and
//!   snapshots last (`sync`'s order, so the bucket is consistent at every
//!   moment), and deletes at the bucket what the command deleted here.
//!
//! The mirror holds every pack, so the local disk needs the repository's
//! size (a restore after losing the machine needs them all anyway).
//! Locks live in the bucket (`locks/`): a command that writes takes a
//! shared lock, prune an exclusive one; a lock older than
//! [`STALE_AFTER`] is stale and ignored.

use crate::lock::LockInfo;
use crate::progress::{Progress, Unit};
use crate::store::{self, Kind, Local, Store, S3};
use crate::sync::{self, Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A bucket lock older than this is left by a process that died.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Object kinds mirrored, in the order they are pulled.
const MIRRORED: [Kind; 4] = [Kind::Key, Kind::Snapshot, Kind::Audit, Kind::Pack];

/// What the mirror held after the last pull (or init): the base against
/// which a push finds what the command added and removed.
#[derive(Default)]
struct Listing {
    objects: Vec<(Kind, HashSet<String>)>,
}

pub struct Remote {
    url: String,
    dest: S3,
    mirror: Local,
    before: Mutex<Listing>,
}

/// Where the mirror of `url` lives.
pub fn mirror_dir(url: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let tag = blake3::hash(url.trim_end_matches('/').as_bytes()).to_hex();
    base.join("relic").join("remote").join(&tag[..16])
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| {
        store::Error::Io {
            store: path.display().to_string(),
            source,
        }
        .into()
    }
}

impl Remote {
    /// `url` is `s3://bucket/prefix`; endpoint and credentials come from the
    /// environment, as for `sync`.
    pub fn open(url: &str) -> Result<Remote> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::Dest {
            dest: url.to_string(),
            what: "not an s3:// address".into(),
        })?;
        Ok(Remote {
            url: url.to_string(),
            dest: S3::new(rest)?,
            mirror: Local::new(mirror_dir(url)),
            before: Mutex::new(Listing::default()),
        })
    }

    /// The local mirror's directory: the repository commands work on.
    pub fn mirror(&self) -> &Path {
        self.mirror.root()
    }

    fn exists(&self) -> Result<bool> {
        Ok(!self.dest.list(Kind::Config)?.is_empty())
    }

    fn wipe_mirror(&self) -> Result<()> {
        self.mirror.destroy().map_err(io(self.mirror.root()))
    }

    /// Before `init`: the bucket must hold no repository; the mirror starts
    /// empty.
    pub fn prepare_init(&self) -> Result<()> {
        if self.exists()? {
            return Err(Error::Dest {
                dest: self.url.clone(),
                what: "already holds a relic repository".into(),
            });
        }
        self.wipe_mirror()?;
        *self.before.lock().expect("listing lock") = Listing::default();
        Ok(())
    }

    fn local_names(&self, kind: Kind) -> Result<HashSet<String>> {
        match self.mirror.list(kind) {
            Ok(v) => Ok(v.into_iter().collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(io(self.mirror.root())(e)),
        }
    }

    fn fetch(&self, kind: Kind, name: &str) -> Result<u64> {
        let mut tmp = self.mirror.temp_object().map_err(io(self.mirror.root()))?;
        let n = self.dest.get_into(kind, name, &mut tmp)?;
        tmp.publish(&self.mirror, kind, name)
            .map_err(io(self.mirror.root()))?;
        Ok(n)
    }

    /// Brings the mirror up to date with the bucket.
    pub fn pull(&self, jobs: usize, progress: &dyn Progress) -> Result<()> {
        if !self.exists()? {
            return Err(Error::Dest {
                dest: self.url.clone(),
                what: format!(
                    "no relic repository there (create one with relic -r {} init)",
                    self.url
                ),
            });
        }
        // The config names the repository: a mirror of another one (the
        // bucket was emptied and re-initialised) starts over.
        let theirs = self.dest.read(Kind::Config, "config")?;
        match self.mirror.read(Kind::Config, "config") {
            Ok(ours) if ours == theirs => {}
            Ok(_) => self.wipe_mirror()?,
            Err(_) => {}
        }
        self.mirror
            .create_layout()
            .map_err(io(self.mirror.root()))?;
        self.mirror.remove_stale_temp_files();
        if !self.mirror.exists(Kind::Config, "config") {
            self.fetch(Kind::Config, "config")?;
        }
        let mut listing = Listing::default();
        for kind in MIRRORED {
            let there = self.dest.list(kind)?;
            let here = self.local_names(kind)?;
            for gone in here.difference(&there) {
                self.mirror
                    .remove(kind, gone)
                    .map_err(io(self.mirror.root()))?;
            }
            let mut missing: Vec<&String> = there.difference(&here).collect();
            missing.sort();
            if kind == Kind::Pack {
                self.fetch_parallel(&missing, jobs, progress)?;
            } else {
                for name in missing {
                    self.fetch(kind, name)?;
                }
            }
            listing.objects.push((kind, there));
        }
        *self.before.lock().expect("listing lock") = listing;
        Ok(())
    }

    fn fetch_parallel(
        &self,
        names: &[&String],
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        progress.start("fetching packs", Some(names.len() as u64), Unit::Items);
        let fetched = sync::parallel(names, jobs, |name| {
            self.fetch(Kind::Pack, name)?;
            progress.inc(1);
            Ok(())
        });
        progress.finish();
        fetched
    }

    /// Sends what the command added to the mirror (packs, then snapshots,
    /// as `sync` does) and deletes at the bucket what it removed
    /// (snapshots and key slots first, packs last).
    pub fn push(&self, jobs: usize, progress: &dyn Progress) -> Result<Option<sync::Report>> {
        if !self.mirror.exists(Kind::Config, "config") {
            return Ok(None);
        }
        let config = crate::repo::Repository::read_config(self.mirror.root())?;
        let index = crate::index::Index::open(&self.mirror.root().join("index"))?;
        let opts = sync::Options {
            jobs,
            ..Default::default()
        };
        let report = sync::sync_from(
            &self.mirror,
            &index,
            &config.id,
            &self.dest,
            &opts,
            progress,
        )?;
        drop(index);
        let mut after = Listing::default();
        for kind in [Kind::Snapshot, Kind::Key, Kind::Audit, Kind::Pack] {
            let here = self.local_names(kind)?;
            let before = self
                .before
                .lock()
                .expect("listing lock")
                .objects
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for gone in before.difference(&here) {
                self.dest.remove(kind, gone)?;
            }
            after.objects.push((kind, here));
        }
        *self.before.lock().expect("listing lock") = after;
        Ok(Some(report))
    }

    /// Takes a lock in the bucket (shared for commands that write,
    /// exclusive for prune); released on drop.
    pub fn lock(&self, exclusive: bool) -> Result<RemoteLock<'_>> {
        let me = LockInfo::new(exclusive);
        let name = format!("{}-{:016x}", me.pid, rand::random::<u64>());
        let conflict = |own: Option<&str>| -> Result<Option<String>> {
            for other in self.dest.list(Kind::Lock)? {
                if Some(other.as_str()) == own {
                    continue;
                }
                let Ok(bytes) = self.dest.read(Kind::Lock, &other) else {
                    continue; // released meanwhile
                };
                let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) else {
                    continue;
                };
                if me.time.saturating_sub(info.time) > STALE_AFTER.as_secs() {
                    continue;
                }
                if exclusive || info.exclusive {
                    return Ok(Some(format!(
                        "{} by {} (pid {}) on host {} since {}s ago",
                        if info.exclusive {
                            "locked exclusively"
                        } else {
                            "in use"
                        },
                        other,
                        info.pid,
                        info.host,
                        me.time.saturating_sub(info.time)
                    )));
                }
            }
            Ok(None)
        };
        let busy = |what: String| Error::Dest {
            dest: self.url.clone(),
            what: format!(
                "{what}; retry when it has finished (a lock older than {} h is ignored)",
                STALE_AFTER.as_secs() / 3600
            ),
        };
        if let Some(what) = conflict(None)? {
            return Err(busy(what));
        }
        let body = serde_json::to_vec(&me).expect("lock serializes");
        self.dest.put_bytes(Kind::Lock, &name, &body)?;
        let lock = RemoteLock { remote: self, name };
        // Two takers racing both see the other now: both back off.
        if let Some(what) = conflict(Some(&lock.name))? {
            return Err(busy(what));
        }
        Ok(lock)
    }
}

/// A lock object in the bucket, removed on drop.
pub struct RemoteLock<'r> {
    remote: &'r Remote,
    name: String,
}

impl Drop for RemoteLock<'_> {
    fn drop(&mut self) {
        let _ = self.remote.dest.remove(Kind::Lock, &self.name);
    }
}
