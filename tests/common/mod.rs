//! Helpers for integration tests: run the real `relic` binary, make data.
#![allow(dead_code)]

pub mod bucket;
pub mod engine;
pub mod pg;
pub mod pgcontainer;
pub mod proxy;
pub mod s3;
pub mod volumes;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The passphrase of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_relic"))
}

/// Runs relic against `repo` with `args`, feeding `stdin`.
pub fn relic_in(repo: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relic");
    let mut sin = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let out = child.wait_with_output().expect("relic runs");
    writer.join().unwrap();
    out
}

pub fn relic(repo: &Path, args: &[&str]) -> Output {
    relic_in(repo, args, b"")
}

/// Runs relic and insists on success; returns stdout.
pub fn ok(repo: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = relic_in(repo, args, stdin);
    assert!(
        out.status.success(),
        "relic {args:?} failed: {}\nits output (the first 4000 bytes):\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(4000)])
    );
    out.stdout
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that a run failed and said `what` on stderr.
pub fn fails_with(o: &Output, what: &str) {
    assert!(!o.status.success(), "succeeded, expected: {what}");
    assert!(
        stderr(o).contains(what),
        "expected {what:?} in: {}",
        stderr(o)
    );
}

/// Deterministic pseudo-random bytes.
pub fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A dump-like text of about `n` bytes: numbered rows.
pub fn rows(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 100);
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        let v = (i.wrapping_mul(seed | 1).wrapping_mul(2654435761)) % 1_000_003;
        writeln!(
            out,
            "{i}\tperson {v}\tnote {}\t2026-01-{:02}",
            v * 7 % 9973,
            i % 28 + 1
        )
        .unwrap();
    }
    out.truncate(n);
    out
}

/// Total size of the files under `dir` (excluding the local index).
pub fn repo_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let mut t = 0;
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                if e.file_name() != "index" {
                    t += walk(&e.path());
                }
            } else {
                t += m.len();
            }
        }
        t
    }
    walk(dir)
}

/// A new repository in a temp dir.
pub fn new_repo() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    ok(&repo, &["init"], b"");
    (d, repo)
}

/// Every pack file of a repository.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for sub in std::fs::read_dir(repo.join("packs")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

/// The repository's snapshots, as `snapshots --json` lists them.
pub fn snapshots(repo: &Path) -> Vec<serde_json::Value> {
    let out = ok(repo, &["snapshots", "--json"], b"");
    serde_json::from_slice::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Starts relic in the background, output discarded, and SIGKILLs it after
/// `delay`; returns whether it was still running then (killed mid-way).
pub fn kill_after(
    repo: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    delay: std::time::Duration,
) -> bool {
    let mut child = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .envs(env.iter().copied())
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn relic");
    std::thread::sleep(delay);
    let mid_way = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    mid_way
}

/// Starts `backup --stdin --name slow`; the caller feeds its stdin.
pub fn slow_backup(repo: &Path) -> (std::process::Child, std::process::ChildStdin) {
    let mut backup = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args(["backup", "--stdin", "--name", "slow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sin = backup.stdin.take().unwrap();
    (backup, sin)
}
