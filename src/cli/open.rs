//! How the CLI finds and opens a repository: `-r`, RELIC_REPO, or the
//! `repository` a relic.toml names; the passphrase when it is encrypted.

use super::args::Cli;
use super::secret;
use anyhow::{bail, Context, Result};
use relic::stack::StackConfig;
use relic::Repository;
use std::path::{Path, PathBuf};

/// `-r`, RELIC_REPO, or the `repository` of ./relic.toml.
pub fn repo_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(r) = &cli.repo {
        return Ok(r.clone());
    }
    if let Some(cfg) = load_config(None, false)? {
        if let Some(r) = &cfg.repository {
            if r.to_string_lossy().starts_with("s3://") {
                return Ok(PathBuf::from(r));
            }
            return Ok(cfg.dir().join(r));
        }
    }
    bail!("no repository given: use -r PATH, set RELIC_REPO, or name it in ./relic.toml")
}

pub fn open(cli: &Cli) -> Result<Repository> {
    open_path(&repo_path(cli)?)
}

pub fn open_path(path: &Path) -> Result<Repository> {
    let path = path.to_path_buf();
    let context = || format!("cannot open repository {}", path.display());
    let config = Repository::read_config(&path).with_context(context)?;
    let pass = if config.encryption == "none" {
        None
    } else {
        Some(secret::passphrase()?)
    };
    Repository::open(&path, pass.as_ref().map(|p| p.as_bytes())).with_context(context)
}

/// Reads relic.toml: `path` when given (`required`), else ./relic.toml if
/// there is one.
pub fn load_config(path: Option<&Path>, required: bool) -> Result<Option<StackConfig>> {
    let p = path.unwrap_or(Path::new("relic.toml"));
    if !required && !p.exists() {
        return Ok(None);
    }
    Ok(Some(
        StackConfig::load(p).map_err(crate::cli::render::stack_hint)?,
    ))
}

/// Opens `-r` / RELIC_REPO, or the repository relic.toml names.
pub fn open_stack(cli: &Cli, cfg: Option<&StackConfig>) -> Result<Repository> {
    match (
        &cli.repo,
        cfg.and_then(|c| c.repository.as_ref().map(|r| c.dir().join(r))),
    ) {
        (None, Some(path)) => open_path(&path),
        _ => open(cli),
    }
}
