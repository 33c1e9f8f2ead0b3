//! The second round of proofs: each test is named for the class of
//! failure it shows gone (data loss under concurrency, partial restores,
//! names and tiers, locks, files that change while read, sparse files).

mod common;
use common::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Backs up `src` as `name`, restores it under `dir/to`; returns where
/// `src` landed there.
fn round_trip(repo: &Path, dir: &Path, name: &str, src: &Path) -> std::path::PathBuf {
    ok(
        repo,
        &["backup", "--name", name, src.to_str().unwrap()],
        b"",
    );
    let to = dir.join("to");
    ok(repo, &["restore", name, "--to", to.to_str().unwrap()], b"");
    to.join(src.strip_prefix("/").unwrap())
}

fn id_of(out: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(out).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// A backup that starts while a prune runs waits for it and then stores
/// every chunk the prune deleted again: its snapshot restores. Repeated,
/// because the race needs the prune to hold the index when the backup
/// opens it.
#[test]
fn a_backup_racing_a_prune_never_saves_a_snapshot_with_pruned_chunks() {
    let (_d, repo) = new_repo();
    let data = random(6 << 20, 7);
    for round in 0..6 {
        let first = id_of(&ok(
            &repo,
            &["backup", "--stdin", "--name", "db", "--json"],
            &data,
        ));
        ok(&repo, &["forget", &first], b"");
        let prune = Command::new(bin())
            .env("RELIC_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(&repo)
            .args(["prune"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(40 * round));
        let out = relic_in(
            &repo,
            &["backup", "--stdin", "--name", "db", "--json"],
            &data,
        );
        let p = prune.wait_with_output().unwrap();
        assert!(p.status.success(), "prune: {}", stderr(&p));
        assert!(out.status.success(), "{}", stderr(&out));
        let id = id_of(&out.stdout);
        assert_eq!(
            ok(&repo, &["restore", &id, "--stdout"], b""),
            data,
            "round {round}"
        );
    }
    ok(&repo, &["check", "--read-data"], b"");
}

/// The race made deterministic in one process: a backup whose view of the
/// index (a RocksDB secondary, opened while a prune held the index) still
/// lists chunks the prune deleted must store them again, not count them
/// as stored.
#[test]
fn a_backup_with_a_stale_index_view_stores_pruned_chunks_again() {
    use relic::repo::SnapshotOptions;
    use relic::{NoProgress, Repository, Tier};
    let (_d, repo) = new_repo();
    let data = random(3 << 20, 11);
    let first = id_of(&ok(
        &repo,
        &["backup", "--stdin", "--name", "db", "--json"],
        &data,
    ));
    ok(&repo, &["forget", &first], b"");
    let pass = Some(PASSWORD.as_bytes());
    let pruner = Repository::open(&repo, pass).unwrap();
    let backup = Repository::open(&repo, pass).unwrap();
    assert!(backup.index().is_secondary());
    let plan = relic::prune::prune(&pruner, 0.5, false, &NoProgress).unwrap();
    assert!(
        !plan.delete.is_empty(),
        "the prune deleted the forgotten data"
    );
    drop(pruner);
    let opts = SnapshotOptions {
        name: "db".into(),
        tier: Tier::Daily,
        labels: Default::default(),
        meta: Default::default(),
        time_ns: None,
    };
    let (id, snap) = backup
        .backup_stream(&opts, "db", &data[..], &NoProgress)
        .unwrap();
    assert!(
        snap.summary.new_bytes >= data.len() as u64,
        "pruned chunks were counted as stored"
    );
    drop(backup);
    assert_eq!(ok(&repo, &["restore", &id.to_hex(), "--stdout"], b""), data);
    ok(&repo, &["check", "--read-data"], b"");
}

/// A dead delta left in a kept pack after a prune removed its (dead) base
/// is not a stored copy of its chunk: a later backup of the same content
/// stores it again instead of pointing at a chain that cannot be decoded.
#[test]
fn a_dead_delta_whose_base_was_pruned_is_stored_again() {
    let (_d, repo) = new_repo();
    let base = random(2 << 20, 21);
    let mut edited = base.clone();
    let mut i = 333;
    while i < edited.len() {
        edited[i] ^= 0x5a;
        i += 20_000;
    }
    let tail = random(4 << 20, 22);
    let a = id_of(&ok(
        &repo,
        &["backup", "--stdin", "--name", "a", "--json"],
        &base,
    ));
    // b's pack holds deltas against a's chunks and the chunks of `tail`,
    // which c keeps alive.
    let b = id_of(&ok(
        &repo,
        &["backup", "--stdin", "--name", "b", "--json"],
        &[&edited[..], &tail[..]].concat(),
    ));
    ok(&repo, &["backup", "--stdin", "--name", "c"], &tail);
    ok(&repo, &["forget", &a, &b], b"");
    // Never repack: b's pack stays (c needs it), a's pack goes.
    ok(&repo, &["prune", "--max-repack-ratio", "0"], b"");
    let d = id_of(&ok(
        &repo,
        &["backup", "--stdin", "--name", "d", "--json"],
        &edited,
    ));
    assert_eq!(ok(&repo, &["restore", &d, "--stdout"], b""), edited);
    ok(&repo, &["check", "--read-data"], b"");
}

/// Restoring files goes on past a damaged one: every intact file is
/// written, each damaged one is named, and the exit code says "damaged".
#[test]
fn restore_to_restores_every_intact_file_past_a_damaged_one() {
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // b's content goes into a pack of its own first.
    std::fs::write(src.join("b"), random(1 << 20, 2)).unwrap();
    let before = packs(&repo);
    ok(
        &repo,
        &[
            "backup",
            "--name",
            "b-only",
            src.join("b").to_str().unwrap(),
        ],
        b"",
    );
    let b_pack: Vec<_> = packs(&repo)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    std::fs::write(src.join("a"), random(1 << 20, 1)).unwrap();
    std::fs::write(src.join("c"), random(1 << 20, 3)).unwrap();
    ok(
        &repo,
        &["backup", "--name", "all", src.to_str().unwrap()],
        b"",
    );
    let p = &b_pack[0];
    let mut bytes = std::fs::read(p).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(p, &bytes).unwrap();

    let to = d.path().join("to");
    let out = relic(&repo, &["restore", "all", "--to", to.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("damaged, not restored") && err.contains("/b"),
        "{err}"
    );
    let r = to.join(src.strip_prefix("/").unwrap());
    for f in ["a", "c"] {
        assert_eq!(
            std::fs::read(r.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap()
        );
    }
    assert!(
        !r.join("b").exists(),
        "a damaged file is not left half-written"
    );
}

#[test]
fn names_that_read_as_selectors_or_paths_are_refused() {
    let (_d, repo) = new_repo();
    for bad in [
        "",
        "latest",
        "x~1",
        ".",
        "..",
        "../x",
        "a/../b",
        "/etc",
        "8e82db10",
        "2026",
        "--name=-x",
        " x",
        "a\nb",
        "tab\there",
    ] {
        let out = match bad.strip_prefix("--name=") {
            Some(v) => relic_in(
                &repo,
                &["backup", "--stdin", &format!("--name={v}")],
                b"data",
            ),
            None => relic_in(&repo, &["backup", "--stdin", "--name", bad], b"data"),
        };
        assert!(!out.status.success(), "name {bad:?} accepted");
        assert!(
            stderr(&out).contains("cannot name a snapshot"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
    assert!(snapshots(&repo).is_empty());
    ok(
        &repo,
        &["backup", "--stdin", "--name", "db-2026-01-01"],
        b"data",
    );
    ok(
        &repo,
        &["backup", "--stdin", "--name", "db"],
        b"short hex is a name",
    );
    assert_eq!(
        ok(&repo, &["restore", "db", "--stdout"], b""),
        b"short hex is a name"
    );
}

#[test]
fn a_name_belongs_to_one_tier() {
    let (_d, repo) = new_repo();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "gold", "--tier", "sacred"],
        b"sacred data",
    );
    let out = relic_in(
        &repo,
        &["backup", "--stdin", "--name", "gold"],
        b"daily data",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("belongs to the sacred snapshots"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ok(&repo, &["restore", "gold", "--stdout"], b""),
        b"sacred data"
    );
    ok(&repo, &["backup", "--stdin", "--name", "db"], b"one");
    let out = relic_in(
        &repo,
        &["backup", "--stdin", "--name", "db", "--tier", "named"],
        b"two",
    );
    assert!(!out.status.success());
}

/// Two immaculate backups of one name started together: exactly one wins.
#[test]
fn concurrent_immaculate_backups_of_one_name_leave_one_baseline() {
    let (_d, repo) = new_repo();
    for round in 0..5 {
        let name = format!("base-r{round}");
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let repo = repo.clone();
                let name = name.clone();
                std::thread::spawn(move || {
                    relic_in(
                        &repo,
                        &["backup", "--stdin", "--name", &name, "--tier", "immaculate"],
                        &random(256 << 10, 100 * round + i),
                    )
                })
            })
            .collect();
        let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let won = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            won, 1,
            "round {round}: {won} immaculate backups of one name succeeded"
        );
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert!(stderr(o).contains("immaculate"), "{}", stderr(o));
        }
        let n = snapshots(&repo)
            .iter()
            .filter(|s| s["name"] == name.as_str())
            .count();
        assert_eq!(n, 1);
    }
}

/// A hex name made before names were checked never silently wins over an
/// id prefix: `forget` of such a spec is ambiguous when both match.
#[test]
fn an_id_prefix_is_never_silently_taken_for_a_name() {
    let (_d, repo) = new_repo();
    let id = id_of(&ok(
        &repo,
        &["backup", "--stdin", "--name", "x", "--json"],
        b"data",
    ));
    // A name equal to another snapshot's id prefix cannot be made.
    let out = relic_in(&repo, &["backup", "--stdin", "--name", &id[..8]], b"other");
    assert!(!out.status.success());
    ok(&repo, &["forget", &id[..8]], b"");
    assert!(snapshots(&repo).is_empty());
}

/// A file written to while it is read is read again, and when it keeps
/// changing it is stored as read, named, and the backup exits "partial".
#[test]
fn a_file_that_changes_while_read_is_reported_and_exits_partial() {
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let f = src.join("growing.log");
    std::fs::write(&f, random(8 << 20, 1)).unwrap();
    std::fs::write(src.join("still"), b"quiet").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (f, stop) = (f.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                h.write_all(&[b'x'; 512]).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let out = relic(&repo, &["backup", "--name", "logs", src.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("growing.log changed while it was read"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshots(&repo).len(), 1, "the snapshot is still written");
}

#[test]
fn long_file_names_back_up_and_restore() {
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for len in [200usize, 246, 250, 255] {
        std::fs::write(src.join("l".repeat(len)), format!("{len}")).unwrap();
    }
    let r = round_trip(&repo, d.path(), "long", &src);
    for len in [200usize, 246, 250, 255] {
        assert_eq!(
            std::fs::read_to_string(r.join("l".repeat(len))).unwrap(),
            format!("{len}")
        );
    }
}

/// A sparse file restores sparse: a 2 GiB hole costs no disk.
#[test]
fn a_sparse_file_restores_sparse() {
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let f = src.join("sparse.img");
    {
        let h = std::fs::File::create(&f).unwrap();
        h.set_len(2 << 30).unwrap();
        use std::os::unix::fs::FileExt;
        h.write_all_at(b"head", 0).unwrap();
        h.write_all_at(b"middle", 1 << 30).unwrap();
    }
    let r = round_trip(&repo, d.path(), "sparse", &src).join("sparse.img");
    let m = std::fs::metadata(&r).unwrap();
    assert_eq!(m.len(), 2 << 30);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        m.blocks() * 512
    );
    use std::os::unix::fs::FileExt;
    let h = std::fs::File::open(&r).unwrap();
    let mut b = [0u8; 6];
    h.read_exact_at(&mut b, 1 << 30).unwrap();
    assert_eq!(&b, b"middle");
}

/// Repair waits for a running backup (it takes the exclusive lock), so a
/// pack the backup has not finished is never counted as missing.
#[test]
fn repair_beside_a_backup_waits_and_marks_nothing_damaged() {
    let (_d, repo) = new_repo();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "first"],
        &random(1 << 20, 1),
    );
    let (backup, mut sin) = slow_backup(&repo);
    let feeder = std::thread::spawn(move || {
        for i in 0..20 {
            sin.write_all(&random(1 << 20, 100 + i)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let repair = relic(&repo, &["repair"]);
    feeder.join().unwrap();
    let b = backup.wait_with_output().unwrap();
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(
        repair.status.success(),
        "{}{}",
        String::from_utf8_lossy(&repair.stdout),
        stderr(&repair)
    );
    ok(&repo, &["repair"], b"");
    assert!(snapshots(&repo).iter().all(|s| s["damaged"] != true));
}

/// A lock left by a process on another host (a renamed container) names
/// its holder; `unlock --stale` keeps it while it is fresh, `unlock`
/// removes it, and one nobody refreshed for ten minutes is ignored.
#[test]
fn a_stale_lock_is_named_and_cleared() {
    let (_d, repo) = new_repo();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lock = |age: u64| {
        serde_json::json!({"host": "old-container", "pid": 4242, "time": now - age,
            "refreshed": now - age, "exclusive": true, "command": "prune"})
        .to_string()
    };
    let path = repo.join("locks").join("ab".repeat(32));
    std::fs::write(&path, lock(5)).unwrap();
    let out = relic(&repo, &["unlock", "--stale"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kept live lock exclusively by prune (pid 4242 on host old-container"),
        "{text}"
    );
    assert!(path.exists());
    let out = relic(&repo, &["unlock"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed lock"));
    assert!(!path.exists());
    // Not refreshed for over ten minutes: a backup goes ahead at once.
    std::fs::write(&path, lock(3600)).unwrap();
    ok(&repo, &["backup", "--stdin", "--name", "db"], b"data");
    assert!(!path.exists());
}

/// A backup whose lock was removed while it ran (`relic unlock`, or taken
/// for stale) writes no snapshot: a prune may have run meanwhile.
#[test]
fn a_backup_whose_lock_was_removed_writes_no_snapshot() {
    let (_d, repo) = new_repo();
    let (backup, mut sin) = slow_backup(&repo);
    sin.write_all(&random(1 << 20, 1)).unwrap();
    // Wait for its lock, then remove it.
    let locks = repo.join("locks");
    let t = std::time::Instant::now();
    while std::fs::read_dir(&locks)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().len() == 64)
        .count()
        == 0
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the backup took no lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = relic(&repo, &["unlock"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed lock shared by backup"));
    sin.write_all(&random(1 << 20, 2)).unwrap();
    drop(sin);
    let b = backup.wait_with_output().unwrap();
    assert!(!b.status.success());
    assert!(
        stderr(&b).contains("lock was removed while it ran"),
        "{}",
        stderr(&b)
    );
    assert!(snapshots(&repo).is_empty());
}

/// Restoring many small files runs no thread per file.
#[test]
fn many_small_files_restore_byte_exact() {
    let (d, repo) = new_repo();
    let src = d.path().join("src");
    for i in 0..2000u64 {
        let dir = src.join(format!("d{}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}")),
            random(100 + (i as usize * 37) % 5000, i),
        )
        .unwrap();
    }
    let r = round_trip(&repo, d.path(), "small", &src);
    for i in (0..2000u64).step_by(97) {
        let p = Path::new(&format!("d{}", i % 40)).join(format!("f{i}"));
        assert_eq!(
            std::fs::read(r.join(&p)).unwrap(),
            std::fs::read(src.join(&p)).unwrap()
        );
    }
}
