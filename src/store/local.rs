//! A repository directory: write-once objects keyed by (kind, name), never
//! overwritten, and the few things beside them that only a local directory
//! has (temp files, the index directory, state files, name locks).
//!
//! Every object is written to `tmp/`, fsynced, then linked into place with a
//! no-replace link and the directory fsynced: a crash leaves either the whole
//! object or only a temp file, never half an object under its final name.

use super::{hash_reader, Error, Kind, Result, Store};
use rand::RngCore;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An object opened for reading (`read_exact_at`).
pub type ObjectFile = File;

/// A repository directory.
#[derive(Clone, Debug)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Local { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when nothing is there yet: no directory, or an empty one.
    pub fn is_vacant(&self) -> io::Result<bool> {
        match fs::read_dir(&self.root) {
            Ok(mut d) => Ok(d.next().is_none()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// False when the directory cannot be written (a read-only mount).
    pub fn is_writable(&self) -> bool {
        crate::sys::writable(&self.root)
    }

    /// Creates the directory layout. The fan-out directories of packs
    /// (`packs/00` … `packs/ff`) are made by the first pack that needs one:
    /// made up front, their 256 directory blocks were 1 MB, more than a
    /// small repository's data.
    pub fn create_layout(&self) -> io::Result<()> {
        for d in ["packs", "snapshots", "locks", "keys", "tmp"] {
            fs::create_dir_all(self.root.join(d))?;
        }
        Ok(())
    }

    /// Where the object `name` of `kind` lives.
    pub fn path(&self, kind: Kind, name: &str) -> PathBuf {
        self.root.join(super::object_path(kind, name))
    }

    /// A new temp file in `tmp/`, named `<pid>-<host tag>-<random>` so stale
    /// ones can be recognised. Removed when dropped unless published.
    pub fn temp_object(&self) -> io::Result<TempObject> {
        let mut r = [0u8; 8];
        rand::rng().fill_bytes(&mut r);
        let path = self.root.join("tmp").join(format!(
            "{}-{}-{}",
            std::process::id(),
            host_tag(),
            hex::encode(r)
        ));
        let open = || {
            OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&path)
        };
        // A copy of a repository that lost its empty directories (git, some
        // archivers, object storage) is still a repository.
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.root.exists() => {
                fs::create_dir_all(self.root.join("tmp"))?;
                open()?
            }
            r => r?,
        };
        Ok(TempObject {
            path,
            file: Some(file),
        })
    }

    /// Writes a whole object: temp + fsync + link + fsync of the directory.
    /// False when the object already existed; nothing is overwritten.
    pub fn write_once(&self, kind: Kind, name: &str, bytes: &[u8]) -> io::Result<bool> {
        let mut t = self.temp_object()?;
        t.write_all(bytes)?;
        t.publish(self, kind, name)
    }

    /// Replaces an object's content (temp + fsync + rename over it): only
    /// for locks, which are rewritten while held; never for data.
    pub fn replace(&self, kind: Kind, name: &str, bytes: &[u8]) -> io::Result<()> {
        debug_assert_eq!(kind, Kind::Lock);
        self.write_over(&self.path(kind, name), bytes)
    }

    /// Writes back an object whose file is damaged from a verified copy of
    /// its bytes: the damaged file is first linked into `damaged/<kind>/`,
    /// then the copy, complete on disk, is renamed over it (repair only).
    pub fn rewrite_damaged(&self, kind: Kind, name: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = self.damaged_dir(kind)?;
        let at = self.path(kind, name);
        match fs::hard_link(&at, dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        self.write_over(&at, bytes)
    }

    /// Writes `bytes` to a temp file, fsyncs it and renames it over `dst`.
    fn write_over(&self, dst: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut t = self.temp_object()?;
        t.write_all(bytes)?;
        t.rename_over(dst)
    }

    /// Moves a damaged object out of the listing, into `damaged/<kind>/`,
    /// where forensic tools can still find it (repair only).
    pub fn set_aside(&self, kind: Kind, name: &str) -> io::Result<()> {
        let dir = self.damaged_dir(kind)?;
        fs::rename(self.path(kind, name), dir.join(name))?;
        sync_dir(&dir)
    }

    fn damaged_dir(&self, kind: Kind) -> io::Result<PathBuf> {
        let dir = self.root.join("damaged").join(kind.dir());
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    pub fn read(&self, kind: Kind, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(kind, name))
    }

    pub fn open(&self, kind: Kind, name: &str) -> io::Result<ObjectFile> {
        File::open(self.path(kind, name))
    }

    /// An object's size in bytes.
    pub fn size(&self, kind: Kind, name: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.path(kind, name))?.len())
    }

    pub fn exists(&self, kind: Kind, name: &str) -> bool {
        self.path(kind, name).exists()
    }

    pub fn remove(&self, kind: Kind, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(kind, name))
    }

    /// Names of all objects of a kind (temp files and strays excluded).
    pub fn list(&self, kind: Kind) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        if kind == Kind::Config {
            if self.exists(Kind::Config, "config") {
                out.push("config".to_string());
            }
            return Ok(out);
        }
        let base = self.root.join(kind.dir());
        // A kind's directory may be missing in a copy that lost its empty
        // directories; the root itself must be there.
        if !base.exists() && self.root.exists() {
            return Ok(out);
        }
        if kind == Kind::Pack {
            for sub in fs::read_dir(&base)? {
                let sub = sub?;
                if sub.file_type()?.is_dir() {
                    list_names(&sub.path(), &mut out)?;
                }
            }
        } else {
            list_names(&base, &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    /// Removes the objects of a kind last modified more than `age` ago
    /// (best effort); returns how many went.
    pub fn remove_older_than(&self, kind: Kind, age: std::time::Duration) -> usize {
        let Ok(names) = self.list(kind) else {
            return 0;
        };
        let mut n = 0;
        for name in names {
            let path = self.path(kind, &name);
            let old = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|e| e > age);
            if old && fs::remove_file(&path).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Removes the temp files left behind by processes that no longer run
    /// on this host (best effort: one that cannot be removed stays).
    pub fn remove_stale_temp_files(&self) {
        let Ok(dir) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        let tag = host_tag();
        for e in dir.flatten() {
            let name = e.file_name();
            let mut parts = name.to_str().unwrap_or_default().split('-');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            if let (Some(pid), Some(t)) = (pid, parts.next()) {
                if t == tag && !crate::sys::pid_alive(pid) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Removes the whole directory (a mirror being replaced).
    pub fn destroy(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A state file of this repository (not an object: it may be rewritten),
    /// e.g. `damaged.json`; `None` when there is none.
    pub fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.root.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces a state file (temp + fsync + rename); `None` removes it.
    pub fn write_state(&self, name: &str, bytes: Option<&[u8]>) -> io::Result<()> {
        let path = self.root.join(name);
        match bytes {
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Some(b) => self.write_over(&path, b),
        }
    }

    /// An exclusive `flock` on `locks/<name>`, created if need be, waiting
    /// for it; released when the returned file is dropped (or the process
    /// dies, so it is never stale).
    pub fn flock(&self, name: &str) -> io::Result<File> {
        self.try_flock_as(name, true)
            .map(|f| f.expect("a waiting flock is taken"))
    }

    /// [`Local::flock`] without waiting: `None` while another holds it.
    pub fn try_flock(&self, name: &str) -> io::Result<Option<File>> {
        self.try_flock_as(name, false)
    }

    fn try_flock_as(&self, name: &str, wait: bool) -> io::Result<Option<File>> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(name))?;
        Ok(crate::sys::flock(&f, wait)?.then_some(f))
    }

    fn err(&self, source: io::Error) -> Error {
        Error::Io {
            store: self.root.display().to_string(),
            source,
        }
    }

    /// Creates the layout when a `sync` writes into a new directory.
    fn ensure_layout(&self) -> io::Result<()> {
        if !self.root.join("tmp").exists() {
            self.create_layout()?;
        }
        Ok(())
    }
}

/// A file being written in `tmp/`: published under an object's name once
/// complete, removed if dropped before.
pub struct TempObject {
    path: PathBuf,
    file: Option<File>,
}

impl TempObject {
    /// Where the temp file is (until it is published or dropped).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp object is open")
    }

    /// fsyncs the file and links it into place. Returns false when the
    /// object already existed (same name, same content): the temp file is
    /// then removed and nothing is overwritten.
    pub fn publish(mut self, store: &Local, kind: Kind, name: &str) -> io::Result<bool> {
        self.file().sync_all()?;
        self.file = None;
        let dst = store.path(kind, name);
        let parent = dst.parent().expect("object has a parent");
        let created = match fs::hard_link(&self.path, &dst) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // A kind whose directory comes and goes (audit/), or a fan-out
            // directory of packs not made yet: made, and its own entry
            // synced, so the object survives a crash with its directory.
            // Another writer may make it between our link and this (sync
            // sends packs side by side): making it is idempotent.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(parent)?;
                if let Some(grand) = parent.parent() {
                    sync_dir(grand)?;
                }
                match fs::hard_link(&self.path, &dst) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        fs::remove_file(&self.path)?;
        if created {
            sync_dir(parent)?;
        }
        Ok(created)
    }

    /// fsyncs the file and renames it over `dst`.
    fn rename_over(mut self, dst: &Path) -> io::Result<()> {
        self.file().sync_all()?;
        self.file = None;
        fs::rename(&self.path, dst)?;
        sync_dir(dst.parent().expect("object has a parent"))
    }
}

impl Write for TempObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        // Published or renamed: the path is gone and this is a no-op.
        if self.file.take().is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Store for Local {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn local_file(&self, kind: Kind, name: &str) -> Result<Option<(PathBuf, u64)>> {
        let size = self.size(kind, name).map_err(|e| self.err(e))?;
        Ok(Some((self.path(kind, name), size)))
    }

    fn list(&self, kind: Kind) -> Result<std::collections::HashSet<String>> {
        match Local::list(self, kind) {
            Ok(v) => Ok(v.into_iter().collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn list_sized(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let names = Store::list(self, kind)?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            match self.size(kind, &n) {
                Ok(size) => out.push((n, size)),
                // Removed since the listing (a prune): not there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(out)
    }

    fn put_file(&self, kind: Kind, name: &str, src: &Path, _size: u64) -> Result<bool> {
        let r = (|| {
            self.ensure_layout()?;
            let mut t = self.temp_object()?;
            io::copy(&mut File::open(src)?, &mut t)?;
            t.publish(self, kind, name)
        })();
        r.map_err(|e| self.err(e))
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        Local::read(self, kind, name).map_err(|e| self.err(e))
    }

    fn read_ranges(
        &self,
        kind: Kind,
        name: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let f = File::open(self.path(kind, name)).map_err(|e| self.err(e))?;
        ranges
            .iter()
            .map(|r| {
                let mut buf = vec![0; r.end.saturating_sub(r.start) as usize];
                f.read_exact_at(&mut buf, r.start)
                    .map_err(|e| self.err(e))?;
                Ok(buf)
            })
            .collect()
    }

    fn get_into(&self, kind: Kind, name: &str, out: &mut dyn Write) -> Result<u64> {
        let mut f = self.open(kind, name).map_err(|e| self.err(e))?;
        io::copy(&mut f, out).map_err(|e| self.err(e))
    }

    fn put_bytes(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool> {
        self.ensure_layout().map_err(|e| self.err(e))?;
        self.write_once(kind, name, bytes).map_err(|e| self.err(e))
    }

    fn rewrite_lock(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.replace(Kind::Lock, name, bytes)
            .map_err(|e| self.err(e))
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        match Local::remove(self, kind, name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.err(e)),
            _ => Ok(()),
        }
    }

    fn hash(&self, kind: Kind, name: &str) -> Result<([u8; 32], u64)> {
        let f = self.open(kind, name).map_err(|e| self.err(e))?;
        hash_reader(f).map_err(|e| self.err(e))
    }
}

/// Eight hex digits naming this host in temp file names.
fn host_tag() -> String {
    hex::encode(&blake3::hash(crate::sys::hostname().as_bytes()).as_bytes()[..4])
}

fn list_names(dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str() {
            if n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(n.to_string());
            }
        }
    }
    Ok(())
}

/// fsync a directory so a rename or link in it survives a power loss.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a directory outside the object layout (the index, a cache).
pub fn create_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}

/// Removes a directory outside the object layout and all it holds (a
/// secondary index's scratch directory); gone already is fine.
pub fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_once_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let name = "ab".repeat(32);
        assert!(b.write_once(Kind::Pack, &name, b"one").unwrap());
        assert!(!b.write_once(Kind::Pack, &name, b"two").unwrap());
        assert_eq!(b.read(Kind::Pack, &name).unwrap(), b"one");
        assert_eq!(b.list(Kind::Pack).unwrap(), vec![name]);
        assert!(fs::read_dir(d.path().join("tmp")).unwrap().next().is_none());
    }

    #[test]
    fn ranges_of_an_object_read_alone() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let name = "cd".repeat(32);
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        assert!(b.write_once(Kind::Pack, &name, &data).unwrap());
        let got = Store::read_ranges(&b, Kind::Pack, &name, &[9_000..10_000, 0..0, 5..9]).unwrap();
        assert_eq!(got, [&data[9_000..], &[][..], &data[5..9]]);
        let past = [9_999..10_001, 0..1];
        assert!(Store::read_ranges(&b, Kind::Pack, &name, &past).is_err());
    }

    #[test]
    fn a_copy_without_its_empty_directories_is_written_to() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        assert!(b.list(Kind::Lock).unwrap().is_empty());
        let name = "ef".repeat(32);
        assert!(b.write_once(Kind::Pack, &name, b"p").unwrap());
        assert!(b.write_once(Kind::Lock, &name, b"l").unwrap());
        drop(b.flock("name-x.flock").unwrap());
        assert_eq!(b.list(Kind::Pack).unwrap(), vec![name]);
        assert!(Local::new(d.path().join("gone")).list(Kind::Pack).is_err());
    }

    #[test]
    fn a_dropped_temp_object_leaves_nothing_and_state_files_are_replaced() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let mut t = b.temp_object().unwrap();
        t.write_all(b"half a pack").unwrap();
        drop(t);
        assert!(fs::read_dir(d.path().join("tmp")).unwrap().next().is_none());
        assert_eq!(b.read_state("s.json").unwrap(), None);
        b.write_state("s.json", Some(b"1")).unwrap();
        b.write_state("s.json", Some(b"2")).unwrap();
        assert_eq!(b.read_state("s.json").unwrap().as_deref(), Some(&b"2"[..]));
        b.write_state("s.json", None).unwrap();
        assert_eq!(b.read_state("s.json").unwrap(), None);
    }

    #[test]
    fn set_aside_and_rewrite_keep_the_damaged_file() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let name = "cd".repeat(32);
        b.write_once(Kind::Snapshot, &name, b"bad").unwrap();
        b.rewrite_damaged(Kind::Snapshot, &name, b"good").unwrap();
        assert_eq!(b.read(Kind::Snapshot, &name).unwrap(), b"good");
        let kept = d.path().join("damaged/snapshots").join(&name);
        assert_eq!(fs::read(kept).unwrap(), b"bad");
        b.set_aside(Kind::Snapshot, &name).unwrap();
        assert!(b.list(Kind::Snapshot).unwrap().is_empty());
    }
}
