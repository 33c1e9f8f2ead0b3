//! Compatibility with repositories written by older relics. The fixtures
//! under `tests/fixtures/compat/` are real repositories, checked in:
//!
//! - `v1/`: format version 1, written by the relic of commit `b781e86^`
//!   (the last one before delta blobs);
//! - `v2/`: format version 2, written by the relic of commit `3c76960`
//!   (the last one before copy/insert deltas), holding at least one zstd
//!   (tag 2) delta;
//! - `v3/`: format version 3, written by the relic of the commit that last
//!   ran `scripts/make-compat-fixtures.sh`, holding at least one
//!   copy/insert (tag 3) delta.
//!
//! Each holds the same three snapshots of the content [`tree`] and
//! [`dump`] generate: `tree` (generation 1), `db` (a stream, tier named)
//! and `tree` again (generation 2: `big.log` changed a little). The test
//! copies a fixture to a temp dir (the checked-in copy is never touched),
//! lists, checks and restores it with the binary under test, compares
//! every byte, mode, mtime and symlink target, then backs up something new
//! into the copy and reads it back: the repository keeps its format.
//!
//! The fixtures hold only repository objects (`config`, `keys/`, `packs/`,
//! `snapshots/`): the index is rebuilt from them on open. Git keeps no
//! empty directories, so the copy is also a repository that lost them
//! (`locks/`, `tmp/`, most `packs/<xx>/`): relic must recreate them.
//!
//! `scripts/make-compat-fixtures.sh` regenerates them, writing the source
//! content with the ignored test [`write_fixture_source`]. Never change the
//! generators below without regenerating the fixtures.

mod common;

use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The passphrase of both fixtures.
const PASSPHRASE: &str = "relic-compat-fixture";
/// Where the script wrote the content it backed up. Snapshots store
/// absolute paths without the leading `/`, so this is part of the fixtures.
const SOURCE: &str = "/tmp/relic-compat-fixture";
/// The name of the stream item of the `db` snapshot.
const STREAM: &str = "dump.sql";

// ---------------------------------------------------------------------------
// The content (never change it without regenerating the fixtures)

/// SplitMix64: the fixtures' only source of pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.next() as u8).collect()
}

/// About `n` bytes of log lines: alike, never identical, so zstd
/// compresses them and the chunker cuts them into several chunks.
fn log_lines(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut r = Rng(seed);
    let mut lines = Vec::new();
    let mut total = 0;
    let mut t = 0u64;
    while total < n {
        t += r.below(2_000);
        let line = format!(
            "2026-01-{:02}T{:02}:{:02}:{:02}.{:03}Z web-{} GET /api/items/{} status={} bytes={} took={}ms\n",
            t / 86_400_000 % 28 + 1,
            t / 3_600_000 % 24,
            t / 60_000 % 60,
            t / 1_000 % 60,
            t % 1_000,
            r.below(4),
            r.below(100_000),
            [200, 200, 200, 200, 304, 404, 500][r.below(7) as usize],
            r.below(50_000),
            r.below(900) + 1,
        );
        total += line.len();
        lines.push(line.into_bytes());
    }
    lines
}

/// `big.log` of generation `gen`: generation 2 inserts one line in the
/// middle, generation 3 another one near the end.
fn big_log(gen: u32) -> Vec<u8> {
    let mut lines = log_lines(320_000, 7);
    if gen >= 2 {
        let at = lines.len() / 2;
        lines.insert(
            at,
            b"2026-01-15T00:00:00.000Z web-9 generation 2 was here\n".to_vec(),
        );
    }
    if gen >= 3 {
        let at = lines.len() * 7 / 8;
        lines.insert(
            at,
            b"2026-01-27T00:00:00.000Z web-9 generation 3 was here\n".to_vec(),
        );
    }
    lines.concat()
}

/// The stream of the `db` snapshot: a pg_dump-like table of about 160 KB.
fn dump() -> Vec<u8> {
    let mut r = Rng(11);
    let mut out =
        b"-- relic compat fixture\nCOPY public.orders (id, customer, amount, note) FROM stdin;\n"
            .to_vec();
    let mut i = 0;
    while out.len() < 160_000 {
        i += 1;
        out.extend_from_slice(
            format!(
                "{i}\tcustomer {}\t{}.{:02}\tnote {}\n",
                r.below(5_000),
                r.below(10_000),
                r.below(100),
                r.below(1 << 20)
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\\.\n");
    out
}

enum Content {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
}

struct Node {
    /// Relative to the tree's root, `/`-separated; "" is the root.
    path: &'static str,
    mode: u32,
    mtime_ns: i64,
    content: Content,
}

/// The tree `tree` of generation `gen` (1 and 2 are in the fixtures, 3 is
/// what the test adds), parents before their entries.
fn tree(gen: u32) -> Vec<Node> {
    use Content::*;
    let t0: i64 = 1_700_000_000_000_000_000;
    let mut i = 0;
    let mut at = || {
        i += 1;
        t0 + i * 1_000_000_007 + 123_456_789
    };
    let mut nodes = vec![
        Node {
            path: "",
            mode: 0o755,
            mtime_ns: at(),
            content: Dir,
        },
        Node {
            path: "README.txt",
            mode: 0o644,
            mtime_ns: at(),
            content: File(b"A relic compatibility fixture: see tests/compat.rs.\n".to_vec()),
        },
        Node {
            path: "empty",
            mode: 0o644,
            mtime_ns: at(),
            content: File(vec![]),
        },
        Node {
            path: "run.sh",
            mode: 0o755,
            mtime_ns: at(),
            content: File(b"#!/bin/sh\necho 'relic compat fixture'\n".to_vec()),
        },
        Node {
            path: "big.log",
            mode: 0o640,
            mtime_ns: if gen >= 2 {
                t0 + 86_400_000_000_000 * gen as i64 + 987_654_321
            } else {
                at()
            },
            content: File(big_log(gen)),
        },
        Node {
            path: "random.bin",
            mode: 0o600,
            mtime_ns: at(),
            content: File(random_bytes(48 << 10, 5)),
        },
        Node {
            path: "link",
            mode: 0o777,
            mtime_ns: at(),
            content: Symlink("nested/deep/notes.txt"),
        },
        Node {
            path: "dangling",
            mode: 0o777,
            mtime_ns: at(),
            content: Symlink("no/such/target"),
        },
        Node {
            path: "nested",
            mode: 0o750,
            mtime_ns: at(),
            content: Dir,
        },
        Node {
            path: "nested/naïve café.txt",
            mode: 0o644,
            mtime_ns: at(),
            content: File("Ünïcödé in the name and in the content.\n".into()),
        },
        Node {
            path: "nested/up",
            mode: 0o777,
            mtime_ns: at(),
            content: Symlink("../README.txt"),
        },
        Node {
            path: "nested/empty-dir",
            mode: 0o755,
            mtime_ns: at(),
            content: Dir,
        },
        Node {
            path: "nested/deep",
            mode: 0o700,
            mtime_ns: at(),
            content: Dir,
        },
        Node {
            path: "nested/deep/notes.txt",
            mode: 0o600,
            mtime_ns: at(),
            content: File(b"deep notes\n".repeat(20)),
        },
    ];
    if gen >= 3 {
        nodes.push(Node {
            path: "nested/added.bin",
            mode: 0o644,
            mtime_ns: t0 + 3 * 86_400_000_000_000,
            content: File(random_bytes(40 << 10, 3)),
        });
    }
    nodes
}

fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn set_mtime(path: &Path, ns: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    };
    // SAFETY: a valid C string and two timespecs, as utimensat wants.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [ts, ts].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", path.display());
}

/// Writes tree `gen` at `root` (replacing what is there): content, modes,
/// then mtimes, directories last and deepest first.
fn write_tree(root: &Path, gen: u32) {
    if root.exists() {
        std::fs::remove_dir_all(root).unwrap();
    }
    let nodes = tree(gen);
    for n in &nodes {
        let p = join(root, n.path);
        match &n.content {
            Content::Dir => std::fs::create_dir_all(&p).unwrap(),
            Content::File(data) => std::fs::write(&p, data).unwrap(),
            Content::Symlink(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
        }
    }
    for n in &nodes {
        let p = join(root, n.path);
        if let Content::File(_) = n.content {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(n.mode)).unwrap();
        }
        if !matches!(n.content, Content::Dir) {
            set_mtime(&p, n.mtime_ns);
        }
    }
    for n in nodes.iter().rev() {
        if let Content::Dir = n.content {
            let p = join(root, n.path);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(n.mode)).unwrap();
            set_mtime(&p, n.mtime_ns);
        }
    }
}

/// Not a test: writes the content the fixtures were made of, for
/// `scripts/make-compat-fixtures.sh`. With RELIC_COMPAT_GEN=<n> set, writes
/// tree generation n to /tmp/relic-compat-fixture/tree and the stream to
/// /tmp/relic-compat-fixture/dump.sql.
#[test]
#[ignore]
fn write_fixture_source() {
    let Ok(gen) = std::env::var("RELIC_COMPAT_GEN") else {
        eprintln!("RELIC_COMPAT_GEN is not set: nothing written");
        return;
    };
    let gen: u32 = gen.parse().expect("RELIC_COMPAT_GEN is a number");
    std::fs::create_dir_all(SOURCE).unwrap();
    write_tree(&Path::new(SOURCE).join("tree"), gen);
    std::fs::write(Path::new(SOURCE).join(STREAM), dump()).unwrap();
}

// ---------------------------------------------------------------------------
// Running relic against a copy of a fixture

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/compat/v{version}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        assert!(
            !t.is_symlink(),
            "a fixture holds no symlinks: {:?}",
            e.path()
        );
        if t.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of fixture `version` in a temp dir, as git has it: without the
/// empty directories of a repository's layout.
fn copy_fixture(version: u32) -> (tempfile::TempDir, PathBuf) {
    let src = fixture(version);
    assert!(
        src.join("config").is_file(),
        "no fixture at {}",
        src.display()
    );
    for derived in ["index", "locks", "tmp"] {
        assert!(
            !src.join(derived).exists(),
            "{derived}/ is checked in under {}",
            src.display()
        );
    }
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    copy_dir(&src, &repo);
    (d, repo)
}

fn run(repo: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .env("RELIC_PASSWORD", PASSPHRASE)
        .env_remove("RELIC_REPO")
        .arg("-q")
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("relic runs")
}

fn ok(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = run(repo, args);
    assert!(
        out.status.success(),
        "relic {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json(repo: &Path, args: &[&str]) -> Value {
    serde_json::from_slice(&ok(repo, args)).unwrap()
}

fn config(repo: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap()
}

fn snapshots(repo: &Path) -> Vec<Value> {
    json(repo, &["snapshots", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// The one snapshot named `name` with label `gen` (if given). Snapshots
/// are found by name and label, not by time: the fixtures' times are those
/// of the machine that wrote them, which may be ahead of this one's clock.
fn find<'a>(snaps: &'a [Value], name: &str, gen: Option<u32>) -> &'a Value {
    let found: Vec<&Value> = snaps
        .iter()
        .filter(|s| {
            s["name"] == name
                && gen.is_none_or(|g| s["labels"]["gen"].as_str() == Some(g.to_string().as_str()))
        })
        .collect();
    assert_eq!(found.len(), 1, "snapshot {name} gen {gen:?} in {snaps:#?}");
    found[0]
}

fn check_read_data(repo: &Path) {
    let c = json(repo, &["check", "--read-data", "--json"]);
    assert_eq!(c["problems"], Value::Array(vec![]), "{c}");
    assert_eq!(c["damaged_snapshots"], serde_json::json!({}), "{c}");
    assert!(c["bytes_read"].as_u64().unwrap() > 0, "{c}");
}

fn delta_chunks(repo: &Path) -> u64 {
    json(repo, &["stats", "--json"])["delta_chunks"]
        .as_u64()
        .unwrap()
}

fn file_bytes(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| match &n.content {
            Content::File(d) => d.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Asserts that a snapshot listed by `snapshots --json` is tree `gen`.
fn assert_tree_snapshot(s: &Value, gen: u32, parent: Option<&Value>) {
    let nodes = tree(gen);
    assert_eq!(s["name"], "tree", "{s}");
    assert_eq!(s["tier"], "daily", "{s}");
    assert_eq!(
        s["labels"],
        serde_json::json!({ "gen": gen.to_string() }),
        "{s}"
    );
    assert_eq!(s["items"].as_u64(), Some(nodes.len() as u64), "{s}");
    assert_eq!(s["size"].as_u64(), Some(file_bytes(&nodes)), "{s}");
    assert_eq!(s["damaged"], false, "{s}");
    assert_eq!(
        &s["parent"],
        parent.map_or(&Value::Null, |p| &p["id"]),
        "{s}"
    );
}

/// Every entry under `dir` (relative, `/`-separated), recursively.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), &rel, out);
        }
        out.push(rel);
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

/// Restores snapshot `id` into a new directory and compares it with tree
/// `gen`, backed up from `source`: nothing more, nothing less, every byte,
/// mode and mtime (files and directories) and symlink target.
fn assert_restores_tree(repo: &Path, id: &str, gen: u32, source: &Path) {
    let d = tempfile::tempdir().unwrap();
    let to = d.path().join("out");
    ok(repo, &["restore", id, "--to", to.to_str().unwrap()]);
    // The source's ancestors are directories leading to it, nothing else.
    let rel = source.strip_prefix("/").unwrap();
    let mut at = to.clone();
    for c in rel.components() {
        let names: Vec<_> = std::fs::read_dir(&at)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![c.as_os_str().to_owned()],
            "under {}",
            at.display()
        );
        at.push(c);
    }
    let nodes = tree(gen);
    let mut found = vec![];
    walk(&at, "", &mut found);
    found.sort();
    let mut expected: Vec<String> = nodes
        .iter()
        .filter(|n| !n.path.is_empty())
        .map(|n| n.path.into())
        .collect();
    expected.sort();
    assert_eq!(found, expected, "snapshot {id}: the restored entries");
    for n in &nodes {
        let p = join(&at, n.path);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = format!("snapshot {id}: {}", p.display());
        match &n.content {
            Content::Dir => assert!(m.is_dir(), "{what} is no directory"),
            Content::File(data) => {
                assert!(m.is_file(), "{what} is no file");
                assert!(
                    std::fs::read(&p).unwrap() == *data,
                    "{what}: the content differs"
                );
            }
            Content::Symlink(target) => {
                assert!(m.file_type().is_symlink(), "{what} is no symlink");
                assert_eq!(
                    std::fs::read_link(&p).unwrap().as_os_str(),
                    OsStr::new(target),
                    "{what}"
                );
                continue; // a symlink's mode and mtime are not restored
            }
        }
        assert_eq!(
            m.mode() & 0o7777,
            n.mode,
            "{what}: mode {:o}",
            m.mode() & 0o7777
        );
        assert_eq!(mtime_ns(&m), n.mtime_ns, "{what}: mtime");
    }
}

/// Opens, checks and restores fixture `version` with the relic under test,
/// then backs up tree generation 3 into it and reads everything back.
fn fixture_roundtrip(version: u32) {
    let (_d, repo) = copy_fixture(version);
    let config_before = std::fs::read(repo.join("config")).unwrap();
    let cfg = config(&repo);
    assert_eq!(cfg["version"], version, "{cfg}");
    assert_eq!(cfg["encryption"], "xchacha20poly1305", "{cfg}");
    if version == 1 {
        assert!(cfg.get("delta_max_depth").is_none(), "{cfg}");
    }

    // The three snapshots the script wrote (the index is rebuilt on open).
    let snaps = snapshots(&repo);
    assert_eq!(snaps.len(), 3, "{snaps:#?}");
    let (tree1, db, tree2) = (
        find(&snaps, "tree", Some(1)),
        find(&snaps, "db", None),
        find(&snaps, "tree", Some(2)),
    );
    assert_tree_snapshot(tree1, 1, None);
    assert_tree_snapshot(tree2, 2, Some(tree1));
    assert_eq!(db["tier"], "named", "{db}");
    assert_eq!(db["labels"], serde_json::json!({}), "{db}");
    assert_eq!(db["items"], 1, "{db}");
    assert_eq!(db["size"].as_u64(), Some(dump().len() as u64), "{db}");
    assert_eq!(db["parent"], Value::Null, "{db}");

    check_read_data(&repo);
    // Version 1 never holds deltas; the later fixtures were made to hold
    // some (the chunk of big.log that generation 2 changed).
    let deltas = delta_chunks(&repo);
    if version == 1 {
        assert_eq!(deltas, 0);
    } else {
        assert!(deltas >= 1, "the version {version} fixture holds no delta");
    }

    let source = Path::new(SOURCE).join("tree");
    assert_restores_tree(&repo, tree1["id"].as_str().unwrap(), 1, &source);
    assert_restores_tree(&repo, tree2["id"].as_str().unwrap(), 2, &source);
    let stream = ok(&repo, &["restore", db["id"].as_str().unwrap(), "--stdout"]);
    assert!(stream == dump(), "the stream of db differs");

    // Writing into the old repository: tree generation 3 (one more line in
    // big.log, one new file), backed up from a directory of our own.
    let d = tempfile::tempdir().unwrap();
    let source3 = d.path().join("tree");
    write_tree(&source3, 3);
    ok(
        &repo,
        &[
            "backup",
            "--name",
            "tree",
            "--label",
            "gen=3",
            source3.to_str().unwrap(),
        ],
    );
    let after = snapshots(&repo);
    assert_eq!(after.len(), 4, "{after:#?}");
    for s in &snaps {
        assert!(after.contains(s), "{s} changed or is gone: {after:#?}");
    }
    let tree3 = find(&after, "tree", Some(3));
    assert_tree_snapshot(tree3, 3, Some(tree2));
    // The repository keeps its format: the config is never rewritten.
    assert!(
        std::fs::read(repo.join("config")).unwrap() == config_before,
        "the config changed"
    );
    assert_eq!(config(&repo)["version"], version);
    check_read_data(&repo);
    if version == 1 {
        assert_eq!(delta_chunks(&repo), 0, "a delta in a version 1 repository");
    }
    assert_restores_tree(&repo, tree3["id"].as_str().unwrap(), 3, &source3);
    assert_restores_tree(&repo, tree2["id"].as_str().unwrap(), 2, &source);
}

#[test]
fn format_1_repository_opens_checks_restores_and_takes_backups() {
    fixture_roundtrip(1);
}

#[test]
fn format_2_repository_opens_checks_restores_and_takes_backups() {
    fixture_roundtrip(2);
}

#[test]
fn format_3_repository_opens_checks_restores_and_takes_backups() {
    fixture_roundtrip(3);
}
