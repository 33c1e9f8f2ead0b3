//! Backup: `pg_dump` of an exported snapshot streamed into the store,
//! with the state it holds recorded beside it.

use super::conn::{config, connect, runtime};
use super::state::collect_info;
use super::target::simple_rows;
use super::{tail_of, DbInfo, Error, Result, Target, DUMP_ITEM};
use crate::progress::Progress;
use crate::repo::{self, Repository, SnapshotOptions};
use crate::snapshot::Snapshot;
use crate::SnapshotId;
use std::process::{Command, Stdio};
use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// Backs up a database: pg_dump's plain output streamed into one snapshot,
/// with the database's state recorded beside it, and where it was
/// (`pg.host`, `pg.port`, `pg.user`, or `pg.container`). Nothing is listed
/// unless pg_dump exits 0.
pub fn backup(
    repo: &Repository,
    opts: &SnapshotOptions,
    target: &Target,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let server = match target {
        Target::Host(c) => server_of(&config(Some(c))?),
        Target::Container { container, .. } => vec![("pg.container", container.clone())],
    };
    repo.backup(opts, progress, |w| {
        let (info, s) = dump_into(w, target)?;
        info.to_meta(w);
        w.set_meta("pg.dump_size", s.size.to_string());
        w.set_meta("pg.dump_blake3", hex::encode(s.hash));
        for (k, v) in &server {
            w.set_meta(k, v.clone());
        }
        Ok(w.add_item(&s.into_item(DUMP_ITEM, 0o600))?)
    })
}

/// Where the database was: `pg.host` (a host name, or the socket
/// directory), `pg.port` and `pg.user`, as the connection resolved them.
/// Never the password.
fn server_of(cfg: &Config) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => out.push(("pg.host", h.clone())),
        Some(Host::Unix(p)) => out.push(("pg.host", p.display().to_string())),
        None => {}
    }
    out.push((
        "pg.port",
        cfg.get_ports().first().copied().unwrap_or(5432).to_string(),
    ));
    if let Some(u) = cfg.get_user() {
        out.push(("pg.user", u.to_string()));
    }
    out
}

/// Dumps one database into the write session: the stream is stored (the
/// caller names it with an item), the state it holds is returned. Fails,
/// with pg_dump's stderr, unless pg_dump exits 0. A database in a
/// container is dumped by its own pg_dump ([`super::dump_in_container`]).
pub fn dump_into(
    w: &mut repo::Writer<'_>,
    target: &Target,
) -> Result<(DbInfo, repo::StoredStream)> {
    let conninfo = match target {
        Target::Host(c) => Some(c.as_str()).filter(|c| !c.is_empty()),
        Target::Container { .. } => return super::dump_in_container(w, &target.inside()?),
    };
    let cfg = &config(conninfo)?;
    let rt = runtime()?;
    let client = connect(rt, cfg)?;
    let snapshot_name = rt.block_on(async {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let name: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await?
            .get(0);
        Ok::<_, Error>(name)
    })?;
    // The row counts (a count(*) per table) run in the exported snapshot
    // while pg_dump streams it, instead of before: on a database of many
    // mid-sized tables they would otherwise hold the dump back.
    let (info, stored) = std::thread::scope(|s| {
        let counts = s.spawn(|| collect_info(&|sql| simple_rows(rt, &client, sql)));
        let stored = run_pg_dump(w, conninfo, &snapshot_name);
        let info = counts
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (info, stored)
    });
    let _ = rt.block_on(client.batch_execute("COMMIT"));
    let stored = stored?;
    Ok((info?, stored))
}

/// Runs `pg_dump --snapshot=NAME` into the write session; fails, with
/// pg_dump's stderr, unless pg_dump exits 0.
fn run_pg_dump(
    w: &mut repo::Writer<'_>,
    conninfo: Option<&str>,
    snapshot_name: &str,
) -> Result<repo::StoredStream> {
    let mut cmd = Command::new("pg_dump");
    cmd.arg("--format=plain")
        .arg("--no-password")
        .arg(format!("--snapshot={snapshot_name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = conninfo.filter(|c| !c.is_empty()) {
        cmd.arg(format!("--dbname={c}"));
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: "pg_dump",
        source,
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    crate::files::widen_pipe(&stdout);
    let stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || tail_of(stderr));
    let stored = w.store_stream(stdout);
    // If the store failed first, pg_dump may still be writing: stop it.
    if stored.is_err() {
        let _ = child.kill();
    }
    let status = child.wait();
    let err = err_reader.join().unwrap_or_default();
    let status = status.map_err(|e| Error::Repo(repo::Error::Input(e)))?;
    if !status.success() {
        return Err(Error::DumpFailed {
            status: status.to_string(),
            stderr: err.trim_end().to_string(),
        });
    }
    Ok(stored?)
}
