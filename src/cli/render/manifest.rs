//! `relic manifest` for people: what a snapshot holds (a stack's parts,
//! a database's recorded state, images, files), its checksums, and the
//! exact commands that restore it from this repository.

use super::stack::{head, human};
use relic::contents::{Contents, Kind};
use relic::docker::volume::VolumeRecord;
use relic::docker::ImageRecord;
use relic::snapshot::PartFailure;
use relic::stack::Manifest;
use relic::{Snapshot, SnapshotId};
use std::fmt::Write as _;

/// A snapshot's manifest as Markdown; `repo` as the commands name it.
pub fn manifest(repo: &str, id: &SnapshotId, snap: &Snapshot, c: &Contents) -> String {
    let mut s = match &c.stack {
        Some(m) => stack(id, snap, m),
        None => plain(id, snap, c),
    };
    let _ = writeln!(s, "\n## Restore\n\n```sh");
    for (what, cmd) in restore_commands(repo, id, c) {
        let _ = writeln!(s, "# {what}\n{cmd}");
    }
    let _ = writeln!(s, "```");
    s
}

/// The manifest as JSON: a stack's manifest object as it always was, or
/// what the snapshot holds, with `kind` and `restore_commands` added.
pub fn manifest_json(
    repo: &str,
    id: &SnapshotId,
    c: &Contents,
) -> serde_json::Result<serde_json::Value> {
    let mut v = match &c.stack {
        Some(m) => serde_json::to_value(m)?,
        None => serde_json::to_value(c)?,
    };
    v["kind"] = serde_json::to_value(c.kind)?;
    v["snapshot"] = id.to_hex().into();
    v["restore_commands"] = restore_commands(repo, id, c)
        .into_iter()
        .map(|(what, cmd)| serde_json::json!({"what": what, "command": cmd}))
        .collect();
    Ok(v)
}

/// A word quoted for sh when it needs it.
fn sh(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// What restores the snapshot, each with what it does.
pub fn restore_commands(repo: &str, id: &SnapshotId, c: &Contents) -> Vec<(String, String)> {
    let base = format!("relic -r {} restore {}", sh(repo), id.short());
    let mut out = Vec::new();
    let mut add = |what: &str, args: String| out.push((what.to_string(), format!("{base}{args}")));
    match c.kind {
        Kind::Stack => {
            let m = c
                .stack
                .as_ref()
                .expect("a stack's contents hold its manifest");
            add(
                "the whole stack, where it was taken from, through the safety chain (--config moves it)",
                String::new(),
            );
            for d in &m.databases {
                add(
                    &format!("database '{}' alone, into a new database", d.name),
                    format!(
                        " --item db/{} --into-postgres {} --create",
                        d.name,
                        sh(&format!("dbname={}", d.database))
                    ),
                );
                add(
                    &format!("database '{}' as a plain SQL file", d.name),
                    format!(" --item db/{} --to {}.sql", d.name, sh(&d.name)),
                );
            }
            for i in &m.images {
                add(
                    &format!("image {} alone, into the Docker engine", i.reference),
                    format!(
                        " --item {} --into-docker",
                        sh(&format!("images/{}", i.reference))
                    ),
                );
            }
            volume_commands(&mut add, &m.volumes, true);
            if let Some(f) = &m.files {
                add(
                    "the files alone",
                    format!(" --item files --to {}", sh(&f.root)),
                );
            }
            add(
                "every part as files (dumps, image tars, files, relic.toml)",
                " --to DIR".into(),
            );
        }
        Kind::Postgres => {
            let db = c.database.as_ref().map_or("", |d| d.database.as_str());
            add(
                "into a new database, through the safety chain (--clean replaces one)",
                format!(" --into-postgres {} --create", sh(&format!("dbname={db}"))),
            );
            add("as a plain SQL file", format!(" --to {}.sql", sh(db)));
        }
        Kind::Docker => {
            add(
                "every image, into the Docker engine",
                " --into-docker".into(),
            );
            for i in &c.images {
                let name = i.tags.first().unwrap_or(&i.id);
                add(
                    &format!("image {name} as a docker save tar"),
                    format!(" --image {} --to image.tar", sh(name)),
                );
            }
        }
        Kind::Volumes => {
            volume_commands(&mut add, &c.volumes, c.volumes.len() > 1);
            add("every volume's files, under DIR", " --to DIR".into());
        }
        Kind::Files => add("every file, under DIR", " --to DIR".into()),
        Kind::Stream => {
            add("the stream, to a file", " --to FILE".into());
            add("the stream, to standard output", " --stdout".into());
        }
    }
    out
}

/// The commands that write each volume back into the volume of its name
/// (`item`: name it with --item).
fn volume_commands(add: &mut dyn FnMut(&str, String), volumes: &[VolumeRecord], item: bool) {
    for v in volumes {
        let item = if item {
            format!(" --item {}", sh(&v.item))
        } else {
            String::new()
        };
        add(
            &format!("volume {} alone, into the Docker volume of its name (emptied first; --stop stops the containers that use it)", v.name),
            format!("{item} --into-volume {}", sh(&v.name)),
        );
    }
}

/// The volumes section.
fn volumes(s: &mut String, volumes: &[VolumeRecord]) {
    let rows = volumes.iter().map(|v| {
        vec![
            v.name.clone(),
            v.item.clone(),
            v.driver.clone(),
            v.entries.to_string(),
            human(v.bytes),
        ]
    });
    let columns = ["volume", "item", "driver", "entries", "size"];
    table(s, "Volumes", &columns, rows);
}

/// A snapshot that is not a stack's, as Markdown.
fn plain(id: &SnapshotId, snap: &Snapshot, c: &Contents) -> String {
    let mut s = String::new();
    let kind = match c.kind {
        Kind::Postgres => "PostgreSQL database",
        Kind::Docker => "Docker image",
        Kind::Volumes => "Docker volumes",
        Kind::Files => "files",
        Kind::Stream | Kind::Stack => "stream",
    };
    let _ = writeln!(s, "# Snapshot {} ({kind})\n", id.short());
    header(&mut s, snap);
    if let Some(d) = &c.database {
        let _ = writeln!(s, "\n## Database\n");
        let _ = writeln!(s, "- database: {}", d.database);
        let _ = writeln!(s, "- server: {}", d.server_version);
        let _ = writeln!(
            s,
            "- alembic revision: {}",
            d.alembic_revision.as_deref().unwrap_or("-")
        );
        let _ = writeln!(s, "\n| table | rows |\n|---|---|");
        for t in &d.tables {
            let est = if t.exact { "" } else { " (estimate)" };
            let _ = writeln!(s, "| {} | {}{est} |", t.table, t.rows);
        }
    }
    images(&mut s, &c.images, "tags", |i| i.tags.join(", "));
    volumes(&mut s, &c.volumes);
    let _ = writeln!(s, "\n## Content\n");
    let _ = writeln!(
        s,
        "{} entries, {}\n\n| path | size | blake3 |\n|---|---|---|",
        c.entries,
        human(c.bytes)
    );
    for f in &c.streams {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            f.path.escape_debug(),
            human(f.size),
            f.blake3
        );
    }
    let listed = c.streams.len() as u64;
    if matches!(c.kind, Kind::Files | Kind::Volumes)
        && listed as usize >= relic::contents::LISTED_FILES
    {
        let _ = writeln!(
            s,
            "\n(the first {listed} files; `relic ls {} --json` lists every entry with its BLAKE3)",
            id.short()
        );
    }
    partial(&mut s, &snap.partial());
    s
}

/// The images section: `name` heads the first column, `first` fills it.
fn images(s: &mut String, images: &[ImageRecord], name: &str, first: fn(&ImageRecord) -> String) {
    let rows = images.iter().map(|i| {
        vec![
            first(i),
            head(&i.id, 19).to_string(),
            i.layers.len().to_string(),
            human(i.size),
            i.created.clone().unwrap_or_else(|| "-".into()),
        ]
    });
    let columns = [name, "image id", "layers", "size", "created"];
    table(s, "Images", &columns, rows);
}

/// A section of a Markdown table, left out when it has no rows.
fn table(s: &mut String, title: &str, columns: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return;
    }
    let _ = writeln!(s, "\n## {title}\n");
    let _ = writeln!(s, "| {} |", columns.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(columns.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
}

/// Name, tier, time, host and labels.
fn header(s: &mut String, snap: &Snapshot) {
    // Names, labels and paths come from the repository: shown escaped,
    // never interpreted by the terminal.
    let _ = writeln!(s, "- name: {}", snap.name.escape_debug());
    let _ = writeln!(s, "- tier: {}", snap.tier);
    let _ = writeln!(
        s,
        "- time: {}",
        snap.time().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(s, "- host: {}", snap.host);
    for (k, v) in &snap.labels {
        let _ = writeln!(s, "- label {}: {}", k.escape_debug(), v.escape_debug());
    }
}

/// The parts a partial snapshot lacks.
fn partial(s: &mut String, failed: &[PartFailure]) {
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## PARTIAL: parts this snapshot lacks\n");
    for f in failed {
        let _ = writeln!(s, "- {}: {}", f.part, f.error);
    }
}

/// A stack snapshot's manifest as Markdown.
fn stack(id: &SnapshotId, snap: &Snapshot, m: &Manifest) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Stack snapshot {} ({})\n", id.short(), m.stack);
    header(&mut s, snap);
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
                head(&d.blake3, 16)
            );
        }
    }
    images(&mut s, &m.images, "reference", |i| i.reference.clone());
    volumes(&mut s, &m.volumes);
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
    partial(&mut s, &m.partial);
    s
}
