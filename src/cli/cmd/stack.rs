//! Stack commands: `snapshot`, stack `restore`, `emergency`, `drill`.

use crate::cli::args::{Cli, DrillArgs, EmergencyCmd, InitStackCmd, SnapshotCmd};
use crate::cli::open::{load_config, open_stack};
use crate::cli::progress::Bar;
use crate::cli::render;
use crate::cli::Outcome;
use anyhow::{bail, Context, Result};
use relic::stack::{self, StackConfig};
use relic::Progress;
use relic::{Repository, SnapshotId};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

pub fn snapshot(cli: &Cli, cmd: &SnapshotCmd, bar: &Bar) -> Result<Outcome> {
    take(cli, cmd, bar).map(|(_, _, outcome)| outcome)
}

/// `relic snapshot`: the snapshot written, and whether it is whole.
pub fn take(
    cli: &Cli,
    cmd: &SnapshotCmd,
    bar: &Bar,
) -> Result<(SnapshotId, relic::snapshot::Snapshot, Outcome)> {
    let cfg = match &cmd.compose {
        Some(dir) => compose_config(dir, cmd.project.as_deref())?,
        None => crate::cli::open::load_config(Some(&cmd.config), true)?.expect("a required config"),
    };
    let name = cmd.name.clone().unwrap_or_else(|| cfg.name.clone());
    let opts = cmd.snapshot.options(&name)?;
    // relic.toml's allow_partial is for routine snapshots: a baseline
    // stays whole or nothing unless the flag asks otherwise (and then the
    // library refuses).
    let baseline = matches!(opts.tier, relic::Tier::Immaculate | relic::Tier::Sacred);
    let allow_partial = cmd.allow_partial || (cfg.allow_partial && !baseline);
    let repo = open_stack(cli, Some(&cfg))?;
    repo.set_dry_run(cmd.snapshot.dry_run);
    let mut said = |e: stack::HookEvent| bar.say(&render::hook_event(&e));
    let mut volumes = |s: relic::docker::volume::VolumeStep| bar.say(&render::volume_step(&s));
    let (id, snap) = stack::backup(
        &repo,
        &cfg,
        &opts,
        allow_partial,
        cmd.stop,
        bar,
        &mut said,
        &mut volumes,
    )
    .map_err(render::stack_hint)
    .with_context(|| format!("stack snapshot '{name}' failed; no snapshot was written"))?;
    bar.finish();
    render::backup(&id, &snap, cmd.snapshot.json, cmd.snapshot.dry_run)?;
    let partial = snap.partial();
    if partial.is_empty() {
        return Ok((id, snap, Outcome::Done));
    }
    eprintln!(
        "snapshot {} is PARTIAL: it holds the parts that succeeded, not these:",
        id.short()
    );
    for f in &partial {
        eprintln!("    {}: {}", f.part, f.error);
    }
    Ok((id, snap, Outcome::Partial))
}

/// The stack of the compose project in `dir`: its relic.toml when there
/// is one, else the one [`init_stack`] would write, used as it is (and
/// stored in the snapshot like any other).
fn compose_config(dir: &Path, project: Option<&str>) -> Result<StackConfig> {
    let path = dir.join("relic.toml");
    let mut cfg = if path.exists() {
        StackConfig::load(&path).map_err(render::stack_hint)?
    } else {
        let text = discovered_text(dir, project)?;
        StackConfig::parse(&text, &path)?
    };
    if let Some(p) = project {
        cfg.project = Some(p.to_string());
    }
    Ok(cfg)
}

/// The relic.toml describing the compose project of `dir` as it runs.
fn discovered_text(dir: &Path, project: Option<&str>) -> Result<String> {
    let project = match project {
        Some(p) => p.to_string(),
        None => stack::compose::project_name(&std::path::absolute(dir)?),
    };
    let engine = relic::docker::Engine::connect()?;
    let found = stack::compose::discover(&engine, &project)?;
    Ok(stack::compose::config_text(&found))
}

/// `relic init-stack`: writes (or prints) the relic.toml of a running
/// compose project.
pub fn init_stack(cmd: &InitStackCmd) -> Result<()> {
    let text = discovered_text(&cmd.dir, cmd.project.as_deref())?;
    if cmd.stdout {
        print!("{text}");
        return Ok(());
    }
    let path = cmd.dir.join("relic.toml");
    if path.exists() && !cmd.force {
        bail!(
            "{} exists; --force replaces it, --stdout prints the new one",
            path.display()
        );
    }
    // It will hold the databases' passwords when the user adds them.
    relic::files::user::write_private(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    report!(
        "wrote {}: edit it, then `relic snapshot --config {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

/// The relic.toml that sets a stack command's targets: `--config`, or
/// ./relic.toml when it describes `stack` (the one loaded to open the
/// repository, `loaded`).
pub fn given_config(
    explicit: bool,
    loaded: Option<StackConfig>,
    stack: &str,
) -> Option<StackConfig> {
    loaded.filter(|c| explicit || c.name == stack)
}

/// The configuration stack snapshot `id` restores or drills with: the one
/// it stores, with `given`'s targets (each change said first).
pub fn targets(
    repo: &Repository,
    id: &SnapshotId,
    snap: &relic::Snapshot,
    given: Option<StackConfig>,
    bar: &Bar,
) -> Result<StackConfig> {
    let from = given.as_ref().map(|g| g.path.clone());
    let (cfg, changes) =
        StackConfig::for_snapshot(repo, id, snap, given).map_err(render::drill_error)?;
    if !changes.is_empty() {
        bar.say(&match from {
            Some(from) => format!(
                "{} changes where stack snapshot {} restores to:",
                from.display(),
                id.short()
            ),
            None => "the repository is not encrypted, so anyone able to write to it could have made this snapshot: its stored commands are not run (give --config to run your own):".to_string(),
        });
        for c in &changes {
            bar.say(&render::target_change(c));
        }
    }
    Ok(cfg)
}

pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    snap: &relic::Snapshot,
    cfg: &StackConfig,
    opts: &stack::RestoreOptions,
    json: bool,
    bar: &Bar,
) -> Result<()> {
    let mut say = |s: stack::RestoreStep| bar.say(&render::stack_step(&s));
    let report = stack::restore(repo, id, snap, cfg, opts, bar, &mut say)
        .map_err(|e| render::stack_error(e, repo.backend().root()))
        .with_context(|| format!("restoring stack snapshot {}", id.short()))?;
    bar.finish();
    let what = format!("stack snapshot {}", id.short());
    let r = render::Restored {
        id,
        what: &what,
        into: "stack",
        checks: &report.checks,
        restored: report.restored,
        safety_snapshot: report.safety_snapshot.as_deref(),
    };
    render::restored(&r, &format!("restored {what} and verified it"), json)
}

pub fn emergency(cli: &Cli, cmd: &EmergencyCmd, bar: &Bar) -> Result<()> {
    let loaded = load_config(cmd.config.as_deref(), cmd.config.is_some())?;
    let repo = open_stack(cli, loaded.as_ref())?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let name = match (&cmd.stack, &loaded) {
        (Some(n), _) => n.clone(),
        (None, Some(c)) => c.name.clone(),
        (None, None) => match stack::stacks_with_baselines(&repo)?.as_slice() {
            [one] => one.clone(),
            many => return Err(render::stack_hint(stack::Error::WhichStack(many.to_vec()))),
        },
    };
    let (id, snap) = stack::newest_baseline(&repo, Some(&name)).map_err(render::stack_hint)?;
    note!(
        "emergency restore of stack '{name}' from immaculate baseline '{}' ({}, {})",
        snap.name,
        id.short(),
        snap.time().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let cfg = targets(
        &repo,
        &id,
        &snap,
        given_config(cmd.config.is_some(), loaded, &name),
        bar,
    )?;
    let opts = stack::RestoreOptions {
        dry_run: cmd.dry_run,
        safety_snapshot: true,
        stop: cmd.stop,
        jobs: cmd
            .jobs
            .map_or_else(relic::postgres::default_jobs, usize::from),
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
    restore(&repo, &id, &snap, &cfg, &opts, cmd.json, bar)
}

pub fn drill(cli: &Cli, a: &DrillArgs, bar: &Bar) -> Result<()> {
    let loaded = load_config(a.config.as_deref(), a.config.is_some())?;
    let repo = open_stack(cli, loaded.as_ref())?;
    // What was drilled, once the drill itself began: a lock that could
    // not be had or a missing baseline is not a failed drill.
    let mut drilled = None;
    let r = drill_in(&repo, loaded, a, bar, &mut drilled);
    if let Some(target) = drilled {
        let result = match &r {
            Ok(()) => Ok("every check passed; scratch copies removed".to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        super::record(&repo, "drill", Some(target), result);
    }
    r
}

/// The drill; `drilled` names the snapshot (`<id> (<name>)`) once it begins.
fn drill_in(
    repo: &Repository,
    loaded: Option<StackConfig>,
    a: &DrillArgs,
    bar: &Bar,
    drilled: &mut Option<String>,
) -> Result<()> {
    let (snapshot, config) = (a.snapshot.as_deref(), a.config.as_deref());
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = match (snapshot, &loaded) {
        (Some(s), _) => repo.find_snapshot(s)?,
        (None, Some(c)) => {
            stack::newest_baseline(repo, Some(&c.name)).map_err(render::stack_hint)?
        }
        (None, None) => stack::newest_baseline(repo, None).map_err(render::stack_hint)?,
    };
    // A stack's drill creates its scratch databases on the servers of its
    // stored relic.toml, or of the one given.
    let given = match stack::manifest(&id, &snap) {
        Ok(m) => given_config(config.is_some(), loaded, &m.stack),
        Err(_) => None,
    };
    *drilled = Some(format!("{} ({})", id.short(), snap.name));
    let mut say = |s: stack::DrillStep| bar.say(&render::drill_step(&s));
    let checks = stack::drill(
        repo,
        &id,
        &snap,
        given.as_ref(),
        stack::Scratch {
            server: a.postgres.as_deref(),
            jobs: a
                .jobs
                .map_or_else(relic::postgres::default_jobs, usize::from),
        },
        bar,
        &mut say,
    )
    .map_err(render::drill_error)
    .with_context(|| format!("drill of snapshot {} ({}) FAILED", id.short(), snap.name))?;
    bar.finish();
    if a.json {
        let what = format!("drill of snapshot {} ({})", id.short(), snap.name);
        let r = render::Restored {
            id: &id,
            what: &what,
            into: "scratch",
            checks: &checks,
            restored: false,
            safety_snapshot: None,
        };
        render::restored(&r, "", true)?;
    } else {
        render::checks(&checks)?;
    }
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
    if a.json {
        return Ok(());
    }
    report!(
        "drill of snapshot {} ({}) passed: {} checks, scratch copies removed",
        id.short(),
        snap.name,
        checks.len()
    );
    Ok(())
}
