//! `relic report`: the repository drawn as one HTML page (a file, or
//! served on a local address), or its data as JSON.

use crate::cli::args::{Cli, ReportArgs};
use crate::cli::exit::Usage;
use crate::cli::open::{load_config, open_catalog, open_path, stack_repo_path};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

/// The report as it is now.
fn build(cli: &Cli, a: &ReportArgs) -> Result<relic::report::Report> {
    let cfg = match &a.config {
        Some(p) => load_config(Some(p), true)?,
        None => None,
    };
    let (repo, location) = match &cfg {
        Some(c) => {
            let path = stack_repo_path(cli, c)?;
            (open_path(&path)?, path.display().to_string())
        }
        None => (
            open_catalog(cli)?,
            crate::cli::open::repo_path(cli)?.display().to_string(),
        ),
    };
    let scope = a.name.clone().or_else(|| cfg.map(|c| c.name));
    let tz = jiff::tz::TimeZone::system();
    Ok(relic::report::build(
        &repo,
        &location,
        scope.as_deref(),
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
    let r = build(cli, a)?;
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

/// Serves the page (made afresh for every request) until killed.
fn serve(cli: &Cli, a: &ReportArgs, addr: &str) -> Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--serve '{addr}' is not an address such as 127.0.0.1:8417"))?;
    if !addr.ip().is_loopback() {
        if !a.public {
            bail!(
                "--serve {addr} would show the report to other machines; add --public if that is what you want"
            );
        }
        eprintln!("warning: serving the report on {addr}, reachable from other machines; it names your databases, images and paths");
    }
    // The repository must open before anything listens.
    build(cli, a)?;
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    note!(
        "serving the report on http://{}/ (read-only; Ctrl-C stops)",
        listener.local_addr()?
    );
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut line = String::new();
        let mut reader = BufReader::new(&conn);
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        // The rest of the request's head.
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => break,
                Ok(_) if h.trim().is_empty() => break,
                Ok(_) => {}
            }
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, kind, body) = match (method, path) {
            ("GET", "/" | "/index.html") => match build(cli, a) {
                Ok(r) => (
                    "200 OK",
                    "text/html; charset=utf-8",
                    relic::report::page(&r),
                ),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain; charset=utf-8",
                    format!("{e:#}\n"),
                ),
            },
            ("GET", "/report.json") => match build(cli, a) {
                Ok(r) => (
                    "200 OK",
                    "application/json",
                    serde_json::to_string_pretty(&r)?,
                ),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain; charset=utf-8",
                    format!("{e:#}\n"),
                ),
            },
            ("GET", _) => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "not found\n".into(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "read-only\n".into(),
            ),
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}
