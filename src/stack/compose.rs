//! A stack found from its docker compose project: the images its
//! containers run (by the names compose runs them by), its PostgreSQL
//! services and its named volumes, as the engine reports them; and the
//! relic.toml that describes them, for `init-stack` to write and
//! `snapshot --compose` to use as it is.

use super::{Error, Result};
use crate::docker::{normalize_reference, ComposeContainer, Engine};

/// The project name compose gives directory `dir`: its name in lower
/// case, with only letters, digits, `-` and `_` kept.
pub fn project_name(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| {
            n.to_string_lossy()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect()
        })
        .unwrap_or_default()
}

/// What a compose project is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    pub project: String,
    /// Image references its containers run, normalized, sorted, each once.
    pub images: Vec<String>,
    /// Services that run PostgreSQL.
    pub databases: Vec<String>,
    /// Named volumes of its containers, a database's data volume left out
    /// (its dump is the consistent copy), sorted, each once.
    pub volumes: Vec<String>,
}

/// Where PostgreSQL images keep their data.
const PG_DATA: &str = "/var/lib/postgresql";

/// Whether a container runs PostgreSQL: its image is named for it, or it
/// mounts a volume where PostgreSQL images keep their data.
fn is_postgres(c: &ComposeContainer) -> bool {
    let image = c.image.rsplit('/').next().unwrap_or(&c.image);
    image.starts_with("postgres")
        || image.starts_with("postgis")
        || c.volumes.iter().any(|(_, at)| at.starts_with(PG_DATA))
}

/// The image names of `containers` (their `image`, as created, what a
/// compose stack with no `images` list backs up), an id left out, sorted,
/// each once.
pub fn image_names<'a>(containers: impl IntoIterator<Item = &'a ComposeContainer>) -> Vec<String> {
    let mut out: Vec<String> = containers
        .into_iter()
        .filter(|c| !c.image.starts_with("sha256:") && !c.image.is_empty())
        .map(|c| normalize_reference(&c.image))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Reads project `project` from the engine.
pub fn discover(engine: &Engine, project: &str) -> Result<Discovered> {
    let containers = engine.compose_containers(project)?;
    if containers.is_empty() {
        return Err(Error::Refused(format!(
            "the Docker engine at {} has no containers of compose project '{project}' (is it up? `docker compose ls` names the projects)",
            engine.host()
        )));
    }
    let mut d = Discovered {
        project: project.to_string(),
        images: image_names(&containers),
        ..Default::default()
    };
    for c in &containers {
        let db = is_postgres(c);
        if db && !d.databases.contains(&c.service) {
            d.databases.push(c.service.clone());
        }
        for (v, at) in &c.volumes {
            if !(db && at.starts_with(PG_DATA)) {
                d.volumes.push(v.clone());
            }
        }
    }
    d.databases.sort();
    d.volumes.sort();
    d.volumes.dedup();
    Ok(d)
}

/// The names compose runs image `id` by that `tags` (the archive's) do
/// not hold: what a restore tags it with besides.
pub fn compose_tags(containers: &[ComposeContainer], id: &str, tags: &[String]) -> Vec<String> {
    image_names(containers.iter().filter(|c| c.image_id == id))
        .into_iter()
        .filter(|n| !tags.contains(n))
        .collect()
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A relic.toml describing `d`, with comments, for the user to edit.
/// `volumes`: whether to list the named volumes.
pub fn config_text(d: &Discovered) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("  {},\n", quoted(s)))
            .collect::<String>()
    };
    let mut t = format!(
        "# relic.toml for the docker compose project '{p}', as the engine runs it now.\n\
         # Edit it: drop what need not be kept, add [files] for .env and docker-compose.yml.\n\
         name = {name}\n\
         project = {name}\n",
        p = d.project,
        name = quoted(&d.project)
    );
    t.push_str(
        "\n# The images the project's containers run; a restore puts back the names compose uses.\n",
    );
    t.push_str(&format!("images = [\n{}]\n", list(&d.images)));
    if !d.volumes.is_empty() {
        t.push_str("\n# Named volumes (a database's data volume is kept by its dump instead).\n");
        t.push_str(&format!("volumes = [\n{}]\n", list(&d.volumes)));
    }
    for db in &d.databases {
        t.push_str(&format!(
            "\n# PostgreSQL in service '{db}': dumped by the container's own pg_dump, with the\n\
             # container's POSTGRES_USER and POSTGRES_DB unless conninfo says otherwise.\n\
             [[database]]\nname = {n}\nservice = {n}\n",
            n = quoted(db)
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(service: &str, image: &str, id: &str, vols: &[(&str, &str)]) -> ComposeContainer {
        ComposeContainer {
            name: format!("p-{service}-1"),
            service: service.into(),
            image: image.into(),
            image_id: id.into(),
            running: true,
            volumes: vols
                .iter()
                .map(|(v, a)| (v.to_string(), a.to_string()))
                .collect(),
        }
    }

    #[test]
    fn databases_volumes_and_tags_of_a_project() {
        let all = vec![
            c(
                "db",
                "postgres:15",
                "sha256:d",
                &[("p_pgdata", "/var/lib/postgresql/data")],
            ),
            c(
                "backend",
                "p-backend",
                "sha256:b",
                &[("p_uploads", "/app/uploads")],
            ),
            c(
                "worker",
                "p-backend",
                "sha256:b",
                &[("p_uploads", "/app/uploads")],
            ),
            c("redis", "redis:7", "sha256:r", &[("p_redis", "/data")]),
        ];
        assert!(is_postgres(&all[0]) && !is_postgres(&all[1]));
        assert_eq!(
            image_names(&all),
            ["p-backend:latest", "postgres:15", "redis:7"]
        );
        assert_eq!(
            compose_tags(&all, "sha256:b", &["backend:immaculate".into()]),
            ["p-backend:latest"]
        );
        assert!(compose_tags(&all, "sha256:b", &["p-backend:latest".into()]).is_empty());
        let d = Discovered {
            project: "p".into(),
            images: image_names(&all),
            databases: vec!["db".into()],
            volumes: vec!["p_redis".into(), "p_uploads".into()],
        };
        let text = config_text(&d);
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["name"].as_str(), Some("p"));
        assert_eq!(v["database"][0]["service"].as_str(), Some("db"));
        assert_eq!(v["images"].as_array().unwrap().len(), 3);
        assert_eq!(v["volumes"].as_array().unwrap().len(), 2);
    }
}
