//! `relic run`: the daily job of a relic.toml, day after day (the clock
//! given with --time), against the real PostgreSQL server, the Docker
//! engine, a directory and an S3 server on loopback as off-site copies, and
//! a local HTTP server that records the notifications.

mod common;
use common::engine::*;
use common::pg::*;
use common::s3::{s3_env, S3};
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A local HTTP server recording each request's path and body; `hang`
/// accepts and never answers.
struct Hook {
    port: u16,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Hook {
    fn start(hang: bool) -> Hook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                if hang {
                    held.push(s);
                    continue;
                }
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                g.lock()
                    .unwrap()
                    .push((path, String::from_utf8_lossy(&body).into_owned()));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        Hook { port, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<(String, String)> {
        self.got.lock().unwrap().clone()
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Job {
    dir: tempfile::TempDir,
    config: PathBuf,
    s3: S3,
    db: String,
}

impl Job {
    /// A stack of one database and one image, its repository, an off-site
    /// directory and bucket, and the daily job's sections (`extra` last).
    fn new(tag: &str, image: &str, extra: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let db = dbname(tag);
        createdb(&db);
        populate(&db, "rev1");
        std::fs::write(dir.path().join("passphrase"), format!("{PASSWORD}\n")).unwrap();
        let s3 = S3::start();
        let config = dir.path().join("relic.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"{tag}\"\nrepository = \"repo\"\npassword_file = \"passphrase\"\nimages = [\"{image}\"]\n\n\
                 [[database]]\nname = \"main\"\nconninfo = \"dbname={db}\"\n\n\
                 [sync]\nto = [\"offsite\", \"s3://bucket/offsite\"]\n\n{extra}"
            ),
        )
        .unwrap();
        let job = Job {
            dir,
            config,
            s3,
            db,
        };
        let out = job.relic(&["init", "--kdf-memory", "8"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        job
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// relic with no RELIC_PASSWORD (the relic.toml's password_file
    /// serves), in UTC, against the job's repository unless `repo` says.
    fn relic(&self, args: &[&str], repo: Option<&str>) -> Output {
        let mut c = Command::new(bin());
        c.env_remove("RELIC_PASSWORD")
            .env("RELIC_PASSWORD_FILE", self.path("passphrase"))
            .env("TZ", "UTC")
            .env("DOCKER_HOST", host())
            .envs(s3_env(&self.s3))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if let Some(r) = repo {
            c.args(["-r", r]);
        }
        c.args(args).output().unwrap()
    }

    /// `relic run --time DAY` with no passphrase variable at all.
    fn run(&self, day: &str) -> Output {
        Command::new(bin())
            .env_remove("RELIC_PASSWORD")
            .env_remove("RELIC_PASSWORD_FILE")
            .env("TZ", "UTC")
            .env("DOCKER_HOST", host())
            .envs(s3_env(&self.s3))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--time", day, "--json"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn runs(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("repo/runs.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn snapshots(&self, repo: &str) -> Vec<serde_json::Value> {
        let out = self.relic(&["snapshots", "--json"], Some(repo));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The newest snapshot's dump, as restored from `repo`.
    fn dump_from(&self, repo: &str, name: &str) -> Vec<u8> {
        let to = self.path(&format!("dump-{}.sql", repo.replace(['/', ':'], "_")));
        let out = self.relic(
            &[
                "restore",
                name,
                "--item",
                "db/main",
                "--to",
                to.to_str().unwrap(),
            ],
            Some(repo),
        );
        assert!(
            out.status.success(),
            "restore from {repo}: {}",
            stderr(&out)
        );
        std::fs::read(to).unwrap()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        dropdb(&self.db);
    }
}

fn day(n: u32) -> String {
    format!("2026-01-{:02}T03:15:00Z", n)
}

#[test]
fn day_after_day_the_repository_holds_what_the_policy_says_and_both_copies_restore() {
    let tag = "runjob";
    let images = Images::build(&prefix(tag), 200_000, 50_000, 31);
    let hook = Hook::start(false);
    let job = Job::new(
        tag,
        &images.app,
        &format!(
            "[retention]\nkeep_daily = 3\nkeep_weekly = 2\n\n\
             [check]\nread_data_subset = \"25%\"\ndrill = \"weekly\"\n\n\
             [notify]\non_start = [\"{}\"]\non_success = [\"{}\"]\non_failure = [\"{}\"]\ntimeout = \"5s\"\n",
            hook.url("/start"),
            hook.url("/ok"),
            hook.url("/fail")
        ),
    );
    let cfg = job.config.to_str().unwrap().to_string();
    // The baseline the weekly drill restores.
    let out = job.relic(
        &[
            "snapshot",
            "--config",
            &cfg,
            "--tier",
            "immaculate",
            "--name",
            "runjob-base",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Ten days, 2026-01-01 (a Thursday) to 01-10, the database growing.
    for d in 1..=10 {
        psql(
            &job.db,
            &format!(
                "INSERT INTO people (name) SELECT 'day {d} ' || g FROM generate_series(1, 200) g"
            ),
        );
        let out = job.run(&day(d));
        let err = stderr(&out);
        assert!(out.status.success(), "day {d}: {err}");
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rec["ok"], true, "day {d}: {rec}");
        let steps: Vec<&str> = rec["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "snapshot",
                "forget",
                "prune",
                "check",
                "sync offsite",
                "sync s3://bucket/offsite",
                "drill"
            ],
            "day {d}: {err}"
        );
        assert!(err.contains("==> snapshot: ok in"), "{err}");
    }
    // keep_daily 3 keeps Jan 10, 9, 8; keep_weekly 2 adds the newest of the
    // week before (Mon Dec 29 – Sun Jan 4): Jan 4. The baseline stays.
    let snaps = job.snapshots("repo");
    let mut daily: Vec<String> = snaps
        .iter()
        .filter(|s| s["name"] == tag)
        .map(|s| s["time"].as_str().unwrap()[..10].to_string())
        .collect();
    daily.sort();
    assert_eq!(
        daily,
        ["2026-01-04", "2026-01-08", "2026-01-09", "2026-01-10"]
    );
    assert!(snaps
        .iter()
        .any(|s| s["name"] == "runjob-base" && s["tier"] == "immaculate"));
    // Prune ran after each forget that freed a snapshot, and the data is whole.
    let out = job.relic(&["check", "--read-data"], Some("repo"));
    assert!(out.status.success(), "{}", stderr(&out));

    // Every run is recorded: a drill on day 1 and day 8 only (weekly),
    // the check's slice turning 1, 2, 3, 4, 1…
    let runs = job.runs();
    assert_eq!(runs.len(), 10);
    let drills: Vec<u32> = (1..=10)
        .filter(|d| runs[*d as usize - 1]["drill_ok"] == true)
        .collect();
    assert_eq!(drills, [1, 8]);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["check_slice"], serde_json::json!([i % 4, 4]), "{r}");
        assert!(r["added_bytes"].as_u64().unwrap() > 0);
    }
    // Prune ran after every forget that freed a snapshot, and only then.
    let mut pruned = 0;
    for r in &runs {
        let (forget, prune) = (&r["steps"][1], &r["steps"][2]);
        let freed = forget["status"] == "ok"
            && !forget["detail"].as_str().unwrap().starts_with("0 snapshot");
        assert_eq!(prune["status"], if freed { "ok" } else { "skipped" }, "{r}");
        pruned += freed as usize;
    }
    assert!(pruned >= 5, "{pruned} prunes");
    let skipped = &runs[2]["steps"][6];
    assert_eq!(skipped["status"], "skipped");
    assert!(
        skipped["detail"].as_str().unwrap().contains("not due"),
        "{skipped}"
    );

    // Both copies restore the newest snapshot, the same dump as here.
    let here = job.dump_from("repo", tag);
    assert_eq!(job.dump_from("offsite", tag), here);
    assert_eq!(job.dump_from("s3://bucket/offsite", tag), here);
    assert!(String::from_utf8_lossy(&here).contains("day 10 200"));
    let offsite: Vec<String> = job
        .snapshots("offsite")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(snaps
        .iter()
        .all(|s| offsite.contains(&s["id"].as_str().unwrap().to_string())));

    // Each run started and succeeded, told with its summary.
    let got = hook.got();
    assert_eq!(got.iter().filter(|(p, _)| p == "/start").count(), 10);
    let ok: Vec<_> = got.iter().filter(|(p, _)| p == "/ok").collect();
    assert_eq!(ok.len(), 10);
    assert!(
        ok[0].1.starts_with(&format!("relic run {tag}: ok in")),
        "{}",
        ok[0].1
    );
    assert!(ok[0].1.contains("drill: ok"), "{}", ok[0].1);
    assert!(!got.iter().any(|(p, _)| p == "/fail"));

    // schedule status answers from the record, without reading a pack.
    let out = job.relic(&["schedule", "status", "--config", &cfg, "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["last_good_run"]["started"], day(10));
    assert_eq!(st["scheduled_by"], serde_json::Value::Null);
    images.remove();
}

#[test]
fn a_database_that_is_down_fails_the_run_with_its_code_tells_and_keeps_every_snapshot() {
    let tag = "rundown";
    let images = Images::build(&prefix(tag), 100_000, 20_000, 32);
    let hook = Hook::start(false);
    let notify = format!(
        "[retention]\nkeep_last = 1\n\n[notify]\non_success = [\"{}\"]\non_failure = [\"{}\"]\n",
        hook.url("/ok"),
        hook.url("/fail")
    );
    let job = Job::new(tag, &images.app, &notify);
    let out = job.run(&day(1));
    assert!(out.status.success(), "{}", stderr(&out));
    // A second snapshot, which keep_last = 1 would forget if forget ran.
    let out = job.relic(
        &[
            "snapshot",
            "--config",
            job.config.to_str().unwrap(),
            "--time",
            "2026-01-01T12:00:00Z",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let before = job.snapshots("repo");
    assert_eq!(before.len(), 2);
    // The same stack, its server down (nothing listens on its port).
    let text = std::fs::read_to_string(&job.config).unwrap();
    let port = closed_port();
    std::fs::write(
        &job.config,
        text.replace(
            &format!("conninfo = \"dbname={}\"", job.db),
            &format!(
                "conninfo = \"dbname={} host=127.0.0.1 port={port}\"",
                job.db
            ),
        ),
    )
    .unwrap();
    let out = job.run(&day(2));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(20), "{err}");
    assert!(err.contains("FAILED at snapshot (exit 20)"), "{err}");
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |step: &str| {
        rec["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .map(|s| s["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("snapshot").as_deref(), Some("failed"));
    assert_eq!(status("forget").as_deref(), Some("skipped"));
    assert_eq!(status("prune").as_deref(), Some("skipped"));
    assert_eq!(status("check").as_deref(), Some("ok"));
    // The copies still get what exists.
    assert_eq!(status("sync offsite").as_deref(), Some("ok"));
    let got = hook.got();
    let fail: Vec<_> = got.iter().filter(|(p, _)| p == "/fail").collect();
    assert_eq!(fail.len(), 1, "{got:?}");
    assert!(
        fail[0].1.contains("FAILED at snapshot (exit 20)"),
        "{}",
        fail[0].1
    );
    assert!(
        fail[0].1.contains("snapshot: FAILED") && fail[0].1.contains("Connection refused"),
        "the cause is in the body: {}",
        fail[0].1
    );
    // keep_last = 1 forgot nothing: the earlier snapshot is intact.
    let after = job.snapshots("repo");
    assert_eq!(after, before);
    let out = job.relic(&["check", "--read-data"], Some("repo"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = job.relic(
        &[
            "schedule",
            "status",
            "--config",
            job.config.to_str().unwrap(),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED at snapshot (exit 20)"), "{text}");
    assert!(
        text.contains(&format!(
            "last good run: ok, finished {} 03:15:",
            &day(1)[..10]
        )),
        "{text}"
    );
    images.remove();
}

#[test]
fn a_notification_that_hangs_or_is_refused_costs_at_most_its_timeout() {
    let tag = "runhang";
    let images = Images::build(&prefix(tag), 100_000, 20_000, 33);
    let hang = Hook::start(true);
    let refused = format!("http://127.0.0.1:{}/ping", closed_port());
    let job = Job::new(
        tag,
        &images.app,
        &format!(
            "[notify]\non_start = [\"{}\"]\non_success = [\"{}\", \"{refused}\", \"exec:sleep 30\"]\ntimeout = \"1s\"\n",
            hang.url("/start"),
            hang.url("/ok")
        ),
    );
    let started = Instant::now();
    let out = job.run(&day(1));
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "the backup's result is unchanged: {err}"
    );
    // Three failed deliveries, each within the timeout (and the two
    // rounds, start and success, at most a timeout each).
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("notification to"))
        .collect();
    assert_eq!(warnings.len(), 4, "{err}");
    for w in &warnings {
        let secs: f64 = w
            .split("failed after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(secs <= 1.6, "{w}");
    }
    assert!(err.contains("refused") || err.contains("onnect"), "{err}");
    // The ping URLs' paths (their secret part) are never printed.
    assert!(
        !err.contains("/ping") && !err.contains("/ok") && !err.contains("/start"),
        "{err}"
    );
    // The run's own steps are what takes the rest.
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: f64 = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seconds"].as_f64().unwrap())
        .sum();
    assert!(
        took.as_secs_f64() < steps + 2.0 * 1.6 + 3.0,
        "run {took:?}, steps {steps} s"
    );
    images.remove();
}

fn files_in(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn schedule_install_writes_units_systemd_verifies_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-passphrase-never-written";
    std::fs::write(dir.path().join("pass"), secret).unwrap();
    std::fs::write(
        dir.path().join("env"),
        "AWS_SECRET_ACCESS_KEY=aws-secret-never-written\n",
    )
    .unwrap();
    let config = dir.path().join("relic.toml");
    let base = "name = \"sched app\"\nrepository = \"repo\"\n\n[files]\npaths = [\"pass\"]\n\n\
                [schedule]\nrun = \"daily 03:15\"\nenvironment_file = \"env\"\n";
    std::fs::write(&config, base).unwrap();
    let relic = |args: &[&str]| {
        Command::new(bin())
            .env("RELIC_PASSWORD", secret)
            .env("AWS_SECRET_ACCESS_KEY", "aws-secret-never-written")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = relic(&["-r", "repo", "init", "--kdf-memory", "8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let units = dir.path().join("units");
    let u = units.to_str().unwrap();
    // An encrypted repository and no password source in relic.toml: the
    // timer could never open it.
    let out = relic(&["schedule", "install", "--unit-dir", u]);
    fails_with(&out, "password_file");
    assert!(!units.exists());
    std::fs::write(&config, format!("password_file = \"pass\"\n{base}")).unwrap();
    let out = relic(&["schedule", "install", "--unit-dir", u]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = files_in(&units);
    let names: Vec<_> = written
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["relic-sched-app.service", "relic-sched-app.timer"]);
    let (service, timer) = (&written[0].1, &written[1].1);
    assert!(timer.contains("OnCalendar=*-*-* 03:15:00\n"), "{timer}");
    assert!(timer.contains("Persistent=true\n"), "{timer}");
    assert!(service.contains("IOSchedulingClass=idle\n") && service.contains("Nice=19\n"));
    assert!(service.contains(&format!("EnvironmentFile={}/env\n", dir.path().display())));
    // systemd's own checks of the units and of the expression.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(written.iter().map(|(p, _)| p))
        .output()
        .expect("systemd-analyze (Debian's systemd package) is installed");
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("relic-sched-app"),
        "{}",
        stderr(&out)
    );
    let out = Command::new("systemd-analyze")
        .args(["calendar", "*-*-* 03:15:00"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Next elapse:"));
    // The cron fallback: five valid fields, the user, the command.
    let cron_dir = dir.path().join("cron");
    let out = relic(&[
        "schedule",
        "install",
        "--cron",
        "--unit-dir",
        cron_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cron = files_in(&cron_dir);
    assert_eq!(cron[0].0.file_name().unwrap(), "relic-sched-app");
    let line = cron[0].1.lines().last().unwrap();
    assert!(line.starts_with("15 3 * * * root cd "), "{line}");
    let fields: String = line.split(' ').take(5).collect::<Vec<_>>().join(" ");
    // Debian's python3 (python3-croniter), not one on PATH before it.
    let py = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, croniter; sys.exit(0 if croniter.croniter.is_valid(sys.argv[1]) else 1)",
            &fields,
        ])
        .status()
        .expect("python3");
    assert!(
        py.success(),
        "croniter (python3-croniter) rejects '{fields}'"
    );
    // No secret in anything written.
    for (p, text) in written.iter().chain(cron.iter()) {
        assert!(
            !text.contains(secret),
            "{} holds the passphrase",
            p.display()
        );
        assert!(
            !text.contains("aws-secret-never-written"),
            "{} holds the S3 secret",
            p.display()
        );
    }
    let out = relic(&["schedule", "status", "--unit-dir", u, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["scheduled_by"], "systemd");
    assert_eq!(st["schedule"], "*-*-* 03:15:00");
    assert!(
        st["next_run"]
            .as_str()
            .is_some_and(|n| n.contains("03:15:00")),
        "{st}"
    );
    // Two runs never overlap: while another holds the stack's run lock
    // (flock(1) here), a run does nothing and exits 11.
    let lock = dir.path().join("repo/locks/run-relic-sched-app.flock");
    let mut holder = {
        use std::os::unix::process::CommandExt;
        Command::new("flock")
            .arg(&lock)
            .args(["sleep", "30"])
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let t0 = Instant::now();
    while !lock.exists() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = relic(&["run"]);
    // flock and the sleep holding the lock with it.
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{}", holder.id())])
        .status();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("in progress"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    let out = relic(&["schedule", "remove", "--unit-dir", u]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(files_in(&units).is_empty());
    // A bad expression is refused before anything is written.
    std::fs::write(
        &config,
        format!(
            "password_file = \"pass\"\n{}",
            base.replace("daily 03:15", "every full moon")
        ),
    )
    .unwrap();
    let out = relic(&["schedule", "install", "--unit-dir", u]);
    fails_with(&out, "calendar");
    assert!(files_in(&units).is_empty());
}
