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

/// Flips one byte of a file at `at` (from the end when negative).
fn flip(path: &Path, at: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = if at < 0 {
        (bytes.len() as i64 + at) as usize
    } else {
        at as usize
    };
    bytes[i] ^= 0x08;
    std::fs::write(path, &bytes).unwrap();
}

fn restores(repo: &Path, name: &str) -> Option<Vec<u8>> {
    let out = relic(repo, &["restore", name, "--stdout"]);
    out.status.success().then_some(out.stdout)
}

/// Damage of every kind at once: a blob body (alpha), a pack cut short
/// (beta), a byte of a pack trailer (gamma), a snapshot object (delta);
/// epsilon is untouched. `repair` (or `index rebuild`) must leave every
/// snapshot that restored before restorable after, byte-exact.
fn damage_then(cmd: &[&str]) {
    let (_d, repo) = new_repo();
    // Independent random data: no snapshot shares a chunk or a delta base
    // with another, so each damage touches one snapshot only.
    let mut snaps = Vec::new();
    for (i, name) in ["alpha", "beta", "gamma", "delta", "epsilon"]
        .iter()
        .enumerate()
    {
        let before = packs(&repo);
        let data = random(2 << 20, 50 + i as u64);
        ok(&repo, &["backup", "--stdin", "--name", name], &data);
        let own: Vec<_> = packs(&repo)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        snaps.push((name.to_string(), data, own));
    }
    let pack_count = packs(&repo).len();
    // alpha: a byte in the middle of its blobs.
    let a = &snaps[0].2[0];
    flip(a, std::fs::metadata(a).unwrap().len() as i64 / 2);
    // beta: its pack loses its last 1000 bytes (trailer and footer).
    let b = &snaps[1].2[0];
    let len = std::fs::metadata(b).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(b)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    // gamma: one byte inside its trailer (the footer names its length).
    let g = &snaps[2].2[0];
    let bytes = std::fs::read(g).unwrap();
    let tlen = u32::from_le_bytes(
        bytes[bytes.len() - 24..bytes.len() - 20]
            .try_into()
            .unwrap(),
    );
    flip(g, -(24 + tlen as i64 / 2));
    // delta: a byte of its snapshot object.
    let delta_id = snapshots(&repo)
        .into_iter()
        .find(|s| s["name"] == "delta")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    flip(&repo.join("snapshots").join(&delta_id), 40);

    let before: Vec<Option<Vec<u8>>> = snaps.iter().map(|(n, _, _)| restores(&repo, n)).collect();
    assert!(before[0].is_none(), "alpha restored from a damaged blob");
    for (i, (name, data, _)) in snaps.iter().enumerate().skip(1) {
        assert_eq!(before[i].as_ref(), Some(data), "{name} before the repair");
    }

    let out = relic(&repo, cmd);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("salvaged"), "{text}");
    for (i, (name, data, _)) in snaps.iter().enumerate() {
        if before[i].is_some() {
            assert_eq!(
                restores(&repo, name).as_ref(),
                Some(data),
                "{name} restored before `{cmd:?}` but not after: {text}"
            );
        }
    }
    // Nothing deleted: the damaged packs and object are set aside.
    assert!(a.exists(), "a pack with a damaged blob stays");
    let aside = |kind: &str| {
        std::fs::read_dir(repo.join("damaged").join(kind))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(aside("packs"), 2, "{text}");
    assert_eq!(aside("snapshots"), 1, "{text}");
    // Two damaged packs set aside, their blobs in at least one new pack.
    assert!(packs(&repo).len() > pack_count - 2);
    // A second repair finds the same: alpha alone is damaged.
    let out = relic(&repo, &["repair"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("4 of 5 snapshots intact; nothing was deleted"),
        "{text}"
    );
    assert_eq!(damaged_names(&repo), ["alpha"]);
    let out = relic(&repo, &["check", "--read-data"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(alpha)") && !text.contains("(beta)"),
        "{text}"
    );
}

#[test]
fn repair_never_makes_a_restorable_snapshot_unrestorable() {
    damage_then(&["repair"]);
}

#[test]
fn index_rebuild_salvages_damaged_trailers_and_snapshot_objects() {
    damage_then(&["index", "rebuild"]);
}

#[test]
fn a_damage_mark_clears_once_a_check_proves_the_snapshot_whole() {
    let (_d, repo) = new_repo();
    let snaps = three(&repo);
    // beta's pack goes away (a disk not mounted): repair marks beta damaged.
    let pack = &snaps[1].2[0];
    let away = repo.join("away");
    std::fs::rename(pack, &away).unwrap();
    let out = relic(&repo, &["repair"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(damaged_names(&repo), ["beta"]);
    // It comes back.
    std::fs::rename(&away, pack).unwrap();
    assert_eq!(ok(&repo, &["restore", "beta", "--stdout"], b""), snaps[1].1);
    // A plain check proves nothing about blob bodies; a full one does.
    ok(&repo, &["check"], b"");
    assert_eq!(damaged_names(&repo), ["beta"]);
    ok(&repo, &["check", "--read-data"], b"");
    assert!(damaged_names(&repo).is_empty());
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
