//! `relic unlock`: remove the repository's locks, all or the stale ones.

use crate::cli::args::Cli;
use crate::cli::open::repo_path;
use anyhow::{Context, Result};

pub fn run(cli: &Cli, stale: bool, dry_run: bool, json: bool) -> Result<()> {
    let path = repo_path(cli)?;
    let backend: std::sync::Arc<dyn relic::store::Store> =
        match crate::cli::open::bucket(&path.to_string_lossy())? {
            Some(b) => b,
            None => std::sync::Arc::new(relic::store::Local::new(&path)),
        };
    if backend.list(relic::store::Kind::Config)?.is_empty() {
        return Err(relic::repo::Error::NotARepository(path.display().to_string()).into());
    }
    let (removed, left) = relic::lock::unlock(backend.as_ref(), stale, dry_run)
        .with_context(|| format!("removing the locks of {}", path.display()))?;
    if json {
        return crate::cli::render::json(
            &serde_json::json!({"removed": removed, "kept": left, "dry_run": dry_run}),
        );
    }
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    for l in &removed {
        if dry_run {
            out!("would remove lock {}", l.describe(now));
        } else {
            report!("removed lock {}", l.describe(now));
        }
    }
    for l in &left {
        report!("kept live lock {}", l.describe(now));
    }
    if removed.is_empty() && left.is_empty() {
        report!("the repository holds no locks");
    }
    Ok(())
}
