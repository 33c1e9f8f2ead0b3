//! Stack commands: `snapshot`, stack `restore`, `emergency`, `baseline`.

use super::progress::Bar;
use super::{print_backup, Cli, SnapshotArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use relic::stack::{self, StackConfig};
use relic::Progress;
use relic::{Repository, SnapshotId};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SnapshotCmd {
    /// The stack's description.
    #[arg(long, default_value = "relic.toml")]
    config: PathBuf,
    /// Snapshot name (default: the stack's name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    snapshot: SnapshotArgs,
}

#[derive(Args)]
pub struct EmergencyCmd {
    /// The stack's description.
    #[arg(long, default_value = "relic.toml")]
    config: PathBuf,
    /// First confirmation: yes, restore the baseline over the running stack.
    #[arg(long)]
    confirm: bool,
    /// Second confirmation without a terminal: the baseline's name.
    #[arg(long, value_name = "NAME")]
    yes_restore: Option<String>,
    /// Print the plan, change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
pub enum BaselineCmd {
    /// Delete an immaculate or sacred baseline, the one way there is: type
    /// its name again; an audit record stays in the repository.
    Retire {
        name: String,
        /// The name again (without a terminal to type it at).
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
        /// Why, for the audit record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The audit records of retired baselines.
    Audit {
        #[arg(long)]
        json: bool,
    },
}

/// Reads relic.toml: `path` when given (`required`), else ./relic.toml if
/// there is one.
pub fn load_config(path: Option<&Path>, required: bool) -> Result<Option<StackConfig>> {
    let p = path.unwrap_or(Path::new("relic.toml"));
    if !required && !p.exists() {
        return Ok(None);
    }
    Ok(Some(StackConfig::load(p)?))
}

/// Opens `-r` / RELIC_REPO, or the repository relic.toml names.
pub fn open(cli: &Cli, cfg: Option<&StackConfig>) -> Result<Repository> {
    match (
        &cli.repo,
        cfg.and_then(|c| c.repository.as_ref().map(|r| c.dir().join(r))),
    ) {
        (None, Some(path)) => super::open_path(&path),
        _ => super::open(cli),
    }
}

pub fn snapshot(cli: &Cli, cmd: &SnapshotCmd, bar: &Bar) -> Result<()> {
    let cfg = StackConfig::load(&cmd.config)?;
    let name = cmd.name.clone().unwrap_or_else(|| cfg.name.clone());
    let opts = cmd.snapshot.options(&name)?;
    let repo = open(cli, Some(&cfg))?;
    let (id, snap) = stack::snapshot(&repo, &cfg, &opts, bar)
        .with_context(|| format!("stack snapshot '{name}' failed; no snapshot was written"))?;
    bar.finish();
    print_backup(&id, &snap, cmd.snapshot.json)
}

pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &relic::Snapshot,
    cfg: &StackConfig,
    opts: &stack::RestoreOptions,
    bar: &Bar,
) -> Result<()> {
    let say = |m: &str| bar.say(m);
    let report = stack::restore(repo, id, snap, cfg, opts, bar, &say)
        .with_context(|| format!("restoring stack snapshot {}", id.short()))?;
    bar.finish();
    super::print_checks(&report.checks);
    if report.restored {
        println!("restored stack snapshot {} and verified it", id.short());
        if let Some(s) = &report.safety_snapshot {
            println!("safety snapshot of the state before: {}", &s[..8]);
        }
    }
    Ok(())
}

pub fn emergency(cli: &Cli, cmd: &EmergencyCmd, bar: &Bar) -> Result<()> {
    let cfg = StackConfig::load(&cmd.config)?;
    let repo = open(cli, Some(&cfg))?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = stack::newest_baseline(&repo, &cfg)?;
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

pub fn baseline(cli: &Cli, cmd: &BaselineCmd) -> Result<()> {
    let repo = super::open(cli)?;
    match cmd {
        BaselineCmd::Retire {
            name,
            confirm,
            reason,
        } => {
            let typed = match confirm {
                Some(n) => n.clone(),
                None if std::io::stdin().is_terminal() => {
                    eprint!("retiring deletes baseline '{name}' for good; type its name again: ");
                    std::io::stderr().flush()?;
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim().to_string()
                }
                None => {
                    bail!("no terminal to confirm at: add --confirm {name} (nothing was changed)")
                }
            };
            if &typed != name {
                bail!("'{typed}' is not '{name}'; nothing was retired");
            }
            let ids = repo.retire(name, reason)?;
            for id in ids {
                println!(
                    "retired {} ({name}); an audit record stays in the repository",
                    id.short()
                );
            }
        }
        BaselineCmd::Audit { json } => {
            let log = repo.audit_log()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                for r in log {
                    let t = jiff::Timestamp::from_nanosecond(i128::from(r.time_ns))
                        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    println!(
                        "{t}  {}  {} ({})  by {}@{}  {}",
                        r.action,
                        r.name,
                        r.tiers.join(", "),
                        r.user,
                        r.host,
                        r.reason
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn drill(cli: &Cli, snapshot: Option<&str>, config: Option<&Path>, bar: &Bar) -> Result<()> {
    let cfg = load_config(config, config.is_some())?;
    let repo = open(cli, cfg.as_ref())?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = match (snapshot, &cfg) {
        (Some(s), _) => repo.find_snapshot(s)?,
        (None, Some(c)) => stack::newest_baseline(&repo, c)?,
        (None, None) => bail!("say which snapshot to drill, or give the stack's relic.toml (--config) to drill its newest immaculate baseline"),
    };
    let say = |m: &str| bar.say(m);
    let checks = stack::drill(&repo, &id, &snap, cfg.as_ref(), bar, &say)
        .with_context(|| format!("drill of snapshot {} ({}) FAILED", id.short(), snap.name))?;
    bar.finish();
    super::print_checks(&checks);
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
