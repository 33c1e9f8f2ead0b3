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

use super::engine::Engine;
use super::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::repo::{self, Repository, SnapshotOptions, Writer};
use crate::snapshot::{ChunkList, Item, ItemKind, Snapshot};
use crate::SnapshotId;
use bollard::models::{
    ContainerCreateBody, HealthStatusEnum, HostConfig, Mount, MountType, MountVolumeOptions,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, CreateContainerOptions, DownloadFromContainerOptions,
    ListContainersOptions, ListImagesOptions, RemoveContainerOptions, StopContainerOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

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

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

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

/// A helper container: created to reach a volume through the engine's
/// archive endpoints, removed when dropped.
struct Helper<'e> {
    engine: &'e Engine,
    id: String,
}

impl Drop for Helper<'_> {
    fn drop(&mut self) {
        let opts = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        let _ = self
            .engine
            .runtime()
            .block_on(self.engine.client().remove_container(&self.id, Some(opts)));
    }
}

impl Engine {
    /// Looks a volume up.
    pub fn volume(&self, volume: &str) -> Result<bollard::models::Volume> {
        match self
            .runtime()
            .block_on(self.client().inspect_volume(volume))
        {
            Ok(v) => Ok(v),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::NoSuchVolume {
                volume: volume.to_string(),
                host: self.host().to_string(),
            }),
            Err(e) => Err(self.engine_error(e)),
        }
    }

    /// The containers (running or not) that mount `volume`.
    pub fn volume_users(&self, volume: &str) -> Result<Vec<VolumeUser>> {
        let (docker, rt) = (self.client(), self.runtime());
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "volume".to_string(),
                vec![volume.to_string()],
            )])),
            ..Default::default()
        };
        let list = rt
            .block_on(docker.list_containers(Some(opts)))
            .map_err(|e| self.engine_error(e))?;
        let mut out = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            let i = match rt.block_on(docker.inspect_container(&id, None)) {
                Ok(i) => i,
                // Removed since it was listed.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(self.engine_error(e)),
            };
            let Some(destination) = i
                .mounts
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.name.as_deref() == Some(volume))
                .and_then(|m| m.destination)
            else {
                continue;
            };
            // Helpers left by a relic that was killed are not users.
            let labels = i.config.as_ref().and_then(|c| c.labels.clone());
            if labels.is_some_and(|l| l.contains_key(HELPER_LABEL)) {
                continue;
            }
            out.push(VolumeUser {
                name: i
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                id,
                image: i.image.unwrap_or_default(),
                running: i.state.and_then(|s| s.running) == Some(true),
                destination,
                env: i.config.and_then(|c| c.env).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Whether a running container keeps a PostgreSQL data directory in
    /// the volume it mounts: its PGDATA is in the mount, the mount is
    /// under `/var/lib/postgresql` (where the postgres images keep it), or
    /// the volume holds `PG_VERSION` at its root. (POSTGRES_* variables
    /// alone say nothing: applications that connect to a server have them
    /// too.)
    fn is_database(&self, u: &VolumeUser) -> Result<bool> {
        let mount = u.destination.trim_end_matches('/');
        let under = |p: &str| p == mount || p.starts_with(&format!("{mount}/"));
        let pgdata = u.env.iter().find_map(|e| e.strip_prefix("PGDATA="));
        if pgdata.is_some_and(|p| under(p.trim_end_matches('/')))
            || mount == "/var/lib/postgresql"
            || mount.starts_with("/var/lib/postgresql/")
        {
            return Ok(true);
        }
        let opts = ContainerArchiveInfoOptions {
            path: format!("{mount}/PG_VERSION"),
        };
        match self
            .runtime()
            .block_on(self.client().get_container_archive_info(&u.id, Some(opts)))
        {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.container_error(&u.name, e)),
        }
    }

    /// The images a helper for `volume` may be made from: those of the
    /// containers that use it, then every other local image.
    fn helper_images(&self, volume: &str, users: &[VolumeUser]) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for u in users {
            if !u.image.is_empty() && !out.contains(&u.image) {
                out.push(u.image.clone());
            }
        }
        let opts = ListImagesOptions::default();
        let local = self
            .runtime()
            .block_on(self.client().list_images(Some(opts)))
            .map_err(|e| self.engine_error(e))?;
        for i in local {
            if !out.contains(&i.id) {
                out.push(i.id);
            }
        }
        if out.is_empty() {
            return Err(Error::NoHelperImage {
                volume: volume.to_string(),
                host: self.host().to_string(),
            });
        }
        Ok(out)
    }

    /// Creates a helper container mounting `volume` at [`MOUNT`], from the
    /// first of `images` the engine makes one from; with `run`, it is the
    /// command the helper will run (as root, without network).
    fn helper(&self, volume: &str, images: &[String], read_only: bool) -> Result<Helper<'_>> {
        let mut last = None;
        for image in images {
            match self.create_helper(volume, image, read_only, None) {
                Ok(h) => return Ok(h),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NoHelperImage {
            volume: volume.to_string(),
            host: self.host().to_string(),
        }))
    }

    fn create_helper(
        &self,
        volume: &str,
        image: &str,
        read_only: bool,
        run: Option<&[&str]>,
    ) -> Result<Helper<'_>> {
        let run = run.unwrap_or(&["/relic-helper-is-never-started"]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec![run[0].to_string()]),
            cmd: Some(run[1..].iter().map(|s| s.to_string()).collect()),
            user: Some("0:0".into()),
            network_disabled: Some(true),
            labels: Some(HashMap::from([(
                HELPER_LABEL.to_string(),
                volume.to_string(),
            )])),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(MOUNT.into()),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(read_only),
                    volume_options: Some(MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(format!("relic-helper-{:016x}", rand::random::<u64>())),
            ..Default::default()
        };
        let id = self
            .runtime()
            .block_on(self.client().create_container(Some(opts), body))
            .map_err(|e| self.engine_error(e))?
            .id;
        Ok(Helper { engine: self, id })
    }

    /// The engine's archive of the volume a helper mounts, as a reader.
    fn read_volume(&self, helper: &Helper<'_>, volume: &str) -> impl Read {
        let opts = DownloadFromContainerOptions { path: MOUNT.into() };
        let body = self
            .client()
            .download_from_container(&helper.id, Some(opts));
        self.body_reader(
            body,
            format!(
                "reading volume '{volume}' from the Docker engine at {}",
                self.host()
            ),
        )
    }

    /// Whether the volume a helper mounts holds nothing but its root.
    fn volume_is_empty(&self, helper: &Helper<'_>, volume: &str) -> Result<bool> {
        let bad = |e: io::Error| Error::Volume {
            volume: volume.to_string(),
            what: e.to_string(),
        };
        let mut archive = tar::Archive::new(self.read_volume(helper, volume));
        let mut n = 0;
        for e in archive.entries().map_err(bad)? {
            e.map_err(bad)?;
            n += 1;
            if n > 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes everything in `volume` (not its root) with `find -delete`
    /// run as root in a helper, from the first of `images` that has it.
    fn empty_volume(&self, volume: &str, images: &[String]) -> Result<()> {
        let (docker, rt) = (self.client(), self.runtime());
        let mut why = Vec::new();
        let run = ["find", MOUNT, "-mindepth", "1", "-delete"];
        for image in images.iter().take(EMPTY_TRIES) {
            let short = image.strip_prefix("sha256:").unwrap_or(image);
            let short = &short[..12.min(short.len())];
            let h = match self.create_helper(volume, image, false, Some(&run)) {
                Ok(h) => h,
                Err(e) => {
                    why.push(format!("{short}: {e}"));
                    continue;
                }
            };
            if let Err(e) = rt.block_on(docker.start_container(&h.id, None)) {
                let e = e.to_string();
                if e.contains("executable file not found") || e.contains("no such file") {
                    why.push(format!("{short}: no find"));
                } else {
                    why.push(format!("{short}: {}", one_line(&e)));
                }
                continue;
            }
            let opts = WaitContainerOptions {
                condition: "not-running".into(),
            };
            let waited = rt.block_on(async {
                let mut s = docker.wait_container(&h.id, Some(opts));
                s.next().await
            });
            match waited {
                Some(Ok(r)) if r.status_code == 0 => return Ok(()),
                Some(Ok(r)) => why.push(format!("{short}: find exited with {}", r.status_code)),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    why.push(format!("{short}: find exited with {code}"))
                }
                Some(Err(e)) => why.push(format!("{short}: {}", one_line(&e.to_string()))),
                None => why.push(format!("{short}: the engine did not say how find ended")),
            }
        }
        Err(Error::Volume {
            volume: volume.to_string(),
            what: format!(
                "it holds files, containers use it, and no local image could remove them with `find -delete` ({}); nothing was written to it (remove the containers that use it, or build any image that has find)",
                why.join("; ")
            ),
        })
    }

    /// Streams `write`'s tar into the volume a helper mounts (extracted
    /// by the engine with the entries' owners, modes and mtimes).
    fn write_volume(
        &self,
        helper: &Helper<'_>,
        volume: &str,
        write: impl FnOnce(&mut dyn Write) -> repo::Result<()> + Send,
    ) -> Result<()> {
        let opts = UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        self.upload(write, |body| {
            self.client().upload_to_container(
                &helper.id,
                Some(opts),
                bollard::body_try_stream(body),
            )
        })
        .map_err(|e| match e {
            Error::Engine { what, .. } => Error::Volume {
                volume: volume.to_string(),
                what: format!(
                    "writing it through the Docker engine at {}: {what}",
                    self.host()
                ),
            },
            e => e,
        })
    }

    /// Removes `volume`, which no container uses, and creates it again
    /// empty, with the driver, options and labels it had.
    fn recreate_volume(&self, volume: &str) -> Result<()> {
        let v = self.volume(volume)?;
        self.runtime()
            .block_on(self.client().remove_volume(
                volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            ))
            .map_err(|e| self.engine_error(e))?;
        self.create_volume(
            volume,
            &VolumeRecord {
                name: v.name,
                item: String::new(),
                driver: v.driver,
                options: v.options.into_iter().collect(),
                labels: v.labels.into_iter().collect(),
                entries: 0,
                bytes: 0,
            },
        )
    }

    /// Creates `volume` with the driver, options and labels `record` has.
    fn create_volume(&self, volume: &str, record: &VolumeRecord) -> Result<()> {
        let req = VolumeCreateRequest {
            name: Some(volume.to_string()),
            driver: Some(record.driver.clone()).filter(|d| !d.is_empty()),
            driver_opts: Some(record.options.clone().into_iter().collect()),
            labels: Some(record.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.runtime()
            .block_on(self.client().create_volume(req))
            .map(|_| ())
            .map_err(|e| self.engine_error(e))
    }

    /// Stops `containers`, runs `f`, and starts again those it stopped,
    /// also when `f` failed; each step is reported.
    fn with_stopped<T>(
        &self,
        volume: &str,
        containers: &[VolumeUser],
        step: &mut dyn FnMut(VolumeStep),
        f: impl FnOnce(&mut dyn FnMut(VolumeStep)) -> Result<T>,
    ) -> Result<T> {
        let (docker, rt) = (self.client(), self.runtime());
        let mut stopped = Vec::new();
        let mut result = Ok(());
        for c in containers {
            step(VolumeStep::Stopping {
                container: c.name.clone(),
                volume: volume.to_string(),
            });
            match rt.block_on(docker.stop_container(&c.id, None::<StopContainerOptions>)) {
                Ok(()) => stopped.push(c),
                Err(e) => {
                    result = Err(self.container_error(&c.name, e));
                    break;
                }
            }
        }
        let out = result.and_then(|()| f(step));
        let mut restart = None;
        for c in stopped {
            step(VolumeStep::Starting {
                container: c.name.clone(),
            });
            if let Err(e) = self.start_again(c) {
                restart.get_or_insert(e);
            }
        }
        match (out, restart) {
            (out, None) => out,
            (Ok(_), Some(e)) => Err(e),
            (Err(e), Some(s)) => Err(Error::Volume {
                volume: volume.to_string(),
                what: format!("{e}; then starting the containers again failed: {s}"),
            }),
        }
    }

    /// Starts a container stopped before, and waits until it is healthy
    /// when it has a health check.
    fn start_again(&self, c: &VolumeUser) -> Result<()> {
        let (docker, rt) = (self.client(), self.runtime());
        rt.block_on(docker.start_container(&c.id, None))
            .map_err(|e| self.container_error(&c.name, e))?;
        let t0 = Instant::now();
        loop {
            let i = rt
                .block_on(docker.inspect_container(&c.id, None))
                .map_err(|e| self.container_error(&c.name, e))?;
            let state = i.state.unwrap_or_default();
            if state.running != Some(true) {
                return Err(Error::NotRunning {
                    container: c.name.clone(),
                });
            }
            let health = state.health.and_then(|h| h.status);
            if health != Some(HealthStatusEnum::STARTING) || t0.elapsed() > HEALTHY_WAIT {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The path under the volume's root of an entry of the engine's archive
/// (`.relic-volume/a/b/` → `a/b`, the root → empty); None when the entry
/// is not under the root.
fn under_root(name: &[u8]) -> Option<&[u8]> {
    let mut name = name;
    while let Some(n) = name.strip_suffix(b"/") {
        name = n;
    }
    while let Some(n) = name.strip_prefix(b"./") {
        name = n;
    }
    if name == TAR_ROOT {
        return Some(b"");
    }
    name.strip_prefix(TAR_ROOT)?.strip_prefix(b"/")
}

/// The item path of an archive entry: `item` for the root, `item/<path>`
/// below it; an entry outside the root or a path that could escape a
/// restore's directory is an error.
fn item_path(item: &str, name: &[u8]) -> repo::Result<Vec<u8>> {
    let bad = |what: &str| {
        repo::Error::Input(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the volume's archive has an entry '{}' {what}",
                String::from_utf8_lossy(name).escape_debug()
            ),
        ))
    };
    let rel = under_root(name).ok_or_else(|| bad("outside the volume"))?;
    if rel.is_empty() {
        return Ok(item.as_bytes().to_vec());
    }
    crate::files::path_components(rel).map_err(|_| bad("with an unsafe path"))?;
    Ok([item.as_bytes(), b"/", rel].concat())
}

/// The entry's metadata, with a pax header's finer mtime and larger
/// owner ids over the ustar fields.
fn entry_meta<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<(u32, u32, u32, i64)> {
    let h = e.header();
    let mode = h.mode()? & 0o7777;
    let mut uid = h.uid()?;
    let mut gid = h.gid()?;
    let mut mtime_ns = (h.mtime()? as i64).saturating_mul(1_000_000_000);
    if let Some(pax) = e.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let (Ok(k), Ok(v)) = (ext.key(), ext.value()) else {
                continue;
            };
            match k {
                "uid" => uid = v.parse().unwrap_or(uid),
                "gid" => gid = v.parse().unwrap_or(gid),
                "mtime" => mtime_ns = parse_pax_time(v).unwrap_or(mtime_ns),
                _ => {}
            }
        }
    }
    let id = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok((mode, id(uid), id(gid), mtime_ns))
}

/// A pax time (`1577934245.5`, `-1.25`) in nanoseconds.
fn parse_pax_time(v: &str) -> Option<i64> {
    let (neg, v) = match v.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, v),
    };
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    let t = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if neg { -t } else { t })
}

/// Reads the engine's archive of a volume (entries under
/// `.relic-volume`), as it streams, into the write session as items under
/// `item`: the root as the directory `item`, each entry as
/// `item/<path>`, files chunked as they are read. A hard link is stored as
/// a copy of the file it links to (no data is stored twice); devices,
/// fifos and sockets are skipped with a warning (`files.skipped`).
pub(crate) fn store_tar(w: &mut Writer<'_>, tar: impl Read, item: &str) -> repo::Result<()> {
    let input = repo::Error::Input;
    let mut archive = tar::Archive::new(tar);
    // Every file stored so far, for the hard links to it.
    let mut files: HashMap<Vec<u8>, (u64, [u8; 32], ChunkList)> = HashMap::new();
    for entry in archive.entries().map_err(input)? {
        let mut entry = entry.map_err(input)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let path = item_path(item, &entry.path_bytes())?;
        let (mode, uid, gid, mtime_ns) = entry_meta(&mut entry).map_err(input)?;
        let mut it = Item {
            path,
            kind: ItemKind::Dir,
            mode: mode | S_IFDIR,
            uid,
            gid,
            mtime_ns,
            size: 0,
            hash: [0; 32],
            target: None,
            content: ChunkList::default(),
        };
        if kind.is_dir() {
        } else if kind.is_file() {
            let s = w.store_stream(&mut entry)?;
            it.kind = ItemKind::File;
            it.mode = mode | S_IFREG;
            (it.size, it.hash) = (s.size, s.hash);
            files.insert(it.path.clone(), (s.size, s.hash, s.content.clone()));
            it.content = s.content;
        } else if kind.is_symlink() {
            it.kind = ItemKind::Symlink;
            it.mode = mode | S_IFLNK;
            it.target = Some(entry.link_name_bytes().unwrap_or_default().into_owned());
        } else if kind.is_hard_link() {
            let to = entry.link_name_bytes().unwrap_or_default().into_owned();
            let Some((size, hash, content)) = item_path(item, &to)
                .ok()
                .and_then(|p| files.get(&p).cloned())
            else {
                w.skip(&format!(
                    "{}: a hard link to '{}', which the archive holds no file at",
                    it.path_lossy(),
                    String::from_utf8_lossy(&to)
                ));
                continue;
            };
            it.kind = ItemKind::File;
            it.mode = mode | S_IFREG;
            (it.size, it.hash, it.content) = (size, hash, content);
        } else {
            w.skip(&format!(
                "{}: not a file, directory or symlink ({kind:?})",
                it.path_lossy()
            ));
            continue;
        }
        w.add_item(&it)?;
    }
    Ok(())
}

/// Writes the items of `snap` under `item` (the volume's root and what is
/// under it) as a tar whose entries are under `.relic-volume`, each file's
/// content streamed from the repository; returns the entries and bytes
/// written. Names and link targets too long for ustar, and mtimes finer
/// than a second, go in pax headers.
pub(crate) fn write_tar(
    repo: &Repository,
    snap: &Snapshot,
    item: &str,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> repo::Result<(u64, u64)> {
    let output = repo::Error::Output;
    let under = format!("{item}/");
    // Each item's restore flushes its output: let the channel's 1 MiB
    // pieces go whole, not a piece per small file (5000 files of 4 KB took
    // 5 s that way, a round trip to the engine each).
    let mut out = NoFlush(out);
    let mut b = tar::Builder::new(&mut out as &mut dyn Write);
    let (mut entries, mut bytes) = (0u64, 0u64);
    for it in repo.items(snap) {
        let it = it?;
        let rel: &[u8] = if it.path == item.as_bytes() {
            b""
        } else if let Some(rel) = it.path.strip_prefix(under.as_bytes()) {
            rel
        } else {
            continue;
        };
        let mut name = TAR_ROOT.to_vec();
        if !rel.is_empty() {
            name.push(b'/');
            name.extend_from_slice(rel);
        }
        let (h, pax) = header(&it, &name);
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))
                .map_err(output)?;
        }
        if h.entry_type().is_file() {
            let w = b.get_mut();
            w.write_all(h.as_bytes()).map_err(output)?;
            repo.restore_item(&it, w, progress)?;
            let pad = (512 - (it.size % 512) as usize) % 512;
            w.write_all(&[0u8; 512][..pad]).map_err(output)?;
            bytes += it.size;
        } else {
            b.append(&h, io::empty()).map_err(output)?;
        }
        entries += 1;
    }
    b.into_inner().map_err(output)?;
    Ok((entries, bytes))
}

/// A writer whose flush does nothing: its owner flushes the inner one.
struct NoFlush<'w>(&'w mut dyn Write);

impl Write for NoFlush<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The ustar header of an item named `name` in the tar, and the pax
/// records it needs besides.
fn header(it: &Item, name: &[u8]) -> (tar::Header, Vec<(&'static str, Vec<u8>)>) {
    let mut h = tar::Header::new_ustar();
    let mut pax: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let (ty, size) = match it.kind {
        ItemKind::Dir => (tar::EntryType::Directory, 0),
        ItemKind::Symlink => (tar::EntryType::Symlink, 0),
        ItemKind::File | ItemKind::Stream => (tar::EntryType::Regular, it.size),
    };
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(it.mode & 0o7777);
    h.set_uid(u64::from(it.uid));
    h.set_gid(u64::from(it.gid));
    let secs = it.mtime_ns.div_euclid(1_000_000_000);
    let nanos = it.mtime_ns.rem_euclid(1_000_000_000);
    h.set_mtime(secs.max(0) as u64);
    if nanos != 0 || secs < 0 {
        pax.push(("mtime", format!("{secs}.{nanos:09}").into_bytes()));
    }
    let mut shown = name.to_vec();
    if it.kind == ItemKind::Dir {
        shown.push(b'/');
    }
    if h.set_path(OsStr::from_bytes(&shown)).is_err() {
        pax.push(("path", shown));
        h.set_path("relic-long-name").expect("a short name");
    }
    if let Some(target) = &it.target {
        if h.set_link_name(OsStr::from_bytes(target)).is_err() {
            pax.push(("linkpath", target.clone()));
            h.set_link_name("relic-long-link")
                .expect("a short link name");
        }
    }
    h.set_cksum();
    (h, pax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testing;
    use crate::snapshot::Tier;

    /// One entry of a tar, as the engine would extract it.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        name: Vec<u8>,
        kind: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: Option<Vec<u8>>,
        data: Vec<u8>,
    }

    fn entries(tar: &[u8]) -> Vec<Seen> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                let h = e.header().clone();
                let name = e.path_bytes().into_owned();
                let link = e.link_name_bytes().map(|l| l.into_owned());
                e.read_to_end(&mut data).unwrap();
                Seen {
                    name,
                    kind: h.entry_type().as_byte(),
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    mtime: h.mtime().unwrap(),
                    link,
                    data,
                }
            })
            .collect()
    }

    fn hdr(ty: tar::EntryType, mode: u32, uid: u64, mtime: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid + 1);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    }

    /// A volume's archive as the engine gives it: the root, nested
    /// directories, modes 0600 and 0755, a non-root owner, a symlink, a
    /// long odd name, a hard link, a fifo, and a file of 300 KB.
    fn volume_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode| {
            let mut h = hdr(tar::EntryType::Directory, mode, 0, 1_600_000_000, 0);
            b.append_data(&mut h, name, io::empty()).unwrap();
        };
        let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode, uid, data: &[u8]| {
            let mut h = hdr(
                tar::EntryType::Regular,
                mode,
                uid,
                1_600_000_123,
                data.len() as u64,
            );
            b.append_data(&mut h, name, data).unwrap();
        };
        dir(&mut b, ".relic-volume/", 0o755);
        dir(&mut b, ".relic-volume/a/", 0o700);
        dir(&mut b, ".relic-volume/a/b/", 0o755);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        file(&mut b, ".relic-volume/a/b/big.bin", 0o644, 1000, &big);
        file(&mut b, ".relic-volume/a/secret", 0o600, 999, b"pw");
        let long = format!(".relic-volume/a/{} é 日本 'q' \"d\" -x", "n".repeat(120));
        file(&mut b, &long, 0o755, 1000, b"#!/bin/sh\n");
        let mut h = hdr(tar::EntryType::Symlink, 0o777, 0, 1_600_000_000, 0);
        b.append_link(&mut h, ".relic-volume/link", "a/secret")
            .unwrap();
        let mut h = hdr(tar::EntryType::Link, 0o600, 999, 1_600_000_123, 0);
        b.append_link(&mut h, ".relic-volume/hard", ".relic-volume/a/secret")
            .unwrap();
        let mut h = hdr(tar::EntryType::Fifo, 0o644, 0, 1_600_000_000, 0);
        b.append_data(&mut h, ".relic-volume/fifo", io::empty())
            .unwrap();
        b.into_inner().unwrap()
    }

    fn store(repo: &Repository, name: &str, tar: &[u8]) -> repo::Result<(SnapshotId, Snapshot)> {
        let opts = SnapshotOptions {
            name: name.into(),
            tier: Tier::Daily,
            labels: Default::default(),
            meta: Default::default(),
        };
        repo.backup(&opts, &crate::NoProgress, |w| {
            store_tar(w, tar, "volumes/v")
        })
    }

    #[test]
    fn an_archive_goes_to_items_and_back_to_the_same_tar() {
        let (_d, repo) = testing::repo();
        let tar = volume_tar();
        let (_, snap) = store(&repo, "vol", &tar).unwrap();
        assert_eq!(
            snap.meta.get("files.skipped").map(String::as_str),
            Some("1"),
            "the fifo is skipped"
        );
        let items: Vec<Item> = repo.items(&snap).map(|i| i.unwrap()).collect();
        let paths: Vec<String> = items.iter().map(Item::path_lossy).collect();
        assert_eq!(paths[0], "volumes/v");
        assert_eq!(paths[3], "volumes/v/a/b/big.bin");
        let secret = &items[4];
        assert_eq!(
            (secret.kind, secret.mode, secret.uid, secret.gid),
            (ItemKind::File, 0o100600, 999, 1000)
        );
        assert_eq!(secret.mtime_ns, 1_600_000_123_000_000_000);
        let link = items.iter().find(|i| i.path == b"volumes/v/link").unwrap();
        assert_eq!(link.kind, ItemKind::Symlink);
        assert_eq!(link.target.as_deref(), Some(&b"a/secret"[..]));
        let hard = items.iter().find(|i| i.path == b"volumes/v/hard").unwrap();
        assert_eq!((hard.kind, hard.hash), (ItemKind::File, secret.hash));

        let mut back = Vec::new();
        let (n, bytes) =
            write_tar(&repo, &snap, "volumes/v", &mut back, &crate::NoProgress).unwrap();
        assert_eq!(n, items.len() as u64);
        assert_eq!(bytes, 300_000 + 2 + 10 + 2);
        let before = entries(&tar);
        let after = entries(&back);
        // The hard link comes back as a copy of its file; the fifo not at all.
        let expected: Vec<&Seen> = before
            .iter()
            .filter(|s| s.kind != b'6' && s.kind != b'1')
            .collect();
        let got: Vec<&Seen> = after
            .iter()
            .filter(|s| s.name != b".relic-volume/hard")
            .collect();
        assert_eq!(got, expected);
        let hard = after
            .iter()
            .find(|s| s.name == b".relic-volume/hard")
            .unwrap();
        assert_eq!((hard.kind, &hard.data[..]), (b'0', &b"pw"[..]));
    }

    #[test]
    fn finer_mtimes_and_long_links_go_in_pax_records() {
        let mut it = Item {
            path: b"volumes/v/x".to_vec(),
            kind: ItemKind::Symlink,
            mode: 0o120777,
            uid: 5,
            gid: 6,
            mtime_ns: 1_577_934_245_123_456_789,
            size: 0,
            hash: [0; 32],
            target: Some(vec![b'z'; 150]),
            content: ChunkList::default(),
        };
        let (_, pax) = header(&it, b".relic-volume/x");
        assert_eq!(pax[0], ("mtime", b"1577934245.123456789".to_vec()));
        assert_eq!(pax[1], ("linkpath", vec![b'z'; 150]));
        it.mtime_ns = -1_500_000_000;
        let (_, pax) = header(&it, b".relic-volume/x");
        assert_eq!(pax[0], ("mtime", b"-2.500000000".to_vec()));
        assert_eq!(
            parse_pax_time("1577934245.123456789"),
            Some(1_577_934_245_123_456_789)
        );
        assert_eq!(parse_pax_time("-1.5"), Some(-1_500_000_000));
        assert_eq!(parse_pax_time("12"), Some(12_000_000_000));
        assert_eq!(parse_pax_time("1.x"), None);
    }

    #[test]
    fn entries_outside_the_volume_are_refused() {
        let (_d, repo) = testing::repo();
        for name in ["other/x", ".relic-volume/../x", ".relic-volumex/y"] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = hdr(tar::EntryType::Regular, 0o644, 0, 0, 1);
            // The tar crate refuses `..` in a path: write the name raw.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            let err = store(&repo, "bad", &b.into_inner().unwrap()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

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
        assert_eq!(under_root(b".relic-volume/"), Some(&b""[..]));
        assert_eq!(under_root(b"./.relic-volume/a/b/"), Some(&b"a/b"[..]));
    }
}
