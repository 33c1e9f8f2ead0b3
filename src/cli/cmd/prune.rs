//! `relic prune`: free the space of data no snapshot needs.

use crate::cli::args::{Cli, PruneArgs};
use crate::cli::progress::Bar;
use crate::cli::{open::open, render};
use anyhow::{bail, Context, Result};

pub fn run(cli: &Cli, a: &PruneArgs, bar: &Bar) -> Result<()> {
    if !(0.0..=1.0).contains(&a.max_repack_ratio) {
        bail!("--max-repack-ratio must be between 0 and 1");
    }
    let mut repo = open(cli)?;
    repo.wait_for_index(relic::lock::wait(), bar)?;
    let pack_bytes = |repo: &relic::Repository| -> Result<u64> {
        Ok(repo.index().packs()?.iter().map(|(_, i)| i.size).sum())
    };
    let before = pack_bytes(&repo)?;
    let plan = relic::prune::prune(&repo, a.max_repack_ratio, a.dry_run, bar)
        .context("prune failed; run it again to finish")?;
    let after = pack_bytes(&repo)?;
    render::prune(&plan, before, after, a.dry_run, a.json)
}
