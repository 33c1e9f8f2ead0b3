//! The crash harness: backups and syncs killed with SIGKILL at random
//! moments, each followed by `check --read-data` and a restore of every
//! finished snapshot. RELIC_KILL_RUNS sets the runs per command (default
//! 12 here; `scripts/crash-harness.sh` runs 100 of each, prune's too).
//! Also: a backup onto a full filesystem fails cleanly and leaves the
//! repository usable.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn runs() -> u64 {
    std::env::var("RELIC_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every listed snapshot restores to exactly what its run fed it.
fn verify_all(repo: &Path, fed: &BTreeMap<String, Vec<u8>>) -> usize {
    ok(repo, &["check", "--read-data"], b"");
    let listed = snapshots(repo);
    for s in &listed {
        let name = s["name"].as_str().unwrap();
        let id = s["id"].as_str().unwrap();
        let want = fed
            .get(name)
            .unwrap_or_else(|| panic!("unknown snapshot {name}"));
        let got = ok(repo, &["restore", &id[..16], "--stdout"], b"");
        assert!(
            &got == want,
            "snapshot {name} ({id}) restores different bytes"
        );
    }
    listed.len()
}

/// A repository whose passphrase costs little to check: the harness runs
/// thousands of commands.
fn quick_repo() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    ok(&repo, &["init", "--kdf-memory", "8"], b"");
    (d, repo)
}

#[test]
fn backups_killed_at_random_moments_lose_nothing_finished() {
    let (_d, repo) = quick_repo();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let mut fed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut killed = 0;
    let base = rows(6 << 20, 3);
    // How long a day's backup takes here (the second one: the first
    // stores the base): kills land within 1.2 times that.
    let mut span = 0;
    for c in 0..2u64 {
        let t = std::time::Instant::now();
        let data = [base.clone(), random(2 << 20, 999 + c)].concat();
        let name = format!("calibration{c}");
        ok(&repo, &["backup", "--stdin", "--name", &name], &data);
        fed.insert(name, data);
        span = (t.elapsed().as_micros() as u64 * 6 / 5).max(1000);
    }
    for run in 0..runs() {
        // A day's dump: the base with a changed block, a byte changed
        // every ~20 KB (most chunks are then stored as deltas against the
        // base's), plus fresh bytes.
        let mut data = base.clone();
        let at = (rng.next() % (data.len() as u64 - 70_000)) as usize;
        data[at..at + 65_536].copy_from_slice(&random(65_536, run));
        let mut i = (rng.next() % 20_000) as usize;
        while i < data.len() {
            data[i] = b'A' + (run % 26) as u8;
            i += 20_000;
        }
        data.extend_from_slice(&random(2 << 20, 1000 + run));
        let name = format!("run{run:03}");
        fed.insert(name.clone(), data.clone());
        let mut child = Command::new(bin())
            .env("RELIC_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(&repo)
            .args(["backup", "--stdin", "--name", &name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
        std::thread::sleep(Duration::from_micros(rng.next() % span));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let _ = feeder.join();
        let listed = snapshots(&repo).iter().any(|s| s["name"] == name.as_str());
        if !status.success() {
            // Killed: listed only if the snapshot object was complete.
            assert!(
                !listed || status.code().is_none(),
                "a failed backup listed a snapshot"
            );
        }
        verify_all(&repo, &fed);
    }
    eprintln!(
        "harness: backup: {} kills, {killed} mid-way, 0 damaged",
        runs()
    );
    assert!(killed > 0, "no backup was killed mid-way");
    // The next backup reuses what the killed ones left: a day it already
    // saw costs almost nothing.
    let before = repo_bytes(&repo);
    let last = fed.values().last().unwrap().clone();
    ok(&repo, &["backup", "--stdin", "--name", "final"], &last);
    fed.insert("final".into(), last);
    assert!(repo_bytes(&repo) - before < 3 << 20);
    verify_all(&repo, &fed);
    // The days were stored as deltas against the base's chunks.
    let stats: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["stats", "--json"], b"")).unwrap();
    assert!(
        stats["delta_chunks"].as_u64().unwrap() > 20,
        "the harness stored few deltas: {stats}"
    );
}

#[test]
fn syncs_killed_at_random_moments_leave_a_consistent_copy() {
    let (d, repo) = quick_repo();
    let mut fed = BTreeMap::new();
    for i in 0..4u64 {
        let data = random(24 << 20, 50 + i);
        let name = format!("day{i}");
        ok(&repo, &["backup", "--stdin", "--name", &name], &data);
        fed.insert(name, data);
    }
    let dest = d.path().join("offsite");
    // How long a whole sync takes here: kills land within 1.2 times that.
    let t = std::time::Instant::now();
    ok(
        &repo,
        &[
            "sync",
            "--to",
            d.path().join("calibration").to_str().unwrap(),
        ],
        b"",
    );
    let mut span = (t.elapsed().as_micros() as u64 * 6 / 5).max(1000);
    let mut rng = Rng(0xD1B54A32D192ED03);
    let mut killed = 0;
    for run in 0..runs() {
        // Every few runs the source grows, so later syncs have work again.
        if run % 4 == 3 {
            // Alternately fresh data and an edited copy of day 0 (deltas
            // whose bases are in packs sent earlier, or in the same sync).
            let data = if run % 8 == 3 {
                random(8 << 20, 900 + run)
            } else {
                let mut d = fed["day0"][..8 << 20].to_vec();
                let mut i = run as usize % 1000;
                while i < d.len() {
                    d[i] ^= 0x5a;
                    i += 20_000;
                }
                d
            };
            let name = format!("more{run}");
            ok(&repo, &["backup", "--stdin", "--name", &name], &data);
            fed.insert(name, data);
        }
        let delay = Duration::from_micros(rng.next() % span);
        if kill_after(&repo, &["sync", "--to", dest.to_str().unwrap()], &[], delay) {
            killed += 1;
        } else {
            // The calibration ran slower (a loaded machine) than this sync:
            // aim earlier, so kills keep landing mid-way.
            span = (span * 2 / 3).max(1000);
        }
        if dest.join("config").exists() {
            verify_all(&dest, &fed);
        }
    }
    eprintln!(
        "harness: sync: {} kills, {killed} mid-way, 0 damaged",
        runs()
    );
    assert!(killed > 0, "no sync was interrupted");
    ok(&repo, &["sync", "--to", dest.to_str().unwrap()], b"");
    assert_eq!(verify_all(&dest, &fed), fed.len());
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallFs {
    fn mount(megabytes: u64) -> SmallFs {
        let d = tempfile::tempdir().unwrap();
        let at = d.path().join("fs");
        std::fs::create_dir(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (the test command runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs(at, d)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_backup_cleanly_and_the_space_comes_back() {
    let fs = SmallFs::mount(48);
    let repo = fs.0.join("repo");
    ok(&repo, &["init"], b"");
    let small = rows(2 << 20, 8);
    ok(&repo, &["backup", "--stdin", "--name", "small"], &small);
    let used_before = repo_bytes(&repo);

    let too_big = random(80 << 20, 4);
    let out = relic_in(&repo, &["backup", "--stdin", "--name", "big"], &too_big);
    assert!(
        !out.status.success(),
        "a backup bigger than the disk succeeded"
    );
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("no snapshot was written"), "{err}");
    assert_eq!(
        snapshots(&repo).len(),
        1,
        "nothing of the failed backup is listed"
    );
    // The temp files of the failed backup are gone: the space is free again.
    let tmp: Vec<_> = std::fs::read_dir(repo.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");

    ok(&repo, &["check", "--read-data"], b"");
    assert_eq!(ok(&repo, &["restore", "small", "--stdout"], b""), small);
    // Sealed packs of the failed backup stay (a prune frees them) and the
    // repository takes new backups.
    ok(&repo, &["prune"], b"");
    assert!(repo_bytes(&repo) <= used_before + (1 << 20));
    let next = rows(3 << 20, 9);
    ok(&repo, &["backup", "--stdin", "--name", "next"], &next);
    assert_eq!(ok(&repo, &["restore", "next", "--stdout"], b""), next);
}

#[test]
fn a_read_only_repository_lists_checks_and_restores() {
    let fs = SmallFs::mount(32);
    let repo = fs.0.join("repo");
    ok(&repo, &["init"], b"");
    let data = rows(3 << 20, 12);
    ok(&repo, &["backup", "--stdin", "--name", "db"], &data);
    let cache = tempfile::tempdir().unwrap();
    let remount = |mode: &str| {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&fs.0)
            .status()
            .unwrap();
        assert!(st.success());
    };
    remount("ro");
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = Command::new(bin());
        c.env("RELIC_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", cache.path())
            .arg("-r")
            .arg(&repo)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut sin = child.stdin.take().unwrap();
            let _ = sin.write_all(stdin);
        }
        child.wait_with_output().unwrap()
    };
    let out = run(&["snapshots"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["check", "--read-data"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["restore", "db", "--stdout"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == data);
    let out = run(&["backup", "--stdin", "--name", "more"], b"more");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    remount("rw");
    assert_eq!(snapshots(&repo).len(), 1);
}

#[test]
fn an_interrupted_restore_leaves_the_target_as_it_was() {
    let (d, repo) = new_repo();
    let data = random(300 << 20, 21);
    ok(&repo, &["backup", "--stdin", "--name", "big"], &data);
    let dir = d.path().join("restored");
    let target = dir.join("big");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&target, b"yesterday's copy").unwrap();
    let mut child = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(&repo)
        .args(["restore", "big", "--to", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    // Ctrl-C.
    unsafe { libc_kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the restore finished before the interrupt"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"yesterday's copy");
    ok(
        &repo,
        &["restore", "big", "--to", dir.to_str().unwrap()],
        b"",
    );
    assert!(std::fs::read(&target).unwrap() == data);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Fills a filesystem until `leave` bytes are free; the file is the filler.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let st = nix_free(dir);
    let filler = dir.join("filler");
    let n = st.saturating_sub(leave);
    let f = std::fs::File::create(&filler).unwrap();
    // Real blocks (tmpfs counts written pages), in 1 MiB writes.
    use std::io::Write;
    let mut w = std::io::BufWriter::new(f);
    let block = vec![0x5au8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        if w.write_all(&block[..k]).is_err() {
            break;
        }
        left -= k as u64;
    }
    let _ = w.flush();
    filler
}

/// Free bytes on the filesystem holding `dir` (df's available column).
fn nix_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_disk_during_prune_fails_cleanly_and_a_rerun_finishes() {
    let fs = SmallFs::mount(64);
    let repo = fs.0.join("repo");
    ok(&repo, &["init", "--no-encryption"], b"");
    // One pack holding X and Y; a second snapshot keeps only X alive.
    let x = random(12 << 20, 21);
    let y = random(12 << 20, 22);
    let both = [x.clone(), y].concat();
    ok(&repo, &["backup", "--stdin", "--name", "both"], &both);
    ok(&repo, &["backup", "--stdin", "--name", "x"], &x);
    ok(&repo, &["forget", "both"], b"");
    // Repacking X needs 12 MiB more: leave 4.
    let filler = fill(&fs.0, 4 << 20);
    let out = relic_in(&repo, &["prune", "--max-repack-ratio", "0.99"], b"");
    assert!(!out.status.success(), "prune succeeded on a full disk");
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    let tmp: Vec<_> = std::fs::read_dir(repo.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    assert_eq!(ok(&repo, &["restore", "x", "--stdout"], b""), x);
    ok(&repo, &["check", "--read-data"], b"");
    // With room again, a rerun finishes and frees Y.
    std::fs::remove_file(filler).unwrap();
    ok(&repo, &["prune", "--max-repack-ratio", "0.99"], b"");
    assert!(repo_bytes(&repo) < (13 << 20), "{}", repo_bytes(&repo));
    assert_eq!(ok(&repo, &["restore", "x", "--stdout"], b""), x);
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn a_full_disk_at_the_sync_destination_fails_cleanly_and_a_rerun_completes() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    ok(&repo, &["init", "--no-encryption"], b"");
    let mut fed = BTreeMap::new();
    for day in 0..4u64 {
        let data = random(6 << 20, 40 + day);
        let name = format!("day{day}");
        ok(&repo, &["backup", "--stdin", "--name", &name], &data);
        fed.insert(name, data);
    }
    let fs = SmallFs::mount(16);
    let dest = fs.0.join("copy");
    let out = relic_in(&repo, &["sync", "--to", dest.to_str().unwrap()], b"");
    assert!(
        !out.status.success(),
        "sync of 24 MiB into 16 MiB succeeded"
    );
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    // Nothing half-written, no snapshot naming a pack that is not there.
    let tmp: Vec<_> = std::fs::read_dir(dest.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    assert!(snapshots(&dest).is_empty());
    ok(&dest, &["check"], b"");
    // Grown, the same command completes.
    let st = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&fs.0)
        .status()
        .unwrap();
    assert!(st.success());
    ok(&repo, &["sync", "--to", dest.to_str().unwrap()], b"");
    assert_eq!(verify_all(&dest, &fed), fed.len());
    ok(&dest, &["check", "--read-data"], b"");
}
