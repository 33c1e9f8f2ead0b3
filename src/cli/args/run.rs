//! `relic run` and `relic schedule`: the daily job relic.toml describes.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    /// The stack's relic.toml: its parts, [retention], [sync], [check]
    /// and [notify].
    #[arg(long, default_value = "relic.toml")]
    pub config: PathBuf,
    /// Say what each step would do; write, delete, send and notify
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The run's clock instead of now (RFC 3339): the snapshot's time,
    /// the retention policy's now, and when a drill is due. For replays
    /// and tests.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// End with the run's record as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Write a systemd service and timer for `relic run` (without systemd:
    /// a cron.d entry), and enable the timer when systemd runs here.
    #[command(
        after_help = "Examples:\n  relic schedule install --config /srv/app/relic.toml\n  relic schedule install --user\n  relic schedule install --unit-dir /tmp/units   # write only, to read them first"
    )]
    Install(ScheduleArgs),
    /// The next run, and the last run's result, time and cost.
    #[command(after_help = "Examples:\n  relic schedule status\n  relic schedule status --json")]
    Status(ScheduleArgs),
    /// Disable the timer and delete what `install` wrote.
    #[command(
        after_help = "Examples:\n  relic schedule remove --config /srv/app/relic.toml\n  relic schedule remove --user"
    )]
    Remove(ScheduleArgs),
}

#[derive(Args)]
pub struct ScheduleArgs {
    /// The stack's relic.toml, with its [schedule].
    #[arg(long, default_value = "relic.toml")]
    pub config: PathBuf,
    /// The user's own systemd (~/.config/systemd/user, systemctl --user)
    /// instead of the system's.
    #[arg(long)]
    pub user: bool,
    /// A cron.d entry even where systemd runs.
    #[arg(long)]
    pub cron: bool,
    /// Write the units (or the cron entry) into DIR and touch nothing
    /// else: no systemctl.
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
    /// The same as JSON on standard output (status).
    #[arg(long)]
    pub json: bool,
}
