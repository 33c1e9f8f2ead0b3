//! The command line as clap parses it: every command, subcommand, flag and
//! its help text. Nothing here runs a command; `cmd/` does.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

mod backup;
mod run;
mod stack;
pub use backup::*;
pub use run::*;
pub use stack::*;

#[derive(Parser)]
#[command(
    name = "relic",
    version,
    about = "Deduplicating backups of databases, images and files",
    after_help = super::exit::table(),
)]
pub struct Cli {
    /// Repository: a directory, or s3://BUCKET/PREFIX (endpoint and
    /// credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION).
    #[arg(short = 'r', long = "repo", env = "RELIC_REPO", global = true)]
    pub repo: Option<PathBuf>,
    /// Print nothing on success: no progress, no summaries, no steps
    /// (errors and warnings still go to stderr; listings and --json still
    /// print what they were asked for).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: each step of a command as it starts.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Wait this long (30s, 5m, 1h) for a lock or index another relic
    /// process holds before failing with exit code 11; 0 fails at once.
    #[arg(long, env = "RELIC_RETRY_LOCK", global = true, value_name = "DURATION", default_value = "1h", value_parser = super::parse::duration)]
    pub retry_lock: std::time::Duration,
    /// Keep the unlocked key in the kernel's keyring for this long (30s,
    /// 15m, 2h, 1d), so the next commands with the same passphrase skip
    /// the key derivation (0.1 s, 64 MiB); `relic key forget` drops it.
    #[arg(long, env = "RELIC_KEY_CACHE", global = true, value_name = "DURATION", value_parser = super::parse::duration)]
    pub key_cache: Option<std::time::Duration>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new repository.
    #[command(
        after_help = "Examples:\n  relic -r /srv/relic init\n  RELIC_PASSWORD_FILE=~/.relic-pass relic -r s3://bucket/relic init\n  relic -r /srv/relic init --no-encryption --delta-depth 0"
    )]
    Init(InitArgs),
    /// Manage the passphrases (key slots) of an encrypted repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up standard input or files and directories.
    #[command(
        after_help = "Examples:\n  pg_dump app | relic backup --stdin --name app\n  relic backup /etc /srv/app --name config --label host=web1\n  relic backup pg 'dbname=app' --tier named --name before-migration\n  relic backup image backend:latest worker:latest"
    )]
    Backup(BackupArgs),
    /// List snapshots, oldest first: all, or those matching every filter
    /// given.
    #[command(
        after_help = "Examples:\n  relic snapshots app --since 2026-11-01\n  relic snapshots --tier immaculate --label env=prod --json"
    )]
    Snapshots(SnapshotsArgs),
    /// Restore a snapshot to standard output or into a directory.
    #[command(
        after_help = "Examples:\n  relic restore app --stdout | psql app_copy\n  relic restore app --into-postgres 'dbname=app' --clean --dry-run\n  relic restore config --to /tmp/config --item etc/nginx\n  relic restore images --into-docker --image backend:latest\n  relic restore baseline-2026-11 --only db --json"
    )]
    Restore(RestoreArgs),
    /// Verify the repository.
    #[command(after_help = "Examples:\n  relic check\n  relic check --read-data --json")]
    Check(CheckArgs),
    /// Rebuild the index from the packs, read and verify every byte, and
    /// record which snapshots are damaged. Deletes nothing. Exits 3 when
    /// damage was found.
    #[command(after_help = "Examples:\n  relic repair\n  relic repair --json")]
    Repair {
        /// The same as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// What is stored and what it cost: the whole repository; with a
    /// name, each snapshot of it; with a snapshot, what it added to the
    /// repository, how the rest was saved (deduplicated, deltas,
    /// compression) and what restoring it reads.
    #[command(
        after_help = "Examples:\n  relic stats\n  relic stats app            # every snapshot named app\n  relic stats 1f3a9c2e --json"
    )]
    Stats {
        /// A snapshot name (each snapshot of it), or one snapshot (id
        /// prefix, `NAME~N`, `latest`).
        #[arg(value_name = "SNAPSHOT|NAME")]
        snapshot: Option<String>,
        /// The same as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Forget snapshots: the ones named, or those a retention policy does
    /// not keep. Immaculate, sacred and named snapshots are never forgotten
    /// by a policy.
    #[command(
        after_help = "Examples:\n  relic forget --keep-daily 7 --keep-weekly 4 --dry-run\n  relic forget --name app --keep-last 3\n  relic forget app~2 1f3a9c2e"
    )]
    Forget(ForgetArgs),
    /// Free the space of data no snapshot needs (deletes and repacks packs).
    #[command(
        after_help = "Examples:\n  relic prune --dry-run\n  relic --retry-lock 30m prune --max-repack-ratio 0.1"
    )]
    Prune(PruneArgs),
    /// Manage the local index.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Remove the repository's locks: all of them (only when no relic
    /// runs on any host), or with --stale those whose process is gone from
    /// this host or that nobody refreshed for ten minutes.
    #[command(after_help = "Examples:\n  relic unlock --stale\n  relic unlock")]
    Unlock {
        /// Remove only stale locks; live ones are listed and kept.
        #[arg(long)]
        stale: bool,
        /// List the locks that would be removed; remove none.
        #[arg(long)]
        dry_run: bool,
        /// The locks removed and kept, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove a snapshot restores, without touching production: scratch
    /// database, scratch image tags, scratch directory, all verified and
    /// removed. Default: the stack's newest immaculate baseline.
    #[command(
        after_help = "Examples:\n  relic drill\n  relic drill app --postgres 'host=127.0.0.1 user=postgres' --json"
    )]
    Drill(DrillArgs),
    /// What changed between two snapshots: items, and for stacks the
    /// databases' revisions and row counts, images and layers, git commit.
    #[command(
        after_help = "Examples:\n  relic diff app~1 app\n  relic diff baseline-2026-11 latest --json"
    )]
    Diff(DiffArgs),
    /// List a snapshot's items (files, directories, links, streams) as
    /// `ls -l` shows them: mode, size, modification time, path.
    #[command(after_help = "Examples:\n  relic ls config\n  relic ls config etc/nginx --json")]
    Ls(LsArgs),
    /// Copy the repository to another directory or to S3-compatible
    /// storage (s3://bucket/prefix; AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): only what DEST lacks,
    /// packs first, then snapshots. Never deletes anything at DEST.
    #[command(
        after_help = "Examples:\n  relic sync --to /mnt/offsite/relic\n  relic sync --to s3://bucket/relic --dry-run --json\n  relic sync --to s3://locked-bucket/relic --object-lock 90"
    )]
    Sync(SyncArgs),
    /// Give a snapshot a new name (never an immaculate or sacred one).
    #[command(after_help = "Examples:\n  relic rename 1f3a9c2e before-upgrade")]
    Rename {
        /// The snapshot: id prefix, name (its newest) or `latest`.
        snapshot: String,
        /// Its new name.
        new_name: String,
    },
    /// Back up a whole stack (databases, images, files, git commit) as
    /// described by relic.toml (or found from its compose project with
    /// --compose) into one snapshot.
    #[command(
        after_help = "Examples:\n  relic snapshot --config /srv/app/relic.toml\n  relic snapshot --compose /srv/app --tier immaculate --name baseline-2026-11\n  relic snapshot --allow-partial --json"
    )]
    Snapshot(SnapshotCmd),
    /// Write a relic.toml for a running docker compose project: its
    /// images, its PostgreSQL services and its named volumes, as the engine
    /// reports them, for you to edit.
    #[command(
        after_help = "Examples:\n  relic init-stack /srv/app\n  relic init-stack /srv/app --project app --stdout"
    )]
    InitStack(InitStackCmd),
    /// Print a stack snapshot's manifest (Markdown, or --json).
    #[command(
        after_help = "Examples:\n  relic manifest baseline-2026-11\n  relic manifest latest --json"
    )]
    Manifest {
        /// The snapshot: id prefix, name (its newest), `NAME~N` or `latest`.
        snapshot: String,
        /// The same as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Restore the stack's newest immaculate baseline through the full
    /// safety chain. Asks twice: --confirm, and the baseline's name.
    #[command(
        after_help = "Examples:\n  relic emergency --dry-run\n  relic emergency --confirm --yes-restore baseline-2026-11 --stop"
    )]
    Emergency(EmergencyCmd),
    /// Immaculate and sacred baselines.
    #[command(subcommand)]
    Baseline(BaselineCmd),
    /// The whole daily job relic.toml describes: snapshot, forget by its
    /// [retention], prune when that freed something, check ([check]'s
    /// slice of the data), sync to each [sync] destination, and a drill
    /// when one is due; each step logged with its time, one summary line,
    /// [notify] told. The exit code names the step that failed (20-25).
    #[command(after_help = "Examples:
  relic run --config /srv/app/relic.toml
  relic run --dry-run
  relic -q run   # silent unless it fails (cron)")]
    Run(RunArgs),
    /// Run `relic run` on relic.toml's [schedule]: a systemd timer, or cron.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// A picture of the repository: what each day read and added, its
    /// size over time, snapshots by tier, baselines and how to restore
    /// them, databases and image layers, the last drill and check, each
    /// copy's lag, warnings. From snapshot objects, the index and local
    /// records only: no pack is read.
    #[command(
        after_help = "Examples:\n  relic report --html report.html\n  relic report --serve\n  relic report --config /srv/app/relic.toml --json"
    )]
    Report(ReportArgs),
}

// `relic init`.
#[derive(Args)]
pub struct InitArgs {
    /// Average chunk size in bytes (a power of two).
    #[arg(long, default_value_t = relic::chunker::ChunkerParams::default().avg_size)]
    pub chunk_avg: u32,
    /// zstd level for new chunks (1 by measurement: docs/design.md).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-7..=19))]
    pub compression: i32,
    /// Store everything in the clear (the default encrypts, with a
    /// passphrase from RELIC_PASSWORD, RELIC_PASSWORD_FILE or a prompt).
    #[arg(long)]
    pub no_encryption: bool,
    /// Longest chain of delta blobs: a chunk similar to a stored one is
    /// stored as a delta against it; 0 stores every chunk whole
    /// (docs/design.md has the measurements).
    #[arg(long, default_value_t = relic::delta::MAX_DEPTH, value_parser = clap::value_parser!(u8).range(0..=64))]
    pub delta_depth: u8,
    /// Argon2id memory in MiB for the passphrase's key slot.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub kdf_memory: u32,
}

// `relic restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot: id prefix, name (its newest snapshot) or `latest`.
    pub snapshot: String,
    /// Take out one part alone: in a stack snapshot `db/NAME`,
    /// `images/REF` or `files`; in any snapshot an item's path (a
    /// directory's path takes what is under it). `relic ls` lists them.
    #[arg(long, value_name = "ITEM", conflicts_with = "only")]
    pub item: Option<String>,
    /// Write the single stream of the snapshot (or --item) to standard output.
    #[arg(long, conflicts_with = "to")]
    pub stdout: bool,
    /// A file for a single stream (a dump, one image's `docker save` tar,
    /// standard input's backup; into an existing directory, a file named
    /// as the item), a directory for trees, stacks and several images.
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Restore a database snapshot into PostgreSQL (libpq URL or
    /// key=value; with --container, as seen inside the container, and
    /// optional there: the container's POSTGRES_USER and POSTGRES_DB).
    #[arg(long, value_name = "CONNINFO", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["stdout", "to"])]
    pub into_postgres: Option<String>,
    /// The server runs in this container (name or id): its own psql loads
    /// the dump, through the Docker engine; no client on this host.
    #[arg(long, value_name = "NAME", requires = "into_postgres")]
    pub container: Option<String>,
    /// Create the database first.
    #[arg(long, requires = "into_postgres")]
    pub create: bool,
    /// Drop and recreate the database first.
    #[arg(long, requires = "into_postgres")]
    pub clean: bool,
    /// Refuse unless the snapshot is at this Alembic revision.
    #[arg(long, requires = "into_postgres")]
    pub expect_revision: Option<String>,
    /// Skip the safety snapshot of the target (database, volume or stack).
    #[arg(long)]
    pub no_safety_snapshot: bool,
    /// Print the plan and the checks, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// End with one JSON object on stdout: what was restored where, the
    /// checks made after, the safety snapshot taken.
    #[arg(long, conflicts_with = "stdout")]
    pub json: bool,
    /// Restore despite an Alembic revision mismatch.
    #[arg(long)]
    pub force: bool,
    /// Read and verify every chunk before restoring.
    #[arg(long)]
    pub verify_data: bool,
    /// PostgreSQL sessions loading a database at once, with --into-postgres
    /// or a stack snapshot (default: the number of cores): the big tables'
    /// rows and the indexes load side by side into a new database, checked
    /// and renamed into place when complete; 1 loads in one transaction
    /// into the database itself.
    #[arg(short, long, value_name = "N", conflicts_with_all = ["stdout", "to", "into_docker"], value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
    /// For a stack snapshot: a relic.toml whose targets (databases, files
    /// root, hooks) replace the ones the snapshot stores; what differs is
    /// printed first (default: ./relic.toml when it is the same stack's).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["stdout", "to", "into_postgres", "into_docker"])]
    pub config: Option<PathBuf>,
    /// Restore one part of a stack snapshot: db, images or files.
    #[arg(long, value_name = "PART")]
    pub only: Option<relic::stack::Part>,
    /// Load a Docker image snapshot into the engine (DOCKER_HOST), then
    /// check that every tag points at the recorded image id.
    #[arg(long, conflicts_with_all = ["stdout", "to", "into_postgres"])]
    pub into_docker: bool,
    /// Only this image of the snapshot: a tag, the reference it was
    /// backed up by, or an image id prefix.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Write a volume of the snapshot (--item volumes/NAME when it holds
    /// several) into the Docker named volume NAME: created when missing,
    /// emptied first, so it holds exactly the snapshot's files.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["stdout", "to", "into_postgres", "into_docker"])]
    pub into_volume: Option<String>,
    /// Stop the running containers that use a volume restored into, and
    /// start them again after (without it such a volume is refused).
    #[arg(long)]
    pub stop: bool,
}

// `relic check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Read and verify every byte of every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify every byte of one slice of the packs: N/T is slice
    /// N (from 1) of T, each pack in exactly one slice (2/20 reads about
    /// 5%; N = 1..T over T runs reads all of it).
    #[arg(long, value_name = "N/T", conflicts_with = "read_data", value_parser = relic::check::ReadData::parse_subset)]
    pub read_data_subset: Option<relic::check::ReadData>,
    /// The same as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

// `relic prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Show what would be freed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Repack packs whose live fraction is below this (0 to 1).
    #[arg(long, default_value_t = relic::prune::DEFAULT_REPACK_BELOW)]
    pub max_repack_ratio: f64,
    /// The same as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

// `relic snapshots`.
#[derive(Args)]
pub struct SnapshotsArgs {
    /// Only snapshots of these names.
    pub names: Vec<String>,
    /// Only snapshots of this tier (daily, named, immaculate, sacred,
    /// safety); repeat for several.
    #[arg(long)]
    pub tier: Vec<String>,
    /// Only snapshots carrying this label (KEY=VALUE); repeat for all of
    /// several.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Only snapshots taken at or after this time (2026-11-30, or RFC 3339
    /// 2026-11-30T03:15:00Z), or this long ago (7d, 12h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only snapshots taken before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// One JSON array of objects (metadata holding JSON is given as JSON).
    #[arg(long)]
    pub json: bool,
}

// `relic diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// The older snapshot: id prefix, name (its newest), `NAME~N` or `latest`.
    pub from: String,
    /// The newer snapshot (same forms).
    pub to: String,
    /// The same as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

// `relic ls`.
#[derive(Args)]
pub struct LsArgs {
    /// The snapshot: id prefix, name (its newest), `NAME~N` or `latest`.
    pub snapshot: String,
    /// Only these paths and what is under them.
    pub paths: Vec<String>,
    /// The same as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

// `relic sync`.
#[derive(Args)]
pub struct SyncArgs {
    /// A directory or s3://bucket/prefix.
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// Show what would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-read every object sent at DEST and compare its BLAKE3.
    #[arg(long)]
    pub verify: bool,
    /// Parallel transfers.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Put every object of the immaculate and sacred snapshots (their
    /// snapshot objects and every pack their data or delta bases are
    /// in) under S3 Object Lock for at least DAYS days from now; each
    /// sync extends it. The bucket must have Object Lock enabled.
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub object_lock: Option<u32>,
    /// compliance (nobody can delete or shorten) or governance (users
    /// with s3:BypassGovernanceRetention can).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "compliance",
        requires = "object_lock"
    )]
    /// Object Lock mode: governance (an admin may lift it) or compliance (nobody can, not even the bucket owner).
    pub object_lock_mode: relic::objectlock::Mode,
    /// The same as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshots to forget (id prefix or name); without them, the policy applies.
    pub snapshots: Vec<String>,
    /// Apply the policy to this tier only.
    #[arg(long)]
    pub tier: Option<String>,
    /// Apply the policy to this series (snapshot name) only.
    #[arg(long)]
    pub name: Option<String>,
    /// Keep the newest N snapshots.
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long)]
    pub keep_daily: Option<usize>,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    #[arg(long)]
    pub keep_weekly: Option<usize>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long)]
    pub keep_monthly: Option<usize>,
    /// Keep everything younger than this span (for example 7d, 2w, 1mo).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Show what would be kept and forgotten, and why; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Judge as if it were this time (RFC 3339).
    #[arg(long)]
    pub now: Option<String>,
    /// The same as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// List the key slots.
    #[command(after_help = "Examples:\n  relic key list\n  relic key list --json")]
    List {
        /// The same as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Add a slot for another passphrase (RELIC_NEW_PASSWORD, RELIC_NEW_PASSWORD_FILE or the prompt).
    #[command(after_help = "Examples:\n  RELIC_NEW_PASSWORD_FILE=~/.second-pass relic key add")]
    Add,
    /// Remove a slot by id prefix (never the one in use, never the last).
    #[command(after_help = "Examples:\n  relic key remove 3f9a1c20")]
    Remove {
        /// The slot's id prefix (`relic key list` shows them).
        id: String,
    },
    /// Replace the passphrase in use by a new one.
    #[command(after_help = "Examples:\n  relic key passwd")]
    Passwd,
    /// Drop this repository's key from the key cache (see --key-cache).
    #[command(after_help = "Examples:\n  relic key forget")]
    Forget,
}

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Recreate the index from the packs and snapshots.
    #[command(after_help = "Examples:\n  relic index rebuild")]
    Rebuild,
}

#[cfg(test)]
mod tests;
