//! How the CLI finds and opens a repository: `-r`, RELIC_REPO, or the
//! `repository` a relic.toml names; the passphrase when it is encrypted.

use super::args::Cli;
use super::secret;
use anyhow::{Context, Result};
use relic::stack::StackConfig;
use relic::store::Store;
use relic::Repository;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `-r`, RELIC_REPO, or the `repository` of ./relic.toml.
pub fn repo_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(r) = &cli.repo {
        return Ok(r.clone());
    }
    if let Some(cfg) = load_config(None, false)? {
        if let Some(r) = &cfg.repository {
            return Ok(cfg.place(r));
        }
    }
    Err(super::exit::Usage(
        "no repository given: use -r PATH, set RELIC_REPO, or name it in ./relic.toml".into(),
    )
    .into())
}

pub fn open(cli: &Cli) -> Result<Repository> {
    open_path(&repo_path(cli)?)
}

/// The bucket of an `s3://bucket/prefix` repository.
pub fn bucket(spec: &str) -> Result<Option<Arc<dyn Store>>> {
    let Some(rest) = spec.strip_prefix("s3://") else {
        return Ok(None);
    };
    let s3 = relic::store::S3::new(rest).with_context(|| format!("cannot use {spec}"))?;
    Ok(Some(Arc::new(s3)))
}

/// An older relic kept a complete copy of an S3 repository under
/// `$XDG_CACHE_HOME/relic/remote/`; it is no longer used.
pub fn remove_legacy_mirror(spec: &str) {
    let tag = blake3::hash(spec.trim_end_matches('/').as_bytes()).to_hex();
    let dir = relic::repo::cache_root().join("remote").join(&tag[..16]);
    if dir.join("config").exists() {
        match relic::store::Local::new(&dir).destroy() {
            Ok(()) => eprintln!(
                "note: removed {}, the full local mirror an older relic kept of {spec}; relic now reads the bucket directly",
                dir.display()
            ),
            Err(e) => eprintln!(
                "note: {} (an older relic's full mirror of {spec}) is no longer used and can be deleted: {e}",
                dir.display()
            ),
        }
    }
}

/// Opens the repository to list its snapshots: a bucket's packs are not
/// read (see `Repository::open_remote_catalog`).
pub fn open_catalog(cli: &Cli) -> Result<Repository> {
    open_as(&repo_path(cli)?, true)
}

pub fn open_path(path: &Path) -> Result<Repository> {
    open_as(path, false)
}

fn open_as(path: &Path, catalog_only: bool) -> Result<Repository> {
    let path = path.to_path_buf();
    let context = || format!("cannot open repository {}", path.display());
    let (encrypted, origin) = match bucket(&path.to_string_lossy())? {
        Some(origin) => {
            let config = Repository::read_remote_config(origin.as_ref()).with_context(context)?;
            (config.encryption != "none", Some(origin))
        }
        None => {
            let config = Repository::read_config(&path).with_context(context)?;
            (config.encryption != "none", None)
        }
    };
    let pass = encrypted.then(secret::passphrase).transpose()?;
    let pass = pass.as_ref().map(|p| p.as_bytes());
    match origin {
        Some(o) if catalog_only => Repository::open_remote_catalog(o, pass),
        Some(o) => Repository::open_remote(o, pass),
        None => Repository::open(&path, pass),
    }
    .with_context(context)
}

/// Reads relic.toml: `path` when given (`required`), else ./relic.toml if
/// there is one.
pub fn load_config(path: Option<&Path>, required: bool) -> Result<Option<StackConfig>> {
    let p = path.unwrap_or(Path::new("relic.toml"));
    if !required && !p.exists() {
        return Ok(None);
    }
    let cfg = StackConfig::load(p).map_err(crate::cli::render::stack_hint)?;
    secret::use_config(&cfg);
    Ok(Some(cfg))
}

/// `-r` / RELIC_REPO, or the repository `cfg` names (relative to its
/// directory), or ./relic.toml's.
pub fn stack_repo_path(cli: &Cli, cfg: &StackConfig) -> Result<PathBuf> {
    match (&cli.repo, &cfg.repository) {
        (None, Some(r)) => Ok(cfg.place(r)),
        _ => repo_path(cli),
    }
}

/// Opens `-r` / RELIC_REPO, or the repository relic.toml names.
pub fn open_stack(cli: &Cli, cfg: Option<&StackConfig>) -> Result<Repository> {
    match cfg {
        Some(c) => open_path(&stack_repo_path(cli, c)?),
        None => open(cli),
    }
}
