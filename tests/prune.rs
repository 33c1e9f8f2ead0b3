//! Forget and prune through the real binary: space comes back, survivors
//! restore, kill -9 at any moment damages nothing, backups wait and land.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// An unencrypted repository (these tests run relic hundreds of times; the
/// key derivation would dominate), with `days` daily snapshots of which
/// each holds `unique` bytes of its own plus a shared part.
fn series_repo(dir: &Path, days: u64, unique: usize) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let repo = dir.join("repo");
    ok(&repo, &["init", "--no-encryption"], b"");
    let shared = rows(256 << 10, 999);
    let mut data = vec![];
    for d in 0..days {
        let mut day = shared.clone();
        day.extend(random(unique, 1000 + d));
        ok(&repo, &["backup", "--stdin", "--name", "db"], &day);
        data.push(day);
    }
    (repo, data)
}

fn snapshot_ids(repo: &Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&ok(repo, &["snapshots", "--json"], b"")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn pack_bytes(repo: &Path) -> u64 {
    packs(repo)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn forgetting_half_a_series_and_pruning_frees_what_only_they_used() {
    let d = tempfile::tempdir().unwrap();
    let (repo, data) = series_repo(d.path(), 30, 200 << 10);
    let ids = snapshot_ids(&repo);
    let before = pack_bytes(&repo);
    // Forget every other day.
    let gone: Vec<&str> = ids.iter().step_by(2).map(|s| &s[..16]).collect();
    let mut args = vec!["forget"];
    args.extend(gone.iter().copied());
    ok(&repo, &args, b"");
    let out = String::from_utf8(ok(&repo, &["prune", "--max-repack-ratio", "0.99"], b"")).unwrap();
    assert!(out.contains("freed"), "{out}");
    let after = pack_bytes(&repo);
    // Each forgotten day alone used its 200 KiB of incompressible data
    // (stored raw), plus the chunk that straddles the end of the shared
    // part (at most the 256 KiB maximum chunk), its tree blob and its share
    // of pack headers and trailers.
    let owned = 15 * (200 << 10) as u64;
    let freed = before - after;
    assert!(
        freed >= owned && freed <= owned + 15 * ((256 << 10) + (4 << 10)),
        "freed {freed}, forgotten days owned {owned} plus their boundary chunks"
    );
    for (i, day) in data.iter().enumerate().skip(1).step_by(2) {
        assert_eq!(
            &ok(&repo, &["restore", &ids[i][..16], "--stdout"], b""),
            day
        );
    }
    ok(&repo, &["check", "--read-data"], b"");
    // A second prune finds nothing left to do.
    let out = String::from_utf8(ok(&repo, &["prune", "--json"], b"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["plan"]["dead_bytes"], 0, "{out}");
}

#[test]
fn protected_snapshots_survive_forget_and_prune() {
    let d = tempfile::tempdir().unwrap();
    let (repo, _) = series_repo(d.path(), 3, 64 << 10);
    let base = random(300 << 10, 5);
    ok(
        &repo,
        &[
            "backup",
            "--stdin",
            "--name",
            "base",
            "--tier",
            "immaculate",
        ],
        &base,
    );
    ok(&repo, &["forget", "--keep-last", "1"], b"");
    ok(&repo, &["prune"], b"");
    assert_eq!(ok(&repo, &["restore", "base", "--stdout"], b""), base);
    let out = relic(&repo, &["forget", "base"]);
    assert!(!out.status.success());
    ok(&repo, &["check", "--read-data"], b"");
}

/// Starts prune, kills it with SIGKILL after `delay`, then checks every byte
/// and restores every snapshot.
fn kill_prune_and_verify(repo: &Path, data: &[(String, Vec<u8>)], delay: Duration) -> bool {
    let mut child = Command::new(bin())
        .arg("-r")
        .arg(repo)
        .args(["prune", "--max-repack-ratio", "0.99"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let mid_way = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    ok(repo, &["check", "--read-data"], b"");
    for (id, want) in data {
        assert_eq!(
            &ok(repo, &["restore", &id[..16], "--stdout"], b""),
            want,
            "snapshot {id} after a kill at {delay:?}"
        );
    }
    mid_way
}

#[test]
fn prune_killed_at_random_moments_never_damages_anything() {
    let d = tempfile::tempdir().unwrap();
    let (repo, data) = series_repo(d.path(), 6, 96 << 10);
    let ids = snapshot_ids(&repo);
    let mut alive: Vec<(String, Vec<u8>)> = ids.iter().cloned().zip(data).collect();
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut killed = 0;
    let runs = std::env::var("RELIC_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // Each day is yesterday's document with scattered edits: stored as
    // deltas whose bases are in days that get forgotten, so prune must
    // keep those bases alive, killed or not.
    let mut doc = rows(256 << 10, 77);
    for run in 0..runs {
        // Each run: a new day, one old day forgotten, then a prune killed
        // somewhere between its start and its end.
        let mut i = (run as usize * 7) % 10_000;
        while i < doc.len() {
            doc[i] = b'a' + (run % 26) as u8;
            i += 10_000;
        }
        let day = doc.clone();
        ok(&repo, &["backup", "--stdin", "--name", "db"], &day);
        let id = snapshot_ids(&repo)
            .into_iter()
            .find(|i| !alive.iter().any(|(a, _)| a == i))
            .unwrap();
        alive.push((id, day));
        let (old, _) = alive.remove(0);
        ok(&repo, &["forget", &old[..16]], b"");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 60_000);
        if kill_prune_and_verify(&repo, &alive, delay) {
            killed += 1;
        }
    }
    eprintln!("harness: prune: {runs} kills, {killed} mid-way, 0 damaged");
    let stats: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["stats", "--json"], b"")).unwrap();
    assert!(
        stats["delta_chunks"].as_u64().unwrap() > 0,
        "the surviving days hold no deltas: {stats}"
    );
    // A prune left to finish completes the work.
    ok(&repo, &["prune", "--max-repack-ratio", "0.99"], b"");
    ok(&repo, &["check", "--read-data"], b"");
    for (id, want) in &alive {
        assert_eq!(&ok(&repo, &["restore", &id[..16], "--stdout"], b""), want);
    }
}

#[test]
fn a_backup_started_during_prune_completes_and_restores() {
    let d = tempfile::tempdir().unwrap();
    let (repo, _) = series_repo(d.path(), 8, 2 << 20);
    let ids = snapshot_ids(&repo);
    let mut args = vec!["forget".to_string()];
    args.extend(ids.iter().take(6).map(|s| s[..16].to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&repo, &args, b"");
    let fresh = random(6 << 20, 77);
    std::thread::scope(|s| {
        let p = s.spawn(|| ok(&repo, &["prune", "--max-repack-ratio", "0.99"], b""));
        std::thread::sleep(Duration::from_millis(5));
        let b = s.spawn(|| ok(&repo, &["backup", "--stdin", "--name", "during"], &fresh));
        p.join().unwrap();
        b.join().unwrap();
    });
    assert_eq!(ok(&repo, &["restore", "during", "--stdout"], b""), fresh);
    ok(&repo, &["check", "--read-data"], b"");
}
