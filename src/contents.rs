//! What a snapshot holds, whatever made it: its kind (a stack, a
//! database dump, Docker images or volumes, files, one stream), its parts with their
//! checksums and the metadata their backups recorded ([`describe`], which
//! `relic manifest` words), and the one part a restore's `--item` names
//! ([`select`]).
//!
//! Everything here reads snapshot objects and item lists only, never
//! pack data beyond them.

use crate::docker::volume::VolumeRecord;
use crate::docker::{self, ImageRecord};
use crate::postgres::{self, DbInfo};
use crate::repo::{self, Repository};
use crate::snapshot::{Item, ItemKind, Snapshot};
use crate::stack::{self, Manifest};
use crate::SnapshotId;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--item` named nothing the snapshot holds; `known` lists its parts.
    #[error("snapshot {snapshot} holds no item '{item}'; it holds: {}", known.join(", "))]
    NoSuchItem {
        snapshot: String,
        item: String,
        known: Vec<String>,
    },
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Stack(#[from] stack::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What made a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `relic snapshot`: databases, images and files of a stack.
    Stack,
    /// `relic backup pg`: one database's dump.
    Postgres,
    /// `relic backup image` / `backup docker`: `docker save` tars.
    Docker,
    /// `relic backup volume`: Docker named volumes' files.
    Volumes,
    /// `relic backup files`: a tree of files.
    Files,
    /// `relic backup` of standard input: one stream.
    Stream,
}

/// One part of a snapshot, as a restore takes it out alone.
#[derive(Clone, Debug)]
pub enum Part {
    /// A database dump, with what its backup recorded about the database.
    Database { item: Item, info: DbInfo },
    /// Some of the snapshot's images.
    Images(Vec<ImageRecord>),
    /// One stream or file.
    Stream(Item),
    /// A directory and what is under it: the items whose path is `prefix`
    /// or under `prefix/`; a restore takes `strip` off their paths.
    Tree { prefix: Vec<u8>, strip: Vec<u8> },
}

impl Part {
    /// Whether a restore writes this part to one file (else a directory).
    pub fn is_single_stream(&self) -> bool {
        match self {
            Part::Database { .. } | Part::Stream(_) => true,
            Part::Images(r) => r.len() == 1,
            Part::Tree { .. } => false,
        }
    }
}

/// What made `snap` (reads at most two items, for a stream).
pub fn kind(repo: &Repository, snap: &Snapshot) -> Result<Kind> {
    if snap.meta.contains_key(stack::MANIFEST_KEY) {
        return Ok(Kind::Stack);
    }
    if snap.meta.get("source").map(String::as_str) == Some("postgres") {
        return Ok(Kind::Postgres);
    }
    if snap.meta.contains_key(docker::META_KEY) {
        return Ok(Kind::Docker);
    }
    if snap.meta.contains_key(docker::volume::META_KEY) {
        return Ok(Kind::Volumes);
    }
    let first: Vec<Item> = repo.items(snap).take(2).collect::<repo::Result<_>>()?;
    Ok(match first.as_slice() {
        [one] if one.kind == ItemKind::Stream => Kind::Stream,
        _ => Kind::Files,
    })
}

/// The part of snapshot `id` that `spec` names. In a stack snapshot,
/// `db/NAME` is a database, `images/REF` an image (by the reference it was
/// backed up by, a tag or an id prefix), `files` the files (restored as
/// the stack's root: `files/` comes off their paths); in any snapshot an
/// item's path names that item, and a directory's path its subtree.
pub fn select(repo: &Repository, id: &SnapshotId, snap: &Snapshot, spec: &str) -> Result<Part> {
    let spec = spec.trim_end_matches('/');
    let records = docker::records(snap)?;
    let manifest = stack::manifest(id, snap).ok();
    if let Some(m) = &manifest {
        let name = spec.strip_prefix("db/").map(|n| n.trim_end_matches(".sql"));
        if let Some(d) = name.and_then(|n| m.databases.iter().find(|d| d.name == n)) {
            let item = find_item(repo, snap, &d.item)?.ok_or_else(|| missing(id, spec))?;
            return Ok(Part::Database {
                item,
                info: d.info(),
            });
        }
        if spec == "files" || spec.starts_with("files/") {
            return Ok(Part::Tree {
                prefix: spec.as_bytes().to_vec(),
                strip: b"files/".to_vec(),
            });
        }
    }
    if !records.is_empty() {
        if let Some(r) = records.iter().find(|r| r.item == spec) {
            return Ok(Part::Images(vec![r.clone()]));
        }
        if let Some(image) = spec.strip_prefix("images/") {
            if let Ok(found) = docker::select(&records, Some(image)) {
                return Ok(Part::Images(found));
            }
        }
    }
    if spec == postgres::DUMP_ITEM {
        if let Ok(info) = DbInfo::from_snapshot(id, snap) {
            let item = find_item(repo, snap, spec)?.ok_or_else(|| missing(id, spec))?;
            return Ok(Part::Database { item, info });
        }
    }
    let under = format!("{spec}/");
    let mut dir = false;
    for item in repo.items(snap) {
        let item = item?;
        if item.path == spec.as_bytes() {
            if matches!(item.kind, ItemKind::File | ItemKind::Stream) {
                return Ok(Part::Stream(item));
            }
            dir = true;
        } else if item.path.starts_with(under.as_bytes()) {
            dir = true;
        }
    }
    if dir {
        return Ok(Part::Tree {
            prefix: spec.as_bytes().to_vec(),
            strip: Vec::new(),
        });
    }
    Err(missing_with(repo, id, snap, manifest.as_ref(), spec))
}

/// The item at `path`, if the snapshot has one.
fn find_item(repo: &Repository, snap: &Snapshot, path: &str) -> Result<Option<Item>> {
    for item in repo.items(snap) {
        let item = item?;
        if item.path == path.as_bytes() {
            return Ok(Some(item));
        }
    }
    Ok(None)
}

fn missing(id: &SnapshotId, spec: &str) -> Error {
    Error::NoSuchItem {
        snapshot: id.short(),
        item: spec.to_string(),
        known: Vec::new(),
    }
}

/// [`Error::NoSuchItem`] listing what the snapshot does hold: its parts
/// for a stack, else its top-level items (at most 20).
fn missing_with(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    manifest: Option<&Manifest>,
    spec: &str,
) -> Error {
    let known = match manifest {
        Some(m) => stack_parts(m),
        None => {
            let mut top: Vec<String> = repo
                .items(snap)
                .filter_map(|i| i.ok())
                .map(|i| {
                    let p = i.path_lossy();
                    p.split('/').next().unwrap_or_default().to_string()
                })
                .collect();
            top.dedup();
            top.truncate(20);
            top
        }
    };
    Error::NoSuchItem {
        snapshot: id.short(),
        item: spec.to_string(),
        known,
    }
}

/// The `--item` names of a stack snapshot's parts.
pub fn stack_parts(m: &Manifest) -> Vec<String> {
    let mut out: Vec<String> = m
        .databases
        .iter()
        .map(|d| format!("db/{}", d.name))
        .collect();
    out.extend(m.images.iter().map(|i| {
        if i.reference.is_empty() {
            i.item.clone()
        } else {
            format!("images/{}", i.reference)
        }
    }));
    out.extend(m.volumes.iter().map(|v| v.item.clone()));
    if m.files.is_some() {
        out.push("files".into());
    }
    out.push(stack::CONFIG_ITEM.into());
    out
}

/// One stream or file a snapshot holds, with its checksum.
#[derive(Clone, Debug, Serialize)]
pub struct StreamSummary {
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// What a snapshot holds, for its manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Contents {
    pub kind: Kind,
    /// A stack snapshot's manifest.
    pub stack: Option<Manifest>,
    /// What a database backup recorded (a `backup pg` snapshot).
    pub database: Option<DbInfo>,
    /// The images (an image snapshot; a stack's are in its manifest).
    pub images: Vec<ImageRecord>,
    /// The volumes (a volume snapshot; a stack's are in its manifest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeRecord>,
    /// The streams and files, with their BLAKE3 (for a tree, the first
    /// [`LISTED_FILES`]; `entries` counts all).
    pub streams: Vec<StreamSummary>,
    /// Items of every kind (directories and links too).
    pub entries: u64,
    /// Bytes of content.
    pub bytes: u64,
}

/// How many files of a tree a manifest lists (`relic ls` lists all).
pub const LISTED_FILES: usize = 50;

/// What snapshot `id` holds: kind, parts, checksums, recorded metadata.
pub fn describe(repo: &Repository, id: &SnapshotId, snap: &Snapshot) -> Result<Contents> {
    let kind = kind(repo, snap)?;
    let mut c = Contents {
        kind,
        stack: None,
        database: None,
        images: Vec::new(),
        volumes: Vec::new(),
        streams: Vec::new(),
        entries: 0,
        bytes: 0,
    };
    match kind {
        Kind::Stack => c.stack = Some(stack::manifest(id, snap)?),
        Kind::Postgres => c.database = Some(DbInfo::from_snapshot(id, snap)?),
        Kind::Docker => c.images = docker::records(snap)?,
        Kind::Volumes => c.volumes = docker::volume::records(snap)?,
        Kind::Files | Kind::Stream => {}
    }
    for item in repo.items(snap) {
        let item = item?;
        c.entries += 1;
        c.bytes += item.size;
        let listed = matches!(item.kind, ItemKind::File | ItemKind::Stream)
            && (!matches!(kind, Kind::Files | Kind::Volumes) || c.streams.len() < LISTED_FILES);
        if listed {
            c.streams.push(StreamSummary {
                path: item.path_lossy(),
                size: item.size,
                blake3: hex::encode(item.hash),
            });
        }
    }
    Ok(c)
}
