//! `relic schedule install | status | remove`: `relic run` of a relic.toml
//! on its [schedule], through systemd (a service and a timer) or cron.

use crate::cli::args::{Cli, ScheduleArgs, ScheduleCmd};
use crate::cli::open::{load_config, open_path, stack_repo_path};
use crate::cli::render::ScheduleStatus;
use anyhow::{bail, Context, Result};
use relic::schedule::{self, Job};
use relic::stack::StackConfig;
use std::path::{Path, PathBuf};

pub fn run(cli: &Cli, cmd: &ScheduleCmd) -> Result<()> {
    match cmd {
        ScheduleCmd::Install(a) => install(cli, a),
        ScheduleCmd::Status(a) => status(cli, a),
        ScheduleCmd::Remove(a) => remove(a),
    }
}

/// How the job is scheduled here.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Manager {
    Systemd,
    Cron,
}

fn manager(a: &ScheduleArgs) -> Result<Manager> {
    if a.cron {
        if a.user {
            bail!("--cron writes /etc/cron.d, a system file; --user needs systemd (add the line `relic schedule install --cron --unit-dir DIR` writes to your crontab -e instead)");
        }
        return Ok(Manager::Cron);
    }
    if a.unit_dir.is_some() || schedule::systemd_running() {
        return Ok(Manager::Systemd);
    }
    if a.user {
        bail!("systemd is not running here, and a --user schedule needs it");
    }
    Ok(Manager::Cron)
}

/// The files of the job: the service and the timer, or the cron entry.
fn files(a: &ScheduleArgs, m: Manager, unit: &str) -> Vec<PathBuf> {
    match m {
        Manager::Systemd => {
            let dir = a
                .unit_dir
                .clone()
                .unwrap_or_else(|| schedule::unit_dir(a.user));
            vec![
                dir.join(format!("{unit}.service")),
                dir.join(format!("{unit}.timer")),
            ]
        }
        Manager::Cron => {
            let dir = a
                .unit_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(schedule::CRON_DIR));
            vec![dir.join(unit)]
        }
    }
}

fn config(a: &ScheduleArgs) -> Result<StackConfig> {
    Ok(load_config(Some(&a.config), true)?.expect("a required config"))
}

fn install(cli: &Cli, a: &ScheduleArgs) -> Result<()> {
    let cfg = config(a)?;
    let Some(plan) = &cfg.schedule else {
        bail!(
            "{} has no [schedule]: add one, e.g.\n\n[schedule]\nrun = \"daily 03:15\"",
            a.config.display()
        );
    };
    // The timer runs with no terminal and no RELIC_PASSWORD: the passphrase
    // must come from where relic.toml says, never from the unit.
    let repo = stack_repo_path(cli, &cfg)?;
    let encrypted = encrypted(&repo)?;
    if encrypted && cfg.password_file.is_none() && cfg.password_command.is_none() {
        bail!(
            "the repository is encrypted and a scheduled run has no one to ask: add password_file = \"/etc/relic/passphrase\" (mode 600) or password_command = \"...\" to {}; relic never writes a passphrase into a unit or cron file",
            a.config.display()
        );
    }
    if cli.repo.is_some() && cfg.repository.is_none() {
        bail!(
            "the scheduled run reads the repository from {}: add repository = \"{}\" to it",
            a.config.display(),
            repo.display()
        );
    }
    let on_calendar = plan.on_calendar()?;
    let next = schedule::next_elapse(&on_calendar)?;
    let m = manager(a)?;
    let job = Job {
        stack: cfg.name.clone(),
        relic: std::env::current_exe().context("where is this relic binary?")?,
        config: std::path::absolute(&a.config)?,
        on_calendar: on_calendar.clone(),
        environment_file: plan.environment_file.as_ref().map(|e| cfg.dir().join(e)),
        user: (!a.user).then(current_user),
    };
    let unit = job.unit_name();
    let paths = files(a, m, &unit);
    match m {
        Manager::Systemd => {
            schedule::write(&paths[0], &schedule::service(&job))?;
            schedule::write(&paths[1], &schedule::timer(&job))?;
        }
        Manager::Cron => {
            let fields = relic::plan::cron_fields(&on_calendar)?;
            schedule::write(&paths[0], &schedule::cron(&job, &fields))?;
        }
    }
    for p in &paths {
        report!("wrote {}", p.display());
    }
    if m == Manager::Systemd && a.unit_dir.is_none() {
        if schedule::systemd_running() {
            schedule::systemctl(a.user, &["daemon-reload"])?;
            schedule::systemctl(a.user, &["enable", "--now", &format!("{unit}.timer")])?;
            report!("enabled {unit}.timer");
            if a.user {
                report!("a user's timer runs only while they are logged in, unless `loginctl enable-linger` is set for them");
            }
        } else {
            report!(
                "systemd is not running: enable it with `systemctl{} enable --now {unit}.timer`",
                if a.user { " --user" } else { "" }
            );
        }
    }
    report!(
        "relic run --config {} on '{}' ({on_calendar}){}",
        job.config.display(),
        plan.run,
        next.map(|n| format!("; next: {n}")).unwrap_or_default()
    );
    Ok(())
}

fn encrypted(repo: &Path) -> Result<bool> {
    let spec = repo.to_string_lossy();
    let config = match crate::cli::open::bucket(&spec)? {
        Some(origin) => relic::Repository::read_remote_config(origin.as_ref()),
        None => relic::Repository::read_config(repo),
    }
    .with_context(|| format!("cannot read repository {}", repo.display()))?;
    Ok(config.encryption != "none")
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            if unsafe { libc::getuid() } == 0 {
                "root".into()
            } else {
                std::env::var("LOGNAME").unwrap_or_else(|_| "root".into())
            }
        })
}

fn status(cli: &Cli, a: &ScheduleArgs) -> Result<()> {
    let cfg = config(a)?;
    let unit = schedule::unit_name(&cfg.name);
    let found = [Manager::Systemd, Manager::Cron]
        .into_iter()
        .map(|m| (m, files(a, m, &unit)))
        .find(|(_, f)| f[0].exists());
    let on_calendar = cfg.schedule.as_ref().map(|s| s.on_calendar()).transpose()?;
    let next_run = match (&found, &on_calendar) {
        (Some((Manager::Systemd, _)), _) if schedule::systemd_running() && a.unit_dir.is_none() => {
            schedule::timer_next(a.user, &unit)
        }
        (Some(_), Some(c)) => schedule::next_elapse(c).ok().flatten(),
        _ => None,
    };
    let repo = open_path(&stack_repo_path(cli, &cfg)?)?;
    let runs = relic::runs::of(repo.backend(), &cfg.name);
    let s = ScheduleStatus {
        stack: cfg.name.clone(),
        scheduled_by: found.as_ref().map(|(m, _)| match m {
            Manager::Systemd => "systemd",
            Manager::Cron => "cron",
        }),
        files: found.map(|(_, f)| f).unwrap_or_default(),
        schedule: on_calendar,
        next_run,
        last_run: runs.last().cloned(),
        last_good_run: runs.iter().rev().find(|r| r.ok).cloned(),
    };
    if a.json {
        return crate::cli::render::json(&s);
    }
    crate::cli::render::schedule_status(&s)
}

fn remove(a: &ScheduleArgs) -> Result<()> {
    let cfg = config(a)?;
    let unit = schedule::unit_name(&cfg.name);
    let mut removed = 0;
    for m in [Manager::Systemd, Manager::Cron] {
        let paths = files(a, m, &unit);
        if m == Manager::Systemd
            && paths[0].exists()
            && a.unit_dir.is_none()
            && schedule::systemd_running()
        {
            schedule::systemctl(a.user, &["disable", "--now", &format!("{unit}.timer")])?;
        }
        for p in paths {
            if schedule::remove(&p)? {
                report!("removed {}", p.display());
                removed += 1;
            }
        }
    }
    if removed == 0 {
        report!("stack '{}' was not scheduled ({unit})", cfg.name);
    } else if a.unit_dir.is_none() && schedule::systemd_running() {
        schedule::systemctl(a.user, &["daemon-reload"])?;
    }
    Ok(())
}
