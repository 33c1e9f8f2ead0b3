//! `relic.toml`: what a stack is made of (its databases, images, files,
//! git checkout and hooks), read and checked, with errors naming the file.

use super::{Error, Result};
use crate::postgres;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `relic.toml`: what a stack is made of.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// The stack's name: the default snapshot name.
    pub name: String,
    /// The repository (`-r` and `RELIC_REPO` take precedence).
    pub repository: Option<PathBuf>,
    /// PostgreSQL databases, each `[[database]]` with a name and a conninfo.
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabasePart>,
    /// Docker image references.
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub files: Option<FilesPart>,
    #[serde(default)]
    pub git: Option<GitPart>,
    #[serde(default)]
    pub hooks: Hooks,
    /// Where this configuration was read from (set by [`StackConfig::load`]).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabasePart {
    /// Part name: the item is `db/<name>.sql`.
    pub name: String,
    /// libpq URL or key=value string.
    pub conninfo: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesPart {
    /// Directory the paths are relative to (default: the config's directory).
    pub root: Option<PathBuf>,
    /// Files and directories to keep (`.env`, `docker-compose.yml`, `secrets`).
    pub paths: Vec<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitPart {
    /// The checkout whose HEAD commit is recorded (default: the root).
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Shell commands run after a restore, in the config's directory (for
    /// example a Redis flush).
    #[serde(default)]
    pub post_restore: Vec<String>,
}

impl StackConfig {
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
        if cfg.name.trim().is_empty() {
            return Err(bad("`name` must not be empty".into()));
        }
        if cfg.databases.is_empty()
            && cfg.images.is_empty()
            && cfg.files.as_ref().is_none_or(|f| f.paths.is_empty())
        {
            return Err(bad(
                "the stack has no parts: add a [[database]], images = [...] or [files]".into(),
            ));
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
            postgres::config(Some(&d.conninfo))
                .map_err(|e| bad(format!("database '{}': {e}", d.name)))?;
        }
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
}
