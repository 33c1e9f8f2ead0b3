//! `relic sync` to a directory and to a real S3-compatible server (s3s-fs,
//! installed by scripts/test.sh, run here on a loopback port).

mod common;
use common::s3::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn relic_env(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.env("RELIC_PASSWORD", PASSWORD)
        .env_remove("AWS_PROFILE")
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn sync_json(repo: &Path, to: &str, env: &[(&str, String)], extra: &[&str]) -> serde_json::Value {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["sync", "--to", to, "--json"];
    args.extend_from_slice(extra);
    let out = relic_env(repo, &args, &env);
    assert!(out.status.success(), "sync: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A repository with `n` daily snapshots of a slowly changing dump.
fn series(n: usize) -> (tempfile::TempDir, PathBuf) {
    let (d, repo) = new_repo();
    let mut data = rows(2 << 20, 1);
    for day in 0..n {
        let at = (day * 7919) % (data.len() - 4096);
        data[at..at + 4096].copy_from_slice(&random(4096, day as u64));
        ok(&repo, &["backup", "--stdin", "--name", "db"], &data);
    }
    (d, repo)
}

#[test]
fn sync_to_a_directory_sends_only_what_is_new_and_the_copy_restores() {
    let (d, repo) = series(20);
    let dest = d.path().join("offsite");
    let to = dest.to_str().unwrap();
    let first = sync_json(&repo, to, &[], &["--verify"]);
    assert_eq!(first["created"], true);
    assert_eq!(first["snapshots"], 20);
    assert_eq!(first["packs"].as_u64().unwrap(), packs(&repo).len() as u64);
    ok(&dest, &["check", "--read-data"], b"");

    let before = packs(&repo);
    let last = [rows(2 << 20, 1), random(300_000, 77)].concat();
    ok(&repo, &["backup", "--stdin", "--name", "db"], &last);
    let new_packs = packs(&repo).len() - before.len();
    let second = sync_json(&repo, to, &[], &[]);
    assert_eq!(second["created"], false);
    assert_eq!(second["snapshots"], 1, "only the new snapshot travels");
    assert_eq!(second["packs"].as_u64().unwrap(), new_packs as u64);
    let again = sync_json(&repo, to, &[], &[]);
    assert_eq!(
        (again["packs"].as_u64(), again["snapshots"].as_u64()),
        (Some(0), Some(0))
    );

    // The copy is a repository: check it, restore from it.
    ok(&dest, &["check", "--read-data"], b"");
    assert_eq!(ok(&dest, &["restore", "db", "--stdout"], b""), last);
    assert_eq!(snapshots(&dest).len(), 21);
}

#[test]
fn a_killed_sync_resumes_and_the_copy_checks() {
    let (d, repo) = new_repo();
    for i in 0..6 {
        ok(
            &repo,
            &["backup", "--stdin", "--name", "big"],
            &random(40 << 20, i),
        );
    }
    let dest = d.path().join("copy");
    let mut killed = 0;
    for delay_ms in [40u64, 120, 250, 400] {
        let delay = std::time::Duration::from_millis(delay_ms);
        if kill_after(&repo, &["sync", "--to", dest.to_str().unwrap()], &[], delay) {
            killed += 1;
        }
        // Whatever is there is a valid repository (maybe still empty).
        if dest.join("config").exists() {
            ok(&dest, &["check"], b"");
        }
    }
    assert!(killed > 0, "no sync was interrupted");
    sync_json(&repo, dest.to_str().unwrap(), &[], &[]);
    ok(&dest, &["check", "--read-data"], b"");
    assert_eq!(snapshots(&dest).len(), 6);
}

#[test]
fn sync_to_s3_is_incremental_and_resumable() {
    let s3 = S3::start();
    let env = s3_env(&s3);
    let (_d, repo) = series(20);
    let to = "s3://bucket/offsite/relic";
    let first = sync_json(&repo, to, &env, &["--verify"]);
    assert_eq!(first["snapshots"], 20);
    let objects = s3.objects();
    let keys = std::fs::read_dir(repo.join("keys")).unwrap().count();
    assert_eq!(
        objects,
        packs(&repo).len() + 20 + keys + 1,
        "packs, snapshots, key slots and the config"
    );
    ok(
        &repo,
        &["backup", "--stdin", "--name", "db"],
        &random(500_000, 5),
    );
    let second = sync_json(&repo, to, &env, &[]);
    assert_eq!(second["snapshots"], 1);
    let sent = second["packs"].as_u64().unwrap() as usize;
    assert!(sent >= 1);
    assert_eq!(
        s3.objects(),
        objects + sent + 1,
        "only the new pack(s) and snapshot"
    );

    // Interrupted uploads of big packs resume.
    for i in 0..3 {
        ok(
            &repo,
            &["backup", "--stdin", "--name", "big"],
            &random(40 << 20, 100 + i),
        );
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    kill_after(
        &repo,
        &["sync", "--to", to],
        &env_ref,
        std::time::Duration::from_millis(300),
    );
    let resumed = sync_json(&repo, to, &env, &["--verify"]);
    assert_eq!(
        resumed["verified"].as_u64().unwrap(),
        resumed["packs"].as_u64().unwrap() + resumed["snapshots"].as_u64().unwrap()
    );
    let keys = std::fs::read_dir(repo.join("keys")).unwrap().count();
    assert_eq!(
        s3.objects(),
        packs(&repo).len() + snapshots(&repo).len() + keys + 1
    );
    let again = sync_json(&repo, to, &env, &[]);
    assert_eq!(
        (again["packs"].as_u64(), again["snapshots"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn bad_credentials_an_unreachable_endpoint_or_a_foreign_repository_change_nothing() {
    let s3 = S3::start();
    let (d, repo) = series(2);
    let wrong = [
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", KEY),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ("AWS_REGION", "us-east-1"),
    ];
    let out = relic_env(&repo, &["sync", "--to", "s3://bucket/x"], &wrong);
    fails_with(&out, "access denied");
    assert_eq!(s3.objects(), 0);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let down = [
        ("AWS_ENDPOINT_URL", nowhere.as_str()),
        ("AWS_ACCESS_KEY_ID", KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-east-1"),
    ];
    let out = relic_env(&repo, &["sync", "--to", "s3://bucket/x"], &down);
    fails_with(&out, "cannot reach");

    // A directory holding another repository is refused.
    let other = d.path().join("other");
    ok(&other, &["init"], b"");
    let before = repo_bytes(&other);
    let out = relic_env(&repo, &["sync", "--to", other.to_str().unwrap()], &[]);
    fails_with(&out, "holds another repository");
    assert_eq!(repo_bytes(&other), before);
}

/// relic run against `-r s3://bucket/live` with its own cache directory
/// (each cache is one machine's mirror).
fn on_s3(s3: &S3, cache: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(bin());
    c.env("RELIC_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("AWS_PROFILE")
        .args(["-r", "s3://bucket/live"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in s3_env(s3) {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    {
        let mut sin = child.stdin.take().unwrap();
        let _ = sin.write_all(stdin);
    }
    child.wait_with_output().unwrap()
}

fn s3_ok(s3: &S3, cache: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = on_s3(s3, cache, args, stdin);
    assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
    out.stdout
}

#[test]
fn a_repository_living_on_s3_takes_every_command_from_any_machine() {
    let s3 = S3::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    s3_ok(&s3, a.path(), &["init"], b"");
    let live = s3.root.path().join("bucket/live");
    assert!(
        live.join("config").exists(),
        "init wrote the config to the bucket"
    );
    // A second init is refused and changes nothing.
    let again = on_s3(&s3, b.path(), &["init"], b"");
    fails_with(&again, "already holds a relic repository");

    let old = random(3 << 20, 70);
    let day1 = rows(3 << 20, 71);
    let mut day2 = day1.clone();
    day2[1 << 20..(1 << 20) + 100].copy_from_slice(&[b'x'; 100]);
    s3_ok(&s3, a.path(), &["backup", "--stdin", "--name", "old"], &old);
    s3_ok(&s3, a.path(), &["backup", "--stdin", "--name", "db"], &day1);
    s3_ok(&s3, a.path(), &["backup", "--stdin", "--name", "db"], &day2);
    assert_eq!(
        std::fs::read_dir(live.join("snapshots")).unwrap().count(),
        3
    );

    // Machine B has never seen it: list, restore and check from the bucket.
    let list: serde_json::Value =
        serde_json::from_slice(&s3_ok(&s3, b.path(), &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(s3_ok(&s3, b.path(), &["restore", "db", "--stdout"], b"") == day2);
    s3_ok(&s3, b.path(), &["check", "--read-data"], b"");

    // B forgets and prunes; A's next command sees it.
    let packs_before = std::fs::read_dir(live.join("packs")).unwrap().count();
    let before = repo_bytes(&live.join("packs"));
    s3_ok(&s3, b.path(), &["forget", "old"], b"");
    s3_ok(&s3, b.path(), &["prune"], b"");
    let after = repo_bytes(&live.join("packs"));
    assert!(
        before - after > 3 << 20,
        "prune freed {} bytes",
        before - after
    );
    assert!(packs_before >= 1);
    let list: serde_json::Value =
        serde_json::from_slice(&s3_ok(&s3, a.path(), &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(s3_ok(&s3, a.path(), &["restore", "db", "--stdout"], b"") == day2);
    s3_ok(&s3, a.path(), &["check", "--read-data"], b"");

    // An exclusive lock in the bucket (a prune elsewhere) holds backups off.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::create_dir_all(live.join("locks")).unwrap();
    std::fs::write(
        live.join("locks/elsewhere"),
        format!(r#"{{"host":"other","pid":1,"time":{now},"exclusive":true}}"#),
    )
    .unwrap();
    // The backup waits for it, saying so, and goes on once it is gone.
    let mut held = {
        let mut c = Command::new(bin());
        c.env("RELIC_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", a.path())
            .args([
                "-r",
                "s3://bucket/live",
                "backup",
                "--stdin",
                "--name",
                "db",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in s3_env(&s3) {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(held.try_wait().unwrap().is_none(), "the backup waits");
    std::fs::remove_file(live.join("locks/elsewhere")).unwrap();
    let out = held.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("locked exclusively"),
        "{}",
        stderr(&out)
    );
    // No lock is left behind.
    assert_eq!(
        std::fs::read_dir(live.join("locks"))
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0
    );
}

#[test]
fn a_repository_on_s3_with_wrong_credentials_or_none_there_is_a_clear_error() {
    let s3 = S3::start();
    let cache = tempfile::tempdir().unwrap();
    let out = on_s3(&s3, cache.path(), &["snapshots"], b"");
    fails_with(&out, "no relic repository at s3://bucket/live");
    s3_ok(&s3, cache.path(), &["init"], b"");
    let mut c = Command::new(bin());
    c.env("RELIC_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", cache.path())
        .args(["-r", "s3://bucket/live", "backup", "--stdin", "--name", "x"])
        .stdin(Stdio::null());
    for (k, v) in s3_env(&s3) {
        c.env(
            k,
            if k == "AWS_SECRET_ACCESS_KEY" {
                "wrong".to_string()
            } else {
                v
            },
        );
    }
    let out = c.output().unwrap();
    fails_with(&out, "access denied");
    assert!(
        !s3.root.path().join("bucket/live/snapshots").exists()
            || std::fs::read_dir(s3.root.path().join("bucket/live/snapshots"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn object_lock_retains_every_object_an_immaculate_snapshot_needs_and_nothing_else() {
    let s3 = Moto::start();
    s3.py("s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)\ns3.create_bucket(Bucket='plain')");
    let env = s3.env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pack_names = |repo: &Path| -> Vec<String> {
        packs(repo)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };

    // Day 1, a daily dump: its own pack. Day 2, the immaculate baseline:
    // scattered edits of day 1, so mostly deltas whose bases are in day 1's
    // pack. Day 3, an unrelated daily: a pack the baseline does not need.
    let (_d, repo) = new_repo();
    let mut data = rows(3 << 20, 7);
    ok(&repo, &["backup", "--stdin", "--name", "db"], &data);
    let day1 = pack_names(&repo);
    for i in 0..40 {
        let at = i * 76_543 % (data.len() - 64);
        data[at..at + 64].copy_from_slice(&random(64, i as u64));
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
        &data,
    );
    let day2: Vec<String> = pack_names(&repo)
        .into_iter()
        .filter(|p| !day1.contains(p))
        .collect();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "other"],
        &random(2 << 20, 99),
    );
    let day3: Vec<String> = pack_names(&repo)
        .into_iter()
        .filter(|p| !day1.contains(p) && !day2.contains(p))
        .collect();
    assert!(!day1.is_empty() && !day2.is_empty() && !day3.is_empty());
    let snaps = snapshots(&repo);
    let id_of = |name: &str| {
        snaps.iter().find(|s| s["name"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // A bucket without Object Lock, or a directory: refused before anything
    // is sent.
    let out = relic_env(
        &repo,
        &["sync", "--to", "s3://plain/r", "--object-lock", "30"],
        &env_ref,
    );
    fails_with(&out, "Object Lock is not enabled on bucket plain");
    assert!(s3.objects("plain").is_empty(), "nothing was sent");
    let dir = repo.parent().unwrap().join("copy");
    let out = relic_env(
        &repo,
        &["sync", "--to", dir.to_str().unwrap(), "--object-lock", "30"],
        &env_ref,
    );
    assert!(
        stderr(&out).contains("needs an s3:// destination"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists());

    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = sync_json(&repo, "s3://locked/r", &env, &["--object-lock", "30"]);
    let objects = s3.objects("locked");
    let locked: Vec<&String> = objects
        .iter()
        .filter(|(_, (mode, _, _))| mode == "COMPLIANCE")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(r["lock_objects"].as_u64().unwrap() as usize, locked.len());
    assert_eq!(r["locked"], r["lock_objects"]);
    let is_locked = |key: &str| locked.iter().any(|k| *k == key);
    let pack_key = |p: &str| format!("r/packs/{}/{p}", &p[..2]);
    // The baseline's snapshot object and packs, and the day-1 pack holding
    // its delta bases; the config and key slots that make them readable.
    assert!(is_locked(&format!("r/snapshots/{}", id_of("base"))));
    for p in day1.iter().chain(&day2) {
        assert!(
            is_locked(&pack_key(p)),
            "pack {p} holds the baseline's data or bases"
        );
    }
    assert!(is_locked("r/config"));
    assert!(locked.iter().any(|k| k.starts_with("r/keys/")));
    // Nothing of the dailies alone.
    for p in &day3 {
        assert!(!is_locked(&pack_key(p)), "pack {p} is only a daily's");
    }
    assert!(!is_locked(&format!("r/snapshots/{}", id_of("db"))));
    assert!(!is_locked(&format!("r/snapshots/{}", id_of("other"))));
    for (k, (mode, until, _)) in &objects {
        if !mode.is_empty() {
            assert!(
                *until >= t0 + 30 * 86_400 && *until <= t0 + 32 * 86_400,
                "{k} retained until {until}"
            );
        }
    }

    // The server holds to it: the baseline's snapshot version cannot be
    // deleted, a daily's can.
    let base_key = format!("r/snapshots/{}", id_of("base"));
    let other_key = format!("r/snapshots/{}", id_of("other"));
    let try_delete = |key: &str| {
        s3.py(&format!(
            "try:\n    s3.delete_object(Bucket='locked', Key='{key}', VersionId='{}')\n    print('deleted')\nexcept Exception as e:\n    print('refused', e)",
            objects[key].2
        ))
    };
    assert!(try_delete(&base_key).starts_with("refused"), "locked");
    assert!(try_delete(&other_key).starts_with("deleted"));

    // Again the same day: every object is already retained long enough.
    let again = sync_json(&repo, "s3://locked/r", &env, &["--object-lock", "30"]);
    assert_eq!(again["locked"], 0);
    assert_eq!(again["snapshots"], 1, "the deleted daily travels again");
    // A longer period extends every retention.
    let longer = sync_json(&repo, "s3://locked/r", &env, &["--object-lock", "40"]);
    assert_eq!(longer["locked"], r["lock_objects"]);
    for k in &locked {
        assert!(s3.objects("locked")[*k].1 >= t0 + 40 * 86_400);
    }
}
