//! `relic report`: the repository drawn as one HTML page (a file, or
//! served on a local address), or its data as JSON.

use crate::cli::args::{Cli, ReportArgs};
use crate::cli::exit::Usage;
use crate::cli::open::{load_config, open_catalog, open_path, repo_path, stack_repo_path};
use anyhow::{bail, Context, Result};
use relic::Repository;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// The repository, where it is, and the stack or name the report covers.
fn open(cli: &Cli, a: &ReportArgs) -> Result<(Repository, String, Option<String>)> {
    let cfg = match &a.config {
        Some(p) => load_config(Some(p), true)?,
        None => None,
    };
    let (repo, location) = match &cfg {
        Some(c) => {
            let path = stack_repo_path(cli, c)?;
            (open_path(&path)?, path.display().to_string())
        }
        None => (open_catalog(cli)?, repo_path(cli)?.display().to_string()),
    };
    let scope = a.name.clone().or_else(|| cfg.map(|c| c.name));
    Ok((repo, location, scope))
}

/// The report as it is now.
fn build(repo: &Repository, location: &str, scope: Option<&str>) -> Result<relic::report::Report> {
    let tz = jiff::tz::TimeZone::system();
    Ok(relic::report::build(
        repo,
        location,
        scope,
        jiff::Timestamp::now(),
        &tz,
    )?)
}

pub fn run(cli: &Cli, a: &ReportArgs) -> Result<()> {
    if a.html.is_none() && a.serve.is_none() && !a.json {
        return Err(Usage(
            "say where the report goes: --html FILE, --serve [ADDR] or --json".into(),
        )
        .into());
    }
    if let Some(addr) = &a.serve {
        return serve(cli, a, addr);
    }
    let (repo, location, scope) = open(cli, a)?;
    let r = build(&repo, &location, scope.as_deref())?;
    if let Some(path) = &a.html {
        let page = relic::report::page(&r);
        relic::files::user::write_atomically(path, |f| f.write_all(page.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        report!(
            "wrote {} ({} snapshots, {} warning(s))",
            path.display(),
            r.totals.snapshots,
            r.warnings.len()
        );
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    if a.json {
        crate::cli::render::json(&r)?;
    }
    Ok(())
}

/// Serves the page, made afresh for every request from the repository
/// opened once, until killed; each connection on a thread of its own,
/// bounded in time and size.
fn serve(cli: &Cli, a: &ReportArgs, addr: &str) -> Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--serve '{addr}' is not an address such as 127.0.0.1:8417"))?;
    let loopback = addr.ip().is_loopback();
    if !loopback {
        if !a.public {
            bail!(
                "--serve {addr} would show the report to other machines; add --public if that is what you want"
            );
        }
        eprintln!("warning: serving the report on {addr}, reachable from other machines; it names your databases, images and paths");
    }
    // The repository opens (and its passphrase is asked) once, before
    // anything listens.
    let (repo, location, scope) = open(cli, a)?;
    build(&repo, &location, scope.as_deref())?;
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let port = listener.local_addr()?.port();
    note!(
        "serving the report on http://{}/ (read-only; Ctrl-C stops)",
        listener.local_addr()?
    );
    let lock = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (repo, location, scope, lock) = (&repo, &location, &scope, &lock);
            s.spawn(move || {
                let answer = |path: &str| -> (&'static str, &'static str, String) {
                    // One report at a time: the index is read, never changed.
                    let _one = lock.lock();
                    let _ = repo.refresh();
                    let r = match build(repo, location, scope.as_deref()) {
                        Ok(r) => r,
                        Err(e) => {
                            return (
                                "500 Internal Server Error",
                                "text/plain; charset=utf-8",
                                format!("{e:#}\n"),
                            )
                        }
                    };
                    if path == "/report.json" {
                        let json = serde_json::to_string_pretty(&r).unwrap_or_default();
                        ("200 OK", "application/json", json)
                    } else {
                        (
                            "200 OK",
                            "text/html; charset=utf-8",
                            relic::report::page(&r),
                        )
                    }
                };
                let _ = handle(conn, loopback, port, answer);
            });
        }
    });
    Ok(())
}

/// One request: GET of `/` or `/report.json`; anything else is refused.
/// On a loopback address only a loopback `Host` is answered, so no web
/// page can read the report through a name that resolves to 127.0.0.1.
fn handle(
    conn: TcpStream,
    loopback: bool,
    port: u16,
    answer: impl Fn(&str) -> (&'static str, &'static str, String),
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new((&conn).take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut host = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("host") {
                host = v.trim().to_ascii_lowercase();
            }
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let allowed = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    let text = "text/plain; charset=utf-8";
    let (status, kind, body) = if loopback && !allowed.contains(&host) {
        (
            "421 Misdirected Request",
            text,
            "this report answers to 127.0.0.1 and localhost only\n".to_string(),
        )
    } else {
        match (method, path) {
            ("GET", "/" | "/index.html" | "/report.json") => answer(path),
            ("GET", _) => ("404 Not Found", text, "not found\n".into()),
            _ => ("405 Method Not Allowed", text, "read-only\n".into()),
        }
    };
    write!(
        &conn,
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
