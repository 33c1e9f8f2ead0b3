//! The chunk store through the real binary: round trips, dedup, check,
//! index rebuild, interrupted and concurrent backups, bad input.

mod common;
use common::*;
use std::process::{Command, Stdio};

#[test]
fn stdin_round_trip_is_byte_identical() {
    let (_d, repo) = new_repo();
    let mut data = rows(3 << 20, 1);
    data.extend(random(2 << 20, 2));
    ok(&repo, &["backup", "--stdin", "--name", "db"], &data);
    assert_eq!(ok(&repo, &["restore", "db", "--stdout"], b""), data);
    assert_eq!(ok(&repo, &["restore", "latest", "--stdout"], b""), data);
    // An empty stream is a valid snapshot too.
    ok(&repo, &["backup", "--stdin", "--name", "empty"], b"");
    assert!(ok(&repo, &["restore", "empty", "--stdout"], b"").is_empty());
}

#[test]
fn same_stream_twice_adds_under_one_percent() {
    let (_d, repo) = new_repo();
    let mut data = rows(24 << 20, 3);
    data.extend(random(8 << 20, 4));
    ok(&repo, &["backup", "--stdin", "--name", "a"], &data);
    let first = repo_bytes(&repo);
    ok(&repo, &["backup", "--stdin", "--name", "b"], &data);
    let second = repo_bytes(&repo);
    let growth = (second - first) as f64 / first as f64;
    assert!(
        growth < 0.01,
        "second identical backup grew the repo by {:.3}%",
        growth * 100.0
    );
}

#[test]
fn daily_series_restores_each_day_and_stores_increments() {
    let (_d, repo) = new_repo();
    let mut day = rows(16 << 20, 5);
    let mut days = vec![];
    let mut sizes = vec![];
    for d in 0..5u64 {
        if d > 0 {
            // Scattered edits: a few rows rewritten, some appended.
            for k in 0..20 {
                let at = ((d * 7919 + k * 104729) as usize * 4099) % (day.len() - 64);
                day[at..at + 16].copy_from_slice(format!("edit {d:02} row {k:04}").as_bytes());
            }
            day.extend(rows(64 << 10, 100 + d));
        }
        ok(&repo, &["backup", "--stdin", "--name", "db"], &day);
        sizes.push(repo_bytes(&repo));
        days.push(day.clone());
    }
    let first = sizes[0];
    for w in sizes.windows(2) {
        let inc = w[1] - w[0];
        assert!(
            inc * 5 < first,
            "a day of small edits stored {inc} bytes (first day {first})"
        );
    }
    // Every day restores its own bytes: no shortcut trusts the name.
    let list = String::from_utf8(ok(&repo, &["snapshots", "--json"], b"")).unwrap();
    let snaps: serde_json::Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5);
    for (id, want) in ids.iter().zip(&days) {
        assert_eq!(&ok(&repo, &["restore", &id[..12], "--stdout"], b""), want);
    }
}

#[test]
fn check_read_data_finds_a_flipped_byte_and_names_snapshots() {
    let (_d, repo) = new_repo();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "one"],
        &random(3 << 20, 9),
    );
    ok(
        &repo,
        &["backup", "--stdin", "--name", "two"],
        &rows(2 << 20, 10),
    );
    let out = relic(&repo, &["check", "--read-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Flip one byte in the middle of the pack that holds snapshot "one"'s data.
    let packs = packs(&repo);
    let pack = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(pack, &bytes).unwrap();
    let out = relic(&repo, &["check", "--read-data"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is damaged"), "{text}");
    assert!(
        text.contains("damaged snapshot") && text.contains("(one)"),
        "{text}"
    );
    // A restore touching it fails loudly, never with silent garbage.
    let out = relic(&repo, &["restore", "one", "--stdout"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
}

#[test]
fn flipped_trailer_byte_is_found_by_plain_check() {
    let (_d, repo) = new_repo();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "x"],
        &rows(1 << 20, 11),
    );
    let pack = packs(&repo).remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 1;
    std::fs::write(&pack, &bytes).unwrap();
    let out = relic(&repo, &["check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(x)"));
}

#[test]
fn index_rebuild_after_deleting_rocksdb() {
    let (_d, repo) = new_repo();
    let data = rows(4 << 20, 12);
    ok(&repo, &["backup", "--stdin", "--name", "db"], &data);
    let stats_before = ok(&repo, &["stats", "--json"], b"");
    std::fs::remove_dir_all(repo.join("index")).unwrap();
    let out = String::from_utf8(ok(&repo, &["index", "rebuild"], b"")).unwrap();
    assert!(out.contains("1 snapshots"), "{out}");
    assert_eq!(ok(&repo, &["stats", "--json"], b""), stats_before);
    assert_eq!(ok(&repo, &["restore", "db", "--stdout"], b""), data);
    // Dedup works against the rebuilt index.
    let before = repo_bytes(&repo);
    ok(&repo, &["backup", "--stdin", "--name", "db"], &data);
    assert!(repo_bytes(&repo) - before < before / 100);
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn files_round_trip_with_modes_links_and_mtimes() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/big.bin"), random(3 << 20, 13)).unwrap();
    std::fs::write(src.join("a/small.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::set_permissions(
        src.join("a/small.txt"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    symlink("a/small.txt", src.join("link")).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(src.join("a/b/big.bin"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    ok(
        &repo,
        &["backup", "--name", "tree", src.to_str().unwrap()],
        b"",
    );
    let dst = d.path().join("dst");
    ok(
        &repo,
        &["restore", "tree", "--to", dst.to_str().unwrap()],
        b"",
    );
    let rel = src.strip_prefix("/").unwrap();
    let r = dst.join(rel);
    assert_eq!(
        std::fs::read(r.join("a/b/big.bin")).unwrap(),
        random(3 << 20, 13)
    );
    assert_eq!(std::fs::read(r.join("a/small.txt")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(r.join("empty")).unwrap(), b"");
    assert_eq!(
        std::fs::read_link(r.join("link")).unwrap(),
        std::path::PathBuf::from("a/small.txt")
    );
    let mode = std::fs::metadata(r.join("a/small.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);
    assert_eq!(
        std::fs::metadata(r.join("a/b/big.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        old
    );
    // `ls` lists what was backed up, as JSON and as lines.
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&ok(&repo, &["ls", "tree", "--json"], b"")).unwrap();
    let rel_s = rel.to_str().unwrap();
    let entry = |p: &str| {
        listed
            .iter()
            .find(|e| e["path"] == format!("{rel_s}/{p}"))
            .unwrap_or_else(|| panic!("{p} not listed in {listed:?}"))
    };
    assert_eq!(entry("a/small.txt")["kind"], "file");
    assert_eq!(entry("a/small.txt")["mode"], "0750");
    assert_eq!(entry("a/small.txt")["size"], 6);
    assert_eq!(
        entry("a/small.txt")["blake3"],
        blake3::hash(b"hello\n").to_hex().as_str()
    );
    assert_eq!(entry("link")["kind"], "symlink");
    assert_eq!(entry("link")["target"], "a/small.txt");
    assert_eq!(entry("a/b")["kind"], "dir");
    assert_eq!(entry("a/b/big.bin")["mtime"], "2020-09-13T12:26:40Z");
    let lines =
        String::from_utf8(ok(&repo, &["ls", "tree", &format!("{rel_s}/a/b/")], b"")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("drwx") && lines[0].ends_with(&format!("{rel_s}/a/b")));
    assert!(
        lines[1].contains(" 3145728 2020-09-13 12:26:40 "),
        "{}",
        lines[1]
    );
    // A multi-item snapshot cannot go to stdout.
    let out = relic(&repo, &["restore", "tree", "--stdout"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--to DIR"));
}

#[test]
fn killed_backup_lists_nothing_and_next_backup_reuses_its_packs() {
    let (_d, repo) = new_repo();
    let data = random(96 << 20, 14);
    let mut child = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(&repo)
        .args(["backup", "--stdin", "--name", "big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut sin = child.stdin.take().unwrap();
        // Feed most of the stream, wait for packs to be sealed, then kill.
        sin.write_all(&data[..80 << 20]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while packs(&repo).len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(sin);
    }
    let sealed = packs(&repo).len();
    assert!(sealed >= 2, "packs were sealed before the kill");
    let list = String::from_utf8(ok(&repo, &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list.trim(), "[]", "an interrupted backup lists nothing");
    ok(&repo, &["check", "--read-data"], b"");
    let before = repo_bytes(&repo);
    ok(&repo, &["backup", "--stdin", "--name", "big"], &data);
    let added = repo_bytes(&repo) - before;
    assert!(
        added < 80 << 20,
        "next backup reused the sealed packs (added {added})"
    );
    assert_eq!(ok(&repo, &["restore", "big", "--stdout"], b""), data);
    assert!(
        std::fs::read_dir(repo.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "stale temp files cleaned"
    );
}

#[test]
fn concurrent_backups_of_different_names_both_land() {
    let (_d, repo) = new_repo();
    let a = random(24 << 20, 15);
    let b = rows(24 << 20, 16);
    std::thread::scope(|s| {
        let ha = s.spawn(|| ok(&repo, &["backup", "--stdin", "--name", "a"], &a));
        let hb = s.spawn(|| ok(&repo, &["backup", "--stdin", "--name", "b"], &b));
        ha.join().unwrap();
        hb.join().unwrap();
    });
    assert_eq!(ok(&repo, &["restore", "a", "--stdout"], b""), a);
    assert_eq!(ok(&repo, &["restore", "b", "--stdout"], b""), b);
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn immaculate_names_are_write_once() {
    let (_d, repo) = new_repo();
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
        b"v1",
    );
    let out = relic_in(
        &repo,
        &[
            "backup",
            "--stdin",
            "--name",
            "base",
            "--tier",
            "immaculate",
        ],
        b"v2",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("immaculate baseline is never updated"),
        "{}",
        stderr(&out)
    );
    let out = relic_in(&repo, &["backup", "--stdin", "--name", "base"], b"v2");
    assert!(!out.status.success());
    assert_eq!(ok(&repo, &["restore", "base", "--stdout"], b""), b"v1");
}

#[test]
fn bad_input_gives_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    let out = relic(&missing, &["snapshots"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no relic repository"),
        "{}",
        stderr(&out)
    );
    let (_d, repo) = new_repo();
    let out = relic(&repo, &["init"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"));
    let out = relic(&repo, &["restore", "ghost", "--stdout"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no snapshot matches 'ghost'"));
    let out = relic(&repo, &["backup", "--name", "x", "/definitely/not/here"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/definitely/not/here"));
    assert!(
        String::from_utf8(ok(&repo, &["snapshots", "--json"], b""))
            .unwrap()
            .trim()
            == "[]"
    );
    let out = relic_in(
        &repo,
        &["backup", "--stdin", "--name", "x", "--tier", "gold"],
        b"1",
    );
    assert!(stderr(&out).contains("unknown tier 'gold'"));
}

#[test]
fn forget_by_policy_spares_protected_tiers_and_explicit_forget_refuses_them() {
    let (_d, repo) = new_repo();
    for day in 0..4u64 {
        ok(
            &repo,
            &["backup", "--stdin", "--name", "db"],
            &rows(64 << 10, day),
        );
    }
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
        b"base",
    );
    ok(
        &repo,
        &["backup", "--stdin", "--name", "pr-612", "--tier", "sacred"],
        b"sacred",
    );
    ok(
        &repo,
        &[
            "backup",
            "--stdin",
            "--name",
            "before-migration",
            "--tier",
            "named",
        ],
        b"named",
    );
    let count = |repo: &std::path::Path| {
        let v: serde_json::Value =
            serde_json::from_slice(&ok(repo, &["snapshots", "--json"], b"")).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(count(&repo), 7);
    let out = relic(&repo, &["forget"]);
    assert!(!out.status.success(), "no rule, nothing forgotten");
    let plan =
        String::from_utf8(ok(&repo, &["forget", "--keep-last", "1", "--dry-run"], b"")).unwrap();
    assert_eq!(plan.matches("forget ").count(), 3, "{plan}");
    assert!(
        plan.contains("tier immaculate")
            && plan.contains("tier sacred")
            && plan.contains("tier named"),
        "{plan}"
    );
    assert_eq!(count(&repo), 7, "dry run changes nothing");
    ok(&repo, &["forget", "--keep-last", "1"], b"");
    assert_eq!(count(&repo), 4);
    assert_eq!(
        ok(&repo, &["restore", "db", "--stdout"], b""),
        rows(64 << 10, 3)
    );
    for protected in ["base", "pr-612"] {
        let out = relic(&repo, &["forget", protected]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("can never be forgotten"),
            "{}",
            stderr(&out)
        );
    }
    ok(&repo, &["forget", "before-migration"], b"");
    assert_eq!(count(&repo), 3);
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn entries_that_cannot_be_backed_up_are_skipped_loudly() {
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("kept.txt"), b"kept").unwrap();
    let fifo = src.join("a-fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = relic(&repo, &["backup", "--name", "t", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("a-fifo"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 entries could not be read"),
        "{}",
        stderr(&out)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list[0]["meta"]["files.skipped"], "1");
    let dst = d.path().join("dst");
    ok(&repo, &["restore", "t", "--to", dst.to_str().unwrap()], b"");
    let r = dst.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(r.join("kept.txt")).unwrap(), b"kept");
    assert!(!r.join("a-fifo").exists());
}

/// Packs sent side by side (sync's parallel waves) that share a fan-out
/// directory not made yet: every one is written, none fails because
/// another made the directory between its link and its check. (A CI run
/// once lost this race: "offsite: No such file or directory".)
#[test]
fn parallel_writes_into_a_new_fan_out_directory_all_land() {
    use relic::store::{Kind, Local};
    for round in 0..200 {
        let d = tempfile::tempdir().unwrap();
        let store = Local::new(d.path());
        store.create_layout().unwrap();
        let names: Vec<String> = (0..16).map(|i| format!("ab{round:02x}{i:060x}")).collect();
        let start = std::sync::Barrier::new(names.len());
        std::thread::scope(|s| {
            for n in &names {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    start.wait();
                    store.write_once(Kind::Pack, n, n.as_bytes()).unwrap()
                });
            }
        });
        for n in &names {
            assert_eq!(store.read(Kind::Pack, n).unwrap(), n.as_bytes());
        }
    }
}
