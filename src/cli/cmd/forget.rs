//! `relic forget`: the snapshots named, or those a retention policy does
//! not keep.

use crate::cli::args::{Cli, ForgetArgs};
use crate::cli::{open::open, render};
use anyhow::{bail, Context, Result};
use relic::retention::{apply, Policy};
use relic::snapshot::Tier;

/// The number of snapshots forgotten (or, in a dry run, that would be).
pub fn run(cli: &Cli, args: &ForgetArgs) -> Result<usize> {
    let repo = open(cli)?;
    let snaps = repo.snapshots()?;
    if !args.snapshots.is_empty() {
        let mut ids = Vec::new();
        for spec in &args.snapshots {
            let (id, s) = relic::snapshot::select(&snaps, spec)?;
            ids.push((*id, s));
        }
        // Each line names what a spec resolved to: an id, a name, `~N`.
        if args.dry_run {
            for (id, s) in &ids {
                out!("would forget {}", render::snapshot_line(id, s));
            }
            return Ok(ids.len());
        }
        repo.forget(&ids.iter().map(|(id, _)| *id).collect::<Vec<_>>())?;
        for (id, s) in &ids {
            report!("forgot {}", render::snapshot_line(id, s));
        }
        report!(
            "forgot {} snapshot(s); their chunks stay stored until they are pruned",
            ids.len()
        );
        return Ok(ids.len());
    }
    let policy = Policy {
        keep_last: args.keep_last,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_within: args
            .keep_within
            .as_deref()
            .map(|w| {
                w.parse::<jiff::Span>().with_context(|| {
                    format!("--keep-within '{w}' is not a span like 7d, 2w or 1mo")
                })
            })
            .transpose()?,
    };
    if policy.is_empty() {
        bail!("no retention rule given (--keep-last, --keep-daily, --keep-weekly, --keep-monthly, --keep-within); nothing forgotten");
    }
    let tier: Option<Tier> = args.tier.as_deref().map(str::parse).transpose()?;
    let chosen: Vec<_> = snaps
        .into_iter()
        .filter(|(_, s)| {
            tier.is_none_or(|t| s.tier == t) && args.name.as_ref().is_none_or(|n| &s.name == n)
        })
        .collect();
    let now = match &args.now {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("--now '{t}' is not an RFC 3339 time"))?,
        None => jiff::Timestamp::now(),
    };
    let decisions = apply(&chosen, &policy, now, &jiff::tz::TimeZone::system());
    render::decisions(&decisions, &chosen, args.json, args.dry_run)?;
    let gone: Vec<_> = decisions.iter().filter(|d| !d.keep).map(|d| d.id).collect();
    if args.dry_run {
        note!(
            "dry run: {} of {} snapshot(s) would be forgotten",
            gone.len(),
            decisions.len()
        );
        return Ok(gone.len());
    }
    repo.forget(&gone)?;
    note!(
        "forgot {} of {} snapshot(s); their chunks stay stored until they are pruned",
        gone.len(),
        decisions.len()
    );
    Ok(gone.len())
}
