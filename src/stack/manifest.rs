//! The manifest a stack snapshot keeps in its metadata (what each part is,
//! how big, its checksums, Alembic revision, image ids, git commit and the
//! command that restores it), and its rendering for people.

use super::{Error, Result};
use crate::docker::ImageRecord;
use crate::postgres::{DbInfo, TableCount};
use crate::snapshot::Snapshot;
use crate::SnapshotId;
use serde::{Deserialize, Serialize};

/// The snapshot metadata key holding the manifest.
pub const MANIFEST_KEY: &str = "stack.manifest";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub stack: String,
    /// The relic.toml the snapshot was made from.
    pub config: String,
    pub databases: Vec<DbPart>,
    pub images: Vec<ImageRecord>,
    pub files: Option<FilesSummary>,
    pub git: Option<GitState>,
    /// The command that restores this snapshot.
    pub restore_command: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbPart {
    pub name: String,
    pub item: String,
    pub database: String,
    pub server_version: String,
    pub alembic_revision: Option<String>,
    pub tables: Vec<TableCount>,
    pub size: u64,
    pub blake3: String,
}

impl DbPart {
    pub(super) fn info(&self) -> DbInfo {
        DbInfo {
            server_version: self.server_version.clone(),
            database: self.database.clone(),
            alembic_revision: self.alembic_revision.clone(),
            tables: self.tables.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSummary {
    pub root: String,
    pub paths: Vec<String>,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    pub path: String,
    pub commit: String,
    /// Uncommitted changes were present.
    pub dirty: bool,
}

/// The manifest of a stack snapshot.
pub fn manifest(id: &SnapshotId, snap: &Snapshot) -> Result<Manifest> {
    let j = snap
        .meta
        .get(MANIFEST_KEY)
        .ok_or_else(|| Error::NotAStack(id.short()))?;
    serde_json::from_str(j)
        .map_err(|e| Error::NotAStack(format!("{}: manifest unreadable: {e}", id.short())))
}

/// Renders a manifest as Markdown.
pub fn manifest_markdown(id: &SnapshotId, snap: &Snapshot, m: &Manifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Stack snapshot {} ({})\n", id.short(), m.stack);
    let _ = writeln!(s, "- name: {}", snap.name);
    let _ = writeln!(s, "- tier: {}", snap.tier);
    let _ = writeln!(
        s,
        "- time: {}",
        snap.time().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(s, "- host: {}", snap.host);
    for (k, v) in &snap.labels {
        let _ = writeln!(s, "- label {k}: {v}");
    }
    if let Some(g) = &m.git {
        let _ = writeln!(
            s,
            "- git: {} at {}{}",
            g.path,
            g.commit,
            if g.dirty {
                " (uncommitted changes)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(s, "- config: {}", m.config);
    if !m.databases.is_empty() {
        let _ = writeln!(s, "\n## Databases\n");
        let _ = writeln!(
            s,
            "| part | database | server | alembic | tables | rows | dump | blake3 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for d in &m.databases {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                d.name,
                d.database,
                d.server_version,
                d.alembic_revision.as_deref().unwrap_or("-"),
                d.tables.len(),
                d.tables.iter().map(|t| t.rows).sum::<i64>(),
                human(d.size),
                &d.blake3[..16.min(d.blake3.len())]
            );
        }
    }
    if !m.images.is_empty() {
        let _ = writeln!(s, "\n## Images\n");
        let _ = writeln!(s, "| reference | image id | layers | size | created |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for i in &m.images {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                i.reference,
                head(&i.id, 19),
                i.layers.len(),
                human(i.size),
                i.created.as_deref().unwrap_or("-")
            );
        }
    }
    if let Some(f) = &m.files {
        let _ = writeln!(s, "\n## Files\n");
        let _ = writeln!(
            s,
            "{} entries, {} under {}: {}",
            f.entries,
            human(f.bytes),
            f.root,
            f.paths.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\n## Restore\n\n```sh\n{}\n```",
        m.restore_command.replace("<this snapshot>", &id.short())
    );
    s
}

/// The first `n` characters (ids and commits are ASCII hex).
pub(crate) fn head(s: &str, n: usize) -> &str {
    &s[..n.min(s.len())]
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub(crate) fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
