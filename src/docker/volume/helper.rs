//! The engine's side of volumes: who uses one, whether it holds a
//! database, helper containers that mount it, reading and writing it
//! through the archive endpoints, emptying it, stopping and starting its
//! containers.

use super::super::engine::Engine;
use super::super::{Error, Result};
use super::{VolumeRecord, VolumeStep, VolumeUser, EMPTY_TRIES, HEALTHY_WAIT, HELPER_LABEL, MOUNT};
use crate::repo;
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
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// A helper container: created to reach a volume through the engine's
/// archive endpoints, removed when dropped.
pub(super) struct Helper<'e> {
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
    pub(super) fn is_database(&self, u: &VolumeUser) -> Result<bool> {
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
    pub(super) fn helper_images(&self, volume: &str, users: &[VolumeUser]) -> Result<Vec<String>> {
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
    pub(super) fn helper(
        &self,
        volume: &str,
        images: &[String],
        read_only: bool,
    ) -> Result<Helper<'_>> {
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
    pub(super) fn read_volume(&self, helper: &Helper<'_>, volume: &str) -> impl Read {
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
    pub(super) fn volume_is_empty(&self, helper: &Helper<'_>, volume: &str) -> Result<bool> {
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
    pub(super) fn empty_volume(&self, volume: &str, images: &[String]) -> Result<()> {
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
    pub(super) fn write_volume(
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
    pub(super) fn recreate_volume(&self, volume: &str) -> Result<()> {
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
    pub(super) fn create_volume(&self, volume: &str, record: &VolumeRecord) -> Result<()> {
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
    pub(super) fn with_stopped<T>(
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
