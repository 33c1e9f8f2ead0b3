//! The few calls into the C library that std has no word for, each behind
//! a safe function with the reason its `unsafe` block is sound.
//!
//! The restore walker's `openat` family stays beside it in
//! `files/restore.rs`: those calls are that module's whole subject.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
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

/// Takes an exclusive `flock` on an open file, waiting for it; the kernel
/// releases it when the file is closed or the process dies.
pub fn flock_exclusive(f: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: flock on a descriptor the caller owns and keeps open.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
