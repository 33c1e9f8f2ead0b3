//! Hostile snapshots: crafted through the library with items no file
//! system walk would produce (symlink escapes, `..`, absolute paths, device
//! modes, names of every length), then restored with the real binary.
//! Everything lands inside `--to` or is refused; nothing is ever written
//! outside it, and the intact items are restored.

mod common;
use common::*;
use relic::progress::NoProgress;
use relic::repo::SnapshotOptions;
use relic::snapshot::{Item, ItemKind, Tier};
use relic::Repository;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn item(path: &[u8], kind: ItemKind, mode: u32) -> Item {
    Item {
        path: path.to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime_ns: 1_700_000_000_000_000_000,
        size: 0,
        hash: [0; 32],
        target: None,
        content: Default::default(),
    }
}

/// Writes a snapshot named `name` holding `items`; a `File` item's content
/// is its path, repeated.
fn craft(repo: &Path, name: &str, items: Vec<Item>) -> String {
    let r = Repository::open(repo, Some(PASSWORD.as_bytes())).unwrap();
    let opts = SnapshotOptions {
        name: name.into(),
        tier: Tier::Daily,
        labels: Default::default(),
        meta: Default::default(),
        time_ns: None,
    };
    let (id, _) = r
        .backup(&opts, &NoProgress, |w| {
            for mut it in items {
                if it.kind == ItemKind::File {
                    let s = w.store_stream(&content(&it.path)[..])?;
                    it.size = s.size;
                    it.hash = s.hash;
                    it.content = s.content;
                }
                w.add_item(&it)?;
            }
            Ok::<_, relic::repo::Error>(())
        })
        .unwrap();
    id.to_hex()
}

fn content(path: &[u8]) -> Vec<u8> {
    path.repeat(100)
}

fn symlink(path: &[u8], target: &[u8]) -> Item {
    Item {
        target: Some(target.to_vec()),
        ..item(path, ItemKind::Symlink, 0o777)
    }
}

/// Every file under `dir`, recursively, symlinks not followed.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let e = e.unwrap();
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                out.extend(tree(&e.path()));
            }
        }
    }
    out
}

#[test]
fn hostile_snapshots_restore_inside_the_target_or_are_refused() {
    let (d, repo) = new_repo();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let out_abs = outside.as_os_str().as_encoded_bytes().to_vec();
    let mut items = vec![
        item(b"ok", ItemKind::Dir, 0o755),
        item(b"ok/first", ItemKind::File, 0o644),
        // A symlink to a directory outside, then a file "inside" it.
        item(b"x", ItemKind::Dir, 0o755),
        symlink(b"x/link", &out_abs),
        item(b"x/link/file", ItemKind::File, 0o644),
        symlink(b"x/up", b"../../outside"),
        item(b"x/up/f2", ItemKind::Dir, 0o755),
        item(b"x/up/f3", ItemKind::File, 0o644),
        // A file named like a directory the walk must pass through.
        item(b"plain", ItemKind::File, 0o644),
        item(b"plain/below", ItemKind::File, 0o644),
        // Paths that leave the target or are not paths.
        item(b"../escape", ItemKind::File, 0o644),
        item(b"/abs/escape", ItemKind::File, 0o644),
        item(b"ok/../../escape2", ItemKind::File, 0o644),
        item(b"ok/./dot", ItemKind::File, 0o644),
        item(b"ok//empty", ItemKind::File, 0o644),
        item(b"", ItemKind::File, 0o644),
        item(b"..", ItemKind::Dir, 0o755),
        item(b"ok/nul\0byte", ItemKind::File, 0o644),
        // A character device's mode on a file item: restored as a plain file.
        item(b"ok/device", ItemKind::File, libc::S_IFCHR | 0o666),
        // A file already inside the target that is a symlink out: replaced
        // by the restored link, never written through.
        item(b"pre-file", ItemKind::File, 0o644),
        // A directory inside the target that is a symlink out.
        item(b"pre-dir/inside", ItemKind::File, 0o644),
        item(b"ok/last", ItemKind::File, 0o644),
    ];
    // Names of every length a file system takes, and one it does not.
    for len in [1usize, 100, 200, 240, 246, 250, 254, 255, 256] {
        let mut p = b"ok/".to_vec();
        p.extend(std::iter::repeat_n(b'n', len));
        items.push(item(&p, ItemKind::File, 0o600));
    }
    let id = craft(&repo, "hostile", items);

    let to = d.path().join("to");
    std::fs::create_dir(&to).unwrap();
    std::os::unix::fs::symlink(outside.join("target-of-pre-file"), to.join("pre-file")).unwrap();
    std::os::unix::fs::symlink(&outside, to.join("pre-dir")).unwrap();

    let out = relic(&repo, &["restore", &id[..12], "--to", to.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        tree(&outside).is_empty(),
        "written outside --to: {:?}",
        tree(&outside)
    );
    assert!(!d.path().join("escape").exists() && !d.path().join("escape2").exists());
    assert!(!Path::new("/abs/escape").exists());
    for refused in [
        "x/link/file",
        "x/up/f2",
        "x/up/f3",
        "plain/below",
        "../escape",
        "pre-dir/inside",
        "ok/../../escape2",
    ] {
        assert!(
            err.contains(&format!("refused, not restored: {refused}")),
            "{refused} not reported refused: {err}"
        );
    }
    // Every intact item is there, inside.
    for f in ["ok/first", "ok/last", "plain", "pre-file", "ok/device"] {
        let p = to.join(f);
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file(), "{f} is not a regular file");
        assert_eq!(std::fs::read(&p).unwrap(), content(f.as_bytes()), "{f}");
    }
    assert_eq!(
        std::fs::symlink_metadata(to.join("ok/device"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o666
    );
    assert_eq!(
        std::fs::read_link(to.join("x/link")).unwrap(),
        outside.as_path()
    );
    for len in [1usize, 100, 200, 240, 246, 250, 254, 255] {
        let name = "n".repeat(len);
        let p = to.join("ok").join(&name);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            content(format!("ok/{name}").as_bytes()),
            "name of {len} bytes"
        );
    }
    // No temp file is left anywhere in the target.
    assert!(
        !tree(&to).iter().any(|p| p.contains(".relic-")),
        "{:?}",
        tree(&to)
    );
}

#[test]
fn setuid_and_setgid_bits_survive_a_restore_as_root() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let f = src.join("tool");
    std::fs::write(&f, b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o6755)).unwrap();
    let dir = src.join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
    ok(
        &repo,
        &["backup", "--name", "suid", src.to_str().unwrap()],
        b"",
    );
    let to = d.path().join("to");
    ok(
        &repo,
        &["restore", "suid", "--to", to.to_str().unwrap()],
        b"",
    );
    let rel = src.strip_prefix("/").unwrap();
    let m = std::fs::metadata(to.join(rel).join("tool")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o6755);
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    let m = std::fs::metadata(to.join(rel).join("shared")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o2775);
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
}
