//! Restoring a snapshot's items into a directory: walked with
//! `openat(O_NOFOLLOW)` from the root down, each file written to a short
//! temp name beside its place and renamed into place once verified.

use super::io_err;
use crate::progress::{Progress, Unit};
use crate::repo::{Error, Repository, Result};
use crate::snapshot::{Item, ItemKind, Snapshot};
use crate::sys::{lchownat, mkdirat, open_at, renameat, symlinkat, unlinkat};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// The components of a stored path, refusing anything that could escape
/// the directory it is restored under: absolute paths, `.`, `..`, empty
/// components, NUL bytes.
pub fn path_components(stored: &[u8]) -> Result<Vec<&[u8]>> {
    let unsafe_path = || Error::Io {
        path: String::from_utf8_lossy(stored).into_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, "unsafe path in snapshot"),
    };
    if stored.is_empty() || stored.contains(&0) {
        return Err(unsafe_path());
    }
    let parts: Vec<&[u8]> = stored.split(|&b| b == b'/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == b"." || *p == b"..")
    {
        return Err(unsafe_path());
    }
    Ok(parts)
}

/// Joins a stored path under `root`, refusing anything that could escape it.
pub fn target_path(root: &Path, stored: &[u8]) -> Result<PathBuf> {
    path_components(stored)?;
    Ok(root.join(OsStr::from_bytes(stored)))
}

/// Totals of a restore.
#[derive(Debug, Default)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    /// Items whose content could not be read back whole (damaged or
    /// missing chunks): path → why. Nothing was written for them.
    pub damaged: Vec<(String, String)>,
    /// Items refused: a path that would leave the target, or a symlink
    /// (from the snapshot or already in the target) where a directory
    /// must be walked through. Nothing was written for them.
    pub refused: Vec<(String, String)>,
}

impl RestoreStats {
    /// True when every item was restored.
    pub fn complete(&self) -> bool {
        self.damaged.is_empty() && self.refused.is_empty()
    }

    /// An error naming the first item not restored, for callers that need
    /// every item (a stack restore, a drill).
    pub fn ensure_complete(self) -> Result<RestoreStats> {
        let n = self.damaged.len() + self.refused.len();
        match self.damaged.iter().chain(&self.refused).next() {
            None => Ok(self),
            Some((path, why)) => Err(Error::Io {
                path: path.clone(),
                source: io::Error::other(format!("{why} ({n} item(s) not restored)")),
            }),
        }
    }
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

/// True for errors that concern one item's stored content (restore goes
/// on with the next item), not the target or the repository as a whole.
fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::DamagedBlob { .. }
            | Error::MissingChunk(_)
            | Error::MissingBase { .. }
            | Error::ContentMismatch { .. }
    )
}

/// Restores the items `map` names (it gives the path under `root`, or None
/// to leave an item out). Every intact item is restored: a damaged one is
/// reported in the stats and skipped, so is one whose path would leave
/// `root`. Nothing is ever written outside `root`: directories are walked
/// with `openat(O_NOFOLLOW)` from `root` down, so no symlink, whether the
/// snapshot made it or it was already there, is followed.
pub fn restore_mapped(
    repo: &Repository,
    snap: &Snapshot,
    root: &Path,
    map: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    let mut target = Target::open(root).map_err(io_err(root))?;
    let as_root = crate::sys::is_root();
    let mut dirs = Vec::new();
    let mut stats = RestoreStats::default();
    progress.start("restoring", Some(snap.summary.size), Unit::Bytes);
    for item in repo.items(snap) {
        let item = match item {
            Ok(i) => i,
            // The item list itself is damaged: nothing after this point
            // can be found.
            Err(e) if is_damage(&e) || matches!(e, Error::Snapshot(_)) => {
                stats.damaged.push((
                    "(the rest of the snapshot's item list)".into(),
                    e.to_string(),
                ));
                break;
            }
            Err(e) => return Err(e),
        };
        let Some(rel) = map(&item.path) else {
            continue;
        };
        let shown = String::from_utf8_lossy(&rel).into_owned();
        let comps = match path_components(&rel) {
            Ok(c) => c,
            Err(e) => {
                stats.refused.push((shown, e.to_string()));
                continue;
            }
        };
        let (name, parents) = comps.split_last().expect("at least one component");
        let dir = match target.dir(parents) {
            Ok(fd) => fd,
            Err(e) if is_refusal(&e) => {
                stats.refused.push((shown, refusal(&e)));
                continue;
            }
            Err(e) => return Err(io_err(&root.join(OsStr::from_bytes(&rel)))(e)),
        };
        let dst = root.join(OsStr::from_bytes(&rel));
        let r = match item.kind {
            ItemKind::Dir => {
                let r = mkdirat(dir, name);
                if r.is_ok() {
                    stats.dirs += 1;
                    dirs.push((rel.clone(), item));
                }
                r.map_err(io_err(&dst))
            }
            ItemKind::File | ItemKind::Stream => {
                let r = restore_file(repo, &item, dir, name, as_root, progress);
                if r.is_ok() {
                    stats.files += 1;
                    stats.bytes += item.size;
                }
                r.map_err(|e| match e {
                    Error::Io { source, .. } => io_err(&dst)(source),
                    e => e,
                })
            }
            ItemKind::Symlink if item.target.as_deref().unwrap_or_default().is_empty() => {
                stats
                    .refused
                    .push((shown, "a symlink without a target".into()));
                continue;
            }
            ItemKind::Symlink => {
                let target = item.target.as_deref().unwrap_or_default();
                let r = restore_symlink(dir, name, target, &item, as_root);
                if r.is_ok() {
                    stats.links += 1;
                }
                r.map_err(io_err(&dst))
            }
        };
        match r {
            Ok(()) => {}
            Err(e) if is_damage(&e) => {
                progress.warn(&format!("{shown}: {e}"));
                stats.damaged.push((shown, e.to_string()));
            }
            Err(Error::Io { source, .. }) if is_refusal(&source) => {
                stats.refused.push((shown, refusal(&source)));
            }
            Err(e) => return Err(e),
        }
    }
    // Directory metadata last, deepest first, so adding files does not
    // disturb the restored mtimes. Owner before mode: chown clears the
    // setuid and setgid bits.
    for (rel, item) in dirs.iter().rev() {
        let comps = path_components(rel)?;
        let (name, parents) = comps.split_last().expect("at least one component");
        let dst = root.join(OsStr::from_bytes(rel));
        let r = target
            .dir(parents)
            .and_then(|p| open_at(p, name, libc::O_RDONLY | libc::O_DIRECTORY))
            .and_then(|fd| {
                let f = File::from(fd);
                f.set_permissions(fs::Permissions::from_mode(owned_mode(&f, item, as_root)))?;
                let _ = f.set_modified(mtime(item));
                Ok(())
            });
        match r {
            Ok(()) => {}
            Err(e) if is_refusal(&e) => stats
                .refused
                .push((String::from_utf8_lossy(rel).into_owned(), refusal(&e))),
            Err(e) => return Err(io_err(&dst)(e)),
        }
    }
    progress.finish();
    Ok(stats)
}

/// What the snapshot asks for that this target cannot take: a symlink or
/// a non-directory where restore must walk into a directory, a directory
/// where a file goes, a name too long for the file system.
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::EISDIR | libc::ENAMETOOLONG | libc::EINVAL)
    )
}

fn refusal(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) => format!("a symlink or a non-directory is in the way ({e}); it is never followed, so nothing was written outside the target"),
        _ => e.to_string(),
    }
}

/// Directories under a restore's root, opened one component at a time
/// with `O_NOFOLLOW`. Keeps the descriptors of the last path walked, so a
/// run of items in one directory opens it once.
struct Target {
    root: OwnedFd,
    open: Vec<(Vec<u8>, OwnedFd)>,
}

impl Target {
    fn open(root: &Path) -> io::Result<Target> {
        let f = File::open(root)?;
        if !f.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Target {
            root: OwnedFd::from(f),
            open: Vec::new(),
        })
    }

    /// The directory `parents` (components under the root), created with
    /// mode 0700 where missing (their own mode comes at the end).
    fn dir(&mut self, parents: &[&[u8]]) -> io::Result<BorrowedFd<'_>> {
        let same = self
            .open
            .iter()
            .zip(parents)
            .take_while(|((a, _), b)| a.as_slice() == **b)
            .count();
        self.open.truncate(same);
        for comp in &parents[same..] {
            let at = self
                .open
                .last()
                .map(|(_, fd)| fd.as_fd())
                .unwrap_or(self.root.as_fd());
            let fd = match open_at(at, comp, libc::O_RDONLY | libc::O_DIRECTORY) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    mkdirat(at, comp)?;
                    open_at(at, comp, libc::O_RDONLY | libc::O_DIRECTORY)?
                }
                r => r?,
            };
            self.open.push((comp.to_vec(), fd));
        }
        Ok(self
            .open
            .last()
            .map(|(_, fd)| fd.as_fd())
            .unwrap_or(self.root.as_fd()))
    }
}

/// A temp name that fits beside any name (NAME_MAX is 255 bytes).
fn temp_name() -> Vec<u8> {
    format!(".relic-{:016x}.tmp", rand::random::<u64>()).into_bytes()
}

fn restore_symlink(
    dir: BorrowedFd<'_>,
    name: &[u8],
    target: &[u8],
    item: &Item,
    as_root: bool,
) -> io::Result<()> {
    let tmp = temp_name();
    symlinkat(target, dir, &tmp)?;
    if as_root {
        // Best effort, as for files: a link keeps working whoever owns it.
        let _ = lchownat(dir, &tmp, item.uid, item.gid);
    }
    // rename replaces whatever is at `name` (never following it).
    renameat(dir, &tmp, name).inspect_err(|_| unlinkat(dir, &tmp))
}

/// Gives a restored file or directory its owner (as root), then returns
/// the mode to set: chown clears setuid and setgid, so the mode comes
/// after; and when the owner could not be set (root squashed, an unmapped
/// id), setuid and setgid are dropped rather than granted to whoever owns
/// the file now.
fn owned_mode(f: &File, item: &Item, as_root: bool) -> u32 {
    let mode = item.mode & 0o7777;
    let owned = if as_root {
        std::os::unix::fs::fchown(f, Some(item.uid), Some(item.gid)).is_ok()
    } else {
        f.metadata()
            .is_ok_and(|m| m.uid() == item.uid && m.gid() == item.gid)
    };
    if owned {
        mode
    } else {
        mode & !0o6000
    }
}

fn mtime(item: &Item) -> std::time::SystemTime {
    if item.kind == crate::snapshot::ItemKind::Stream && item.mtime_ns == 0 {
        // A stream has no time of its own: restored now.
        std::time::SystemTime::now()
    } else if item.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(item.mtime_ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(item.mtime_ns.unsigned_abs())
    }
}

/// Restores a file's content to a temp name beside it (created, never
/// followed), sets owner, then mode (chown clears setuid/setgid), then
/// mtime, and renames it into place once its BLAKE3 matched.
fn restore_file(
    repo: &Repository,
    item: &Item,
    dir: BorrowedFd<'_>,
    name: &[u8],
    as_root: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let tmp = temp_name();
    let shown = || PathBuf::from(OsStr::from_bytes(name));
    let fd = open_at(dir, &tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .map_err(|e| io_err(&shown())(e))?;
    let r = (|| {
        let mut out = SparseFile {
            file: File::from(fd),
            pos: 0,
        };
        repo.restore_item(item, &mut out, progress)?;
        let f = out.finish().map_err(|e| io_err(&shown())(e))?;
        if item.kind == ItemKind::File {
            f.set_permissions(fs::Permissions::from_mode(owned_mode(&f, item, as_root)))
                .map_err(|e| io_err(&shown())(e))?;
        }
        f.set_modified(mtime(item))
            .map_err(|e| io_err(&shown())(e))?;
        drop(f);
        renameat(dir, &tmp, name).map_err(|e| io_err(&shown())(e))
    })();
    if r.is_err() {
        unlinkat(dir, &tmp);
    }
    r
}

/// Writes a new file, leaving holes where whole aligned 4 KiB blocks are
/// zero, so a sparse file restores sparse (and a file of zeros costs no
/// disk).
struct SparseFile {
    file: File,
    pos: u64,
}

const SPARSE_BLOCK: usize = 4096;

fn is_zero(b: &[u8]) -> bool {
    // SAFETY: every bit pattern is a valid u128.
    let (head, body, tail) = unsafe { b.align_to::<u128>() };
    head.iter().all(|&x| x == 0) && body.iter().all(|&x| x == 0) && tail.iter().all(|&x| x == 0)
}

impl SparseFile {
    /// Sets the file's length (a trailing hole included) and returns it.
    fn finish(self) -> io::Result<File> {
        self.file.set_len(self.pos)?;
        Ok(self.file)
    }
}

impl io::Write for SparseFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut i = 0;
        // (start, end) of the data run not yet written.
        let mut run: Option<usize> = None;
        while i < buf.len() {
            let off = (self.pos as usize + i) % SPARSE_BLOCK;
            let end = (i + SPARSE_BLOCK - off).min(buf.len());
            let whole = off == 0 && end - i == SPARSE_BLOCK;
            if whole && is_zero(&buf[i..end]) {
                if let Some(start) = run.take() {
                    self.file
                        .write_all_at(&buf[start..i], self.pos + start as u64)?;
                }
            } else if run.is_none() {
                run = Some(i);
            }
            i = end;
        }
        if let Some(start) = run {
            self.file
                .write_all_at(&buf[start..], self.pos + start as u64)?;
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
}
