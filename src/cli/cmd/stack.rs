//! Stack commands: `snapshot`, stack `restore`, `emergency`, `drill`.

use crate::cli::args::{Cli, DrillArgs, EmergencyCmd, SnapshotCmd};
use crate::cli::open::{load_config, open_stack};
use crate::cli::progress::Bar;
use crate::cli::render;
use anyhow::{bail, Context, Result};
use relic::stack::{self, StackConfig};
use relic::Progress;
use relic::{Repository, SnapshotId};
use std::io::{BufRead, IsTerminal, Write};

pub fn snapshot(cli: &Cli, cmd: &SnapshotCmd, bar: &Bar) -> Result<()> {
    let cfg = StackConfig::load(&cmd.config).map_err(render::stack_hint)?;
    let name = cmd.name.clone().unwrap_or_else(|| cfg.name.clone());
    let opts = cmd.snapshot.options(&name)?;
    let repo = open_stack(cli, Some(&cfg))?;
    let (id, snap) = stack::snapshot(&repo, &cfg, &opts, bar)
        .with_context(|| format!("stack snapshot '{name}' failed; no snapshot was written"))?;
    bar.finish();
    render::backup(&id, &snap, cmd.snapshot.json)
}

pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &relic::Snapshot,
    cfg: &StackConfig,
    opts: &stack::RestoreOptions,
    bar: &Bar,
) -> Result<()> {
    let mut say = |s: stack::RestoreStep| bar.say(&render::stack_step(&s));
    let report = stack::restore(repo, id, snap, cfg, opts, bar, &mut say)
        .map_err(|e| render::stack_error(e, repo.backend().root(), &cfg.path))
        .with_context(|| format!("restoring stack snapshot {}", id.short()))?;
    bar.finish();
    render::checks(&report.checks);
    if report.restored {
        println!("restored stack snapshot {} and verified it", id.short());
        if let Some(s) = &report.safety_snapshot {
            println!("safety snapshot of the state before: {}", &s[..8]);
        }
    }
    Ok(())
}

pub fn emergency(cli: &Cli, cmd: &EmergencyCmd, bar: &Bar) -> Result<()> {
    let cfg = StackConfig::load(&cmd.config).map_err(render::stack_hint)?;
    let repo = open_stack(cli, Some(&cfg))?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = stack::newest_baseline(&repo, &cfg).map_err(render::stack_hint)?;
    eprintln!(
        "emergency restore of stack '{}' from immaculate baseline '{}' ({}, {})",
        cfg.name,
        snap.name,
        id.short(),
        snap.time().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let opts = stack::RestoreOptions {
        dry_run: cmd.dry_run,
        safety_snapshot: true,
        ..Default::default()
    };
    if !cmd.dry_run {
        if !cmd.confirm {
            bail!(
                "an emergency restore replaces the running stack: add --confirm (nothing was changed)"
            );
        }
        let typed = match &cmd.yes_restore {
            Some(n) => n.clone(),
            None if std::io::stdin().is_terminal() => {
                eprint!("type the baseline's name ({}) to go on: ", snap.name);
                std::io::stderr().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim().to_string()
            }
            None => bail!(
                "no terminal to confirm at: add --yes-restore {} (nothing was changed)",
                snap.name
            ),
        };
        if typed != snap.name {
            bail!(
                "'{typed}' is not the baseline's name '{}'; nothing was changed",
                snap.name
            );
        }
    }
    restore(&repo, &id, &snap, &cfg, &opts, bar)
}

pub fn drill(cli: &Cli, a: &DrillArgs, bar: &Bar) -> Result<()> {
    let (snapshot, config) = (a.snapshot.as_deref(), a.config.as_deref());
    let cfg = load_config(config, config.is_some())?;
    let repo = open_stack(cli, cfg.as_ref())?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = match (snapshot, &cfg) {
        (Some(s), _) => repo.find_snapshot(s)?,
        (None, Some(c)) => stack::newest_baseline(&repo, c).map_err(render::stack_hint)?,
        (None, None) => bail!("say which snapshot to drill, or give the stack's relic.toml (--config) to drill its newest immaculate baseline"),
    };
    let mut say = |s: stack::DrillStep| bar.say(&render::drill_step(&s));
    let checks = stack::drill(
        &repo,
        &id,
        &snap,
        cfg.as_ref(),
        a.postgres.as_deref(),
        bar,
        &mut say,
    )
    .map_err(render::drill_error)
    .with_context(|| format!("drill of snapshot {} ({}) FAILED", id.short(), snap.name))?;
    bar.finish();
    render::checks(&checks);
    if let Some(c) = checks.iter().find(|c| !c.ok) {
        bail!(
            "drill of snapshot {} ({}) FAILED: {}: expected {}, found {}",
            id.short(),
            snap.name,
            c.what,
            c.expected,
            c.found
        );
    }
    println!(
        "drill of snapshot {} ({}) passed: {} checks, scratch copies removed",
        id.short(),
        snap.name,
        checks.len()
    );
    Ok(())
}
