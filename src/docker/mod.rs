//! Docker images: the engine's `docker save` tar, streamed through bollard
//! into the store and back into `docker load`.
//!
//! The tar is split at entry boundaries ([`TarSplitter`]): every entry of
//! 64 KiB or more (a layer, a big blob) is chunked as a segment of its own,
//! starting from a fresh chunker state, so a layer shared by two images or
//! unchanged since yesterday gives the same chunks wherever it sits in the
//! tar. Headers and small entries (JSON, `VERSION`) are chunked together
//! between them. The stored stream is the tar itself, byte for byte: restore
//! needs no tar writer and the engine gets exactly what it exported.
//!
//! This module owns the image records a snapshot keeps, image backup and
//! restore; its children own the tar splitter (`tar.rs`), what an archive
//! says about its images (`archive.rs`), the engine client (`engine.rs`)
//! retagging for drills (`retag.rs`), the tags that keep images a load
//! replaces reachable (`replaced.rs`), commands run in containers
//! (`exec.rs`) and named volumes (`volume.rs`).

mod archive;
mod compose;
mod engine;
mod exec;
mod replaced;
mod retag;
mod tar;
#[cfg(test)]
mod testing;
pub mod volume;

pub use archive::ArchiveImage;
pub use compose::{ComposeContainer, PROJECT_LABEL, SERVICE_LABEL};
pub use engine::{Engine, EngineImage};
pub use exec::{Exec, ExecSpec, ExecStatus};
pub use replaced::{replacements, Replaced, REPLACED_REPO};
pub use retag::{load_scratch, Retag};
pub use tar::{Entry, TarSplitter};

/// One check after a load: a tag (or the id) and the image id it points at.
pub use crate::check::Check;
use crate::progress::{Progress, Unit};
use crate::repo::{self, Repository, SnapshotOptions};
use crate::snapshot::{Item, Snapshot};
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// The snapshot metadata key holding the image records (a JSON array).
pub const META_KEY: &str = "docker.images";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Docker engine at {host}: {what}\n(is dockerd running? DOCKER_HOST selects the engine, for example unix:///var/run/docker.sock)")]
    Unreachable { host: String, what: String },
    #[error(
        "image '{image}' is not in the Docker engine at {host} (`docker images` lists what it has)"
    )]
    NoSuchImage { image: String, host: String },
    #[error("Docker engine at {host}: {what}")]
    Engine { host: String, what: String },
    #[error("there is no container '{container}' in the Docker engine at {host} (`docker ps -a` lists them)")]
    NoSuchContainer { container: String, host: String },
    #[error("container '{container}' is not running")]
    NotRunning { container: String },
    #[error("compose project '{project}' has no container of service '{service}' ({})", if .services.is_empty() { "the project has no containers: is it up, and is `project` in relic.toml its name?".to_string() } else { format!("its services: {}", .services.join(", ")) })]
    NoComposeService {
        project: String,
        service: String,
        services: Vec<String>,
    },
    #[error("there is no volume '{volume}' in the Docker engine at {host} (`docker volume ls` lists them)")]
    NoSuchVolume { volume: String, host: String },
    /// A restore into a volume that running containers use.
    #[error("volume '{volume}' is used by running container(s) {}: writing under them would corrupt what they hold; nothing was changed", .containers.join(", "))]
    VolumeInUse {
        volume: String,
        containers: Vec<String>,
    },
    /// A backup of a running database server's data volume.
    #[error("volume '{volume}' holds the data of the PostgreSQL server running in container '{container}': a copy taken while it runs would be torn; back up the database itself, or stop the container for the copy")]
    DatabaseVolume { volume: String, container: String },
    #[error("the Docker engine at {host} has no image to make a helper container for volume '{volume}' from (nothing is pulled): build or load any image first")]
    NoHelperImage { volume: String, host: String },
    #[error("volume '{volume}': {what}")]
    Volume { volume: String, what: String },
    #[error("not a docker save archive: {0}")]
    BadArchive(String),
    #[error("{0}")]
    Select(String),
    #[error("image '{image}' changed while it was exported (was {before}, the archive holds {after}); run the backup again")]
    Changed {
        image: String,
        before: String,
        after: String,
    },
    #[error("the load did not restore what was recorded: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Repo(#[from] repo::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a snapshot records about each image it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The snapshot item (a `docker save` tar) that holds the image.
    pub item: String,
    /// The reference the image was backed up by (empty for an archive file).
    pub reference: String,
    /// Image id, `sha256:…` of its config.
    pub id: String,
    /// Tags the archive carries, restored by `docker load`.
    pub tags: Vec<String>,
    /// Layer digests (uncompressed diff ids), base first.
    pub layers: Vec<String>,
    /// Creation time from the image config (RFC 3339).
    pub created: Option<String>,
    /// Bytes of the image's layers.
    pub size: u64,
    /// Names the stack's compose project runs the image by that the
    /// archive does not carry (`scheduler-backend:latest` for an image
    /// backed up as `backend:immaculate`): a restore tags the image with
    /// them too, so `docker compose up` runs exactly this image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compose_tags: Vec<String>,
}

impl ImageRecord {
    /// Every name a restore gives the image: the archive's tags, then the
    /// compose tags.
    pub fn all_tags(&self) -> impl Iterator<Item = &String> {
        self.tags.iter().chain(&self.compose_tags)
    }
}

/// The image records of a snapshot; empty when it holds no image.
pub fn records(snap: &Snapshot) -> Result<Vec<ImageRecord>> {
    match snap.meta.get(META_KEY) {
        None => Ok(Vec::new()),
        Some(j) => serde_json::from_str(j).map_err(|e| {
            Error::BadArchive(format!("the snapshot's image records do not parse: {e}"))
        }),
    }
}

/// The records `spec` names (a reference, a tag, or an image id or its
/// prefix), or all of them without a spec.
pub fn select(records: &[ImageRecord], spec: Option<&str>) -> Result<Vec<ImageRecord>> {
    if records.is_empty() {
        return Err(Error::Select(
            "the snapshot holds no Docker image (it was not made by `relic backup image`)".into(),
        ));
    }
    let Some(spec) = spec else {
        return Ok(records.to_vec());
    };
    let bare = spec.strip_prefix("sha256:").unwrap_or(spec);
    let found: Vec<_> = records
        .iter()
        .filter(|r| {
            r.reference == spec
                || r.tags.iter().any(|t| t == spec)
                || (bare.len() >= 4
                    && r.id
                        .strip_prefix("sha256:")
                        .unwrap_or(&r.id)
                        .starts_with(bare))
        })
        .cloned()
        .collect();
    if found.is_empty() {
        let known: Vec<_> = records
            .iter()
            .map(|r| {
                if r.tags.is_empty() {
                    r.id.clone()
                } else {
                    r.tags.join(", ")
                }
            })
            .collect();
        return Err(Error::Select(format!(
            "the snapshot holds no image '{spec}'; it holds: {}",
            known.join("; ")
        )));
    }
    Ok(found)
}

/// The item name of the `n`th image tar of a snapshot.
fn item_name(reference: &str) -> String {
    let clean: String = reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("images/{clean}.tar")
}

/// Stores one tar, split at its entries; returns its item and images.
fn store_archive(
    w: &mut repo::Writer<'_>,
    reader: impl Read,
    item: &str,
) -> Result<Vec<ArchiveImage>> {
    let mut split = TarSplitter::new(reader);
    let s = w.store_segments(&mut split)?;
    let images = split.images()?;
    w.add_item(&s.into_item(item, 0o644))?;
    Ok(images)
}

/// Backs up images from the engine, one `docker save` tar per reference,
/// into one snapshot. Every reference is looked up before anything is
/// written: an unknown image writes nothing.
pub fn backup(
    repo: &Repository,
    opts: &SnapshotOptions,
    references: &[String],
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let engine = Engine::connect()?;
    let mut refs: Vec<&String> = Vec::new();
    for r in references {
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    let found = refs
        .iter()
        .map(|r| engine.inspect(r))
        .collect::<Result<Vec<_>>>()?;
    let mut records = Vec::new();
    repo.backup(opts, progress, |w| {
        for (r, info) in refs.iter().zip(&found) {
            records.push(export_into(w, &engine, r, info, progress)?);
        }
        w.set_meta(
            META_KEY,
            serde_json::to_string(&records).expect("records serialize"),
        );
        Ok(())
    })
}

/// Exports one image (looked up as `info`) into the write session as the
/// item `images/<reference>.tar`; returns its record.
pub fn export_into(
    w: &mut repo::Writer<'_>,
    engine: &Engine,
    reference: &str,
    info: &EngineImage,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    progress.start(
        &format!("exporting {reference}"),
        Some(info.size),
        Unit::Bytes,
    );
    let item = item_name(reference);
    let images = store_archive(w, engine.export(reference), &item)?;
    let [img] = images.as_slice() else {
        return Err(Error::Engine {
            host: engine.host().to_string(),
            what: format!(
                "it exported {} images for '{reference}', expected one",
                images.len()
            ),
        });
    };
    if img.id != info.id {
        return Err(Error::Changed {
            image: reference.to_string(),
            before: info.id.clone(),
            after: img.id.clone(),
        });
    }
    Ok(ImageRecord {
        item,
        reference: reference.to_string(),
        id: info.id.clone(),
        tags: img.tags.clone(),
        layers: info.layers.clone(),
        created: info.created.clone(),
        size: info.size,
        compose_tags: Vec::new(),
    })
}

/// Backs up a `docker save` archive read from a file or standard input.
pub fn backup_archive(
    repo: &Repository,
    opts: &SnapshotOptions,
    reader: impl Read,
    item: &str,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot)> {
    let item = item_name(item);
    repo.backup(opts, progress, |w| {
        let images = store_archive(w, reader, &item)?;
        let records: Vec<_> = images
            .into_iter()
            .map(|i| ImageRecord {
                item: item.clone(),
                reference: String::new(),
                id: i.id,
                tags: i.tags,
                layers: i.layers,
                created: i.created,
                size: i.size,
                compose_tags: Vec::new(),
            })
            .collect();
        w.set_meta(
            META_KEY,
            serde_json::to_string(&records).expect("records serialize"),
        );
        Ok(())
    })
}

/// The items holding the selected images, each once, in snapshot order.
pub fn items_for(
    repo: &Repository,
    snap: &Snapshot,
    selected: &[ImageRecord],
) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for item in repo.items(snap) {
        let item = item?;
        let name = item.path_lossy();
        if selected.iter().any(|r| r.item == name) {
            out.push(item);
        }
    }
    if let Some(r) = selected
        .iter()
        .find(|r| !out.iter().any(|i| i.path_lossy() == r.item))
    {
        return Err(Error::Select(format!(
            "the snapshot's tree has no item {} for image {}",
            r.item, r.id
        )));
    }
    Ok(out)
}

/// What a load into the engine reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadStep {
    /// The snapshot's item `item` (a `docker save` tar) is being loaded
    /// into the engine at `host`.
    Loading { item: String, host: String },
    /// A line the engine answered a load with, as it said it.
    Engine(String),
    /// Before loading: `tag` points at another image now; it was tagged
    /// `kept_as`, so it stays reachable once the load moves `tag`.
    Kept(Replaced),
    /// After loading: the image `id` was tagged `tag`, a name its compose
    /// project runs it by.
    Tagged { tag: String, id: String },
}

/// A reference split into repository and tag (`latest` when it names
/// none; a registry's port is not a tag).
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// A reference as the engine lists its tags: `latest` added when it names
/// no tag (and no digest).
pub fn normalize_reference(reference: &str) -> String {
    if reference.contains('@') {
        return reference.to_string();
    }
    let (repo, tag) = split_reference(reference);
    format!("{repo}:{tag}")
}

/// Loads the selected images of a snapshot into the engine, then checks that
/// every recorded tag points at the recorded image id; `step` hears each
/// load as it happens. An image a recorded tag points at now, other than
/// the recorded one, is first tagged `relic-replaced/<tag>:<time>` (see
/// [`replacements`]), so the load leaves nothing dangling.
pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    image: Option<&str>,
    progress: &dyn Progress,
    step: &mut dyn FnMut(LoadStep),
) -> Result<Vec<Check>> {
    let selected = select(&records(snap)?, image)?;
    let items = items_for(repo, snap, &selected)?;
    let engine = Engine::connect()?;
    for r in replacements(&engine, &selected)? {
        replaced::keep(&engine, &r)?;
        step(LoadStep::Kept(r));
    }
    for item in &items {
        step(LoadStep::Loading {
            item: item.path_lossy(),
            host: engine.host().to_string(),
        });
        progress.start("loading", Some(item.size), Unit::Bytes);
        let msgs = engine.load(|w| repo.restore_item(item, w, progress))?;
        progress.finish();
        for m in msgs {
            step(LoadStep::Engine(m));
        }
    }
    for r in &selected {
        for name in &r.compose_tags {
            let (repo_name, tag) = split_reference(name);
            engine.tag(&r.id, repo_name, tag)?;
            step(LoadStep::Tagged {
                tag: name.clone(),
                id: r.id.clone(),
            });
        }
    }
    let mut checks = Vec::new();
    for r in &selected {
        let names: Vec<&str> = if r.tags.is_empty() && r.compose_tags.is_empty() {
            vec![r.id.as_str()]
        } else {
            r.all_tags().map(String::as_str).collect()
        };
        for name in names {
            let found = match engine.inspect(name) {
                Ok(i) => i.id,
                Err(Error::NoSuchImage { .. }) => "(missing)".into(),
                Err(e) => return Err(e),
            };
            checks.push(Check {
                what: name.to_string(),
                ok: found == r.id,
                expected: r.id.clone(),
                found,
            });
        }
    }
    if let Some(c) = checks.iter().find(|c| !c.ok) {
        return Err(Error::Mismatch(format!(
            "{} points at {}, expected {}",
            c.what, c.found, c.expected
        )));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_by_tag_reference_or_id() {
        let rec = |item: &str, id: &str, tag: &str| ImageRecord {
            item: item.into(),
            reference: tag.into(),
            id: id.into(),
            tags: vec![tag.into()],
            layers: vec![],
            created: None,
            size: 0,
            compose_tags: vec![],
        };
        let all = vec![
            rec("images/a.tar", "sha256:abcd1234", "a:1"),
            rec("images/b.tar", "sha256:ef567890", "b:1"),
        ];
        assert_eq!(select(&all, None).unwrap().len(), 2);
        assert_eq!(select(&all, Some("b:1")).unwrap()[0].item, "images/b.tar");
        assert_eq!(select(&all, Some("abcd")).unwrap()[0].item, "images/a.tar");
        assert_eq!(
            select(&all, Some("sha256:ef56")).unwrap()[0].item,
            "images/b.tar"
        );
        assert!(select(&all, Some("c:1"))
            .unwrap_err()
            .to_string()
            .contains("a:1"));
        assert!(select(&[], None).is_err());
    }
}
