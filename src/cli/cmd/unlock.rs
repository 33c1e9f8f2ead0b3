//! `relic unlock`: remove the repository's locks, all or the stale ones.

use crate::cli::args::Cli;
use crate::cli::open::repo_path;
use anyhow::{bail, Context, Result};

pub fn run(cli: &Cli, stale: bool) -> Result<()> {
    let path = repo_path(cli)?;
    if !path.join("config").exists() {
        bail!("no relic repository at {}", path.display());
    }
    let backend = relic::store::Local::new(&path);
    let (removed, left) = relic::lock::unlock(&backend, stale)
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
