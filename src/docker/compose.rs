//! A docker compose project as the engine knows it: the containers that
//! carry its labels (`com.docker.compose.project`, `…service`), their
//! images as the compose file names them, and their named volumes. No
//! compose file is read: what runs is what the engine says.

use super::engine::Engine;
use super::{Error, Result};
use bollard::query_parameters::ListContainersOptionsBuilder;
use std::collections::HashMap;

/// The label compose puts on every container of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label naming a container's service.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// One container of a compose project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeContainer {
    /// Its name (without the leading `/`).
    pub name: String,
    pub service: String,
    /// The image as the container was created from it (the compose file's
    /// `image:`, or the name compose gave a built image).
    pub image: String,
    /// The image's id.
    pub image_id: String,
    pub running: bool,
    /// The named volumes it mounts: (volume, path inside).
    pub volumes: Vec<(String, String)>,
}

impl Engine {
    /// The containers of compose project `project`, running or not,
    /// sorted by service and name.
    pub fn compose_containers(&self, project: &str) -> Result<Vec<ComposeContainer>> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![format!("{PROJECT_LABEL}={project}")]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .runtime()
            .block_on(self.client().list_containers(Some(opts)))
            .map_err(|e| Error::Engine {
                host: self.host().to_string(),
                what: e.to_string(),
            })?;
        let mut out: Vec<ComposeContainer> = list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                ComposeContainer {
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
                    volumes: c
                        .mounts
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|m| m.typ.as_deref() == Some("volume"))
                        .filter_map(|m| Some((m.name?, m.destination.unwrap_or_default())))
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
        Ok(out)
    }

    /// The running container of service `service` in compose project
    /// `project` (the first, when it is scaled).
    pub fn compose_container(&self, project: &str, service: &str) -> Result<String> {
        let all = self.compose_containers(project)?;
        let of_service: Vec<&ComposeContainer> =
            all.iter().filter(|c| c.service == service).collect();
        if let Some(c) = of_service.iter().find(|c| c.running) {
            return Ok(c.name.clone());
        }
        match of_service.first() {
            Some(c) => Err(Error::NotRunning {
                container: c.name.clone(),
            }),
            None => Err(Error::NoComposeService {
                project: project.to_string(),
                service: service.to_string(),
                services: {
                    let mut s: Vec<String> = all.iter().map(|c| c.service.clone()).collect();
                    s.dedup();
                    s
                },
            }),
        }
    }
}
