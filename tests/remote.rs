//! A repository on object storage, worked on without a copy of its data:
//! what a fresh host transfers, several hosts at once with a prune, a
//! backup killed mid-upload. Real s3s-fs behind a counting proxy.

mod common;

use common::proxy::Proxy;
use common::s3::{KEY, S3, SECRET};
use common::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const URL: &str = "s3://bucket/live";

fn command(endpoint: &str, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.env("RELIC_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", cache)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .args(["-r", URL])
        .args(args);
    c
}

fn run(endpoint: &str, cache: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command(endpoint, cache, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sin = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    out
}

fn must(endpoint: &str, cache: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = run(endpoint, cache, args, stdin);
    assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
    out.stdout
}

fn bucket_bytes(dir: &Path) -> u64 {
    common::bucket::bytes(dir)
}

fn pack_names(live: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(live.join("packs")) {
        for sub in rd {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                let n = f.unwrap().file_name().to_string_lossy().into_owned();
                if !n.starts_with('.') {
                    out.insert(n);
                }
            }
        }
    }
    out
}

/// Day `d` of a database-like series: rows that change a little each day
/// and an incompressible part.
fn day(d: usize) -> Vec<u8> {
    let mut v = rows(12 << 20, 11);
    v.extend(random(6 << 20, 12));
    for k in 0..d {
        let at = (k * 1_700_021 + d * 91_117) % (v.len() - 5000);
        v[at..at + 3000].copy_from_slice(&random(3000, (d * 100 + k) as u64));
    }
    v.extend(rows(200 << 10, 100 + d as u64));
    v
}

#[test]
fn a_fresh_host_reads_only_what_each_command_needs() {
    let s3 = S3::start();
    let proxy = Proxy::start(s3.endpoint.trim_start_matches("http://"));
    let ep = proxy.endpoint.clone();
    let live = s3.root.path().join("bucket/live");
    let a = tempfile::tempdir().unwrap();
    must(&ep, a.path(), &["init"], b"");
    let days: Vec<Vec<u8>> = (1..=7).map(day).collect();
    for d in &days {
        must(&ep, a.path(), &["backup", "--stdin", "--name", "db"], d);
    }
    // The cache holds no pack: its size is the index's, not the data's.
    let cached = repo_bytes(a.path());
    let bucket = bucket_bytes(&live);
    assert!(
        cached < bucket / 4,
        "cache {cached} bytes for a bucket of {bucket}"
    );

    // A new host lists the snapshots: the snapshot objects and the packs'
    // trailers, never the packs.
    let b = tempfile::tempdir().unwrap();
    let (_, down0, _) = proxy.counters.get();
    let list: serde_json::Value =
        serde_json::from_slice(&must(&ep, b.path(), &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 7);
    let (_, down1, _) = proxy.counters.get();
    let listed = down1 - down0;
    if std::env::var("RELIC_TEST_DEBUG").is_ok() {
        eprintln!("requests {:?}", proxy.counters.get());
        let _ = Command::new("find")
            .arg(&live)
            .arg("-type")
            .arg("f")
            .arg("-printf")
            .arg("%s %p\n")
            .status();
    }
    assert!(
        listed * 50 < bucket,
        "snapshots on a fresh host read {listed} bytes of a {bucket}-byte bucket"
    );

    // It restores the newest day: about what that day alone stores.
    let newest = days.last().unwrap();
    let out = must(&ep, b.path(), &["restore", "db", "--stdout"], b"");
    assert!(out == *newest, "restored bytes differ");
    let (_, down2, _) = proxy.counters.get();
    let restored = down2 - down1;
    // What the snapshot needs: its blobs and their delta bases, stored.
    let needs: serde_json::Value =
        serde_json::from_slice(&must(&ep, b.path(), &["stats", "latest", "--json"], b"")).unwrap();
    let stored = needs["stored_bytes"].as_u64().unwrap();
    assert!(
        restored as f64 <= 1.2 * stored as f64,
        "restore read {restored} bytes; the snapshot needs {stored} stored"
    );

    // Backing up what the bucket already holds uploads no pack.
    let packs = pack_names(&live);
    let (up0, _, _) = proxy.counters.get();
    must(
        &ep,
        b.path(),
        &["backup", "--stdin", "--name", "db"],
        newest,
    );
    let (up1, _, _) = proxy.counters.get();
    assert_eq!(pack_names(&live), packs, "a pack was uploaded");
    assert!(up1 - up0 < 64 << 10, "uploaded {} bytes", up1 - up0);

    // The cache can go at any time.
    std::fs::remove_dir_all(b.path().join("relic")).unwrap();
    must(&ep, b.path(), &["check", "--read-data"], b"");
}

fn spawn_backup(endpoint: &str, cache: &Path, name: &str, data: &[u8]) -> Child {
    use std::io::Write;
    let mut child = command(endpoint, cache, &["backup", "--stdin", "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sin = child.stdin.take().unwrap();
    sin.write_all(data).unwrap();
    drop(sin);
    child
}

#[test]
fn two_hosts_back_up_at_once_while_a_third_prunes() {
    let s3 = S3::start();
    let ep = s3.endpoint.clone();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    must(&ep, a.path(), &["init"], b"");
    let mut kept: std::collections::HashMap<[u8; 32], Vec<u8>> = Default::default();
    for round in 0..5u64 {
        let da = [rows(3 << 20, round), random(1 << 20, 50 + round)].concat();
        let db = [random(2 << 20, 90 + round), rows(2 << 20, 7)].concat();
        kept.insert(*blake3::hash(&da).as_bytes(), da.clone());
        kept.insert(*blake3::hash(&db).as_bytes(), db.clone());
        let ha = spawn_backup(&ep, a.path(), "alpha", &da);
        let hb = spawn_backup(&ep, b.path(), "beta", &db);
        // The third host forgets all but the last two of each and prunes,
        // while the backups run.
        must(&ep, c.path(), &["forget", "--keep-last", "2"], b"");
        must(&ep, c.path(), &["prune"], b"");
        for h in [ha, hb] {
            let out = h.wait_with_output().unwrap();
            assert!(out.status.success(), "backup: {}", stderr(&out));
        }
    }
    must(&ep, c.path(), &["prune"], b"");
    must(&ep, a.path(), &["check", "--read-data"], b"");
    let list: serde_json::Value =
        serde_json::from_slice(&must(&ep, b.path(), &["snapshots", "--json"], b"")).unwrap();
    let list = list.as_array().unwrap();
    assert!(list.len() >= 4, "{} snapshots left", list.len());
    let fresh = tempfile::tempdir().unwrap();
    for s in list {
        let id = s["id"].as_str().unwrap();
        let out = must(&ep, fresh.path(), &["restore", id, "--stdout"], b"");
        assert!(
            kept.contains_key(blake3::hash(&out).as_bytes()),
            "snapshot {id} restores what was backed up"
        );
    }
}

#[test]
fn a_backup_killed_mid_upload_resumes_and_the_bucket_checks() {
    let s3 = S3::start();
    let proxy = Proxy::start(s3.endpoint.trim_start_matches("http://"));
    let ep = proxy.endpoint.clone();
    let live = s3.root.path().join("bucket/live");
    let cache = tempfile::tempdir().unwrap();
    must(&ep, cache.path(), &["init"], b"");
    // Incompressible: about five packs.
    let data = random(150 << 20, 3);
    let src = cache.path().join("data");
    std::fs::write(&src, &data).unwrap();
    // Slowed down so that it is killed with some packs up, not all.
    proxy.set_delay(30);
    let mut child = command(&ep, cache.path(), &["backup", "--stdin", "--name", "big"])
        .stdin(std::fs::File::open(&src).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while pack_names(&live).is_empty() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.set_delay(0);
    let up_first = pack_names(&live);
    assert!(!up_first.is_empty(), "killed before any pack was up");
    // The bucket is a consistent repository: no snapshot, packs that check.
    must(&ep, cache.path(), &["check", "--read-data"], b"");
    let first_bytes = bucket_bytes(&live.join("packs"));

    let (up0, _, _) = proxy.counters.get();
    must(
        &ep,
        cache.path(),
        &["backup", "--stdin", "--name", "big"],
        &data,
    );
    let (up1, _, _) = proxy.counters.get();
    let all = pack_names(&live);
    assert!(all.is_superset(&up_first));
    let total = bucket_bytes(&live.join("packs"));
    // The second run sends what the first did not (and no more than a
    // pack's worth besides: the pack being filled when it was killed).
    assert!(
        up1 - up0 <= total - first_bytes + (1 << 20),
        "second run uploaded {}; the first left {} of {}",
        up1 - up0,
        first_bytes,
        total
    );
    must(&ep, cache.path(), &["check", "--read-data"], b"");
    let fresh = tempfile::tempdir().unwrap();
    assert!(must(&ep, fresh.path(), &["restore", "big", "--stdout"], b"") == data);
}

#[test]
fn moto_serves_a_repository_from_several_hosts_too() {
    let moto = common::s3::Moto::start();
    moto.py("s3.create_bucket(Bucket='bucket')");
    let ep = moto.endpoint.clone();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    must(&ep, a.path(), &["init"], b"");
    let (d1, d2) = (day(1), day(2));
    must(
        &ep,
        a.path(),
        &["backup", "--stdin", "--name", "old"],
        &random(2 << 20, 5),
    );
    must(&ep, a.path(), &["backup", "--stdin", "--name", "db"], &d1);
    must(&ep, a.path(), &["backup", "--stdin", "--name", "db"], &d2);
    // Another host: lists, restores, forgets and prunes; the first sees it.
    let list: serde_json::Value =
        serde_json::from_slice(&must(&ep, b.path(), &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(must(&ep, b.path(), &["restore", "db", "--stdout"], b"") == d2);
    must(&ep, b.path(), &["forget", "old"], b"");
    must(&ep, b.path(), &["prune"], b"");
    let list: serde_json::Value =
        serde_json::from_slice(&must(&ep, a.path(), &["snapshots", "--json"], b"")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    must(&ep, a.path(), &["check", "--read-data"], b"");
    assert!(must(&ep, a.path(), &["restore", "db", "--stdout"], b"") == d2);
    // No lock is left in the bucket.
    let locks = moto.py("print(len([o for o in s3.list_objects_v2(Bucket='bucket', Prefix='live/locks/').get('Contents', [])]))");
    assert_eq!(locks.trim(), "0");
}

#[test]
fn a_backup_with_skipped_files_reaches_the_bucket_and_leaves_no_lock() {
    let s3 = S3::start();
    let live = s3.root.path().join("bucket/live");
    let a = tempfile::tempdir().unwrap();
    must(&s3.endpoint, a.path(), &["init"], b"");
    let src = a.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("kept"), rows(10_000, 3)).unwrap();
    assert!(Command::new("mkfifo")
        .arg(src.join("fifo"))
        .status()
        .unwrap()
        .success());
    let out = run(
        &s3.endpoint,
        a.path(),
        &["backup", "--name", "partial", src.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // No lock is left in the bucket...
    let locks = std::fs::read_dir(live.join("locks"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(locks, 0, "locks left in the bucket");
    // ...and another host, with a cache of its own, sees and restores the
    // snapshot, and may prune at once.
    let b = tempfile::tempdir().unwrap();
    let list: serde_json::Value =
        serde_json::from_slice(&must(&s3.endpoint, b.path(), &["snapshots", "--json"], b""))
            .unwrap();
    assert_eq!(list[0]["name"], "partial", "{list}");
    assert_eq!(list[0]["meta"]["files.skipped"], "1");
    let to = b.path().join("out");
    must(
        &s3.endpoint,
        b.path(),
        &["restore", "partial", "--to", to.to_str().unwrap()],
        b"",
    );
    let kept = to.join(src.strip_prefix("/").unwrap()).join("kept");
    assert_eq!(std::fs::read(kept).unwrap(), rows(10_000, 3));
    must(&s3.endpoint, b.path(), &["--retry-lock", "0", "prune"], b"");
}
