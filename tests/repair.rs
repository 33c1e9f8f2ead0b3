//! Corruption: flipped bits, a truncated pack, a missing pack, a deleted
//! index, a missing snapshot object. `check` and `repair` name exactly the
//! damaged snapshots, the others still restore, nothing is deleted.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Three snapshots, each with packs of its own; returns their data and
/// packs.
fn three(repo: &Path) -> Vec<(String, Vec<u8>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    for (i, name) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let before = packs(repo);
        let data = [random(1 << 20, i as u64), rows(1 << 20, 10 + i as u64)].concat();
        ok(repo, &["backup", "--stdin", "--name", name], &data);
        let own: Vec<_> = packs(repo)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        out.push((name.to_string(), data, own));
    }
    out
}

fn damaged_names(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = snapshots(repo)
        .iter()
        .filter(|s| s["damaged"] == true)
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn repair_names_the_damaged_snapshots_and_the_rest_restore() {
    let (_d, repo) = new_repo();
    let snaps = three(&repo);
    let out = relic(&repo, &["repair"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(damaged_names(&repo).is_empty());

    // Flip a bit inside alpha's pack, cut beta's pack short.
    let a = &snaps[0].2[0];
    let mut bytes = std::fs::read(a).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x08;
    std::fs::write(a, &bytes).unwrap();
    let b = &snaps[1].2[0];
    let len = std::fs::metadata(b).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(b)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let files_before = std::fs::read_dir(repo.join("packs")).unwrap().count();

    let out = relic(&repo, &["repair"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(alpha)") && text.contains("(beta)"),
        "{text}"
    );
    assert!(!text.contains("(gamma)"), "{text}");
    assert!(
        text.contains("1 of 3 snapshots intact; nothing was deleted"),
        "{text}"
    );
    assert_eq!(damaged_names(&repo), ["alpha", "beta"]);
    assert!(a.exists() && b.exists(), "damaged packs are kept");
    assert_eq!(
        std::fs::read_dir(repo.join("packs")).unwrap().count(),
        files_before
    );
    assert_eq!(
        ok(&repo, &["restore", "gamma", "--stdout"], b""),
        snaps[2].1
    );
    for name in ["alpha", "beta"] {
        let out = relic(&repo, &["restore", name, "--stdout"]);
        assert!(!out.status.success(), "{name} restored from a damaged pack");
    }
}

#[test]
fn a_missing_pack_a_deleted_index_and_a_missing_snapshot_object() {
    let (_d, repo) = new_repo();
    let snaps = three(&repo);
    // The index goes: everything is rebuilt from the packs.
    std::fs::remove_dir_all(repo.join("index")).unwrap();
    let out = relic(&repo, &["repair"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, data, _) in &snaps {
        assert_eq!(&ok(&repo, &["restore", name, "--stdout"], b""), data);
    }
    // A pack goes missing: check names the snapshot that needed it.
    std::fs::remove_file(&snaps[1].2[0]).unwrap();
    let out = relic(&repo, &["check"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(beta)") && !text.contains("(alpha)"),
        "{text}"
    );
    let out = relic(&repo, &["repair"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(damaged_names(&repo), ["beta"]);
    // A snapshot object goes missing: the others are untouched.
    let gamma = snapshots(&repo)
        .into_iter()
        .find(|s| s["name"] == "gamma")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(repo.join("snapshots").join(&gamma)).unwrap();
    let names: Vec<_> = snapshots(&repo)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(
        ok(&repo, &["restore", "alpha", "--stdout"], b""),
        snaps[0].1
    );
}
