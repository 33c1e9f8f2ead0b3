//! Docker named volumes for tests: an image with the tools containers
//! that use volumes have, a volume filled with a tree of what volumes
//! hold, and a volume's entries as the engine's archive gives them.

use super::engine::*;
use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// An image with a shell, `find` and `sleep`, like the images whose
/// containers use volumes; its containers sleep.
pub fn tools_image() -> String {
    host_binaries_image(
        "relic-test/tools:1",
        &["/bin/sh", "/usr/bin/find", "/bin/sleep"],
        &["CMD [\"/bin/sleep\", \"3600\"]"],
    )
}

/// Runs `f` with a created (never started) container that mounts
/// `volume` at /v; removes it after.
pub fn with_container<T>(volume: &str, f: impl FnOnce(&str) -> T) -> T {
    let name = format!("{}-{:x}", prefix("peek"), rand::random::<u32>());
    docker_ok(&[
        "create",
        "--name",
        &name,
        "-v",
        &format!("{volume}:/v"),
        &tools_image(),
    ]);
    let r = f(&name);
    docker_ok(&["rm", "-f", &name]);
    r
}

/// Copies the tree at `dir` into `volume` (owners kept).
pub fn fill(volume: &str, dir: &Path) {
    with_container(volume, |c| {
        docker_ok(&[
            "cp",
            "-a",
            &format!("{}/.", dir.display()),
            &format!("{c}:/v/"),
        ])
    });
}

/// Every entry of `volume` as the engine's archive gives it: path →
/// (type, mode, uid, gid, mtime, link target, BLAKE3 of the content).
pub type Listing = BTreeMap<Vec<u8>, (u8, u32, u64, u64, u64, Option<Vec<u8>>, String)>;

pub fn listing(volume: &str) -> Listing {
    let tar = with_container(volume, |c| docker_ok(&["cp", &format!("{c}:/v"), "-"]));
    let mut a = tar::Archive::new(&tar[..]);
    let mut out = Listing::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.insert(
            path,
            (
                h.entry_type().as_byte(),
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                link,
                blake3::hash(&data).to_hex().to_string(),
            ),
        );
    }
    out
}

/// A tree with what volumes hold: nested directories, a symlink, modes
/// 0600 and 0755, files of a non-root owner, odd names, a few MB.
pub fn tree(dir: &Path) {
    let d = |p: &str| dir.join(p);
    std::fs::create_dir_all(d("uploads/2026/01")).unwrap();
    std::fs::create_dir_all(d("conf.d")).unwrap();
    std::fs::write(d("uploads/2026/01/photo.bin"), random(3 << 20, 5)).unwrap();
    std::fs::write(d("uploads/2026/01/rows.csv"), rows(1 << 20, 6)).unwrap();
    std::fs::write(d("conf.d/secret.key"), b"k3y\n").unwrap();
    std::fs::set_permissions(d("conf.d/secret.key"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(d("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(d("run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
    for odd in [
        "with space.txt",
        "é 日本語.txt",
        "quote'\"s.txt",
        "-dash.txt",
        &format!("{}.txt", "long".repeat(40)),
    ] {
        std::fs::write(d(&format!("uploads/{odd}")), odd.as_bytes()).unwrap();
    }
    symlink("../conf.d/secret.key", d("uploads/key-link")).unwrap();
    for p in ["uploads", "uploads/2026", "uploads/2026/01/photo.bin"] {
        std::os::unix::fs::lchown(d(p), Some(1000), Some(1001)).unwrap();
    }
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::open(d("uploads/2026/01/rows.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// Asserts two listings are equal, naming the entries that differ.
#[track_caller]
pub fn assert_same(got: &Listing, want: &Listing, what: &str) {
    let keys: std::collections::BTreeSet<&Vec<u8>> = got.keys().chain(want.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| {
            format!(
                "{}: got {:?}, want {:?}",
                String::from_utf8_lossy(k),
                got.get(k),
                want.get(k)
            )
        })
        .collect();
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}
