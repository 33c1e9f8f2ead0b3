//! `relic diff` for people: what changed between two snapshots, a list of
//! lines per section, as text or as the JSON object it has always printed
//! (the same lines, so scripts reading it keep working).

use super::stack::{head, human};
use anyhow::Result;
use indicatif::HumanBytes;
use relic::diff::{DbChange, Diff, GitChange, ImageChange, ItemChange};
use serde::Serialize;

/// The comparison as lines: the fields and order of `relic diff --json`.
#[derive(Serialize)]
struct Lines {
    from: String,
    to: String,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    databases: Vec<String>,
    images: Vec<String>,
    git: Option<String>,
    /// Parts a partial snapshot lacks, as `ID lacks PART: why`.
    partial: Vec<String>,
    new_bytes: u64,
    stored_bytes: u64,
}

impl Lines {
    fn new(d: &Diff) -> Lines {
        let name = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        for c in &d.items {
            match c {
                ItemChange::Added { path, size } => {
                    added.push(format!("{} ({})", name(path), human(*size)))
                }
                ItemChange::Removed { path, size } => {
                    removed.push(format!("{} ({})", name(path), human(*size)))
                }
                ItemChange::Changed {
                    path,
                    old_size,
                    new_size,
                } => changed.push(format!(
                    "{} ({} -> {})",
                    name(path),
                    human(*old_size),
                    human(*new_size)
                )),
            }
        }
        Lines {
            from: d.from.short(),
            to: d.to.short(),
            added,
            removed,
            changed,
            databases: d.databases.iter().map(db_line).collect(),
            images: d.images.iter().map(image_line).collect(),
            git: d.git.as_ref().map(git_line),
            partial: [(d.from, &d.from_partial), (d.to, &d.to_partial)]
                .iter()
                .flat_map(|(id, fs)| {
                    fs.iter()
                        .map(move |f| format!("{} lacks {}: {}", id.short(), f.part, f.error))
                })
                .collect(),
            new_bytes: d.new_bytes,
            stored_bytes: d.stored_bytes,
        }
    }
}

fn db_line(c: &DbChange) -> String {
    match c {
        DbChange::New { db } => format!("{db}: new"),
        DbChange::Alembic { db, old, new } => format!(
            "{db}: alembic {} -> {}",
            old.as_deref().unwrap_or("-"),
            new.as_deref().unwrap_or("-")
        ),
        DbChange::TableNew { db, table, rows } => {
            format!("{db}: table {table} new ({rows} rows)")
        }
        DbChange::TableRows {
            db,
            table,
            old,
            new,
        } => format!("{db}: table {table} {old} -> {new} rows ({:+})", new - old),
        DbChange::TableDropped { db, table } => format!("{db}: table {table} dropped"),
        DbChange::DumpSize { db, old, new } => {
            format!("{db}: dump {} -> {}", human(*old), human(*new))
        }
    }
}

fn image_line(c: &ImageChange) -> String {
    match c {
        ImageChange::New { reference, id } => format!("{reference}: new ({})", head(id, 19)),
        ImageChange::Replaced {
            reference,
            old_id,
            new_id,
            layers_added,
            layers_removed,
        } => format!(
            "{reference}: {} -> {}, {layers_added} layers added, {layers_removed} removed",
            head(old_id, 19),
            head(new_id, 19)
        ),
        ImageChange::Removed { reference } => format!("{reference}: removed"),
    }
}

fn git_line(g: &GitChange) -> String {
    format!("{} -> {}", head(&g.old_commit, 12), head(&g.new_commit, 12))
}

/// What changed between two snapshots, as text or JSON.
pub fn diff(d: &Diff, json: bool) -> Result<()> {
    let l = Lines::new(d);
    if json {
        return super::json(&l);
    }
    println!("{} -> {}", l.from, l.to);
    for (title, lines) in [
        ("databases", &l.databases),
        ("images", &l.images),
        ("added", &l.added),
        ("removed", &l.removed),
        ("changed", &l.changed),
        ("partial", &l.partial),
    ] {
        if !lines.is_empty() {
            println!("{title}:");
            for line in lines {
                println!("  {line}");
            }
        }
    }
    if let Some(g) = &l.git {
        println!("git: {g}");
    }
    println!(
        "new data stored by {}: {} ({} after compression)",
        l.to,
        HumanBytes(l.new_bytes),
        HumanBytes(l.stored_bytes)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use relic::SnapshotId;

    /// `relic diff --json` keeps the object it printed when the library
    /// returned the lines: the same fields, in the same order, holding the
    /// same strings.
    #[test]
    fn json_keeps_its_fields_and_lines() {
        let s = |v: &str| v.to_string();
        let d = Diff {
            from: SnapshotId([0x11; 32]),
            to: SnapshotId([0x22; 32]),
            items: vec![
                ItemChange::Added {
                    path: b"files/new".to_vec(),
                    size: 70_000,
                },
                ItemChange::Changed {
                    path: b"db/main.sql".to_vec(),
                    old_size: 33_587,
                    new_size: 34_041,
                },
                ItemChange::Removed {
                    path: b"files/old".to_vec(),
                    size: 2,
                },
            ],
            databases: vec![
                DbChange::New { db: s("extra") },
                DbChange::Alembic {
                    db: s("main"),
                    old: Some(s("r1")),
                    new: None,
                },
                DbChange::TableNew {
                    db: s("main"),
                    table: s("public.newt"),
                    rows: 7,
                },
                DbChange::TableRows {
                    db: s("main"),
                    table: s("public.people"),
                    old: 3050,
                    new: 3000,
                },
                DbChange::TableDropped {
                    db: s("main"),
                    table: s("public.gone"),
                },
                DbChange::DumpSize {
                    db: s("main"),
                    old: 33_587,
                    new: 34_041,
                },
            ],
            images: vec![
                ImageChange::New {
                    reference: s("b:1"),
                    id: s("sha256:0123456789abcdef0123"),
                },
                ImageChange::Replaced {
                    reference: s("a:1"),
                    old_id: s("sha256:aaaaaaaaaaaaaaaaaaaa"),
                    new_id: s("sha256:bbbbbbbbbbbbbbbbbbbb"),
                    layers_added: 2,
                    layers_removed: 1,
                },
                ImageChange::Removed {
                    reference: s("c:1"),
                },
            ],
            git: Some(GitChange {
                old_commit: s("0123456789abcdef"),
                new_commit: s("fedcba9876543210"),
            }),
            from_partial: Vec::new(),
            to_partial: vec![relic::snapshot::PartFailure {
                part: s("images/c:1"),
                error: s("no such image"),
            }],
            new_bytes: 251_085,
            stored_bytes: 201_865,
        };
        let json = serde_json::to_string_pretty(&Lines::new(&d)).unwrap();
        assert_eq!(
            json,
            r#"{
  "from": "11111111",
  "to": "22222222",
  "added": [
    "files/new (68.4 KiB)"
  ],
  "removed": [
    "files/old (2 B)"
  ],
  "changed": [
    "db/main.sql (32.8 KiB -> 33.2 KiB)"
  ],
  "databases": [
    "extra: new",
    "main: alembic r1 -> -",
    "main: table public.newt new (7 rows)",
    "main: table public.people 3050 -> 3000 rows (-50)",
    "main: table public.gone dropped",
    "main: dump 32.8 KiB -> 33.2 KiB"
  ],
  "images": [
    "b:1: new (sha256:0123456789ab)",
    "a:1: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb, 2 layers added, 1 removed",
    "c:1: removed"
  ],
  "git": "0123456789ab -> fedcba987654",
  "partial": [
    "22222222 lacks images/c:1: no such image"
  ],
  "new_bytes": 251085,
  "stored_bytes": 201865
}"#
        );
    }
}
