//! `relic unlock`: remove the repository's locks, all or the stale ones.

use crate::cli::args::Cli;
use crate::cli::open::repo_path;
use anyhow::{bail, Context, Result};

pub fn run(cli: &Cli, stale: bool) -> Result<()> {
    let path = repo_path(cli)?;
    let backend: std::sync::Arc<dyn relic::store::Store> =
        match crate::cli::open::bucket(&path.to_string_lossy())? {
            Some(b) => b,
            None => std::sync::Arc::new(relic::store::Local::new(&path)),
        };
    if backend.list(relic::store::Kind::Config)?.is_empty() {
        bail!("no relic repository at {}", path.display());
    }
    let (removed, left) = relic::lock::unlock(backend.as_ref(), stale)
        .with_context(|| format!("removing the locks of {}", path.display()))?;
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    for l in &removed {
        println!("removed lock {}", l.describe(now));
    }
    for l in &left {
        println!("kept live lock {}", l.describe(now));
    }
    if removed.is_empty() && left.is_empty() {
        println!("the repository holds no locks");
    }
    Ok(())
}
