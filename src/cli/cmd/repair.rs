//! `relic repair` and `relic index rebuild`: rebuild the index from the
//! packs and report what is damaged; neither deletes anything.

use crate::cli::args::Cli;
use crate::cli::progress::Bar;
use crate::cli::Outcome;
use crate::cli::{open::open, render};
use anyhow::{Context, Result};
use relic::progress::Progress;

pub fn repair(cli: &Cli, json: bool, bar: &Bar) -> Result<Outcome> {
    let mut repo = open(cli)?;
    repo.wait_for_index(relic::lock::wait(), bar)?;
    let _lock = repo.lock_exclusive(bar)?;
    let r = relic::check::repair(&repo, bar).context("repairing the repository")?;
    bar.finish();
    if json {
        render::json(&r)?;
    } else {
        render::repair(&r)?;
    }
    if !r.check.is_ok() {
        eprintln!("error: the repository is damaged: damaged snapshots cannot be fully restored (their other items can, with restore --to); the intact ones restore as before");
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Done)
}

pub fn rebuild_index(cli: &Cli, bar: &Bar) -> Result<Outcome> {
    let mut repo = open(cli)?;
    repo.wait_for_index(relic::lock::wait(), bar)?;
    let _lock = repo.lock_exclusive(bar)?;
    let r = repo.rebuild_index(bar).context("rebuilding the index")?;
    bar.finish();
    render::rebuild(&r)?;
    if r.lost_blobs > 0 {
        eprintln!(
            "error: {} blob(s) of damaged packs could not be salvaged; run `relic repair` to see which snapshots they belong to",
            r.lost_blobs
        );
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Done)
}
