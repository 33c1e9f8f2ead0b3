//! A repository on object storage, end to end: relic beside restic (`s3:`
//! backend), same data, same S3 server (s3s-fs on loopback), in one run,
//! behind a proxy that counts the bytes and requests each way and can hold
//! every request for a fixed delay.
//!
//!   cargo bench --bench s3 -- SERIES_DIR [--runs N] [--delay-ms 20] [--relic-only]
//!
//! SERIES_DIR holds day files in order (`scripts/gen-pgbench-series.sh
//! DIR 7` makes the 7-day pgbench series). Needs s3s-fs (scripts/test.sh
//! installs it), restic (Debian) for the comparison (skipped if missing),
//! and the relic binary (`cargo build --release`). Prints a markdown table.

#[path = "../tests/common/bucket.rs"]
mod bucket;
#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const KEY: &str = "relic-bench-key";
const SECRET: &str = "relic-bench-secret";
const PASSWORD: &str = "bench password";

struct Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> Server {
    let root = tempfile::tempdir_in(workdir()).unwrap();
    std::fs::create_dir_all(root.path().join("bucket")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs is installed (scripts/test.sh installs it)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Server { child, port, root }
}

fn workdir() -> PathBuf {
    let d = PathBuf::from(
        std::env::var("RELIC_BENCH_WORKDIR").unwrap_or("/var/tmp/relic-s3-bench".into()),
    );
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn relic_bin() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target"));
    target.join("release/relic")
}

/// Runs a tool against the proxy with a cache dir; stdin from `input`,
/// stdout to `out` (or discarded). Returns seconds.
fn timed(mut c: Command, input: Option<&Path>, out: Option<&Path>) -> f64 {
    c.stdin(match input {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    })
    .stdout(match out {
        Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
        None => Stdio::null(),
    })
    .stderr(Stdio::piped());
    let t = Instant::now();
    let o = c.output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    secs
}

struct Tool {
    name: &'static str,
    endpoint: String,
}

impl Tool {
    fn cmd(&self, cache: &Path, args: &[&str]) -> Command {
        let (bin, repo): (PathBuf, String) = match self.name {
            "relic" => (relic_bin(), "s3://bucket/relic".into()),
            _ => (
                "restic".into(),
                format!("s3:{}/bucket/restic", self.endpoint),
            ),
        };
        let mut c = Command::new(bin);
        c.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("RELIC_PASSWORD", PASSWORD)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", cache)
            .env_remove("AWS_PROFILE");
        match self.name {
            "relic" => {
                c.args(["-r", &repo, "--quiet"]).args(args);
            }
            _ => {
                c.args(["-r", &repo, "--cache-dir"]).arg(cache).args(args);
            }
        }
        c
    }

    fn init(&self, cache: &Path) {
        timed(self.cmd(cache, &["init"]), None, None);
    }

    fn backup(&self, cache: &Path, file: &Path, name: &str) -> f64 {
        let c = match self.name {
            "relic" => self.cmd(cache, &["backup", "--stdin", "--name", name]),
            _ => self.cmd(
                cache,
                &[
                    "backup",
                    "-q",
                    "--stdin",
                    "--stdin-filename",
                    name,
                    "--host",
                    "bench",
                ],
            ),
        };
        timed(c, Some(file), None)
    }

    fn snapshots(&self, cache: &Path) -> f64 {
        let c = match self.name {
            "relic" => self.cmd(cache, &["snapshots", "--json"]),
            _ => self.cmd(cache, &["snapshots", "--json"]),
        };
        timed(c, None, None)
    }

    fn restore(&self, cache: &Path, name: &str, out: &Path) -> f64 {
        let c = match self.name {
            "relic" => self.cmd(cache, &["restore", name, "--stdout"]),
            _ => self.cmd(cache, &["dump", "-q", "latest", &format!("/{name}")]),
        };
        timed(c, None, Some(out))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn hash_file(p: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    h.finalize().to_hex().to_string()
}

struct Row {
    tool: &'static str,
    backup_s: f64,
    backup_up: u64,
    bucket: u64,
    snaps_s: f64,
    snaps_down: u64,
    restore_s: f64,
    restore_down: u64,
    restore_delay_s: f64,
    snaps30_warm_s: f64,
    snaps30_fresh_s: f64,
    again_packs: Option<usize>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(series) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench s3 -- SERIES_DIR [--runs N] [--delay-ms MS]");
        return;
    };
    let opt = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = opt("--runs", 3) as usize;
    let delay = opt("--delay-ms", 20);
    let mut days: Vec<PathBuf> = std::fs::read_dir(&series)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                && p.extension().is_some_and(|e| e == "sql")
        })
        .collect();
    days.sort();
    let raw: u64 = days.iter().map(|d| d.metadata().unwrap().len()).sum();
    let newest = days.last().unwrap().clone();
    let newest_name = "day";
    let want = hash_file(&newest);
    let have_restic = Command::new("restic").arg("version").output().is_ok()
        && !args.iter().any(|a| a == "--relic-only");
    let mut rows = Vec::new();
    let mut needs = 0u64;
    for tool in ["relic", "restic"] {
        if tool == "restic" && !have_restic {
            eprintln!("restic not installed: skipped");
            continue;
        }
        let server = s3s_fs();
        let proxy = proxy::Proxy::start(&format!("127.0.0.1:{}", server.port));
        let t = Tool {
            name: tool,
            endpoint: proxy.endpoint.clone(),
        };
        let bucket_dir = server.root.path().join("bucket").join(tool);
        let work = tempfile::tempdir_in(workdir()).unwrap();
        let cache_a = work.path().join("cache-a");
        t.init(&cache_a);
        let (up0, _, _) = proxy.counters.get();
        let mut backup_s = 0.0;
        for d in &days {
            backup_s += t.backup(&cache_a, d, newest_name);
        }
        let (up1, _, _) = proxy.counters.get();
        let bucket = bucket::bytes(&bucket_dir);
        // Fresh hosts: each run its own empty cache.
        let mut snaps = Vec::new();
        let mut snaps_down = 0;
        let mut restores = Vec::new();
        let mut restore_down = 0;
        let out = work.path().join("restored");
        for r in 0..runs {
            let fresh = work.path().join(format!("fresh-{r}"));
            let (_, d0, _) = proxy.counters.get();
            snaps.push(t.snapshots(&fresh));
            let (_, d1, _) = proxy.counters.get();
            snaps_down = d1 - d0;
            let fresh = work.path().join(format!("fresh-r-{r}"));
            restores.push(t.restore(&fresh, newest_name, &out));
            let (_, d2, _) = proxy.counters.get();
            restore_down = d2 - d1;
            assert_eq!(hash_file(&out), want, "{tool} restored other bytes");
        }
        if tool == "relic" {
            let o = t
                .cmd(&cache_a, &["stats", newest_name, "--json"])
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            needs = v["stored_bytes"].as_u64().unwrap_or(0);
        }
        // Already stored: packs uploaded by a second backup of the newest.
        let again_packs = (tool == "relic").then(|| {
            let n0 = bucket::count(&bucket_dir.join("packs"));
            t.backup(&cache_a, &newest, newest_name);
            bucket::count(&bucket_dir.join("packs")) - n0
        });
        // With the delay: restore from a fresh cache, then 30 snapshots.
        proxy.set_delay(delay);
        let mut delayed = Vec::new();
        for r in 0..runs {
            let fresh = work.path().join(format!("delay-r-{r}"));
            delayed.push(t.restore(&fresh, newest_name, &out));
        }
        proxy.set_delay(0);
        let small = work.path().join("small");
        let n_now = 7 + usize::from(tool == "relic");
        for i in n_now..30 {
            std::fs::write(&small, format!("small snapshot {i}\n").repeat(100)).unwrap();
            t.backup(&cache_a, &small, &format!("small-{i}"));
        }
        proxy.set_delay(delay);
        let mut warm = Vec::new();
        let mut fresh30 = Vec::new();
        let warm_cache = work.path().join("warm");
        t.snapshots(&warm_cache);
        for r in 0..runs {
            warm.push(t.snapshots(&warm_cache));
            fresh30.push(t.snapshots(&work.path().join(format!("fresh30-{r}"))));
        }
        proxy.set_delay(0);
        rows.push(Row {
            tool,
            backup_s,
            backup_up: up1 - up0,
            bucket,
            snaps_s: median(snaps),
            snaps_down,
            restore_s: median(restores),
            restore_down,
            restore_delay_s: median(delayed),
            snaps30_warm_s: median(warm),
            snaps30_fresh_s: median(fresh30),
            again_packs,
        });
    }
    // What the newest day alone stores (a local relic repository holding
    // only it): the floor of what restoring it must read.
    let alone = tempfile::tempdir_in(workdir()).unwrap();
    let repo = alone.path().join("repo");
    let local = |args: &[&str]| {
        let mut c = Command::new(relic_bin());
        c.env("RELIC_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(&repo)
            .arg("--quiet")
            .args(args);
        c
    };
    timed(local(&["init"]), None, None);
    timed(
        local(&["backup", "--stdin", "--name", "day"]),
        Some(&newest),
        None,
    );
    let alone_bytes = bucket::bytes(&repo.join("packs"));
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "newest day alone stores {:.1} MB (relic, local); in the series it needs {:.1} MB stored (its blobs and their delta bases: `relic stats`)",
        mb(alone_bytes),
        mb(needs)
    );
    let newest_len = newest.metadata().unwrap().len();
    println!(
        "\n{} days, {:.0} MB raw; newest {:.0} MB; s3s-fs on loopback through a counting proxy; medians of {runs}; delay {delay} ms per request\n",
        days.len(),
        mb(raw),
        mb(newest_len)
    );
    println!("| | backup 7 days | uploaded | bucket | fresh `snapshots` | its download | fresh restore newest | its download | restore, +{delay} ms | 30 snapshots warm, +{delay} ms | fresh, +{delay} ms | backup again: packs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} s ({:.0} MB/s) | {:.0} MB | {:.0} MB | {:.2} s | {:.2} MB ({:.2}% of bucket) | {:.1} s ({:.0} MB/s) | {:.0} MB | {:.1} s ({:.0} MB/s, {:.0}%) | {:.2} s | {:.2} s | {} |",
            r.tool,
            r.backup_s,
            mb(raw) / r.backup_s,
            mb(r.backup_up),
            mb(r.bucket),
            r.snaps_s,
            mb(r.snaps_down),
            100.0 * r.snaps_down as f64 / r.bucket as f64,
            r.restore_s,
            mb(newest_len) / r.restore_s,
            mb(r.restore_down),
            r.restore_delay_s,
            mb(newest_len) / r.restore_delay_s,
            100.0 * r.restore_s / r.restore_delay_s,
            r.snaps30_warm_s,
            r.snaps30_fresh_s,
            r.again_packs.map_or("–".into(), |n| n.to_string()),
        );
    }
}
