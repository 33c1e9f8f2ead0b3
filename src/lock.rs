//! Repository locks: files in `locks/` saying who holds the repository and how.
//!
//! Backups take a shared lock; commands that delete (prune, later) take an
//! exclusive one. A lock whose process is gone from this host is stale and is
//! removed by the next opener, so a `kill -9` never blocks the repository.

use crate::backend::{Kind, Local};
use serde::{Deserialize, Serialize};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "repository is locked {how} by pid {pid} on {host} since {since}; wait for it to finish"
    )]
    Held {
        how: &'static str,
        pid: u32,
        host: String,
        since: String,
    },
    #[error("lock file: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    pub time: u64,
    pub exclusive: bool,
}

/// True when a process with this pid exists on this host.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A held lock; released on drop.
pub struct Lock {
    /// None for a read-only repository, where nobody can take a lock and
    /// nothing can be deleted under us.
    backend: Option<Local>,
    name: String,
}

impl Lock {
    /// The lock of a read-only repository: nothing to write, nothing held.
    pub fn read_only() -> Lock {
        Lock {
            backend: None,
            name: String::new(),
        }
    }

    /// Takes a lock, waiting up to `wait` for conflicting holders to finish.
    pub fn acquire(backend: &Local, exclusive: bool, wait: Duration) -> Result<Lock, Error> {
        let info = LockInfo {
            host: hostname(),
            pid: std::process::id(),
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            exclusive,
        };
        let bytes = serde_json::to_vec(&info).expect("lock info serializes");
        let name = hex::encode(
            blake3::hash(&[&bytes[..], &rand::random::<[u8; 16]>()].concat()).as_bytes(),
        );
        let started = Instant::now();
        loop {
            backend.write_once(Kind::Lock, &name, &bytes)?;
            let lock = Lock {
                backend: Some(backend.clone()),
                name: name.clone(),
            };
            match lock.conflict(exclusive)? {
                None => return Ok(lock),
                Some(other) => {
                    drop(lock);
                    if started.elapsed() >= wait {
                        return Err(Error::Held {
                            how: if other.exclusive {
                                "exclusively"
                            } else {
                                "shared"
                            },
                            pid: other.pid,
                            host: other.host,
                            since: jiff::Timestamp::from_second(other.time as i64)
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Another live lock that conflicts with ours, removing stale ones.
    fn conflict(&self, exclusive: bool) -> Result<Option<LockInfo>, Error> {
        let me = hostname();
        let Some(backend) = &self.backend else {
            return Ok(None);
        };
        for name in backend.list(Kind::Lock)? {
            if name == self.name {
                continue;
            }
            let Ok(bytes) = backend.read(Kind::Lock, &name) else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) else {
                continue;
            };
            if info.host == me && !pid_alive(info.pid) {
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

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(b) = &self.backend {
            let _ = b.remove(Kind::Lock, &self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_exclusive_waits_and_stale_ones_go() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let a = Lock::acquire(&b, false, Duration::ZERO).unwrap();
        let c = Lock::acquire(&b, false, Duration::ZERO).unwrap();
        assert!(matches!(
            Lock::acquire(&b, true, Duration::from_millis(300)),
            Err(Error::Held { .. })
        ));
        drop((a, c));
        let x = Lock::acquire(&b, true, Duration::ZERO).unwrap();
        drop(x);
        // A lock of a dead process on this host is stale.
        let stale = LockInfo {
            host: hostname(),
            pid: i32::MAX as u32 - 1,
            time: 0,
            exclusive: true,
        };
        b.write_once(
            Kind::Lock,
            &"cd".repeat(32),
            &serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();
        Lock::acquire(&b, false, Duration::ZERO).unwrap();
        assert!(b.list(Kind::Lock).unwrap().is_empty());
        assert!(pid_alive(std::process::id()));
    }
}
