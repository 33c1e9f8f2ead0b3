//! Comparing two snapshots: item by item and, for stack snapshots, part by
//! part (database revisions and row counts, image ids and layers, the git
//! commit). The comparison is data; `relic diff` words it for people.
//!
//! This module reads stack manifests ([`crate::stack::Manifest`]); the
//! stack module never uses this one.

use crate::repo::{Repository, Result};
use crate::snapshot::{ItemKind, Snapshot};
use crate::stack::{manifest, Manifest};
use crate::SnapshotId;
use serde::Serialize;
use std::collections::BTreeMap;

/// What changed between two snapshots, `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub from: SnapshotId,
    pub to: SnapshotId,
    /// Items (databases' dumps, image tars, files): first those added or
    /// changed, in the order of `to`'s paths, then those removed, in the
    /// order of `from`'s.
    pub items: Vec<ItemChange>,
    /// For two stack snapshots: per database of `to`, in its order.
    pub databases: Vec<DbChange>,
    /// For two stack snapshots: the images of `to`, then those removed.
    pub images: Vec<ImageChange>,
    /// For two stack snapshots that both recorded a commit, when it moved.
    pub git: Option<GitChange>,
    /// The parts each snapshot lacks, when partial: `from`'s, then `to`'s.
    pub from_partial: Vec<crate::snapshot::PartFailure>,
    pub to_partial: Vec<crate::snapshot::PartFailure>,
    /// Bytes of `to`'s new chunks: raw, and as stored (deltas and
    /// compression).
    pub new_bytes: u64,
    pub stored_bytes: u64,
    /// What `to` added to the repository (its pack files).
    pub added_bytes: u64,
}

fn lossy<S: serde::Serializer>(p: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(p))
}

/// An item added, removed or changed (kind, size or content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ItemChange {
    Added {
        #[serde(serialize_with = "lossy")]
        path: Vec<u8>,
        size: u64,
    },
    Removed {
        #[serde(serialize_with = "lossy")]
        path: Vec<u8>,
        size: u64,
    },
    Changed {
        #[serde(serialize_with = "lossy")]
        path: Vec<u8>,
        old_size: u64,
        new_size: u64,
    },
}

/// A change to one database part (`db`: the part's name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum DbChange {
    /// The part is new in `to`.
    New {
        db: String,
    },
    /// The Alembic revision moved (None: no `alembic_version`).
    Alembic {
        db: String,
        old: Option<String>,
        new: Option<String>,
    },
    TableNew {
        db: String,
        table: String,
        rows: i64,
    },
    TableRows {
        db: String,
        table: String,
        old: i64,
        new: i64,
    },
    TableDropped {
        db: String,
        table: String,
    },
    /// The dump's size, in bytes.
    DumpSize {
        db: String,
        old: u64,
        new: u64,
    },
}

/// A change to one image, by the reference it was backed up by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ImageChange {
    New {
        reference: String,
        id: String,
    },
    /// Another image id, and how many layers each has that the other lacks.
    Replaced {
        reference: String,
        old_id: String,
        new_id: String,
        layers_added: usize,
        layers_removed: usize,
    },
    Removed {
        reference: String,
    },
}

/// The checkout's commit, before and after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GitChange {
    pub old_commit: String,
    pub new_commit: String,
}

/// Path → (kind, size, BLAKE3) of a snapshot's items.
type ItemIndex = BTreeMap<Vec<u8>, (ItemKind, u64, [u8; 32])>;

/// Compares two snapshots item by item and, for stacks, part by part.
pub fn diff(
    repo: &Repository,
    (aid, a): (&SnapshotId, &Snapshot),
    (bid, b): (&SnapshotId, &Snapshot),
) -> Result<Diff> {
    let index = |s: &Snapshot| -> Result<ItemIndex> {
        let mut m = BTreeMap::new();
        for i in repo.items(s) {
            let i = i?;
            m.insert(i.path.clone(), (i.kind, i.size, i.hash));
        }
        Ok(m)
    };
    let (ia, ib) = (index(a)?, index(b)?);
    let mut d = Diff {
        from: *aid,
        to: *bid,
        items: item_changes(&ia, &ib),
        databases: Vec::new(),
        images: Vec::new(),
        git: None,
        from_partial: a.partial(),
        to_partial: b.partial(),
        new_bytes: b.summary.new_bytes,
        stored_bytes: b.summary.stored_bytes,
        added_bytes: b.costs().added,
    };
    if let (Ok(ma), Ok(mb)) = (manifest(aid, a), manifest(bid, b)) {
        d.databases = db_changes(&ma, &mb);
        d.images = image_changes(&ma, &mb);
        if let (Some(ga), Some(gb)) = (&ma.git, &mb.git) {
            if ga.commit != gb.commit {
                d.git = Some(GitChange {
                    old_commit: ga.commit.clone(),
                    new_commit: gb.commit.clone(),
                });
            }
        }
    }
    Ok(d)
}

/// Items added or changed (in `ib`'s order), then removed (in `ia`'s).
fn item_changes(ia: &ItemIndex, ib: &ItemIndex) -> Vec<ItemChange> {
    let mut out = Vec::new();
    for (p, (kind, size, hash)) in ib {
        match ia.get(p) {
            None => out.push(ItemChange::Added {
                path: p.clone(),
                size: *size,
            }),
            Some((k0, s0, h0)) if (k0, s0, h0) != (kind, size, hash) => {
                out.push(ItemChange::Changed {
                    path: p.clone(),
                    old_size: *s0,
                    new_size: *size,
                })
            }
            Some(_) => {}
        }
    }
    for (p, (_, size, _)) in ia {
        if !ib.contains_key(p) {
            out.push(ItemChange::Removed {
                path: p.clone(),
                size: *size,
            });
        }
    }
    out
}

/// Per database of `mb`: new, or its revision, tables and dump size.
fn db_changes(ma: &Manifest, mb: &Manifest) -> Vec<DbChange> {
    let mut out = Vec::new();
    for db in &mb.databases {
        let name = || db.name.clone();
        let Some(old) = ma.databases.iter().find(|o| o.name == db.name) else {
            out.push(DbChange::New { db: name() });
            continue;
        };
        if old.alembic_revision != db.alembic_revision {
            out.push(DbChange::Alembic {
                db: name(),
                old: old.alembic_revision.clone(),
                new: db.alembic_revision.clone(),
            });
        }
        for t in &db.tables {
            match old.tables.iter().find(|o| o.table == t.table) {
                None => out.push(DbChange::TableNew {
                    db: name(),
                    table: t.table.clone(),
                    rows: t.rows,
                }),
                Some(o) if o.rows != t.rows => out.push(DbChange::TableRows {
                    db: name(),
                    table: t.table.clone(),
                    old: o.rows,
                    new: t.rows,
                }),
                Some(_) => {}
            }
        }
        for o in &old.tables {
            if !db.tables.iter().any(|t| t.table == o.table) {
                out.push(DbChange::TableDropped {
                    db: name(),
                    table: o.table.clone(),
                });
            }
        }
        if old.size != db.size {
            out.push(DbChange::DumpSize {
                db: name(),
                old: old.size,
                new: db.size,
            });
        }
    }
    out
}

/// The images of `mb` new or replaced, then those of `ma` gone.
fn image_changes(ma: &Manifest, mb: &Manifest) -> Vec<ImageChange> {
    let mut out = Vec::new();
    for i in &mb.images {
        match ma.images.iter().find(|o| o.reference == i.reference) {
            None => out.push(ImageChange::New {
                reference: i.reference.clone(),
                id: i.id.clone(),
            }),
            Some(o) if o.id != i.id => out.push(ImageChange::Replaced {
                reference: i.reference.clone(),
                old_id: o.id.clone(),
                new_id: i.id.clone(),
                layers_added: i.layers.iter().filter(|l| !o.layers.contains(l)).count(),
                layers_removed: o.layers.iter().filter(|l| !i.layers.contains(l)).count(),
            }),
            Some(_) => {}
        }
    }
    for o in &ma.images {
        if !mb.images.iter().any(|i| i.reference == o.reference) {
            out.push(ImageChange::Removed {
                reference: o.reference.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ImageRecord;
    use crate::postgres::TableCount;
    use crate::stack::DbPart;

    fn table(t: &str, rows: i64) -> TableCount {
        TableCount {
            table: t.into(),
            rows,
            exact: true,
        }
    }

    fn db(name: &str, rev: Option<&str>, tables: Vec<TableCount>, size: u64) -> DbPart {
        DbPart {
            name: name.into(),
            item: format!("db/{name}.sql"),
            database: name.into(),
            server_version: "15".into(),
            alembic_revision: rev.map(str::to_string),
            tables,
            size,
            blake3: String::new(),
        }
    }

    fn image(reference: &str, id: &str, layers: &[&str]) -> ImageRecord {
        ImageRecord {
            item: format!("images/{reference}.tar"),
            reference: reference.into(),
            id: id.into(),
            tags: vec![reference.into()],
            layers: layers.iter().map(|l| l.to_string()).collect(),
            created: None,
            size: 0,
            compose_tags: vec![],
        }
    }

    #[test]
    fn items_added_and_changed_in_new_order_then_removed_in_old() {
        let h = |b: u8| [b; 32];
        let ia: ItemIndex = [
            (b"a".to_vec(), (ItemKind::File, 1, h(1))),
            (b"b".to_vec(), (ItemKind::File, 2, h(2))),
            (b"c".to_vec(), (ItemKind::File, 3, h(3))),
            (b"d".to_vec(), (ItemKind::File, 4, h(4))),
        ]
        .into();
        let ib: ItemIndex = [
            (b"a".to_vec(), (ItemKind::File, 1, h(1))),
            (b"b".to_vec(), (ItemKind::File, 2, h(9))),
            (b"bb".to_vec(), (ItemKind::Stream, 5, h(5))),
            (b"d".to_vec(), (ItemKind::File, 40, h(4))),
        ]
        .into();
        assert_eq!(
            item_changes(&ia, &ib),
            vec![
                ItemChange::Changed {
                    path: b"b".to_vec(),
                    old_size: 2,
                    new_size: 2
                },
                ItemChange::Added {
                    path: b"bb".to_vec(),
                    size: 5
                },
                ItemChange::Changed {
                    path: b"d".to_vec(),
                    old_size: 4,
                    new_size: 40
                },
                ItemChange::Removed {
                    path: b"c".to_vec(),
                    size: 3
                },
            ]
        );
    }

    #[test]
    fn databases_and_images_part_by_part() {
        let ma = Manifest {
            databases: vec![db(
                "main",
                Some("r1"),
                vec![table("t", 3), table("gone", 1)],
                100,
            )],
            images: vec![
                image("app", "sha256:aa", &["l1", "l2"]),
                image("old", "sha256:cc", &["l1"]),
                image("same", "sha256:dd", &["l1"]),
            ],
            ..Default::default()
        };
        let mb = Manifest {
            databases: vec![
                db("main", None, vec![table("t", 5), table("new", 7)], 100),
                db("extra", None, vec![], 1),
            ],
            images: vec![
                image("app", "sha256:bb", &["l1", "l3", "l4"]),
                image("same", "sha256:dd", &["l1"]),
                image("fresh", "sha256:ee", &[]),
            ],
            ..Default::default()
        };
        let s = |v: &str| v.to_string();
        assert_eq!(
            db_changes(&ma, &mb),
            vec![
                DbChange::Alembic {
                    db: s("main"),
                    old: Some(s("r1")),
                    new: None
                },
                DbChange::TableRows {
                    db: s("main"),
                    table: s("t"),
                    old: 3,
                    new: 5
                },
                DbChange::TableNew {
                    db: s("main"),
                    table: s("new"),
                    rows: 7
                },
                DbChange::TableDropped {
                    db: s("main"),
                    table: s("gone")
                },
                DbChange::New { db: s("extra") },
            ]
        );
        assert_eq!(
            image_changes(&ma, &mb),
            vec![
                ImageChange::Replaced {
                    reference: s("app"),
                    old_id: s("sha256:aa"),
                    new_id: s("sha256:bb"),
                    layers_added: 2,
                    layers_removed: 1
                },
                ImageChange::New {
                    reference: s("fresh"),
                    id: s("sha256:ee")
                },
                ImageChange::Removed {
                    reference: s("old")
                },
            ]
        );
    }
}
