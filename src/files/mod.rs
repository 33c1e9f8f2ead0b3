//! Files and directories in and out: walking paths into items (with mode,
//! owner and mtime) and restoring a snapshot's items into a directory.
//!
//! Paths are stored as absolute paths without the leading `/` (as tar does),
//! so `--to DIR` recreates them under DIR (`restore.rs`).

use crate::repo::{Error, Result, Writer};
use crate::snapshot::{ChunkList, Item, ItemKind};
/// A pipe read from (stdin, a dump) gets a 1 MiB buffer.
pub use crate::sys::widen_pipe;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

mod restore;
pub mod user;
pub use restore::{path_components, restore_mapped, restore_to, target_path, RestoreStats};

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

/// The regular files under `paths` and their bytes (symlinks not
/// followed, unreadable entries not counted): the total a backup's
/// progress counts toward. Reads metadata only.
pub fn scan(paths: &[PathBuf]) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut todo: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = todo.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_file() {
            files += 1;
            bytes += m.len();
        } else if m.is_dir() {
            if let Ok(dir) = fs::read_dir(&p) {
                todo.extend(dir.flatten().map(|e| e.path()));
            }
        }
    }
    (files, bytes)
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
            io_err(p)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stack file must be a relative path inside the stack's root",
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
        // A file written to while it is read is read again once (as borg
        // does); still changing, it is stored as read and marked.
        let mut f = f;
        let mut m = m.clone();
        let mut s = w.store_stream(&f)?;
        for attempt in 0..2 {
            let now = f.metadata().map_err(io_err(path))?;
            if now.len() == s.size
                && now.mtime() == m.mtime()
                && now.mtime_nsec() == m.mtime_nsec()
                && now.len() == m.len()
            {
                break;
            }
            if attempt == 1 {
                w.changed(&path.display().to_string());
                break;
            }
            f = File::open(path).map_err(io_err(path))?;
            m = f.metadata().map_err(io_err(path))?;
            s = w.store_stream(&f)?;
        }
        let m = &m;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_are_normalised() {
        assert_eq!(stored_path(Path::new("/a/./b/../c")).unwrap(), b"a/c");
    }
}
