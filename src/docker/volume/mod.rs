//! Docker named volumes: a volume's files backed up as a files tree and
//! written back, both through the engine (no access to its data root).
//!
//! Reading: a helper container, created and never started, from an image
//! the engine already has (one of a container that mounts the volume,
//! else any; nothing is pulled), mounts the volume read-only at
//! [`MOUNT`]. The engine's archive of that path (`GET
//! /containers/{id}/archive`) is read entry by entry, as it streams, into
//! items under `volumes/<name>`: directories, files, symlinks with their
//! mode, owner and mtime, as `files::backup_paths` stores a tree, so `ls`,
//! `diff` and `restore --to` take them as any tree. The engine's archive
//! has whole-second mtimes.
//!
//! Writing: the volume is created when missing (with the driver, options
//! and labels recorded), emptied when it holds anything (removed and
//! created again when no container uses it, else a helper started to run
//! `find -delete` in it, from the first local image that has `find`),
//! then a tar made from the stored items streams into a helper
//! (`PUT /containers/{id}/archive`), the engine extracting it with their
//! owners, modes and mtimes. Afterwards the volume holds exactly the
//! snapshot's files.
//!
//! Consistency: a volume running containers use is never written under
//! them; with `stop` they are stopped, the volume restored, and started
//! again. A volume a running PostgreSQL server keeps its data in is never
//! copied while the server runs: refused, or with `stop` copied with the
//! server stopped. Other running users are copied live (reported).
//! Helpers are removed afterwards, also on failure.
//!
//! This file owns the records, backup and restore; `helper.rs` the
//! engine's side (users, helper containers, emptying, stopping and
//! starting); `tree.rs` the archive's entries to items and back.

use super::engine::Engine;
use super::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::repo::{Repository, SnapshotOptions, Writer};
use crate::snapshot::Snapshot;
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod helper;
mod tree;

use tree::{store_tar, write_tar};

/// The snapshot metadata key holding the volume records (a JSON array).
pub const META_KEY: &str = "docker.volumes";
/// Where a helper container mounts the volume: a path no image has.
const MOUNT: &str = "/.relic-volume";
/// The name of the volume's root in the engine's archive of [`MOUNT`].
const TAR_ROOT: &[u8] = b".relic-volume";
/// The label on helper containers (its value: the volume).
pub const HELPER_LABEL: &str = "relic.volume-helper";
/// At most this many images are tried to empty a volume with.
const EMPTY_TRIES: usize = 8;
/// How long a container started again may take to become healthy.
const HEALTHY_WAIT: Duration = Duration::from_secs(120);

/// What a snapshot records about each volume it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume's name in the engine.
    pub name: String,
    /// The item of the volume's root directory; its files are under
    /// `item/`.
    pub item: String,
    /// Its driver, options and labels, given again when a restore creates it.
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Items (the root included) and bytes of file content.
    pub entries: u64,
    pub bytes: u64,
}

/// The item of a volume's root: `volumes/<name>`.
pub fn item_name(volume: &str) -> String {
    format!("volumes/{volume}")
}

/// Checks a volume name as the engine takes them.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a volume name: two or more letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

/// The volume records of a snapshot; empty when it holds no volume.
pub fn records(snap: &Snapshot) -> Result<Vec<VolumeRecord>> {
    match snap.meta.get(META_KEY) {
        None => Ok(Vec::new()),
        Some(j) => serde_json::from_str(j)
            .map_err(|e| Error::Select(format!("the snapshot's volume records do not parse: {e}"))),
    }
}

/// The record `spec` names (`volumes/NAME` or `NAME`), or the only one.
pub fn select(records: &[VolumeRecord], spec: Option<&str>) -> Result<VolumeRecord> {
    let names = || {
        records
            .iter()
            .map(|r| r.item.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (spec, records) {
        (_, []) => Err(Error::Select("the snapshot holds no Docker volume".into())),
        (None, [one]) => Ok(one.clone()),
        (None, _) => Err(Error::Select(format!(
            "the snapshot holds {} volumes: say which ({})",
            records.len(),
            names()
        ))),
        (Some(spec), _) => {
            let spec = spec.trim_end_matches('/');
            records
                .iter()
                .find(|r| r.item == spec || r.name == spec)
                .cloned()
                .ok_or_else(|| {
                    Error::Select(format!(
                        "the snapshot holds no volume '{spec}'; it holds: {}",
                        names()
                    ))
                })
        }
    }
}

/// A container that mounts a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeUser {
    pub id: String,
    /// Its name (without the leading `/`).
    pub name: String,
    /// Its image's id.
    pub image: String,
    pub running: bool,
    /// Where it mounts the volume.
    pub destination: String,
    /// Its environment (`KEY=VALUE`).
    pub env: Vec<String>,
}

/// What a volume backup or restore does, reported as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeStep {
    /// `containers` run while `volume` is copied: what they write during
    /// the copy may be caught half-written.
    LiveCopy {
        volume: String,
        containers: Vec<String>,
    },
    /// A container using the volume is being stopped.
    Stopping { container: String, volume: String },
    /// A container stopped before is being started again.
    Starting { container: String },
    /// The volume's files are being read.
    Copying { volume: String },
    /// The volume was missing; it is created.
    Creating { volume: String },
    /// What the volume held was backed up first, as snapshot `id`.
    SafetySnapshot { volume: String, id: SnapshotId },
    /// The volume held files: they are being removed.
    Emptying { volume: String },
    /// The snapshot's `item` is being written into the volume.
    Writing { volume: String, item: String },
}

/// What a volume restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub volume: String,
    /// The volume was created.
    pub created: bool,
    /// It held files, which were removed first.
    pub emptied: bool,
    /// The safety snapshot of what it held, when one was taken.
    pub safety_snapshot: Option<SnapshotId>,
    /// Entries written (the root included) and bytes of file content.
    pub entries: u64,
    pub bytes: u64,
}

/// What restoring into a volume would meet, for a dry run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub volume: String,
    pub exists: bool,
    /// The containers that mount it.
    pub users: Vec<VolumeUser>,
}

impl Target {
    /// The names of the running containers that use it.
    pub fn running(&self) -> Vec<String> {
        running(&self.users)
            .into_iter()
            .map(|u| u.name.clone())
            .collect()
    }
}

fn running(users: &[VolumeUser]) -> Vec<&VolumeUser> {
    users.iter().filter(|u| u.running).collect()
}

/// Backs up volumes into one snapshot, each under `volumes/<name>`, with
/// their records in [`META_KEY`]. Every volume is looked up first: an
/// unknown one writes nothing. `stop`: stop the running containers that
/// use a volume while it is copied (else a running database's volume is
/// refused).
pub fn backup(
    repo: &Repository,
    opts: &SnapshotOptions,
    volumes: &[String],
    stop: bool,
    progress: &dyn Progress,
    step: &mut dyn FnMut(VolumeStep),
) -> Result<(SnapshotId, Snapshot)> {
    let engine = Engine::connect()?;
    let names: Vec<&str> = volumes.iter().map(String::as_str).collect();
    backup_with(&engine, repo, opts, &names, stop, progress, step)
}

/// [`backup`] through `engine`.
fn backup_with(
    engine: &Engine,
    repo: &Repository,
    opts: &SnapshotOptions,
    volumes: &[&str],
    stop: bool,
    progress: &dyn Progress,
    step: &mut dyn FnMut(VolumeStep),
) -> Result<(SnapshotId, Snapshot)> {
    let mut names: Vec<&str> = Vec::new();
    for v in volumes {
        check_name(v).map_err(Error::Select)?;
        if !names.contains(v) {
            names.push(v);
        }
    }
    for v in &names {
        engine.volume(v)?;
    }
    repo.backup(opts, progress, |w| {
        let mut records = Vec::new();
        for v in &names {
            records.push(backup_into(w, engine, v, stop, progress, step)?);
        }
        w.set_meta(
            META_KEY,
            serde_json::to_string(&records).expect("records serialize"),
        );
        Ok(())
    })
}

/// Copies one volume into the write session as the items
/// `volumes/<volume>…`; returns its record (the caller stores it).
pub fn backup_into(
    w: &mut Writer<'_>,
    engine: &Engine,
    volume: &str,
    stop: bool,
    progress: &dyn Progress,
    step: &mut dyn FnMut(VolumeStep),
) -> Result<VolumeRecord> {
    let info = engine.volume(volume)?;
    let users = engine.volume_users(volume)?;
    let live = running(&users);
    if !stop {
        for u in &live {
            if engine.is_database(u)? {
                return Err(Error::DatabaseVolume {
                    volume: volume.to_string(),
                    container: u.name.clone(),
                });
            }
        }
        if !live.is_empty() {
            step(VolumeStep::LiveCopy {
                volume: volume.to_string(),
                containers: live.iter().map(|u| u.name.clone()).collect(),
            });
        }
    }
    let to_stop: Vec<VolumeUser> = if stop {
        live.into_iter().cloned().collect()
    } else {
        Vec::new()
    };
    let images = engine.helper_images(volume, &users)?;
    let item = item_name(volume);
    engine.with_stopped(volume, &to_stop, step, |step| {
        let helper = engine.helper(volume, &images, true)?;
        step(VolumeStep::Copying {
            volume: volume.to_string(),
        });
        progress.start(&format!("volume {volume}"), None, Unit::Bytes);
        let (items0, bytes0) = w.totals();
        store_tar(w, engine.read_volume(&helper, volume), &item)?;
        progress.finish();
        let (items1, bytes1) = w.totals();
        Ok(VolumeRecord {
            name: volume.to_string(),
            item: item.clone(),
            driver: info.driver.clone(),
            options: info.options.clone().into_iter().collect(),
            labels: info.labels.clone().into_iter().collect(),
            entries: items1 - items0,
            bytes: bytes1 - bytes0,
        })
    })
}

/// What restoring into `volume` would meet now.
pub fn target(engine: &Engine, volume: &str) -> Result<Target> {
    check_name(volume).map_err(Error::Select)?;
    let exists = match engine.volume(volume) {
        Ok(_) => true,
        Err(Error::NoSuchVolume { .. }) => false,
        Err(e) => return Err(e),
    };
    let users = if exists {
        engine.volume_users(volume)?
    } else {
        Vec::new()
    };
    Ok(Target {
        volume: volume.to_string(),
        exists,
        users,
    })
}

/// Where and how a volume of a snapshot is restored.
#[derive(Clone, Debug)]
pub struct RestoreTo {
    /// The volume written into.
    pub volume: String,
    /// Stop the running containers that use it meanwhile (else refused).
    pub stop: bool,
    /// Back up what it holds first (tier safety, named `safety-<volume>`,
    /// labelled `restoring` with this snapshot's id).
    pub safety_for: Option<SnapshotId>,
}

/// Writes the volume `record` of a snapshot into `to.volume`: created when
/// missing, emptied when it holds anything (after a safety snapshot of
/// it, when `to.safety_for`), then filled with the snapshot's files, so
/// it holds exactly them. Running containers that use it make it refused
/// ([`Error::VolumeInUse`]) unless `to.stop`: then they are stopped first
/// (so the safety snapshot is consistent too) and started again after,
/// also when the restore fails.
pub fn restore(
    engine: &Engine,
    repo: &Repository,
    snap: &Snapshot,
    record: &VolumeRecord,
    to: &RestoreTo,
    progress: &dyn Progress,
    step: &mut dyn FnMut(VolumeStep),
) -> Result<Restored> {
    let volume = to.volume.as_str();
    let t = target(engine, volume)?;
    let live: Vec<VolumeUser> = running(&t.users).into_iter().cloned().collect();
    if !live.is_empty() && !to.stop {
        return Err(Error::VolumeInUse {
            volume: volume.to_string(),
            containers: t.running(),
        });
    }
    let images = engine.helper_images(volume, &t.users)?;
    if !t.exists {
        step(VolumeStep::Creating {
            volume: volume.to_string(),
        });
        engine.create_volume(volume, record)?;
    }
    engine.with_stopped(volume, &live, step, |step| {
        let emptied = {
            let probe = engine.helper(volume, &images, true)?;
            !engine.volume_is_empty(&probe, volume)?
        };
        let mut safety_snapshot = None;
        if let (true, Some(restoring)) = (emptied, &to.safety_for) {
            let opts = SnapshotOptions {
                name: format!("safety-{volume}"),
                tier: crate::snapshot::Tier::Safety,
                labels: [("restoring".to_string(), restoring.to_hex())]
                    .into_iter()
                    .collect(),
                meta: Default::default(),
                time_ns: None,
            };
            // Its users are stopped now: nothing to stop, nothing live.
            let (id, _) = backup_with(engine, repo, &opts, &[volume], false, progress, step)?;
            step(VolumeStep::SafetySnapshot {
                volume: volume.to_string(),
                id,
            });
            safety_snapshot = Some(id);
        }
        if emptied {
            step(VolumeStep::Emptying {
                volume: volume.to_string(),
            });
            if t.users.is_empty() {
                engine.recreate_volume(volume)?;
            } else {
                engine.empty_volume(volume, &images)?;
            }
        }
        let helper = engine.helper(volume, &images, false)?;
        if emptied && !engine.volume_is_empty(&helper, volume)? {
            return Err(Error::Volume {
                volume: volume.to_string(),
                what: "it still holds files after it was emptied; nothing was written to it".into(),
            });
        }
        step(VolumeStep::Writing {
            volume: volume.to_string(),
            item: record.item.clone(),
        });
        progress.start(&format!("volume {volume}"), Some(record.bytes), Unit::Bytes);
        let mut totals = (0, 0);
        engine.write_volume(&helper, volume, |out| {
            totals = write_tar(repo, snap, &record.item, out, progress)?;
            Ok(())
        })?;
        progress.finish();
        Ok(Restored {
            volume: volume.to_string(),
            created: !t.exists,
            emptied,
            safety_snapshot,
            entries: totals.0,
            bytes: totals.1,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_selection() {
        assert!(check_name("postgres_data").is_ok());
        assert!(check_name("a").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a/b").is_err());
        let rec = |n: &str| VolumeRecord {
            name: n.into(),
            item: item_name(n),
            driver: "local".into(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            entries: 1,
            bytes: 0,
        };
        let all = [rec("db"), rec("uploads")];
        assert_eq!(
            select(&all, Some("volumes/uploads")).unwrap().name,
            "uploads"
        );
        assert_eq!(select(&all, Some("db")).unwrap().name, "db");
        assert!(select(&all, None)
            .unwrap_err()
            .to_string()
            .contains("volumes/db, volumes/uploads"));
        assert_eq!(select(&all[..1], None).unwrap().name, "db");
        assert!(select(&[], None).is_err());
    }
}
