//! The command line as clap parses it: every command, subcommand, flag and
//! its help text. Nothing here runs a command; `cmd/` does.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use relic::repo::SnapshotOptions;
use relic::snapshot::Tier;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "relic",
    version,
    about = "Deduplicating backups of databases, images and files"
)]
pub struct Cli {
    /// Repository: a directory, or s3://BUCKET/PREFIX (endpoint and
    /// credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION).
    #[arg(short = 'r', long = "repo", env = "RELIC_REPO", global = true)]
    pub repo: Option<PathBuf>,
    /// No progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
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
    Init(InitArgs),
    /// Manage the passphrases (key slots) of an encrypted repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up standard input or files and directories.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots {
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot to standard output or into a directory.
    Restore(RestoreArgs),
    /// Verify the repository.
    Check(CheckArgs),
    /// Rebuild the index from the packs, read and verify every byte, and
    /// record which snapshots are damaged. Deletes nothing. Exits 3 when
    /// damage was found.
    Repair {
        #[arg(long)]
        json: bool,
    },
    /// Sizes and ratios; with a snapshot, what restoring it reads (the
    /// stored blobs it needs, delta bases included).
    Stats {
        /// A snapshot (id prefix or name: the newest of that name).
        snapshot: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Forget snapshots: the ones named, or those a retention policy does
    /// not keep. Immaculate, sacred and named snapshots are never forgotten
    /// by a policy.
    Forget(ForgetArgs),
    /// Free the space of data no snapshot needs (deletes and repacks packs).
    Prune(PruneArgs),
    /// Manage the local index.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Remove the repository's locks: all of them (only when no relic
    /// runs on any host), or with --stale those whose process is gone from
    /// this host or that nobody refreshed for ten minutes.
    Unlock {
        /// Remove only stale locks; live ones are listed and kept.
        #[arg(long)]
        stale: bool,
    },
    /// Prove a snapshot restores, without touching production: scratch
    /// database, scratch image tags, scratch directory, all verified and
    /// removed. Default: the stack's newest immaculate baseline.
    Drill(DrillArgs),
    /// What changed between two snapshots: items, and for stacks the
    /// databases' revisions and row counts, images and layers, git commit.
    Diff(DiffArgs),
    /// List a snapshot's items (files, directories, links, streams) as
    /// `ls -l` shows them: mode, size, modification time, path.
    Ls(LsArgs),
    /// Copy the repository to another directory or to S3-compatible
    /// storage (s3://bucket/prefix; AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): only what DEST lacks,
    /// packs first, then snapshots. Never deletes anything at DEST.
    Sync(SyncArgs),
    /// Give a snapshot a new name (never an immaculate or sacred one).
    Rename { snapshot: String, new_name: String },
    /// Back up a whole stack (databases, images, files, git commit) as
    /// described by relic.toml (or found from its compose project with
    /// --compose) into one snapshot.
    Snapshot(SnapshotCmd),
    /// Write a relic.toml for a running docker compose project: its
    /// images, its PostgreSQL services and its named volumes, as the engine
    /// reports them, for you to edit.
    InitStack(InitStackCmd),
    /// Print a stack snapshot's manifest (Markdown, or --json).
    Manifest {
        snapshot: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore the stack's newest immaculate baseline through the full
    /// safety chain. Asks twice: --confirm, and the baseline's name.
    Emergency(EmergencyCmd),
    /// Immaculate and sacred baselines.
    #[command(subcommand)]
    Baseline(BaselineCmd),
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
    /// Restore despite an Alembic revision mismatch.
    #[arg(long)]
    pub force: bool,
    /// Read and verify every chunk before restoring.
    #[arg(long)]
    pub verify_data: bool,
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
    #[arg(long)]
    pub json: bool,
}

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
}

// `relic diff`.
#[derive(Args)]
pub struct DiffArgs {
    pub from: String,
    pub to: String,
    #[arg(long)]
    pub json: bool,
}

// `relic ls`.
#[derive(Args)]
pub struct LsArgs {
    pub snapshot: String,
    /// Only these paths and what is under them.
    pub paths: Vec<String>,
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
    pub object_lock_mode: relic::objectlock::Mode,
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
    #[arg(long)]
    pub keep_last: Option<usize>,
    #[arg(long)]
    pub keep_daily: Option<usize>,
    #[arg(long)]
    pub keep_weekly: Option<usize>,
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
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// List the key slots.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a slot for another passphrase (RELIC_NEW_PASSWORD, RELIC_NEW_PASSWORD_FILE or the prompt).
    Add,
    /// Remove a slot by id prefix (never the one in use, never the last).
    Remove { id: String },
    /// Replace the passphrase in use by a new one.
    Passwd,
    /// Drop this repository's key from the key cache (see --key-cache).
    Forget,
}

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Recreate the index from the packs and snapshots.
    Rebuild,
}

#[derive(Subcommand)]
pub enum BackupSource {
    /// Back up a PostgreSQL database with pg_dump (plain SQL, streamed).
    Pg {
        /// libpq URL or key=value string; without it the PG* variables apply
        /// (with --container: as seen inside the container; without it the
        /// container's POSTGRES_USER and POSTGRES_DB).
        conninfo: Option<String>,
        /// The database runs in this container (name or id): its own
        /// pg_dump runs inside it through the Docker engine (DOCKER_HOST);
        /// no client on this host, no published port.
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
        /// Snapshot name (default: the database name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        snapshot: SnapshotArgs,
    },
    /// Back up Docker named volumes through the engine (DOCKER_HOST): each
    /// volume's files (modes, owners, mtimes, symlinks) under
    /// volumes/NAME, read by a helper container from a local image.
    Volume {
        /// Volume names (`docker volume ls`).
        #[arg(required = true)]
        volumes: Vec<String>,
        /// Snapshot name (default: the volume's name, or `volumes`).
        #[arg(long)]
        name: Option<String>,
        /// Stop the running containers that use a volume while it is
        /// copied, and start them again after (a running PostgreSQL
        /// server's data volume is refused without it).
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        snapshot: SnapshotArgs,
    },
    /// Back up Docker images through the engine (DOCKER_HOST), one
    /// `docker save` tar per image, or a `docker save` archive file.
    Image {
        /// Image references (name:tag or image id).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        references: Vec<String>,
        /// Read a `docker save` archive from this file (`-`: standard input).
        #[arg(long, value_name = "TAR")]
        file: Option<PathBuf>,
        /// Snapshot name (default: the image name without its tag).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        snapshot: SnapshotArgs,
    },
}

/// How a new snapshot is filed, shared by every form of `backup`.
#[derive(Args)]
pub struct SnapshotArgs {
    /// daily, named, immaculate, sacred.
    #[arg(long, default_value = "daily")]
    pub tier: String,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl SnapshotArgs {
    pub fn options(&self, name: &str) -> Result<SnapshotOptions> {
        let tier: Tier = self.tier.parse()?;
        if tier == Tier::Safety {
            bail!("the safety tier is reserved for snapshots relic takes before a restore");
        }
        Ok(SnapshotOptions {
            name: name.to_string(),
            tier,
            labels: super::parse::labels(&self.labels)?,
            meta: BTreeMap::new(),
        })
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub source: Option<BackupSource>,
    /// Snapshot name (backups under one name form a series).
    #[arg(long, required = true)]
    pub name: Option<String>,
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// Read the data from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// Name of the stream inside the snapshot (default: the snapshot name).
    #[arg(long, requires = "stdin")]
    pub stdin_name: Option<String>,
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
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
        /// Go on even though NAME is a stack's last immaculate baseline
        /// (without a terminal to type RETIRE-LAST at).
        #[arg(long)]
        last: bool,
    },
    /// Make a snapshot (a verified daily, a drilled stack) a write-once
    /// baseline as it is, under a new name; the snapshot itself stays. A
    /// partial snapshot is refused: a baseline is whole.
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
    Audit {
        #[arg(long)]
        json: bool,
    },
}
