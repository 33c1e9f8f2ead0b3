//! Files and directories in and out: walking paths into items (with mode,
//! owner and mtime) and restoring a snapshot's items into a directory.
//!
//! Paths are stored as absolute paths without the leading `/` (as tar does),
//! so `--to DIR` recreates them under DIR. Files are restored to a temp name
//! and renamed into place once their content has been verified.

use crate::progress::{Progress, Unit};
use crate::repo::{Error, Repository, Result, Writer};
use crate::snapshot::{ChunkList, Item, ItemKind, Snapshot};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The stored form of a path: absolute, normalised, without the leading `/`.
pub fn stored_path(path: &Path) -> io::Result<Vec<u8>> {
    let abs = std::path::absolute(path)?;
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts
        .iter()
        .map(|p| p.as_bytes())
        .collect::<Vec<_>>()
        .join(&b'/'))
}

fn item_from_meta(path: Vec<u8>, kind: ItemKind, m: &fs::Metadata) -> Item {
    Item {
        path,
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        size: 0,
        hash: [0; 32],
        target: None,
        content: ChunkList::default(),
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Makes a pipe's buffer 1 MiB (when it is a pipe), so the writer is woken
/// 16 times less often than with Linux's default 64 KiB: a pipe read is
/// otherwise the slowest stage of a backup from `pg_dump | relic`.
pub fn widen_pipe(fd: &impl std::os::fd::AsRawFd) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ fails harmlessly
    // (EBADF/EINVAL) on anything that is not a pipe.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Backs up files and directories (recursively, symlinks not followed).
/// A path given that does not exist is an error; an entry below it that
/// cannot be read is skipped with a warning and counted in the snapshot's
/// `files.skipped`.
pub fn backup_paths(w: &mut Writer<'_>, paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        let m = fs::symlink_metadata(p).map_err(io_err(p))?;
        let stored = stored_path(p).map_err(io_err(p))?;
        walk(w, p, stored, &m)?;
    }
    Ok(())
}

/// Backs up `paths`, relative to `root`, stored as `prefix/<path>`. A path
/// that leaves `root` is an error.
pub fn backup_under(
    w: &mut Writer<'_>,
    root: &Path,
    paths: &[PathBuf],
    prefix: &str,
) -> Result<()> {
    for p in paths {
        let rel = relative_inside(p).ok_or_else(|| {
            Error::Source(format!(
                "{}: a stack file must be a relative path inside the stack's root",
                p.display()
            ))
        })?;
        let full = root.join(p);
        let m = fs::symlink_metadata(&full).map_err(io_err(&full))?;
        walk(w, &full, format!("{prefix}/{rel}").into_bytes(), &m)?;
    }
    Ok(())
}

/// `a/./b/` → `a/b`; None for absolute paths, `..` and the empty path.
pub fn relative_inside(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn walk(w: &mut Writer<'_>, path: &Path, stored: Vec<u8>, m: &fs::Metadata) -> Result<()> {
    let ft = m.file_type();
    if ft.is_dir() {
        w.add_item(&item_from_meta(stored.clone(), ItemKind::Dir, m))?;
        let entries = fs::read_dir(path).and_then(|d| d.collect::<io::Result<Vec<_>>>());
        let mut entries = match entries {
            Ok(e) => e,
            Err(err) => {
                w.skip(&format!("{}: {err}", path.display()));
                return Ok(());
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let child = e.path();
            let mut child_stored = stored.clone();
            child_stored.push(b'/');
            child_stored.extend_from_slice(e.file_name().as_bytes());
            match fs::symlink_metadata(&child) {
                Ok(cm) => walk(w, &child, child_stored, &cm)?,
                Err(err) => w.skip(&format!("{}: {err}", child.display())),
            }
        }
    } else if ft.is_file() {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(err) => {
                w.skip(&format!("{}: {err}", path.display()));
                return Ok(());
            }
        };
        let s = w.store_stream(f)?;
        let mut item = item_from_meta(stored, ItemKind::File, m);
        item.size = s.size;
        item.hash = s.hash;
        item.content = s.content;
        w.add_item(&item)?;
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        let mut item = item_from_meta(stored, ItemKind::Symlink, m);
        item.target = Some(target.as_os_str().as_bytes().to_vec());
        w.add_item(&item)?;
    } else {
        w.skip(&format!(
            "{}: not a file, directory or symlink",
            path.display()
        ));
    }
    Ok(())
}

/// Joins a stored path under `root`, refusing anything that could escape it.
pub fn target_path(root: &Path, stored: &[u8]) -> Result<PathBuf> {
    let rel = Path::new(OsStr::from_bytes(stored));
    if stored.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::Io {
            path: String::from_utf8_lossy(stored).into_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, "unsafe path in snapshot"),
        });
    }
    Ok(root.join(rel))
}

/// Totals of a restore.
#[derive(Debug, Default)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
}

/// Restores every item of a snapshot under `root`.
pub fn restore_to(
    repo: &Repository,
    snap: &Snapshot,
    root: &Path,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    restore_mapped(repo, snap, root, &|p| Some(p.to_vec()), progress)
}

/// Restores the items `map` names (it gives the path under `root`, or None
/// to leave an item out).
pub fn restore_mapped(
    repo: &Repository,
    snap: &Snapshot,
    root: &Path,
    map: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut dirs = Vec::new();
    let mut stats = RestoreStats::default();
    progress.start("restoring", Some(snap.summary.size), Unit::Bytes);
    for item in repo.items(snap) {
        let item = item?;
        let Some(rel) = map(&item.path) else {
            continue;
        };
        let dst = target_path(root, &rel)?;
        match item.kind {
            ItemKind::Dir => {
                fs::create_dir_all(&dst).map_err(io_err(&dst))?;
                stats.dirs += 1;
                dirs.push((dst, item));
            }
            ItemKind::File | ItemKind::Stream => {
                restore_file(repo, &item, &dst, as_root, progress)?;
                stats.files += 1;
                stats.bytes += item.size;
            }
            ItemKind::Symlink => {
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let _ = fs::remove_file(&dst);
                let target = item.target.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &dst)
                    .map_err(io_err(&dst))?;
                if as_root {
                    let _ = std::os::unix::fs::lchown(&dst, Some(item.uid), Some(item.gid));
                }
                stats.links += 1;
            }
        }
    }
    // Directory metadata last, deepest first, so adding files does not
    // disturb the restored mtimes.
    for (dst, item) in dirs.iter().rev() {
        if as_root {
            let _ = std::os::unix::fs::chown(dst, Some(item.uid), Some(item.gid));
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(item.mode & 0o7777))
            .map_err(io_err(dst))?;
        if let Ok(f) = File::open(dst) {
            let _ = f.set_modified(mtime(item));
        }
    }
    progress.finish();
    Ok(stats)
}

fn mtime(item: &Item) -> std::time::SystemTime {
    if item.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(item.mtime_ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(item.mtime_ns.unsigned_abs())
    }
}

fn restore_file(
    repo: &Repository,
    item: &Item,
    dst: &Path,
    as_root: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let mut tmp_name = dst.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".relic-tmp");
    let tmp = dst.with_file_name(tmp_name);
    let r = (|| {
        let f = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        repo.restore_item(item, &mut out, progress)?;
        let f = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        if item.kind == ItemKind::File {
            f.set_permissions(fs::Permissions::from_mode(item.mode & 0o7777))
                .map_err(io_err(&tmp))?;
            if as_root {
                let _ = std::os::unix::fs::fchown(&f, Some(item.uid), Some(item.gid));
            }
        }
        f.set_modified(mtime(item)).map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, dst).map_err(io_err(dst))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        let root = Path::new("/r");
        assert_eq!(target_path(root, b"a/b").unwrap(), PathBuf::from("/r/a/b"));
        assert!(target_path(root, b"../etc/passwd").is_err());
        assert!(target_path(root, b"/etc/passwd").is_err());
        assert!(target_path(root, b"a/../../x").is_err());
        assert!(target_path(root, b"").is_err());
    }

    #[test]
    fn stored_paths_are_normalised() {
        assert_eq!(stored_path(Path::new("/a/./b/../c")).unwrap(), b"a/c");
    }
}
