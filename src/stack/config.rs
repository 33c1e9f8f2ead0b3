//! `relic.toml`: what a stack is made of (its databases, images, named
//! volumes, files, git checkout and hooks), read and checked, with errors
//! naming the file.

use super::{Error, Hooks, Result};
use crate::plan;
use crate::postgres;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::SnapshotId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `relic.toml`: what a stack is made of.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// The stack's name: the default snapshot name.
    pub name: String,
    /// The repository (`-r` and `RELIC_REPO` take precedence).
    pub repository: Option<PathBuf>,
    /// The docker compose project the stack's containers belong to (its
    /// `service = …` databases are found by the project's labels); the
    /// default is compose's: the relic.toml's directory name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// PostgreSQL databases, each `[[database]]` with a name and where it
    /// is: a conninfo, a container, or a compose service.
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabasePart>,
    /// Docker image references.
    #[serde(default)]
    pub images: Vec<String>,
    /// Docker named volumes, each stored under `volumes/<name>`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// With no `images`, the images are the ones the compose project's
    /// containers run, as they run now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compose: bool,
    #[serde(default)]
    pub files: Option<FilesPart>,
    #[serde(default)]
    pub git: Option<GitPart>,
    #[serde(default)]
    pub hooks: Hooks,
    /// Routine snapshots store the parts that succeeded when one fails
    /// (marked partial); baselines stay whole or nothing.
    #[serde(default)]
    pub allow_partial: bool,
    /// Where `relic run` (and every command given `--config`) reads the
    /// passphrase when no RELIC_PASSWORD* variable is set: a file holding
    /// it, or a command printing it. Never the passphrase itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_command: Option<String>,
    /// The daily job (`relic run`): what forget keeps…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<plan::Retention>,
    /// …where the repository is copied…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<plan::SyncPlan>,
    /// …how much is read back and how often a drill runs…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<plan::CheckPlan>,
    /// …when it runs (`relic schedule install`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<plan::Schedule>,
    /// …and who hears how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<plan::Notify>,
    /// Where this configuration was read from (set by [`StackConfig::load`]).
    #[serde(skip)]
    pub path: PathBuf,
    /// The file's text as read: a stack snapshot stores it (item
    /// [`CONFIG_ITEM`]), so the snapshot restores with no relic.toml on disk.
    #[serde(skip)]
    pub text: String,
}

/// The item of a stack snapshot holding the relic.toml it was taken with.
pub const CONFIG_ITEM: &str = "relic.toml";

/// One target a given relic.toml changes from the one a snapshot stores
/// (`what`: the part; both sides without passwords).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TargetChange {
    pub what: String,
    pub stored: String,
    pub given: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabasePart {
    /// Part name: the item is `db/<name>.sql`.
    pub name: String,
    /// libpq URL or key=value string: from this host, or, with
    /// `container` or `service`, as seen inside the container (where it
    /// may be left out: the container's POSTGRES_USER and POSTGRES_DB).
    #[serde(default)]
    pub conninfo: String,
    /// The running container the server is in (a name or an id): its own
    /// pg_dump and psql are used through the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The compose service the server is in (a container of the stack's
    /// project running that service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesPart {
    /// Directory the paths are relative to (default: the config's directory).
    pub root: Option<PathBuf>,
    /// Files and directories to keep (`.env`, `docker-compose.yml`, `secrets`).
    pub paths: Vec<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitPart {
    /// The checkout whose HEAD commit is recorded (default: the root).
    pub path: Option<PathBuf>,
}

impl StackConfig {
    /// A place relic.toml names: `s3://…` as written, a path relative to
    /// the file's directory.
    pub fn place(&self, p: &Path) -> PathBuf {
        if p.to_string_lossy().starts_with("s3://") {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    /// The daily job's sections, each read as `relic run` will.
    fn check_plan(&self) -> plan::Result<()> {
        if let Some(r) = &self.retention {
            r.policy()?;
        }
        if let Some(c) = &self.check {
            c.slices()?;
            c.drill_every()?;
        }
        if let Some(s) = &self.schedule {
            s.on_calendar()?;
        }
        if let Some(n) = &self.notify {
            n.check()?;
        }
        if self.password_file.is_some() && self.password_command.is_some() {
            return Err(plan::Error::Invalid {
                section: "top level",
                what: "password_file and password_command: give one".into(),
            });
        }
        Ok(())
    }

    /// Reads and checks `relic.toml`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<StackConfig> {
        let text =
            crate::files::user::read_text(path).map_err(|source| Error::ConfigUnreadable {
                path: path.display().to_string(),
                source,
            })?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<StackConfig> {
        let bad = |what: String| Error::Config {
            path: path.display().to_string(),
            what,
        };
        let mut cfg: StackConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        cfg.path = std::path::absolute(path).map_err(|e| bad(e.to_string()))?;
        cfg.text = text.to_string();
        if cfg.name.trim().is_empty() {
            return Err(bad("`name` must not be empty".into()));
        }
        if cfg.name.contains(char::is_control) {
            return Err(bad(
                "`name` must not hold control characters (a newline, a tab)".into(),
            ));
        }
        if cfg.databases.is_empty()
            && cfg.images.is_empty()
            && !cfg.compose
            && cfg.volumes.is_empty()
            && cfg.files.as_ref().is_none_or(|f| f.paths.is_empty())
        {
            return Err(bad(
                "the stack has no parts: add a [[database]], images = [...], volumes = [...] or [files]".into(),
            ));
        }
        cfg.check_plan().map_err(|e| bad(e.to_string()))?;
        let mut volumes = std::collections::HashSet::new();
        for v in &cfg.volumes {
            crate::docker::volume::check_name(v).map_err(|e| bad(format!("volumes: {e}")))?;
            if !volumes.insert(v) {
                return Err(bad(format!("volume '{v}' is listed twice")));
            }
        }
        let mut names = std::collections::HashSet::new();
        for d in &cfg.databases {
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(bad(format!(
                    "database name '{}' must be letters, digits, '-', '_' or '.'",
                    d.name
                )));
            }
            if !names.insert(d.name.clone()) {
                return Err(bad(format!("database '{}' is listed twice", d.name)));
            }
            match (&d.container, &d.service) {
                (Some(_), Some(_)) => {
                    return Err(bad(format!(
                        "database '{}': give `container` or `service`, not both",
                        d.name
                    )))
                }
                (None, None) => {
                    if d.conninfo.trim().is_empty() {
                        return Err(bad(format!(
                            "database '{}' needs a `conninfo`, a `container` or a `service`",
                            d.name
                        )));
                    }
                    postgres::config(Some(&d.conninfo))
                        .map_err(|e| bad(format!("database '{}': {e}", d.name)))?;
                }
                _ if !d.conninfo.trim().is_empty() => {
                    d.conninfo
                        .parse::<tokio_postgres::Config>()
                        .map_err(|e| bad(format!("database '{}': {e}", d.name)))?;
                }
                _ => {}
            }
        }
        cfg.hooks.check().map_err(bad)?;
        if let Some(f) = &cfg.files {
            for p in &f.paths {
                if crate::files::relative_inside(p).is_none() {
                    return Err(bad(format!(
                        "files path '{}' must be relative and stay inside the root",
                        p.display()
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// The relic.toml a stack snapshot was taken with, as it stores it
    /// (item [`CONFIG_ITEM`]), read as if from the path it was recorded
    /// at; None for a snapshot taken before relic stored it.
    pub fn stored(repo: &Repository, id: &SnapshotId, snap: &Snapshot) -> Result<Option<Self>> {
        let m = super::manifest(id, snap)?;
        let Some(item) = repo
            .items(snap)
            .find(|i| i.as_ref().is_ok_and(|i| i.path == CONFIG_ITEM.as_bytes()))
            .transpose()?
        else {
            return Ok(None);
        };
        let mut text = Vec::new();
        repo.restore_item(&item, &mut text, &crate::progress::NoProgress)?;
        let text = String::from_utf8(text).map_err(|_| Error::Config {
            path: format!("{} in snapshot {}", m.config, id.short()),
            what: "not UTF-8".into(),
        })?;
        Self::parse(&text, Path::new(&m.config)).map(Some)
    }

    /// The configuration a restore or drill of stack snapshot `id` uses:
    /// the one it stores, with the targets of `given` (a relic.toml on
    /// disk) when there is one, and what `given` changes; `given` alone for
    /// a snapshot that stores none ([`Error::NoConfig`] without it). The
    /// stored hooks of an unencrypted repository are dropped (a change).
    pub fn for_snapshot(
        repo: &Repository,
        id: &SnapshotId,
        snap: &Snapshot,
        given: Option<StackConfig>,
    ) -> Result<(StackConfig, Vec<TargetChange>)> {
        match (Self::stored(repo, id, snap)?, given) {
            (Some(stored), Some(given)) => {
                let (mut cfg, mut changes) = stored.with_targets_from(&given);
                if given.name != stored.name {
                    changes.insert(
                        0,
                        TargetChange {
                            what: "stack".into(),
                            stored: stored.name.clone(),
                            given: given.name.clone(),
                        },
                    );
                    cfg.name = given.name;
                }
                Ok((cfg, changes))
            }
            (Some(mut stored), None) => {
                // Hooks are commands: from an unencrypted repository, whose
                // snapshots anyone able to write to it could have made,
                // they are not run unless a relic.toml on disk names them.
                let mut changes = Vec::new();
                if repo.config().encryption == "none" && !stored.hooks.is_empty() {
                    changes.push(TargetChange {
                        what: "hooks".into(),
                        stored: stored.hooks.summary(),
                        given: String::new(),
                    });
                    stored.hooks = Hooks::default();
                }
                Ok((stored, changes))
            }
            (None, Some(given)) => Ok((given, Vec::new())),
            (None, None) => Err(Error::NoConfig(id.short())),
        }
    }

    /// The config file's directory.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    /// The directory stack files are relative to.
    pub fn files_root(&self) -> PathBuf {
        match self.files.as_ref().and_then(|f| f.root.as_ref()) {
            Some(r) => self.resolve(r),
            None => self.dir().to_path_buf(),
        }
    }

    pub(super) fn database(&self, name: &str) -> Option<&DatabasePart> {
        self.databases.iter().find(|d| d.name == name)
    }

    /// The compose project: `project`, else compose's default, the
    /// relic.toml's directory name in lower case with only letters,
    /// digits, `-` and `_` kept.
    pub fn project(&self) -> String {
        match &self.project {
            Some(p) => p.clone(),
            None => super::compose::project_name(self.dir()),
        }
    }

    /// Where database part `d` is: its `service` is looked up among the
    /// running containers of the compose project.
    pub fn target(&self, d: &DatabasePart) -> Result<postgres::Target> {
        let inside = |container: String| postgres::Target::Container {
            container,
            conninfo: d.conninfo.clone(),
        };
        Ok(match (&d.container, &d.service) {
            (Some(c), _) => inside(c.clone()),
            (None, Some(s)) => {
                let engine = crate::docker::Engine::connect()?;
                inside(engine.compose_container(&self.project(), s)?)
            }
            (None, None) => postgres::Target::Host(d.conninfo.clone()),
        })
    }

    /// Where database part `d` is, for people, without asking the engine.
    pub fn target_display(d: &DatabasePart) -> String {
        match (&d.container, &d.service) {
            (Some(c), _) => postgres::Target::Container {
                container: c.clone(),
                conninfo: d.conninfo.clone(),
            }
            .display(),
            (None, Some(s)) => format!("service '{s}' of the compose project"),
            (None, None) => postgres::display_target(&d.conninfo),
        }
    }

    /// This (stored) configuration with the targets `given` names instead:
    /// each database's conninfo (by part name), the files' root, the
    /// post-restore hooks and the directory they run in. The parts stay
    /// the stored ones: `given` moves them, it does not add or drop any.
    /// Returns what changed, so it can be shown before anything does.
    pub fn with_targets_from(&self, given: &StackConfig) -> (StackConfig, Vec<TargetChange>) {
        let mut out = self.clone();
        let mut changes = Vec::new();
        let mut change = |what: String, stored: String, given: String| {
            if stored != given {
                changes.push(TargetChange {
                    what,
                    stored,
                    given,
                });
            }
        };
        for d in &mut out.databases {
            if let Some(g) = given.database(&d.name) {
                change(
                    format!("database '{}'", d.name),
                    Self::target_display(d),
                    Self::target_display(g),
                );
                d.conninfo = g.conninfo.clone();
                d.container = g.container.clone();
                d.service = g.service.clone();
            }
        }
        let stored_root = self.files_root();
        let given_root = given.files_root();
        if self.files.is_some() {
            change(
                "files root".into(),
                stored_root.display().to_string(),
                given_root.display().to_string(),
            );
        }
        change("hooks".into(), self.hooks.summary(), given.hooks.summary());
        out.hooks = given.hooks.clone();
        // The files' root is absolute from here on: the config's
        // directory moves to the given one's.
        if let Some(f) = &mut out.files {
            f.root = Some(given_root);
        }
        out.project = Some(given.project());
        out.path = given.path.clone();
        // What a safety snapshot of these targets stores: the merged
        // configuration, so restoring it goes back to where it was taken.
        out.text = toml::to_string(&out).expect("a stack config serializes");
        (out, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = r#"
name = "shop"
images = ["shop/app:1"]

[[database]]
name = "main"
conninfo = "host=db1 dbname=shop user=app password=secret"

[[database]]
name = "jobs"
conninfo = "dbname=jobs"

[files]
paths = [".env"]

[hooks]
post_restore = ["redis-cli flushall"]
"#;

    /// A given relic.toml moves targets, never parts: its database of the
    /// same name, its root and hooks replace the stored ones, what it
    /// lacks stays stored, and the merged text parses to the same.
    #[test]
    fn given_targets_replace_stored_ones_and_the_merge_round_trips() {
        let stored = StackConfig::parse(STORED, Path::new("/old/relic.toml")).unwrap();
        let given = StackConfig::parse(
            "name = \"shop\"\n[[database]]\nname = \"main\"\nconninfo = \"host=db2 dbname=shop_restored password=other\"\n[[database]]\nname = \"extra\"\nconninfo = \"dbname=x\"\n[files]\nroot = \"srv\"\npaths = []\n",
            Path::new("/new/relic.toml"),
        )
        .unwrap();
        let (merged, changes) = stored.with_targets_from(&given);
        let names: Vec<&str> = merged.databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["main", "jobs"], "parts stay the stored ones");
        assert!(merged.databases[0].conninfo.contains("db2"));
        assert_eq!(merged.databases[1].conninfo, "dbname=jobs");
        assert_eq!(merged.files_root(), Path::new("/new/srv"));
        assert_eq!(merged.images, ["shop/app:1"]);
        assert!(merged.hooks.post_restore.is_empty());
        let whats: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(whats, ["database 'main'", "files root", "hooks"]);
        assert!(
            changes
                .iter()
                .all(|c| !c.stored.contains("secret") && !c.given.contains("other")),
            "no password is shown: {changes:?}"
        );
        let again = StackConfig::parse(&merged.text, &merged.path).unwrap();
        assert_eq!(again.databases[0].conninfo, merged.databases[0].conninfo);
        assert_eq!(again.files_root(), merged.files_root());
        assert_eq!(again.images, merged.images);
    }

    #[test]
    fn volumes_are_a_part_and_their_names_are_checked() {
        let p = Path::new("/s/relic.toml");
        let cfg =
            StackConfig::parse("name = \"s\"\nvolumes = [\"pg_data\", \"uploads\"]\n", p).unwrap();
        assert_eq!(cfg.volumes, ["pg_data", "uploads"]);
        for (text, says) in [
            ("volumes = [\"a/b\"]", "not a volume name"),
            ("volumes = [\"up\", \"up\"]", "listed twice"),
        ] {
            let err = StackConfig::parse(&format!("name = \"s\"\n{text}\n"), p).unwrap_err();
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn an_unchanged_config_changes_nothing() {
        let stored = StackConfig::parse(STORED, Path::new("/s/relic.toml")).unwrap();
        let (_, changes) = stored.with_targets_from(&stored);
        assert!(changes.is_empty(), "{changes:?}");
    }
}
