//! The repository's storage: a local directory of write-once objects, keyed
//! by (kind, name), never overwritten.
//!
//! Every object is written to `tmp/`, fsynced, then linked into place with a
//! no-replace link and the directory fsynced: a crash leaves either the whole
//! object or only a temp file, never half an object under its final name.

use rand::RngCore;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What an object is; decides where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Config,
    Pack,
    Snapshot,
    Lock,
    Key,
    /// Records of baselines retired (`relic baseline retire`).
    Audit,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Pack => "packs",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
            Kind::Key => "keys",
            Kind::Audit => "audit",
        }
    }
}

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

    /// Creates the directory layout (all fan-out directories of packs too).
    pub fn create_layout(&self) -> io::Result<()> {
        for d in ["packs", "snapshots", "locks", "keys", "tmp"] {
            fs::create_dir_all(self.root.join(d))?;
        }
        for i in 0..=255u8 {
            fs::create_dir_all(self.root.join("packs").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    /// Where the object `name` of `kind` lives.
    pub fn path(&self, kind: Kind, name: &str) -> PathBuf {
        match kind {
            Kind::Pack => self.root.join("packs").join(&name[..2]).join(name),
            _ => self.root.join(kind.dir()).join(name),
        }
    }

    /// A new temp file in `tmp/`, named `<pid>-<host tag>-<random>` so stale
    /// ones can be recognised.
    pub fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        let mut r = [0u8; 8];
        rand::rng().fill_bytes(&mut r);
        let path = self.root.join("tmp").join(format!(
            "{}-{}-{}",
            std::process::id(),
            host_tag(),
            hex::encode(r)
        ));
        let f = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, f))
    }

    /// Moves a finished, already fsynced temp file into place. Returns false
    /// when the object already existed (same name, same content): the temp
    /// file is then removed and nothing is overwritten.
    pub fn publish(&self, tmp: &Path, kind: Kind, name: &str) -> io::Result<bool> {
        let dst = self.path(kind, name);
        let created = match fs::hard_link(tmp, &dst) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        fs::remove_file(tmp)?;
        if created {
            sync_dir(dst.parent().expect("object has a parent"))?;
        }
        Ok(created)
    }

    /// Writes a whole object: temp + fsync + link + fsync of the directory.
    pub fn write_once(&self, kind: Kind, name: &str, bytes: &[u8]) -> io::Result<bool> {
        let (tmp, mut f) = self.temp_file()?;
        let r = (|| {
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            self.publish(&tmp, kind, name)
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    /// Replaces an object's content (temp + fsync + rename over it): only
    /// for locks, which are rewritten while held; never for data.
    pub fn replace(&self, kind: Kind, name: &str, bytes: &[u8]) -> io::Result<()> {
        debug_assert_eq!(kind, Kind::Lock);
        let (tmp, mut f) = self.temp_file()?;
        let dst = self.path(kind, name);
        let r = (|| {
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &dst)?;
            sync_dir(dst.parent().expect("object has a parent"))
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    pub fn read(&self, kind: Kind, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(kind, name))
    }

    pub fn open(&self, kind: Kind, name: &str) -> io::Result<File> {
        File::open(self.path(kind, name))
    }

    pub fn remove(&self, kind: Kind, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(kind, name))
    }

    /// Names of all objects of a kind (temp files and strays excluded).
    pub fn list(&self, kind: Kind) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let base = self.root.join(kind.dir());
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

    /// Temp files left behind by processes that no longer run on this host.
    pub fn stale_temp_files(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let dir = self.root.join("tmp");
        if !dir.exists() {
            return Ok(out);
        }
        let tag = host_tag();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let mut parts = name.to_str().unwrap_or_default().split('-');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            if let (Some(pid), Some(t)) = (pid, parts.next()) {
                if t == tag && !crate::lock::pid_alive(pid) {
                    out.push(e.path());
                }
            }
        }
        Ok(out)
    }
}

/// Eight hex digits naming this host in temp file names.
fn host_tag() -> String {
    hex::encode(&blake3::hash(crate::lock::hostname().as_bytes()).as_bytes()[..4])
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
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
}
