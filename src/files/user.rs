//! The user's own files that relic reads or writes besides the trees it
//! backs up and restores: configs (`relic.toml`, `~/.pgpass`, a password
//! file), archives given on the command line, the file a stream is
//! restored into. The repository's files are the store's, never these.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A text file's content.
pub fn read_text(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}

/// A text file's content, but only when no one but its owner may read or
/// write it (as libpq demands of `~/.pgpass`); `None` otherwise or when it
/// cannot be read.
pub fn read_private_text(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    fs::read_to_string(path).ok()
}

/// A file opened for reading.
pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// True when something (a symlink included, not followed) is at `path`.
pub fn exists_no_follow(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The absolute path with symlinks resolved, or `path` as given when that
/// cannot be worked out.
pub fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Size and BLAKE3 of a file's content.
pub fn hash_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut h = blake3::Hasher::new();
    let n = io::copy(&mut File::open(path)?, &mut h)?;
    Ok((n, *h.finalize().as_bytes()))
}

/// Creates a directory and its parents when missing.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Removes a directory and all it holds; gone already is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `data` to `path` whole or not at all ([`write_atomically`]),
/// readable by all: a file that holds no secret (a systemd unit, a cron
/// entry).
pub fn write_public(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomically(path, |f| {
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(data)
    })
}

/// Removes a file; false when there was none.
pub fn remove_file(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Standard output as a file: whole buffers go straight to the descriptor,
/// with no line buffering and no extra copy.
pub fn stdout_file() -> io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// Writes `path` whole or not at all: `write` fills a temp file beside it,
/// which is fsynced and renamed over `path` only when `write` succeeds;
/// otherwise the temp file is removed and `path` is untouched.
pub fn write_atomically<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.relic-tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = File::create(&tmp)?;
    let r = write(&mut f).and_then(|()| {
        f.flush()?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    });
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Writes `data` to `path` whole or not at all ([`write_atomically`]),
/// readable by its owner only (a relic.toml may hold passwords).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomically(path, |f| {
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_that_fails_leaves_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        fs::write(&p, b"old").unwrap();
        let r = write_atomically(&p, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("source failed"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        write_atomically(&p, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(hash_file(&p).unwrap().0, 3);
    }

    #[test]
    fn a_private_file_is_read_only_when_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pgpass");
        fs::write(&p, b"*:*:*:*:pw").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_private_text(&p), None);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_text(&p).as_deref(), Some("*:*:*:*:pw"));
    }
}
