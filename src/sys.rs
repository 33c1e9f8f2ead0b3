//! The few calls into the C library that std has no word for, each behind
//! a safe function with the reason its `unsafe` block is sound.
//!
//! The `*at` family is what the restore walker in `files/restore.rs` is
//! built on: every name is resolved relative to a directory descriptor and
//! never through a symlink.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// This host's name ("unknown" when it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits, and the search below stops at the end anyway.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// True when a process with this pid exists in this PID namespace.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks for
    // existence and permission.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's PID namespace (`pid:[4026531836]`), empty when `/proc`
/// cannot tell: pids are only comparable within one namespace.
pub fn pid_namespace() -> String {
    Path::new("/proc/self/ns/pid")
        .read_link()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The login name of this process's user, from the password database.
pub fn user_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer to static storage or null; the
    // name is copied out before any other call could reuse that storage.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr((*pw).pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

/// False when the directory cannot be written (a read-only mount).
pub fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: access() only reads a valid NUL-terminated string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Free bytes and device id of the filesystem holding `path` (or its
/// nearest existing ancestor).
pub fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut p = path;
    loop {
        if let Ok(m) = p.metadata() {
            let c = CString::new(p.as_os_str().as_bytes()).ok()?;
            // SAFETY: statvfs is a plain C struct for which all zeroes is a
            // valid value; statvfs fills it from a valid C string.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return None;
            }
            return Some((st.f_bavail as u64 * st.f_frsize as u64, m.dev()));
        }
        p = p.parent()?;
    }
}

/// Makes a pipe's buffer 1 MiB (when it is a pipe), so the writer is woken
/// 16 times less often than with Linux's default 64 KiB: a pipe read is
/// otherwise the slowest stage of a backup from `pg_dump | relic`.
pub fn widen_pipe(fd: &impl AsRawFd) {
    // SAFETY: fcntl on a descriptor the caller owns; F_SETPIPE_SZ fails
    // harmlessly (EBADF/EINVAL) on anything that is not a pipe.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Takes an exclusive `flock` on an open file, waiting for it or not
/// (false when another holds it and `wait` is false); the kernel releases
/// it when the file is closed or the process dies.
pub fn flock(f: &impl AsRawFd, wait: bool) -> io::Result<bool> {
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor the caller owns and keeps open.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        let e = io::Error::last_os_error();
        if !wait && e.kind() == io::ErrorKind::WouldBlock {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(true)
}

/// Asks the kernel to back a vector's allocation (its whole capacity,
/// rounded in to whole pages) with transparent huge pages; a hint only.
pub fn advise_huge_pages<T>(v: &mut Vec<T>) {
    let len = v.capacity() * std::mem::size_of::<T>();
    // madvise wants a page-aligned start (malloc's mmap'ed blocks start 16
    // bytes in).
    let start = v.as_mut_ptr() as usize;
    let aligned = (start + 4095) & !4095;
    if len > aligned - start {
        // SAFETY: the range lies inside the vector's own allocation;
        // MADV_HUGEPAGE only advises the kernel and changes no contents.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                len - (aligned - start),
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

fn cstring(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`.
pub fn open_at(dir: BorrowedFd<'_>, name: &[u8], flags: i32) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a directory; one already there is fine.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: as in open_at.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

pub fn renameat(dir: BorrowedFd<'_>, from: &[u8], to: &[u8]) -> io::Result<()> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: as in open_at.
    if unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &[u8]) {
    if let Ok(c) = cstring(name) {
        // SAFETY: as in open_at.
        unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    }
}

/// `symlinkat(target, dir, name)`: a symlink is created, never followed.
pub fn symlinkat(target: &[u8], dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (t, c) = (cstring(target)?, cstring(name)?);
    // SAFETY: as in open_at; symlinkat never follows its target.
    if unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the owner of `name` in `dir` itself, never what a symlink names.
pub fn lchownat(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: as in open_at; AT_SYMLINK_NOFOLLOW changes the link itself.
    let r = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            c.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling user's keyring in the kernel (`KEY_SPEC_USER_KEYRING`).
const USER_KEYRING: libc::c_long = -4;
const KEYCTL_SETPERM: libc::c_long = 5;
const KEYCTL_SEARCH: libc::c_long = 10;
const KEYCTL_READ: libc::c_long = 11;
const KEYCTL_SET_TIMEOUT: libc::c_long = 15;
const KEYCTL_INVALIDATE: libc::c_long = 21;
/// Possessor: everything; the same user: view, read, write, search, link,
/// set attributes (a cron job of the user may not possess the key through
/// its session keyring, but must read it).
const KEY_PERM: libc::c_long = 0x3f3f_0000;

fn key_result(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Stores `payload` as the "user" key `desc` in the user's keyring, readable
/// by this user only, gone after `ttl_secs` (or at reboot: it is never on
/// disk). Replaces a key of the same description.
pub fn keyring_put(desc: &str, payload: &[u8], ttl_secs: u32) -> io::Result<()> {
    let (ty, desc) = (CString::new("user")?, CString::new(desc)?);
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // payload pointer is valid for its length.
    let key = key_result(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            ty.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            USER_KEYRING,
        )
    })?;
    // SAFETY: plain integer arguments.
    key_result(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, key, KEY_PERM) })?;
    // SAFETY: plain integer arguments.
    key_result(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SET_TIMEOUT,
            key,
            ttl_secs as libc::c_long,
        )
    })?;
    Ok(())
}

/// The serial of the "user" key `desc` in the user's keyring, if there is
/// one that has not expired.
fn keyring_find(desc: &str) -> Option<libc::c_long> {
    let (ty, desc) = (CString::new("user").ok()?, CString::new(desc).ok()?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    key_result(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            USER_KEYRING,
            ty.as_ptr(),
            desc.as_ptr(),
            0 as libc::c_long,
        )
    })
    .ok()
}

/// The payload of the "user" key `desc`, if present (at most `max` bytes).
pub fn keyring_get(desc: &str, max: usize) -> Option<Vec<u8>> {
    let key = keyring_find(desc)?;
    let mut buf = vec![0u8; max];
    // SAFETY: the buffer is valid for writes of its length.
    let n = key_result(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_READ,
            key,
            buf.as_mut_ptr(),
            buf.len(),
        )
    })
    .ok()? as usize;
    (n <= max).then(|| {
        buf.truncate(n);
        buf
    })
}

/// Removes the "user" key `desc` from the user's keyring; true if there was
/// one.
pub fn keyring_remove(desc: &str) -> bool {
    let Some(key) = keyring_find(desc) else {
        return false;
    };
    // SAFETY: plain integer arguments.
    key_result(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, key) }).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_named() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!hostname().is_empty());
        assert!(free_space(Path::new("/tmp/does/not/exist")).is_some());
    }
}
