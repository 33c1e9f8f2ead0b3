//! Stacks: everything a docker-compose stack depends on (its databases, its
//! images, its files, the git commit of its checkout) in ONE immutable
//! snapshot, described by `relic.toml`, restored through one safety chain.
//!
//! A stack snapshot holds the items `db/<name>.sql` (pg_dump streams),
//! `images/<reference>.tar` (docker save tars, split at their entries) and
//! `files/<path>` (files and directories relative to the stack's root), and a
//! manifest in its metadata (`stack.manifest`, JSON) that says what each part
//! is, how big, its checksums, Alembic revision, image ids and git commit,
//! and the command that restores it.
//!
//! This module owns the stack's error type and the helpers restore and
//! drill share; its children own `relic.toml` (`config.rs`), the manifest
//! (`manifest.rs`, data: the CLI words it), making snapshots (`snapshot.rs`), the
//! restore chain (`restore.rs`) and drills (`drill.rs`). Comparing two
//! snapshots is [`crate::diff`], which reads manifests; this module never
//! uses it.

mod config;
mod drill;
mod manifest;
mod restore;
mod snapshot;

pub use config::{DatabasePart, FilesPart, GitPart, Hooks, StackConfig};
pub use drill::drill;
pub use manifest::{manifest, DbPart, FilesSummary, GitState, Manifest, MANIFEST_KEY};
pub use restore::{restore, Part, Report, RestoreOptions};
pub use snapshot::{newest_baseline, snapshot};

use crate::docker;
use crate::postgres::{self, Check};
use crate::repo::{self, Repository};
use crate::snapshot::{Item, ItemKind, Snapshot};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {what}")]
    Config { path: String, what: String },
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(
        "snapshot {0} is not a stack snapshot (it has no manifest; `relic snapshot` makes them)"
    )]
    NotAStack(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
    #[error("{step} failed: {what}\n{done}{back}")]
    Failed {
        step: String,
        what: String,
        done: String,
        back: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A conninfo without its password, for messages.
fn redact(conninfo: &str) -> String {
    postgres::config(Some(conninfo))
        .map(|c| {
            format!(
                "{}@{}",
                c.get_dbname().unwrap_or("?"),
                c.get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(h) => h.clone(),
                        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .unwrap_or_else(|| "local socket".into())
            )
        })
        .unwrap_or_else(|_| "?".into())
}

/// Every item of a stack snapshot, read once: restore and verification
/// both look items up by path (items are small; content stays in packs).
fn stack_items(repo: &Repository, snap: &Snapshot) -> Result<Vec<Item>> {
    Ok(repo.items(snap).collect::<repo::Result<Vec<_>>>()?)
}

/// Re-reads every restored file and compares size and BLAKE3.
fn verify_files(items: &[Item], root: &Path) -> Result<Vec<Check>> {
    let mut checked = 0u64;
    let mut bad = Vec::new();
    for it in items.iter().filter(|i| i.kind == ItemKind::File) {
        let Some(rel) = it.path.strip_prefix(b"files/") else {
            continue;
        };
        let path = crate::files::target_path(root, rel)?;
        let found = std::fs::File::open(&path).and_then(|mut f| {
            let mut h = blake3::Hasher::new();
            let n = std::io::copy(&mut f, &mut h)?;
            Ok((n, *h.finalize().as_bytes()))
        });
        checked += 1;
        match found {
            Ok((n, h)) if n == it.size && h == it.hash => {}
            Ok(_) => bad.push(format!("{} differs", path.display())),
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(vec![Check {
        what: "files: size and blake3".into(),
        expected: format!("{checked} match"),
        found: if bad.is_empty() {
            format!("{checked} match")
        } else {
            bad.join("; ")
        },
        ok: bad.is_empty(),
    }])
}
