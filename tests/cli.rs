//! The command line as scripts use it, through the real binary: one exit
//! code per kind of failure, a closed standard output that ends a command
//! quietly, `-q` that prints nothing, `--retry-lock` between processes
//! contending for the repository, and the "added" bytes a snapshot reports.

mod common;

use common::pg::*;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A repository with two daily snapshots of a stream and one of a tree.
fn populated() -> (tempfile::TempDir, std::path::PathBuf) {
    let (d, repo) = new_repo();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "db"],
        &rows(20_000, 1),
    );
    ok(
        &repo,
        &["backup", "--stdin", "--name", "db"],
        &rows(20_000, 2),
    );
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("sub/f{i}")), format!("file {i}\n")).unwrap();
    }
    ok(
        &repo,
        &["backup", "--name", "tree", src.to_str().unwrap()],
        b"",
    );
    (d, repo)
}

#[test]
fn each_kind_of_failure_has_its_exit_code() {
    let (d, repo) = populated();
    // 2: the command line.
    assert_eq!(code(&relic(&repo, &["snapshots", "--no-such-flag"])), 2);
    // 10: no repository there.
    let nothing = d.path().join("nothing");
    let o = relic(&nothing, &["snapshots"]);
    assert_eq!(code(&o), 10, "{}", stderr(&o));
    // 12: a wrong passphrase.
    let o = Command::new(bin())
        .env("RELIC_PASSWORD", "not the passphrase")
        .arg("-r")
        .arg(&repo)
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    // 13: the step outside relic fails (nothing listens on port 1).
    let o = relic(
        &repo,
        &[
            "backup",
            "pg",
            "host=127.0.0.1 port=1 dbname=x",
            "--name",
            "x",
        ],
    );
    assert_eq!(code(&o), 13, "{}", stderr(&o));
    let o = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("-r")
        .arg(&repo)
        .args(["backup", "image", "app:1"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 13, "{}", stderr(&o));
    // 3: a backup that skipped an entry (its snapshot is written).
    let src = d.path().join("fifo-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("kept"), b"kept").unwrap();
    assert!(Command::new("mkfifo")
        .arg(src.join("fifo"))
        .status()
        .unwrap()
        .success());
    let o = relic(&repo, &["backup", "--name", "f", src.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    // 11: locked by a live process, and no wait allowed.
    let lock = repo.join("locks").join("ab".repeat(32));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(
        &lock,
        serde_json::json!({"host": host.trim(), "pid": std::process::id(), "time": now,
            "exclusive": true, "refreshed": now, "command": "test", "pidns": ""})
        .to_string(),
    )
    .unwrap();
    let started = Instant::now();
    let o = relic(
        &repo,
        &["--retry-lock", "0", "backup", "--stdin", "--name", "x"],
    );
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    let o = relic(&repo, &["--retry-lock", "2s", "prune"]);
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    assert!(stderr(&o).contains("waiting up to 2s"), "{}", stderr(&o));
    std::fs::remove_file(&lock).unwrap();
    // 4: damaged data. One byte of every pack flipped in the middle.
    for p in packs(&repo) {
        let mut b = std::fs::read(&p).unwrap();
        let at = b.len() / 2;
        b[at] ^= 0x55;
        std::fs::write(&p, b).unwrap();
    }
    let o = relic(&repo, &["check", "--read-data"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let o = relic(&repo, &["restore", "db", "--stdout"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    // The table is where scripts look for it.
    let help = String::from_utf8(ok(&repo, &["--help"], b"")).unwrap();
    for c in [
        "  3  partial",
        "  4  data damaged",
        " 10  no repository",
        " 11  repository locked",
        " 12  wrong passphrase",
        " 13  pg_dump",
    ] {
        assert!(help.contains(c), "{c:?} not in:\n{help}");
    }
}

/// Runs relic with its standard output read for `lines` lines (none: the
/// reading end is closed before it writes), then closed; the exit code and
/// standard error.
fn with_closed_output(repo: &Path, args: &[&str], lines: usize) -> (i32, String) {
    let mut child = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    if lines > 0 {
        let mut r = BufReader::new(out);
        for _ in 0..lines {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
        }
    } else {
        drop(out);
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn a_closed_output_ends_every_printing_command_quietly() {
    let (d, repo) = populated();
    let dest = d.path().join("copy");
    let dest = dest.to_str().unwrap();
    let to = d.path().join("restored");
    let to = to.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["snapshots"],
        &["snapshots", "--json"],
        &["snapshots", "db"],
        &["ls", "tree"],
        &["ls", "tree", "--json"],
        &["diff", "db~1", "db"],
        &["diff", "db~1", "db", "--json"],
        &["stats"],
        &["stats", "--json"],
        &["stats", "db"],
        &["stats", "tree"],
        &["restore", "db", "--stdout"],
        &["restore", "tree", "--to", to, "--dry-run"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["forget", "db~1", "--dry-run"],
        &["check"],
        &["check", "--json"],
        &["prune", "--dry-run"],
        &["prune", "--dry-run", "--json"],
        &["key", "list"],
        &["sync", "--to", dest, "--dry-run"],
        &["unlock", "--stale"],
        &["--help"],
        &["help", "restore"],
    ];
    for args in commands {
        for lines in [0, 1] {
            let (c, err) = with_closed_output(&repo, args, lines);
            assert!(
                c == 0 || c == 141,
                "relic {args:?} | head -{lines}: exit {c}: {err}"
            );
            assert!(!err.contains("panicked"), "relic {args:?}: {err}");
        }
    }
    // What a closed output stopped is not reported as an error.
    let (c, err) = with_closed_output(&repo, &["restore", "db", "--stdout"], 0);
    assert_eq!(c, 141);
    assert!(!err.contains("error"), "{err}");
    // The repository is still whole and unlocked.
    ok(&repo, &["--retry-lock", "0", "check"], b"");
}

#[test]
fn quiet_runs_print_nothing_on_success() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    let silent = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["-q"];
        all.extend_from_slice(args);
        let o = relic_in(&repo, &all, stdin);
        assert!(o.status.success(), "relic {all:?}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty() && o.stderr.is_empty(),
            "relic {all:?} printed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    };
    silent(&["init", "--kdf-memory", "8"], b"");
    silent(&["backup", "--stdin", "--name", "db"], &rows(20_000, 1));
    silent(&["backup", "--stdin", "--name", "db"], &rows(20_000, 2));
    silent(&["backup", "--stdin", "--name", "db"], &rows(20_000, 3));
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    silent(&["backup", "--name", "tree", src.to_str().unwrap()], b"");
    let to = d.path().join("out");
    silent(&["restore", "tree", "--to", to.to_str().unwrap()], b"");
    silent(
        &[
            "restore",
            "db",
            "--to",
            d.path().join("db.sql").to_str().unwrap(),
        ],
        b"",
    );
    silent(&["forget", "--keep-last", "1", "--name", "db"], b"");
    silent(&["prune"], b"");
    silent(&["check", "--read-data"], b"");
    silent(
        &["sync", "--to", d.path().join("copy").to_str().unwrap()],
        b"",
    );
    silent(&["rename", "tree", "files"], b"");
    silent(&["unlock"], b"");
    // Without -q the same commands report.
    let o = relic(&repo, &["prune"]);
    assert!(!o.stdout.is_empty());
}

#[test]
fn contending_processes_wait_for_each_other_with_retry_lock() {
    let (_d, repo) = populated();
    ok(&repo, &["forget", "db~1"], b"");
    // Without a wait, a prune during a backup fails at once as locked.
    let (mut backup, mut input) = slow_backup(&repo);
    input.write_all(&rows(50_000, 9)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let o = relic(&repo, &["--retry-lock", "0", "prune"]);
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    // With one, the prune waits for the backup (and the backup for
    // nothing), then both succeed; so does a second prune racing it.
    let spawn_prune = || {
        Command::new(bin())
            .env("RELIC_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(&repo)
            .args(["--retry-lock", "30s", "prune"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn_prune(), spawn_prune());
    std::thread::sleep(Duration::from_secs(2));
    drop(input);
    let b = backup.wait().unwrap();
    assert!(b.success());
    for p in [p1, p2] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let _ = backup.stderr.take().map(|mut e| {
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
    });
    ok(&repo, &["check", "--read-data"], b"");
    let restored = ok(&repo, &["restore", "slow", "--stdout"], b"");
    assert_eq!(restored, rows(50_000, 9));
}

fn pack_dir_bytes(repo: &Path) -> u64 {
    packs(repo)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn added_bytes_are_what_the_pack_directory_grew_by() {
    let (_d, repo) = new_repo();
    let db = dbname("added");
    createdb(&db);
    populate(&db, "rev1");
    let conn = format!("dbname={db}");
    let backup = |repo: &Path| -> serde_json::Value {
        let before = pack_dir_bytes(repo);
        let out = ok(
            repo,
            &["backup", "pg", &conn, "--name", "app", "--json"],
            b"",
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let grew = pack_dir_bytes(repo) - before;
        assert_eq!(v["added_bytes"].as_u64().unwrap(), grew, "{v}");
        v
    };
    let first = backup(&repo);
    psql(
        &db,
        "UPDATE people SET name = name || 'x' WHERE id % 50 = 0",
    );
    let second = backup(&repo);
    let added = second["added_bytes"].as_u64().unwrap();
    assert!(
        added > 0 && added < first["added_bytes"].as_u64().unwrap() / 4,
        "{second}"
    );
    // stats agrees, per snapshot and per name.
    let s: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["stats", "app", "--json"], b"")).unwrap();
    assert_eq!(s["snapshots"][1]["costs"]["added"], added);
    assert_eq!(s["snapshots"][1]["costs"]["added_exact"], true);
    let one: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["stats", "app~1", "--json"], b"")).unwrap();
    assert_eq!(one["costs"]["added"], first["added_bytes"]);
    // The split covers every byte read (and the new metadata blobs), and
    // what was stored plus the packs' framing is what was added.
    let c = &second["costs"];
    let n = |k: &str| c[k].as_u64().unwrap();
    let split = n("deduplicated") + n("delta_raw") + n("compressed_raw");
    assert!(split >= n("size") && split < n("size") + 4096, "{c}");
    assert_eq!(
        n("delta_stored") + n("compressed_stored") + n("overhead"),
        added,
        "{c}"
    );
    // Row counts are JSON, not JSON in a string.
    let snaps = snapshots(&repo);
    assert!(snaps[0]["meta"]["pg.tables"].is_array(), "{}", snaps[0]);
    dropdb(&db);
}

#[test]
fn a_dry_run_backup_says_what_it_would_add_and_writes_nothing() {
    let (d, repo) = populated();
    let before = repo_bytes(&repo);
    let count = snapshots(&repo).len();
    let day3 = rows(20_000, 3);
    let out = ok(
        &repo,
        &["backup", "--stdin", "--name", "db", "--dry-run", "--json"],
        &day3,
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["dry_run"], true);
    let would = v["added_bytes"].as_u64().unwrap();
    assert_eq!(
        repo_bytes(&repo),
        before,
        "a dry run wrote to the repository"
    );
    assert_eq!(snapshots(&repo).len(), count);
    // The real backup adds what the dry run said it would.
    let real: serde_json::Value = serde_json::from_slice(&ok(
        &repo,
        &["backup", "--stdin", "--name", "db", "--json"],
        &day3,
    ))
    .unwrap();
    assert_eq!(real["added_bytes"].as_u64().unwrap(), would);
    // Files too, and the text says it is a dry run.
    let src = d.path().join("src");
    let o = ok(
        &repo,
        &[
            "backup",
            "--name",
            "tree2",
            "--dry-run",
            src.to_str().unwrap(),
        ],
        b"",
    );
    let text = String::from_utf8(o).unwrap();
    assert!(text.starts_with("dry run: "), "{text}");
    assert_eq!(snapshots(&repo).len(), count + 1);
}
