//! `relic diff`: what changed between two snapshots, as lines per section
//! for people, or (`--json`) as one object whose changes are objects with
//! their fields (paths, sizes, row counts, ids), for scripts.

use super::stack::{head, human};
use anyhow::Result;
use indicatif::HumanBytes;
use relic::diff::{DbChange, Diff, GitChange, ImageChange, ItemChange};

/// The comparison as lines, per section.
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

/// `relic diff --json`: every change with its fields.
fn json_of(d: &Diff) -> serde_json::Value {
    let partial = |id: &relic::SnapshotId, fs: &[relic::snapshot::PartFailure]| {
        fs.iter()
            .map(|f| serde_json::json!({"snapshot": id.to_hex(), "part": f.part, "error": f.error}))
            .collect::<Vec<_>>()
    };
    let partial = [
        partial(&d.from, &d.from_partial),
        partial(&d.to, &d.to_partial),
    ]
    .concat();
    serde_json::json!({
        "from": d.from.to_hex(),
        "to": d.to.to_hex(),
        "items": d.items,
        "databases": d.databases,
        "images": d.images,
        "git": d.git,
        "partial": partial,
        "new_bytes": d.new_bytes,
        "stored_bytes": d.stored_bytes,
        "added_bytes": d.added_bytes,
    })
}

/// What changed between two snapshots, as text or JSON.
pub fn diff(d: &Diff, json: bool) -> Result<()> {
    if json {
        return super::json(&json_of(d));
    }
    let l = Lines::new(d);
    out!("{} -> {}", l.from, l.to);
    for (title, lines) in [
        ("databases", &l.databases),
        ("images", &l.images),
        ("added", &l.added),
        ("removed", &l.removed),
        ("changed", &l.changed),
        ("partial", &l.partial),
    ] {
        if !lines.is_empty() {
            out!("{title}:");
            for line in lines {
                out!("  {line}");
            }
        }
    }
    if let Some(g) = &l.git {
        out!("git: {g}");
    }
    out!(
        "{} has {} of new data; it added {} to the repository",
        l.to,
        HumanBytes(d.new_bytes),
        HumanBytes(d.added_bytes)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use relic::SnapshotId;

    /// `relic diff --json` gives each change as an object with its fields;
    /// the text form keeps its lines.
    #[test]
    fn json_has_fields_and_text_has_lines() {
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
            added_bytes: 210_000,
        };
        let v = json_of(&d);
        assert_eq!(v["from"], "1".repeat(64));
        assert_eq!(
            v["items"][0],
            serde_json::json!({"change": "added", "path": "files/new", "size": 70_000})
        );
        assert_eq!(
            v["databases"][3],
            serde_json::json!({"change": "table_rows", "db": "main", "table": "public.people", "old": 3050, "new": 3000})
        );
        assert_eq!(v["images"][1]["layers_added"], 2);
        assert_eq!(v["git"]["new_commit"], "fedcba9876543210");
        assert_eq!(v["partial"][0]["part"], "images/c:1");
        assert_eq!(v["added_bytes"], 210_000);
        let lines = Lines::new(&d);
        assert_eq!(lines.changed, ["db/main.sql (32.8 KiB -> 33.2 KiB)"]);
        assert_eq!(
            lines.databases[3],
            "main: table public.people 3050 -> 3000 rows (-50)"
        );
    }
}
