//! `relic report`: a week of a changing database, images, a baseline, a
//! drill and a sync, drawn as one HTML page and opened in headless
//! Chromium (Debian's package): every section is there, the per-day
//! figures are `stats --json`'s, and the page makes no request at all.

mod common;
use common::engine::*;
use common::pg::*;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn relic_utc(repo: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .env("DOCKER_HOST", host())
        .arg("-r")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

fn ok_utc(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = relic_utc(repo, args);
    assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
    out.stdout
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is installed (scripts/deps.sh installs Debian's package)")
}

/// The URLs a page asked for, from Chromium's network log: requests
/// started with the page as initiator (Chromium's own background requests,
/// update checks and the like, have "not an origin").
fn page_requests(netlog: &Path) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(netlog).unwrap()).expect("a whole net log");
    let start = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    assert!(start.is_u64(), "the net log names its event types");
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| &e["type"] == start)
        // A job's end event has no parameters.
        .filter(|e| e["params"]["url"].is_string())
        .filter(|e| e["params"]["initiator"] != "not an origin")
        .map(|e| e["params"]["url"].as_str().unwrap().to_string())
        .collect()
}

/// Chromium, headless, on `page` at `width`x`height`: returns the DOM and
/// what the page requested, and writes a screenshot.
fn open_in_chromium(page: &Path, width: u32, height: u32, shot: &Path) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let netlog = dir.path().join("net.json");
    let flags = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--window-size={width},{height}"));
    };
    let mut c = Command::new(chromium());
    flags(&mut c);
    let out = c
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --dump-dom: {}",
        stderr(&out)
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let urls = page_requests(&netlog);
    let mut c = Command::new(chromium());
    flags(&mut c);
    let out = c
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --screenshot: {}",
        stderr(&out)
    );
    (dom, urls)
}

#[test]
fn the_report_of_a_week_shows_every_section_with_stats_figures_and_loads_nothing() {
    let (dir, repo) = new_repo();
    let db = dbname("report");
    createdb(&db);
    populate(&db, "rev1");
    let images = Images::build(&prefix("report"), 300_000, 60_000, 41);
    let conninfo = format!("dbname={db}");
    // A baseline, then a week of daily dumps (a migration on day 4) and
    // the images on days 1 and 5.
    ok_utc(
        &repo,
        &[
            "backup",
            "pg",
            &conninfo,
            "--name",
            "appdb-base",
            "--tier",
            "immaculate",
            "--time",
            "2026-03-01T02:00:00Z",
        ],
    );
    for d in 1..=7 {
        psql(
            &db,
            &format!(
                "INSERT INTO people (name) SELECT 'day {d} ' || g FROM generate_series(1, {}) g",
                500 * d
            ),
        );
        if d == 4 {
            psql(&db, "UPDATE alembic_version SET version_num = 'rev2'");
        }
        let t = format!("2026-03-{d:02}T03:15:00Z");
        ok_utc(
            &repo,
            &["backup", "pg", &conninfo, "--name", "appdb", "--time", &t],
        );
        if d == 1 || d == 5 {
            ok_utc(
                &repo,
                &[
                    "backup",
                    "image",
                    &images.base,
                    &images.app,
                    "--name",
                    "images",
                    "--time",
                    &t,
                ],
            );
        }
    }
    ok_utc(
        &repo,
        &["drill", "appdb-base", "--postgres", "dbname=postgres"],
    );
    // A name a page must escape.
    ok(
        &repo,
        &[
            "backup",
            "--stdin",
            "--name",
            "evil<b>\"x",
            "--time",
            "2026-03-07T04:00:00Z",
        ],
        b"hostile",
    );
    let offsite = dir.path().join("offsite");
    ok_utc(&repo, &["sync", "--to", offsite.to_str().unwrap()]);
    ok_utc(&repo, &["check"]);

    let page = dir.path().join("report.html");
    ok_utc(&repo, &["report", "--html", page.to_str().unwrap()]);
    let json: serde_json::Value =
        serde_json::from_slice(&ok_utc(&repo, &["report", "--json"])).unwrap();

    // The per-day figures are those of `stats NAME --json`, summed by day.
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for name in ["appdb", "appdb-base", "images", "evil<b>\"x"] {
        let s: serde_json::Value =
            serde_json::from_slice(&ok_utc(&repo, &["stats", name, "--json"])).unwrap();
        for snap in s["snapshots"].as_array().unwrap() {
            let day = snap["time"].as_str().unwrap()[..10].to_string();
            let e = want.entry(day).or_default();
            e.0 += snap["costs"]["size"].as_u64().unwrap();
            e.1 += snap["costs"]["added"].as_u64().unwrap();
        }
    }
    let got: BTreeMap<String, (u64, u64)> = json["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_string(),
                (d["raw"].as_u64().unwrap(), d["added"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 7);
    for d in json["days"].as_array().unwrap() {
        let n = |k: &str| d[k].as_u64().unwrap();
        assert_eq!(
            n("deduplicated") + n("delta_raw") + n("new_raw"),
            n("raw"),
            "{d}"
        );
    }
    // Nothing in the page could load anything: no source, no link but the
    // empty icon, no CSS import or url().
    let html = std::fs::read_to_string(&page).unwrap();
    for bad in ["src=", "url(", "@import", "<script", "<iframe"] {
        assert!(!html.contains(bad), "the page holds {bad}");
    }
    assert_eq!(html.matches("href=").count(), 1);
    assert!(html.contains("<link rel=\"icon\" href=\"data:,\">"));
    assert!(html.contains("evil&lt;b&gt;&quot;x") && !html.contains("evil<b>"));

    let shots = std::env::var_os("RELIC_REPORT_SCREENSHOTS").map(PathBuf::from);
    let shot_dir = shots.clone().unwrap_or_else(|| dir.path().to_path_buf());
    let desktop = shot_dir.join("report-desktop.png");
    let (dom, urls) = open_in_chromium(&page, 1280, 800, &desktop);
    let phone = shot_dir.join("report-phone.png");
    let (phone_dom, _) = open_in_chromium(&page, 390, 844, &phone);
    assert_eq!(dom, phone_dom);
    for shot in [&desktop, &phone] {
        let png = std::fs::read(shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            shot.display()
        );
    }

    // No request left the page. The same check sees one that does: a page
    // with one image on a loopback server.
    assert!(urls.is_empty(), "the page requested: {urls:?}");
    let control = dir.path().join("control.html");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &control,
        format!("<html><body><img src=\"http://127.0.0.1:{port}/x.png\"></body></html>"),
    )
    .unwrap();
    let (_, seen) = open_in_chromium(&control, 400, 300, &dir.path().join("control.png"));
    assert_eq!(seen, [format!("http://127.0.0.1:{port}/x.png")]);

    // Every section, from the DOM Chromium built.
    for id in [
        "warnings",
        "summary",
        "days",
        "size",
        "timeline",
        "databases",
        "images",
        "checks",
        "syncs",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{id}\"")),
            "section {id} missing"
        );
    }
    // The day table carries the same figures.
    for (day, (raw, added)) in &want {
        assert!(
            dom.contains(&format!(
                "data-date=\"{day}\" data-raw=\"{raw}\" data-added=\"{added}\""
            )),
            "day {day} in the table"
        );
    }
    assert_eq!(
        dom.matches("<svg").count(),
        5,
        "two day charts, size, timeline, one database"
    );
    assert!(dom.contains("class=\"baseline\"") && dom.contains("appdb-base"));
    assert!(
        dom.contains("--into-postgres"),
        "the baseline's restore command"
    );
    assert!(dom.contains(">rev1</code> since") && dom.contains(">rev2</code> since"));
    assert!(dom.contains("public.people"), "the table that grew most");
    assert_eq!(
        dom.matches("class=\"layer\"").count(),
        json["layers"].as_array().unwrap().len()
    );
    assert!(
        json["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["images"].as_array().unwrap().len() == 2),
        "the base layer is shared"
    );
    assert!(dom.contains("last restore drill</td><td class=\"ok\">passed"));
    assert!(dom.contains(&format!("<td>{}</td>", offsite.display())));
    // The newest backup is from March 2026: long ago, so the one warning.
    assert_eq!(
        json["warnings"].as_array().unwrap().len(),
        1,
        "{}",
        json["warnings"]
    );
    assert!(dom.contains("no successful backup in"));
    images.remove();
    dropdb(&db);
}

#[test]
fn serve_answers_on_loopback_and_refuses_other_addresses_without_public() {
    let (_dir, repo) = new_repo();
    ok(&repo, &["backup", "--stdin", "--name", "s"], b"some bytes");
    let out = relic(&repo, &["report", "--serve", "0.0.0.0:0"]);
    fails_with(&out, "--public");
    let out = relic(&repo, &["report"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A free port, then the server on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(&repo)
        .args(["report", "--serve", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n").ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r)
    };
    let mut page = None;
    for _ in 0..100 {
        page = get("/");
        if page.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A client that connects and says nothing does not hold up others.
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let t0 = std::time::Instant::now();
    assert!(get("/").unwrap().starts_with("HTTP/1.1 200 OK"));
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    // Another name for 127.0.0.1 (DNS rebinding) gets nothing.
    let rebound = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /report.json HTTP/1.1\r\nhost: evil.example:{port}\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(!rebound.contains("snapshots"));
    let page = page.expect("the server answers");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("<section id=\"days\""));
    assert!(get("/report.json").unwrap().contains("\"snapshots\""));
    assert!(get("/x").unwrap().starts_with("HTTP/1.1 404"));
    let _ = server.kill();
    let _ = server.wait();
}
