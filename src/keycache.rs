//! An opt-in cache of unlocked master keys, for machines that run relic
//! often (an hourly backup, a drill right after it): without it every
//! command pays Argon2id, about 0.1 s and 64 MiB, to unwrap the key.
//!
//! Once a passphrase opened a repository, its master key is kept in the
//! kernel's keyring of the user, a "user" key named `relic:<repository
//! id>`: never on disk, readable by this user's processes only, dropped by
//! the kernel when the time given runs out (`RELIC_KEY_CACHE=15m`) or at
//! reboot, and at once by `relic key forget`. It is taken only with the
//! same passphrase (the entry holds a BLAKE3 of it keyed by a random salt,
//! which tells nothing the master key beside it does not), only while the
//! key slot it came from still exists, and only when the repository's
//! config MAC checks out with it. Where the keyring cannot be used (a
//! container whose seccomp profile forbids `keyctl`), nothing is cached:
//! [`enable`] says so.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;
use zeroize::Zeroizing;

static TTL: OnceLock<Duration> = OnceLock::new();

/// Layout of an entry: salt, passphrase check, master key, slot id.
const SALT: usize = 16;
const CHECK: usize = 32;
const MASTER: usize = 32;
const MAX_ENTRY: usize = 512;

/// Caches the master keys this process unlocks for `ttl`. Fails, caching
/// nothing, when the kernel's keyring cannot be used here.
pub fn enable(ttl: Duration) -> io::Result<()> {
    let probe = format!("relic:probe:{}", std::process::id());
    crate::sys::keyring_put(&probe, b"probe", 5)?;
    crate::sys::keyring_remove(&probe);
    let _ = TTL.set(ttl.max(Duration::from_secs(1)));
    Ok(())
}

/// Drops the cached key of a repository; true if there was one.
pub fn forget(repo_id: &str) -> bool {
    crate::sys::keyring_remove(&name(repo_id))
}

fn name(repo_id: &str) -> String {
    format!("relic:{repo_id}")
}

fn check(salt: &[u8], pass: &[u8]) -> blake3::Hash {
    let key = blake3::derive_key("relic key cache v1 passphrase check", salt);
    blake3::keyed_hash(&key, pass)
}

/// The slot id and master key cached for this repository and passphrase.
pub(crate) fn lookup(repo_id: &str, pass: &[u8]) -> Option<(String, Zeroizing<[u8; 32]>)> {
    TTL.get()?;
    let e = Zeroizing::new(crate::sys::keyring_get(&name(repo_id), MAX_ENTRY)?);
    if e.len() <= SALT + CHECK + MASTER {
        return None;
    }
    let (salt, rest) = e.split_at(SALT);
    let (want, rest) = rest.split_at(CHECK);
    let want: [u8; CHECK] = want.try_into().ok()?;
    // Constant-time comparison (blake3::Hash's ==).
    if check(salt, pass) != blake3::Hash::from(want) {
        return None;
    }
    let (master, slot) = rest.split_at(MASTER);
    let master: [u8; 32] = master.try_into().ok()?;
    let slot = std::str::from_utf8(slot).ok()?.to_string();
    Some((slot, Zeroizing::new(master)))
}

/// Caches a master key just unlocked with `pass` (when enabled).
pub(crate) fn store(repo_id: &str, pass: &[u8], slot: &str, master: &[u8; 32]) {
    let Some(ttl) = TTL.get() else {
        return;
    };
    let mut salt = [0u8; SALT];
    rand::Rng::fill(&mut rand::rng(), &mut salt);
    let mut e = Zeroizing::new(Vec::with_capacity(MAX_ENTRY));
    e.extend_from_slice(&salt);
    e.extend_from_slice(check(&salt, pass).as_bytes());
    e.extend_from_slice(master);
    e.extend_from_slice(slot.as_bytes());
    if e.len() <= MAX_ENTRY {
        // A key that cannot be cached is only unwrapped again next time.
        let secs = ttl.as_secs().min(u32::MAX as u64) as u32;
        let _ = crate::sys::keyring_put(&name(repo_id), &e, secs);
    }
}
