//! `relic run` and `relic schedule`: the daily job relic.toml describes;
//! `relic report`: how it has gone.

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

#[derive(Args)]
pub struct ReportArgs {
    /// Write the report to FILE: one self-contained HTML page (no
    /// script, font or request of any kind).
    #[arg(long, value_name = "FILE", conflicts_with = "serve")]
    pub html: Option<PathBuf>,
    /// Serve the same page (read-only, made afresh on every request) on
    /// ADDR (default 127.0.0.1:8417).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8417")]
    pub serve: Option<String>,
    /// Let --serve listen on an address other machines can reach.
    #[arg(long, requires = "serve")]
    pub public: bool,
    /// Only the snapshots of this name or stack.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only the stack of this relic.toml (and its repository).
    #[arg(long, value_name = "PATH", conflicts_with = "name")]
    pub config: Option<PathBuf>,
    /// The same data as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}
