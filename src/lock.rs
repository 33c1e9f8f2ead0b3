//! Repository locks: objects in `locks/` (files, or objects in the bucket a
//! repository lives in) saying who holds the repository and how.
//!
//! Backups take a shared lock; commands that delete (prune, repair) take an
//! exclusive one. A held lock is rewritten in place every minute. A lock whose
//! process is gone from this host, or that nobody refreshed for ten
//! minutes (a host renamed or gone, a recycled pid), is stale and is
//! removed by the next opener, so a `kill -9` never blocks the repository
//! for long; `relic unlock` clears locks by hand.

use crate::store::{self, Kind, Store};
use crate::sys::{hostname, pid_alive, pid_namespace};
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// A held lock is rewritten this often, so others can tell it is alive.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// A lock not refreshed for this long is stale, whoever holds it (a
/// process on a host that was renamed or died, a recycled pid): its holder
/// would have refreshed it ten times.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Locks written by relic versions that did not refresh them.
const LEGACY_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Error)]
pub enum Error {
    #[error("repository is locked {holder}; wait for it to finish, or if that process is gone, clear the lock with `relic unlock --stale` (or `relic unlock` when no relic runs)")]
    Held { holder: String },
    #[error("this command's lock was removed while it ran (it was not refreshed for {} s: a suspended process, a clock far off, a full disk, or `relic unlock`); nothing more was written, run it again", STALE_AFTER.as_secs())]
    Lost,
    #[error("lock file: {0}")]
    Io(#[from] io::Error),
    #[error("lock: {0}")]
    Store(#[from] store::Error),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// When the lock was taken (seconds since the epoch).
    pub time: u64,
    pub exclusive: bool,
    /// When the holder last refreshed it (0 in locks of older versions).
    #[serde(default)]
    pub refreshed: u64,
    /// The command holding it (`backup`, `prune`…).
    #[serde(default)]
    pub command: String,
    /// The holder's PID namespace (`pid:[inode]`): containers sharing a
    /// host name but not their pids are told apart.
    #[serde(default)]
    pub pidns: String,
}

/// This process's PID namespace, as /proc names it.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

static COMMAND: OnceLock<String> = OnceLock::new();

/// How long a command waits for a lock (or the index) others hold, in
/// milliseconds: an hour unless `--retry-lock` says otherwise.
static WAIT_MS: AtomicU64 = AtomicU64::new(3_600_000);

/// Sets how long this process waits for locks and the index others hold
/// (`--retry-lock`); zero fails at once.
pub fn set_wait(wait: Duration) {
    WAIT_MS.store(
        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// How long this process waits for locks and the index others hold.
pub fn wait() -> Duration {
    Duration::from_millis(WAIT_MS.load(Ordering::Relaxed))
}

/// Names the command this process runs, recorded in its locks.
pub fn set_command(name: &str) {
    let _ = COMMAND.set(name.to_string());
}

impl LockInfo {
    /// This process's lock, taken now.
    pub fn new(exclusive: bool) -> LockInfo {
        let now = now_secs();
        LockInfo {
            host: hostname(),
            pid: std::process::id(),
            time: now,
            exclusive,
            refreshed: now,
            command: COMMAND.get().cloned().unwrap_or_else(|| "relic".into()),
            pidns: pid_namespace(),
        }
    }

    /// Seconds since the holder last showed it was alive.
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.time.max(self.refreshed))
    }

    /// True when nobody holds this lock any more: its process is gone from
    /// this host, or it has not been refreshed for [`STALE_AFTER`].
    pub fn is_stale(&self, now: u64) -> bool {
        // A lock of an older relic is never refreshed: it is given a day.
        let after = if self.refreshed == 0 {
            LEGACY_STALE_AFTER
        } else {
            STALE_AFTER
        };
        let here =
            self.host == hostname() && (self.pidns.is_empty() || self.pidns == pid_namespace());
        (here && !pid_alive(self.pid)) || self.age(now) > after.as_secs()
    }

    /// "exclusively by prune (pid 12, host h, since …, refreshed 3 s ago)".
    pub fn describe(&self, now: u64) -> String {
        let since = jiff::Timestamp::from_second(self.time as i64)
            .map(|t| t.to_string())
            .unwrap_or_default();
        format!(
            "{} by {} (pid {} on host {}, since {since}, last refreshed {} s ago)",
            if self.exclusive {
                "exclusively"
            } else {
                "shared"
            },
            if self.command.is_empty() {
                "relic"
            } else {
                &self.command
            },
            self.pid,
            self.host,
            self.age(now)
        )
    }
}

fn new_name(bytes: &[u8]) -> String {
    hex::encode(blake3::hash(&[bytes, &rand::random::<[u8; 16]>()].concat()).as_bytes())
}

/// A held lock; refreshed by a thread while held, released on drop.
pub struct Lock {
    /// None for a read-only repository, where nobody can take a lock and
    /// nothing can be deleted under us.
    backend: Option<Arc<dyn Store>>,
    name: String,
    /// Set by the refresher when the lock file was gone (another process
    /// judged it stale and removed it) or could not be refreshed in time.
    lost: Arc<AtomicBool>,
    refresher: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Lock {
    /// The lock of a read-only repository: nothing to write, nothing held.
    pub fn read_only() -> Lock {
        Lock {
            backend: None,
            name: String::new(),
            lost: Arc::default(),
            refresher: None,
        }
    }

    /// Takes a lock, waiting up to `wait` for conflicting holders to finish.
    pub fn acquire(
        backend: &Arc<dyn Store>,
        exclusive: bool,
        wait: Duration,
    ) -> Result<Lock, Error> {
        let started = Instant::now();
        loop {
            // Written anew on every attempt: a lock taken after a long wait
            // is dated when it is taken, not when the wait began.
            let info = LockInfo::new(exclusive);
            let bytes = serde_json::to_vec(&info).expect("lock info serializes");
            let name = new_name(&bytes);
            backend.put_bytes(Kind::Lock, &name, &bytes)?;
            let mut lock = Lock {
                backend: Some(backend.clone()),
                name,
                lost: Arc::default(),
                refresher: None,
            };
            match lock.conflict(exclusive)? {
                None => {
                    lock.start_refresh(info);
                    return Ok(lock);
                }
                Some(other) => {
                    drop(lock);
                    if started.elapsed() >= wait {
                        return Err(Error::Held {
                            holder: other.describe(now_secs()),
                        });
                    }
                    // Jittered: two takers that saw each other and both
                    // backed off do not retry in step.
                    std::thread::sleep(Duration::from_millis(100 + rand::random::<u64>() % 250));
                }
            }
        }
    }

    /// Fails when the lock is no longer ours: the last check before a
    /// command makes its work visible (a backup's snapshot, a prune's
    /// deletions).
    pub fn check_held(&self) -> Result<(), Error> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        if self.lost.load(Ordering::SeqCst) || !exists(backend.as_ref(), &self.name)? {
            return Err(Error::Lost);
        }
        Ok(())
    }

    /// Rewrites the lock in place (temp file renamed over it, so its name
    /// never disappears) every [`REFRESH_EVERY`] until dropped. A lock file
    /// found gone is never written again: whoever removed it may hold the
    /// repository now.
    fn start_refresh(&mut self, mut info: LockInfo) {
        let Some(backend) = self.backend.clone() else {
            return;
        };
        let (stop, stopped) = bounded::<()>(0);
        let name = self.name.clone();
        let lost = self.lost.clone();
        let h = std::thread::spawn(move || {
            let mut last_ok = Instant::now();
            loop {
                match stopped.recv_timeout(REFRESH_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if matches!(exists(backend.as_ref(), &name), Ok(false)) {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                info.refreshed = now_secs();
                let bytes = serde_json::to_vec(&info).expect("lock info serializes");
                if backend.rewrite_lock(&name, &bytes).is_ok() {
                    last_ok = Instant::now();
                } else if last_ok.elapsed() + 2 * REFRESH_EVERY > STALE_AFTER {
                    lost.store(true, Ordering::SeqCst);
                }
            }
        });
        self.refresher = Some((stop, h));
    }

    /// Another live lock that conflicts with ours, removing stale ones.
    fn conflict(&self, exclusive: bool) -> Result<Option<LockInfo>, Error> {
        let Some(backend) = &self.backend else {
            return Ok(None);
        };
        let now = now_secs();
        for (name, info) in list(backend.as_ref())? {
            if name == self.name {
                continue;
            }
            if info.is_stale(now) {
                let _ = backend.remove(Kind::Lock, &name);
                continue;
            }
            if exclusive || info.exclusive {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }
}

/// True while the lock object `name` is there.
fn exists(backend: &dyn Store, name: &str) -> Result<bool, Error> {
    match backend.read(Kind::Lock, name) {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Every readable lock of a repository: name → what it says.
pub fn list(backend: &dyn Store) -> Result<Vec<(String, LockInfo)>, Error> {
    let mut out = Vec::new();
    for name in backend.list(Kind::Lock)? {
        // Released meanwhile, or written by something else: not a lock.
        let Ok(bytes) = backend.read(Kind::Lock, &name) else {
            continue;
        };
        if let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) {
            out.push((name, info));
        }
    }
    Ok(out)
}

/// Removes the repository's locks (only the stale ones with `stale_only`);
/// returns those removed and those left.
pub fn unlock(
    backend: &dyn Store,
    stale_only: bool,
    dry_run: bool,
) -> Result<(Vec<LockInfo>, Vec<LockInfo>), Error> {
    let now = now_secs();
    let (mut removed, mut left) = (Vec::new(), Vec::new());
    for (name, info) in list(backend)? {
        if stale_only && !info.is_stale(now) {
            left.push(info);
            continue;
        }
        if !dry_run {
            backend.remove(Kind::Lock, &name)?;
        }
        removed.push(info);
    }
    Ok((removed, left))
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some((stop, h)) = self.refresher.take() {
            drop(stop);
            let _ = h.join();
        }
        if let Some(b) = &self.backend {
            let _ = b.remove(Kind::Lock, &self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Local;

    fn store(b: &Local) -> Arc<dyn Store> {
        Arc::new(b.clone())
    }

    #[test]
    fn shared_locks_coexist_exclusive_waits_and_stale_ones_go() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let a = Lock::acquire(&store(&b), false, Duration::ZERO).unwrap();
        let c = Lock::acquire(&store(&b), false, Duration::ZERO).unwrap();
        assert!(matches!(
            Lock::acquire(&store(&b), true, Duration::from_millis(300)),
            Err(Error::Held { .. })
        ));
        drop((a, c));
        let x = Lock::acquire(&store(&b), true, Duration::ZERO).unwrap();
        drop(x);
        // A lock of a dead process on this host is stale.
        let stale = LockInfo {
            pid: i32::MAX as u32 - 1,
            ..LockInfo::new(true)
        };
        b.write_once(
            Kind::Lock,
            &"cd".repeat(32),
            &serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();
        Lock::acquire(&store(&b), false, Duration::ZERO).unwrap();
        assert!(b.list(Kind::Lock).unwrap().is_empty());
        assert!(pid_alive(std::process::id()));
    }

    #[test]
    fn a_removed_lock_is_known_lost_and_other_namespaces_are_not_judged_by_pid() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let l = Lock::acquire(&store(&b), false, Duration::ZERO).unwrap();
        l.check_held().unwrap();
        unlock(&b, false, false).unwrap();
        assert!(matches!(l.check_held(), Err(Error::Lost)));
        drop(l);
        let now = now_secs();
        // Same host name, another PID namespace (a container): a pid that
        // is not alive here says nothing.
        let other_ns = LockInfo {
            pid: i32::MAX as u32 - 1,
            pidns: "pid:[1]".into(),
            ..LockInfo::new(true)
        };
        assert!(!other_ns.is_stale(now));
        // A lock of an older relic (never refreshed) is given a day.
        let legacy = LockInfo {
            host: "elsewhere".into(),
            refreshed: 0,
            time: now - 3600,
            ..LockInfo::new(true)
        };
        assert!(!legacy.is_stale(now));
        assert!(legacy.is_stale(now + 24 * 3600));
    }

    #[test]
    fn a_lock_of_another_host_is_stale_once_not_refreshed() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let now = now_secs();
        let other = |age: u64| LockInfo {
            host: "a-renamed-container".into(),
            pid: std::process::id(),
            refreshed: now - age,
            time: now - age,
            ..LockInfo::new(true)
        };
        let fresh = other(30);
        b.write_once(
            Kind::Lock,
            &"ab".repeat(32),
            &serde_json::to_vec(&fresh).unwrap(),
        )
        .unwrap();
        let e = Lock::acquire(&store(&b), false, Duration::ZERO)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("a-renamed-container") && msg.contains("unlock"),
            "{msg}"
        );
        // Only an explicit unlock removes a live one.
        let (removed, left) = unlock(&b, true, false).unwrap();
        assert_eq!((removed.len(), left.len()), (0, 1));
        let (removed, _) = unlock(&b, false, false).unwrap();
        assert_eq!(removed.len(), 1);
        // Not refreshed for longer than STALE_AFTER: gone at the next acquire.
        let old = other(STALE_AFTER.as_secs() + 5);
        b.write_once(
            Kind::Lock,
            &"cd".repeat(32),
            &serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        drop(Lock::acquire(&store(&b), true, Duration::ZERO).unwrap());
        assert!(b.list(Kind::Lock).unwrap().is_empty());
    }
}
