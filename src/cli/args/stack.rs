//! The stack commands' arguments: `snapshot`, `init-stack`, `emergency`,
//! `drill` and `baseline`.

use super::SnapshotArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

// `relic drill`.
#[derive(Args)]
pub struct DrillArgs {
    /// Snapshot to drill (default: the newest immaculate baseline of the
    /// relic.toml's stack, or of the repository).
    pub snapshot: Option<String>,
    /// A relic.toml whose targets (database servers) replace the ones a
    /// stack snapshot stores (default ./relic.toml when there is one).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The PostgreSQL server to make the scratch databases on (a conninfo;
    /// its database is ignored). Default: the stack's relic.toml, or for a
    /// `backup pg` snapshot the server it recorded, else libpq's defaults.
    #[arg(long, value_name = "CONNINFO")]
    pub postgres: Option<String>,
    /// PostgreSQL sessions loading each database at once (default: the
    /// number of cores): rows and indexes load side by side into a new
    /// database, checked and renamed into place when complete; 1 loads in
    /// one transaction.
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
    /// End with one JSON object on stdout: the snapshot, its checks, and
    /// whether all passed.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SnapshotCmd {
    /// The stack's description.
    #[arg(long, default_value = "relic.toml")]
    pub config: PathBuf,
    /// The stack is the docker compose project of DIR (default: the
    /// current directory): DIR/relic.toml when there is one, else what the
    /// engine runs for the project (images, PostgreSQL services, volumes).
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = ".", conflicts_with = "config")]
    pub compose: Option<PathBuf>,
    /// The compose project's name (default: DIR's name, as compose names
    /// it).
    #[arg(long, value_name = "NAME", requires = "compose")]
    pub project: Option<String>,
    /// Snapshot name (default: the stack's name).
    #[arg(long)]
    pub name: Option<String>,
    /// When a part fails (an image missing, the engine or a database
    /// down), store the parts that succeeded, mark the snapshot partial
    /// and exit 3 (without it: no snapshot, exit 1). Never for a baseline.
    #[arg(long)]
    pub allow_partial: bool,
    /// Stop the running containers that use the stack's volumes while
    /// each is copied, and start them again after.
    #[arg(long)]
    pub stop: bool,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
}

#[derive(Args)]
pub struct InitStackCmd {
    /// The compose project's directory: relic.toml is written there.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The compose project's name (default: DIR's name, as compose names
    /// it).
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    /// Replace an existing relic.toml.
    #[arg(long)]
    pub force: bool,
    /// Print it instead of writing it.
    #[arg(long)]
    pub stdout: bool,
}

#[derive(Args)]
pub struct EmergencyCmd {
    /// A relic.toml whose targets replace the ones the baseline stores
    /// (default: ./relic.toml when there is one); with none, the baseline
    /// restores where it was taken from.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The stack to restore (default: the relic.toml's, or the only stack
    /// with a baseline in the repository).
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// First confirmation: yes, restore the baseline over the running stack.
    #[arg(long)]
    pub confirm: bool,
    /// Second confirmation without a terminal: the baseline's name.
    #[arg(long, value_name = "NAME")]
    pub yes_restore: Option<String>,
    /// Print the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop the running containers that use the stack's volumes while
    /// they are restored, and start them again after.
    #[arg(long)]
    pub stop: bool,
    /// PostgreSQL sessions loading each database at once (default: the
    /// number of cores): rows and indexes load side by side into a new
    /// database, checked and renamed into place when complete; 1 loads in
    /// one transaction.
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
    /// End with one JSON object on stdout: what was restored, the checks
    /// made after, the safety snapshot taken.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BaselineCmd {
    /// Delete an immaculate or sacred baseline, the one way there is: type
    /// its name again; an audit record stays in the repository.
    #[command(
        after_help = "Examples:\n  relic baseline retire baseline-2025-01 --confirm baseline-2025-01 --reason 'superseded'"
    )]
    Retire {
        /// The baseline's name.
        name: String,
        /// The name again (without a terminal to type it at).
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
        /// Why, for the audit record.
        #[arg(long, default_value = "")]
        reason: String,
        /// Go on even though NAME is a stack's last immaculate baseline
        /// (without a terminal to type RETIRE-LAST at).
        #[arg(long)]
        last: bool,
    },
    /// Make a snapshot (a verified daily, a drilled stack) a write-once
    /// baseline as it is, under a new name; the snapshot itself stays. A
    /// partial snapshot is refused: a baseline is whole.
    #[command(
        after_help = "Examples:\n  relic baseline promote app --name baseline-2026-11\n  relic baseline promote 1f3a9c2e --name golden --tier sacred"
    )]
    Promote {
        /// The snapshot: id prefix, name (its newest) or `latest`.
        snapshot: String,
        /// The baseline's name (never used before by a baseline).
        #[arg(long)]
        name: String,
        /// immaculate or sacred.
        #[arg(long, default_value = "immaculate")]
        tier: String,
    },
    /// The audit records of retired baselines.
    #[command(after_help = "Examples:\n  relic baseline audit\n  relic baseline audit --json")]
    Audit {
        /// The same as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
}
