//! `relic check` (verify the repository) and `relic stats` (its sizes).

use crate::cli::args::{CheckArgs, Cli};
use crate::cli::progress::Bar;
use crate::cli::Outcome;
use crate::cli::{open::open, render};
use anyhow::Result;
use relic::check::ReadData;

pub fn check(cli: &Cli, a: &CheckArgs, bar: &Bar) -> Result<Outcome> {
    let repo = open(cli)?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let read = match (a.read_data, a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(r)) => r,
        (false, None) => ReadData::None,
    };
    let kind = match read {
        ReadData::None => "check",
        ReadData::All => "check --read-data",
        ReadData::Slice { .. } => "check --read-data-subset",
    };
    let report = match relic::check::check(&repo, read, bar) {
        Ok(r) => r,
        Err(e) => {
            super::record(&repo, kind, None, Err(format!("{e}")));
            return Err(e.into());
        }
    };
    if !repo.is_read_only() {
        match read {
            // Every byte read: the damage found is all there is.
            ReadData::All => relic::check::record_damage(&repo, &report.damaged_snapshots)?,
            // A slice adds what it found to what was known.
            ReadData::Slice { .. } if !report.damaged_snapshots.is_empty() => {
                let mut known = relic::check::damaged_snapshots(&repo);
                known.extend(report.damaged_snapshots.clone());
                relic::check::record_damage(&repo, &known)?;
            }
            _ => {}
        }
    }
    let what = match report.slice {
        Some((i, of)) => format!("{} packs, slice {} of {of} read", report.packs, i + 1),
        None => format!("{} packs, {} snapshots", report.packs, report.snapshots),
    };
    let result = if report.is_ok() {
        Ok(what)
    } else {
        Err(format!("{what}: {} problem(s)", report.problems.len()))
    };
    super::record(&repo, kind, None, result);
    if a.json {
        render::json(&report)?;
    } else {
        render::check(&report, read != ReadData::None)?;
    }
    if !report.is_ok() {
        if !a.json {
            eprintln!(
                "error: the repository has {} problem(s)",
                report.problems.len()
            );
        }
        return Ok(Outcome::Problems);
    }
    if !a.json {
        report!("no errors found");
    }
    Ok(Outcome::Done)
}

pub fn stats(cli: &Cli, snapshot: Option<&str>, json: bool) -> Result<()> {
    let repo = open(cli)?;
    if let Some(which) = snapshot {
        let snaps = repo.snapshots()?;
        let named: Vec<_> = snaps.iter().filter(|(_, s)| s.name == which).collect();
        if !named.is_empty() {
            return render::name_stats(which, &named, json);
        }
        let (id, snap) = repo.find_snapshot(which)?;
        let n = relic::check::restore_needs(&repo, &id, &snap)?;
        return render::snapshot_stats(&id, &snap, &n, json);
    }
    let s = relic::check::stats(&repo)?;
    if json {
        render::json(&s)
    } else {
        render::stats(&s)?;
        Ok(())
    }
}
