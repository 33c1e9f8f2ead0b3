//! Comparing two snapshots: item by item and, for stack snapshots, part by
//! part (database revisions and row counts, image ids and layers, the git
//! commit). `relic diff` prints it.

use crate::repo::Repository;
use crate::snapshot::{ItemKind, Snapshot};
use crate::stack::{head, human, manifest, Result};
use crate::SnapshotId;
use serde::Serialize;

/// What changed between two snapshots.
#[derive(Debug, Default, Serialize)]
pub struct Diff {
    pub from: String,
    pub to: String,
    /// Items (databases' dumps, image tars, files) added, removed, changed.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Per database: revision and row count changes.
    pub databases: Vec<String>,
    /// Per image: id and layer changes.
    pub images: Vec<String>,
    pub git: Option<String>,
    /// Bytes the second snapshot added to the repository (raw, stored).
    pub new_bytes: u64,
    pub stored_bytes: u64,
}

/// Path → (kind, size, BLAKE3) of a snapshot's items.
type ItemIndex = std::collections::BTreeMap<Vec<u8>, (ItemKind, u64, [u8; 32])>;

/// Compares two snapshots item by item and, for stacks, part by part.
pub fn diff(
    repo: &Repository,
    (aid, a): (&SnapshotId, &Snapshot),
    (bid, b): (&SnapshotId, &Snapshot),
) -> Result<Diff> {
    let index = |s: &Snapshot| -> Result<ItemIndex> {
        let mut m = std::collections::BTreeMap::new();
        for i in repo.items(s) {
            let i = i?;
            m.insert(i.path.clone(), (i.kind, i.size, i.hash));
        }
        Ok(m)
    };
    let (ia, ib) = (index(a)?, index(b)?);
    let name = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let mut d = Diff {
        from: aid.short(),
        to: bid.short(),
        new_bytes: b.summary.new_bytes,
        stored_bytes: b.summary.stored_bytes,
        ..Default::default()
    };
    for (p, (kind, size, hash)) in &ib {
        match ia.get(p) {
            None => d.added.push(format!("{} ({})", name(p), human(*size))),
            Some((k0, s0, h0)) if (k0, s0, h0) != (kind, size, hash) => {
                d.changed
                    .push(format!("{} ({} -> {})", name(p), human(*s0), human(*size)))
            }
            Some(_) => {}
        }
    }
    for (p, (_, size, _)) in &ia {
        if !ib.contains_key(p) {
            d.removed.push(format!("{} ({})", name(p), human(*size)));
        }
    }
    if let (Ok(ma), Ok(mb)) = (manifest(aid, a), manifest(bid, b)) {
        for db in &mb.databases {
            let Some(old) = ma.databases.iter().find(|o| o.name == db.name) else {
                d.databases.push(format!("{}: new", db.name));
                continue;
            };
            if old.alembic_revision != db.alembic_revision {
                d.databases.push(format!(
                    "{}: alembic {} -> {}",
                    db.name,
                    old.alembic_revision.as_deref().unwrap_or("-"),
                    db.alembic_revision.as_deref().unwrap_or("-")
                ));
            }
            for t in &db.tables {
                match old.tables.iter().find(|o| o.table == t.table) {
                    None => d.databases.push(format!(
                        "{}: table {} new ({} rows)",
                        db.name, t.table, t.rows
                    )),
                    Some(o) if o.rows != t.rows => d.databases.push(format!(
                        "{}: table {} {} -> {} rows ({:+})",
                        db.name,
                        t.table,
                        o.rows,
                        t.rows,
                        t.rows - o.rows
                    )),
                    Some(_) => {}
                }
            }
            for o in &old.tables {
                if !db.tables.iter().any(|t| t.table == o.table) {
                    d.databases
                        .push(format!("{}: table {} dropped", db.name, o.table));
                }
            }
            if old.size != db.size {
                d.databases.push(format!(
                    "{}: dump {} -> {}",
                    db.name,
                    human(old.size),
                    human(db.size)
                ));
            }
        }
        for i in &mb.images {
            match ma.images.iter().find(|o| o.reference == i.reference) {
                None => d
                    .images
                    .push(format!("{}: new ({})", i.reference, head(&i.id, 19))),
                Some(o) if o.id != i.id => {
                    let added = i.layers.iter().filter(|l| !o.layers.contains(l)).count();
                    let removed = o.layers.iter().filter(|l| !i.layers.contains(l)).count();
                    d.images.push(format!(
                        "{}: {} -> {}, {added} layers added, {removed} removed",
                        i.reference,
                        head(&o.id, 19),
                        head(&i.id, 19)
                    ));
                }
                Some(_) => {}
            }
        }
        for o in &ma.images {
            if !mb.images.iter().any(|i| i.reference == o.reference) {
                d.images.push(format!("{}: removed", o.reference));
            }
        }
        if let (Some(ga), Some(gb)) = (&ma.git, &mb.git) {
            if ga.commit != gb.commit {
                d.git = Some(format!(
                    "{} -> {}",
                    head(&ga.commit, 12),
                    head(&gb.commit, 12)
                ));
            }
        }
    }
    Ok(d)
}
