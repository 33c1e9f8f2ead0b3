//! `relic init`: create a repository, encrypted unless told otherwise.

use crate::cli::args::{Cli, InitArgs};
use crate::cli::{open, secret};
use anyhow::{bail, Context, Result};
use relic::crypto::KdfParams;
use relic::repo::InitOptions;
use relic::Repository;

pub fn run(cli: &Cli, a: &InitArgs) -> Result<()> {
    let path = open::repo_path(cli)?;
    let bucket = open::bucket(&path.to_string_lossy())?;
    let exists = match &bucket {
        Some(b) => !b.list(relic::store::Kind::Config)?.is_empty(),
        None => path.join("config").exists(),
    };
    if exists {
        let what = if bucket.is_some() { "" } else { "exists and " };
        bail!("{} already {what}holds a relic repository", path.display());
    }
    let passphrase = if a.no_encryption {
        None
    } else {
        Some(secret::new_passphrase(true)?.as_bytes().to_vec())
    };
    let opts = InitOptions {
        chunker: relic::chunker::ChunkerParams::with_avg(a.chunk_avg),
        compression_level: a.compression,
        delta_max_depth: a.delta_depth,
        passphrase,
        kdf: KdfParams {
            memory_kib: a.kdf_memory * 1024,
            ..KdfParams::default()
        },
    };
    let repo = match bucket {
        Some(b) => Repository::init_remote(b, &opts),
        None => Repository::init(&path, &opts),
    }
    .with_context(|| format!("cannot create repository {}", path.display()))?;
    report!(
        "created {} repository {} at {}",
        if repo.keys().cipher().is_some() {
            "encrypted"
        } else {
            "unencrypted"
        },
        repo.config().id,
        path.display()
    );
    Ok(())
}
