//! A volume's files between the engine's archive and items: each entry
//! of the archive (under `.relic-volume`) stored as an item as it
//! streams, and the items written back as a tar.

use super::TAR_ROOT;
use crate::progress::Progress;
use crate::repo::{self, Repository, Writer};
use crate::snapshot::{ChunkList, Item, ItemKind, Snapshot};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The path under the volume's root of an entry of the engine's archive
/// (`.relic-volume/a/b/` → `a/b`, the root → empty); None when the entry
/// is not under the root.
fn under_root(name: &[u8]) -> Option<&[u8]> {
    let mut name = name;
    while let Some(n) = name.strip_suffix(b"/") {
        name = n;
    }
    while let Some(n) = name.strip_prefix(b"./") {
        name = n;
    }
    if name == TAR_ROOT {
        return Some(b"");
    }
    name.strip_prefix(TAR_ROOT)?.strip_prefix(b"/")
}

/// The item path of an archive entry: `item` for the root, `item/<path>`
/// below it; an entry outside the root or a path that could escape a
/// restore's directory is an error.
fn item_path(item: &str, name: &[u8]) -> repo::Result<Vec<u8>> {
    let bad = |what: &str| {
        repo::Error::Input(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the volume's archive has an entry '{}' {what}",
                String::from_utf8_lossy(name).escape_debug()
            ),
        ))
    };
    let rel = under_root(name).ok_or_else(|| bad("outside the volume"))?;
    if rel.is_empty() {
        return Ok(item.as_bytes().to_vec());
    }
    crate::files::path_components(rel).map_err(|_| bad("with an unsafe path"))?;
    Ok([item.as_bytes(), b"/", rel].concat())
}

/// The entry's metadata, with a pax header's finer mtime and larger
/// owner ids over the ustar fields.
fn entry_meta<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<(u32, u32, u32, i64)> {
    let h = e.header();
    let mode = h.mode()? & 0o7777;
    let mut uid = h.uid()?;
    let mut gid = h.gid()?;
    let mut mtime_ns = (h.mtime()? as i64).saturating_mul(1_000_000_000);
    if let Some(pax) = e.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let (Ok(k), Ok(v)) = (ext.key(), ext.value()) else {
                continue;
            };
            match k {
                "uid" => uid = v.parse().unwrap_or(uid),
                "gid" => gid = v.parse().unwrap_or(gid),
                "mtime" => mtime_ns = parse_pax_time(v).unwrap_or(mtime_ns),
                _ => {}
            }
        }
    }
    let id = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok((mode, id(uid), id(gid), mtime_ns))
}

/// A pax time (`1577934245.5`, `-1.25`) in nanoseconds.
fn parse_pax_time(v: &str) -> Option<i64> {
    let (neg, v) = match v.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, v),
    };
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    let t = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if neg { -t } else { t })
}

/// Reads the engine's archive of a volume (entries under
/// `.relic-volume`), as it streams, into the write session as items under
/// `item`: the root as the directory `item`, each entry as
/// `item/<path>`, files chunked as they are read. A hard link is stored as
/// a copy of the file it links to (no data is stored twice); devices,
/// fifos and sockets are skipped with a warning (`files.skipped`).
pub(crate) fn store_tar(w: &mut Writer<'_>, tar: impl Read, item: &str) -> repo::Result<()> {
    let input = repo::Error::Input;
    let mut archive = tar::Archive::new(tar);
    // Every file stored so far, for the hard links to it.
    let mut files: HashMap<Vec<u8>, (u64, [u8; 32], ChunkList)> = HashMap::new();
    for entry in archive.entries().map_err(input)? {
        let mut entry = entry.map_err(input)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let path = item_path(item, &entry.path_bytes())?;
        let (mode, uid, gid, mtime_ns) = entry_meta(&mut entry).map_err(input)?;
        let mut it = Item {
            path,
            kind: ItemKind::Dir,
            mode: mode | S_IFDIR,
            uid,
            gid,
            mtime_ns,
            size: 0,
            hash: [0; 32],
            target: None,
            content: ChunkList::default(),
        };
        if kind.is_dir() {
        } else if kind.is_file() {
            let s = w.store_stream(&mut entry)?;
            it.kind = ItemKind::File;
            it.mode = mode | S_IFREG;
            (it.size, it.hash) = (s.size, s.hash);
            files.insert(it.path.clone(), (s.size, s.hash, s.content.clone()));
            it.content = s.content;
        } else if kind.is_symlink() {
            it.kind = ItemKind::Symlink;
            it.mode = mode | S_IFLNK;
            it.target = Some(entry.link_name_bytes().unwrap_or_default().into_owned());
        } else if kind.is_hard_link() {
            let to = entry.link_name_bytes().unwrap_or_default().into_owned();
            let Some((size, hash, content)) = item_path(item, &to)
                .ok()
                .and_then(|p| files.get(&p).cloned())
            else {
                w.skip(&format!(
                    "{}: a hard link to '{}', which the archive holds no file at",
                    it.path_lossy(),
                    String::from_utf8_lossy(&to)
                ));
                continue;
            };
            it.kind = ItemKind::File;
            it.mode = mode | S_IFREG;
            (it.size, it.hash, it.content) = (size, hash, content);
        } else {
            w.skip(&format!(
                "{}: not a file, directory or symlink ({kind:?})",
                it.path_lossy()
            ));
            continue;
        }
        w.add_item(&it)?;
    }
    Ok(())
}

/// Writes the items of `snap` under `item` (the volume's root and what is
/// under it) as a tar whose entries are under `.relic-volume`, each file's
/// content streamed from the repository; returns the entries and bytes
/// written. Names and link targets too long for ustar, and mtimes finer
/// than a second, go in pax headers.
pub(crate) fn write_tar(
    repo: &Repository,
    snap: &Snapshot,
    item: &str,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> repo::Result<(u64, u64)> {
    let output = repo::Error::Output;
    let under = format!("{item}/");
    // Each item's restore flushes its output: let the channel's 1 MiB
    // pieces go whole, not a piece per small file (5000 files of 4 KB took
    // 5 s that way, a round trip to the engine each).
    let mut out = NoFlush(out);
    let mut b = tar::Builder::new(&mut out as &mut dyn Write);
    let (mut entries, mut bytes) = (0u64, 0u64);
    for it in repo.items(snap) {
        let it = it?;
        let rel: &[u8] = if it.path == item.as_bytes() {
            b""
        } else if let Some(rel) = it.path.strip_prefix(under.as_bytes()) {
            rel
        } else {
            continue;
        };
        let mut name = TAR_ROOT.to_vec();
        if !rel.is_empty() {
            name.push(b'/');
            name.extend_from_slice(rel);
        }
        let (h, pax) = header(&it, &name);
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))
                .map_err(output)?;
        }
        if h.entry_type().is_file() {
            let w = b.get_mut();
            w.write_all(h.as_bytes()).map_err(output)?;
            repo.restore_item(&it, w, progress)?;
            let pad = (512 - (it.size % 512) as usize) % 512;
            w.write_all(&[0u8; 512][..pad]).map_err(output)?;
            bytes += it.size;
        } else {
            b.append(&h, io::empty()).map_err(output)?;
        }
        entries += 1;
    }
    b.into_inner().map_err(output)?;
    Ok((entries, bytes))
}

/// A writer whose flush does nothing: its owner flushes the inner one.
struct NoFlush<'w>(&'w mut dyn Write);

impl Write for NoFlush<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The ustar header of an item named `name` in the tar, and the pax
/// records it needs besides.
fn header(it: &Item, name: &[u8]) -> (tar::Header, Vec<(&'static str, Vec<u8>)>) {
    let mut h = tar::Header::new_ustar();
    let mut pax: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let (ty, size) = match it.kind {
        ItemKind::Dir => (tar::EntryType::Directory, 0),
        ItemKind::Symlink => (tar::EntryType::Symlink, 0),
        ItemKind::File | ItemKind::Stream => (tar::EntryType::Regular, it.size),
    };
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(it.mode & 0o7777);
    h.set_uid(u64::from(it.uid));
    h.set_gid(u64::from(it.gid));
    let secs = it.mtime_ns.div_euclid(1_000_000_000);
    let nanos = it.mtime_ns.rem_euclid(1_000_000_000);
    h.set_mtime(secs.max(0) as u64);
    if nanos != 0 || secs < 0 {
        pax.push(("mtime", format!("{secs}.{nanos:09}").into_bytes()));
    }
    let mut shown = name.to_vec();
    if it.kind == ItemKind::Dir {
        shown.push(b'/');
    }
    if h.set_path(OsStr::from_bytes(&shown)).is_err() {
        pax.push(("path", shown));
        h.set_path("relic-long-name").expect("a short name");
    }
    if let Some(target) = &it.target {
        if h.set_link_name(OsStr::from_bytes(target)).is_err() {
            pax.push(("linkpath", target.clone()));
            h.set_link_name("relic-long-link")
                .expect("a short link name");
        }
    }
    h.set_cksum();
    (h, pax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{testing, SnapshotOptions};
    use crate::snapshot::Tier;
    use crate::SnapshotId;

    /// One entry of a tar, as the engine would extract it.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        name: Vec<u8>,
        kind: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: Option<Vec<u8>>,
        data: Vec<u8>,
    }

    fn entries(tar: &[u8]) -> Vec<Seen> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                let h = e.header().clone();
                let name = e.path_bytes().into_owned();
                let link = e.link_name_bytes().map(|l| l.into_owned());
                e.read_to_end(&mut data).unwrap();
                Seen {
                    name,
                    kind: h.entry_type().as_byte(),
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    mtime: h.mtime().unwrap(),
                    link,
                    data,
                }
            })
            .collect()
    }

    fn hdr(ty: tar::EntryType, mode: u32, uid: u64, mtime: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid + 1);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    }

    /// A volume's archive as the engine gives it: the root, nested
    /// directories, modes 0600 and 0755, a non-root owner, a symlink, a
    /// long odd name, a hard link, a fifo, and a file of 300 KB.
    fn volume_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode| {
            let mut h = hdr(tar::EntryType::Directory, mode, 0, 1_600_000_000, 0);
            b.append_data(&mut h, name, io::empty()).unwrap();
        };
        let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode, uid, data: &[u8]| {
            let mut h = hdr(
                tar::EntryType::Regular,
                mode,
                uid,
                1_600_000_123,
                data.len() as u64,
            );
            b.append_data(&mut h, name, data).unwrap();
        };
        dir(&mut b, ".relic-volume/", 0o755);
        dir(&mut b, ".relic-volume/a/", 0o700);
        dir(&mut b, ".relic-volume/a/b/", 0o755);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        file(&mut b, ".relic-volume/a/b/big.bin", 0o644, 1000, &big);
        file(&mut b, ".relic-volume/a/secret", 0o600, 999, b"pw");
        let long = format!(".relic-volume/a/{} é 日本 'q' \"d\" -x", "n".repeat(120));
        file(&mut b, &long, 0o755, 1000, b"#!/bin/sh\n");
        let mut h = hdr(tar::EntryType::Symlink, 0o777, 0, 1_600_000_000, 0);
        b.append_link(&mut h, ".relic-volume/link", "a/secret")
            .unwrap();
        let mut h = hdr(tar::EntryType::Link, 0o600, 999, 1_600_000_123, 0);
        b.append_link(&mut h, ".relic-volume/hard", ".relic-volume/a/secret")
            .unwrap();
        let mut h = hdr(tar::EntryType::Fifo, 0o644, 0, 1_600_000_000, 0);
        b.append_data(&mut h, ".relic-volume/fifo", io::empty())
            .unwrap();
        b.into_inner().unwrap()
    }

    fn store(repo: &Repository, name: &str, tar: &[u8]) -> repo::Result<(SnapshotId, Snapshot)> {
        let opts = SnapshotOptions {
            name: name.into(),
            tier: Tier::Daily,
            labels: Default::default(),
            meta: Default::default(),
            time_ns: None,
        };
        repo.backup(&opts, &crate::NoProgress, |w| {
            store_tar(w, tar, "volumes/v")
        })
    }

    #[test]
    fn an_archive_goes_to_items_and_back_to_the_same_tar() {
        let (_d, repo) = testing::repo();
        let tar = volume_tar();
        let (_, snap) = store(&repo, "vol", &tar).unwrap();
        assert_eq!(
            snap.meta.get("files.skipped").map(String::as_str),
            Some("1"),
            "the fifo is skipped"
        );
        let items: Vec<Item> = repo.items(&snap).map(|i| i.unwrap()).collect();
        let paths: Vec<String> = items.iter().map(Item::path_lossy).collect();
        assert_eq!(paths[0], "volumes/v");
        assert_eq!(paths[3], "volumes/v/a/b/big.bin");
        let secret = &items[4];
        assert_eq!(
            (secret.kind, secret.mode, secret.uid, secret.gid),
            (ItemKind::File, 0o100600, 999, 1000)
        );
        assert_eq!(secret.mtime_ns, 1_600_000_123_000_000_000);
        let link = items.iter().find(|i| i.path == b"volumes/v/link").unwrap();
        assert_eq!(link.kind, ItemKind::Symlink);
        assert_eq!(link.target.as_deref(), Some(&b"a/secret"[..]));
        let hard = items.iter().find(|i| i.path == b"volumes/v/hard").unwrap();
        assert_eq!((hard.kind, hard.hash), (ItemKind::File, secret.hash));

        let mut back = Vec::new();
        let (n, bytes) =
            write_tar(&repo, &snap, "volumes/v", &mut back, &crate::NoProgress).unwrap();
        assert_eq!(n, items.len() as u64);
        assert_eq!(bytes, 300_000 + 2 + 10 + 2);
        let before = entries(&tar);
        let after = entries(&back);
        // The hard link comes back as a copy of its file; the fifo not at all.
        let expected: Vec<&Seen> = before
            .iter()
            .filter(|s| s.kind != b'6' && s.kind != b'1')
            .collect();
        let got: Vec<&Seen> = after
            .iter()
            .filter(|s| s.name != b".relic-volume/hard")
            .collect();
        assert_eq!(got, expected);
        let hard = after
            .iter()
            .find(|s| s.name == b".relic-volume/hard")
            .unwrap();
        assert_eq!((hard.kind, &hard.data[..]), (b'0', &b"pw"[..]));
    }

    #[test]
    fn finer_mtimes_and_long_links_go_in_pax_records() {
        let mut it = Item {
            path: b"volumes/v/x".to_vec(),
            kind: ItemKind::Symlink,
            mode: 0o120777,
            uid: 5,
            gid: 6,
            mtime_ns: 1_577_934_245_123_456_789,
            size: 0,
            hash: [0; 32],
            target: Some(vec![b'z'; 150]),
            content: ChunkList::default(),
        };
        let (_, pax) = header(&it, b".relic-volume/x");
        assert_eq!(pax[0], ("mtime", b"1577934245.123456789".to_vec()));
        assert_eq!(pax[1], ("linkpath", vec![b'z'; 150]));
        it.mtime_ns = -1_500_000_000;
        let (_, pax) = header(&it, b".relic-volume/x");
        assert_eq!(pax[0], ("mtime", b"-2.500000000".to_vec()));
        assert_eq!(
            parse_pax_time("1577934245.123456789"),
            Some(1_577_934_245_123_456_789)
        );
        assert_eq!(parse_pax_time("-1.5"), Some(-1_500_000_000));
        assert_eq!(parse_pax_time("12"), Some(12_000_000_000));
        assert_eq!(parse_pax_time("1.x"), None);
    }

    #[test]
    fn entries_outside_the_volume_are_refused() {
        assert_eq!(under_root(b".relic-volume/"), Some(&b""[..]));
        assert_eq!(under_root(b"./.relic-volume/a/b/"), Some(&b"a/b"[..]));
        let (_d, repo) = testing::repo();
        for name in ["other/x", ".relic-volume/../x", ".relic-volumex/y"] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = hdr(tar::EntryType::Regular, 0o644, 0, 0, 1);
            // The tar crate refuses `..` in a path: write the name raw.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            let err = store(&repo, "bad", &b.into_inner().unwrap()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
}
