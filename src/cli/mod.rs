//! Command-line interface: clap commands, tables and `--json`, and error
//! messages with context. Everything it does goes through the library.

mod progress;
mod secret;
mod stack;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::HumanBytes;
use progress::Bar;
use relic::check::{check, stats};
use relic::crypto::KdfParams;
use relic::progress::{Progress, Unit};
use relic::repo::{InitOptions, SnapshotOptions};
use relic::snapshot::{ItemKind, Tier};
use relic::{files, Repository};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "relic",
    version,
    about = "Deduplicating backups of databases, images and files"
)]
pub(crate) struct Cli {
    /// Repository: a directory, or s3://BUCKET/PREFIX (endpoint and
    /// credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION).
    #[arg(short = 'r', long = "repo", env = "RELIC_REPO", global = true)]
    repo: Option<PathBuf>,
    /// No progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository.
    Init {
        /// Average chunk size in bytes (a power of two).
        #[arg(long, default_value_t = relic::chunker::ChunkerParams::default().avg_size)]
        chunk_avg: u32,
        /// zstd level for new chunks (1 by measurement: docs/design.md).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-7..=19))]
        compression: i32,
        /// Store everything in the clear (the default encrypts, with a
        /// passphrase from RELIC_PASSWORD, RELIC_PASSWORD_FILE or a prompt).
        #[arg(long)]
        no_encryption: bool,
        /// Longest chain of delta blobs: a chunk similar to a stored one is
        /// stored as a zstd delta against it; 0 stores every chunk whole
        /// (docs/design.md has the measurements).
        #[arg(long, default_value_t = relic::delta::MAX_DEPTH, value_parser = clap::value_parser!(u8).range(0..=64))]
        delta_depth: u8,
        /// Argon2id memory in MiB for the passphrase's key slot.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=4096))]
        kdf_memory: u32,
    },
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
    Restore {
        /// Snapshot: id prefix, name (its newest snapshot) or `latest`.
        snapshot: String,
        /// Write the single stream of the snapshot to standard output.
        #[arg(long, conflicts_with = "to")]
        stdout: bool,
        /// Restore every item under this directory; for an image snapshot,
        /// write the image's `docker save` tar to this file.
        #[arg(long)]
        to: Option<PathBuf>,
        /// Restore a database snapshot into PostgreSQL (libpq URL or key=value).
        #[arg(long, value_name = "CONNINFO", conflicts_with_all = ["stdout", "to"])]
        into_postgres: Option<String>,
        /// Create the database first.
        #[arg(long, requires = "into_postgres")]
        create: bool,
        /// Drop and recreate the database first.
        #[arg(long, requires = "into_postgres")]
        clean: bool,
        /// Refuse unless the snapshot is at this Alembic revision.
        #[arg(long, requires = "into_postgres")]
        expect_revision: Option<String>,
        /// Skip the safety snapshot of the target (database or stack).
        #[arg(long)]
        no_safety_snapshot: bool,
        /// Print the plan and the checks, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Restore despite an Alembic revision mismatch.
        #[arg(long)]
        force: bool,
        /// Read and verify every chunk before restoring.
        #[arg(long)]
        verify_data: bool,
        /// The stack's relic.toml, for a stack snapshot (default ./relic.toml).
        #[arg(long, value_name = "PATH", conflicts_with_all = ["stdout", "to", "into_postgres", "into_docker"])]
        config: Option<PathBuf>,
        /// Restore one part of a stack snapshot: db, images or files.
        #[arg(long, value_name = "PART")]
        only: Option<relic::stack::Part>,
        /// Load a Docker image snapshot into the engine (DOCKER_HOST), then
        /// check that every tag points at the recorded image id.
        #[arg(long, conflicts_with_all = ["stdout", "to", "into_postgres"])]
        into_docker: bool,
        /// Only this image of the snapshot: a tag, the reference it was
        /// backed up by, or an image id prefix.
        #[arg(long, value_name = "REF")]
        image: Option<String>,
    },
    /// Verify the repository.
    Check {
        /// Read and verify every byte of every pack.
        #[arg(long)]
        read_data: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the packs, read and verify every byte, and
    /// record which snapshots are damaged. Deletes nothing. Exits 3 when
    /// damage was found.
    Repair {
        #[arg(long)]
        json: bool,
    },
    /// Sizes and ratios.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Forget snapshots: the ones named, or those a retention policy does
    /// not keep. Immaculate, sacred and named snapshots are never forgotten
    /// by a policy.
    Forget(ForgetArgs),
    /// Free the space of data no snapshot needs (deletes and repacks packs).
    Prune {
        /// Show what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repack packs whose live fraction is below this (0 to 1).
        #[arg(long, default_value_t = relic::prune::DEFAULT_REPACK_BELOW)]
        max_repack_ratio: f64,
        #[arg(long)]
        json: bool,
    },
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
    Drill {
        snapshot: Option<String>,
        /// The stack's relic.toml (default ./relic.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// What changed between two snapshots: items, and for stacks the
    /// databases' revisions and row counts, images and layers, git commit.
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy the repository to another directory or to S3-compatible
    /// storage (s3://bucket/prefix; AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): only what DEST lacks,
    /// packs first, then snapshots. Never deletes anything at DEST.
    Sync {
        /// A directory or s3://bucket/prefix.
        #[arg(long, value_name = "DEST")]
        to: String,
        /// Show what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Re-read every object sent at DEST and compare its BLAKE3.
        #[arg(long)]
        verify: bool,
        /// Parallel transfers.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Put every object of the immaculate and sacred snapshots (their
        /// snapshot objects and every pack their data or delta bases are
        /// in) under S3 Object Lock for at least DAYS days from now; each
        /// sync extends it. The bucket must have Object Lock enabled.
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
        object_lock: Option<u32>,
        /// compliance (nobody can delete or shorten) or governance (users
        /// with s3:BypassGovernanceRetention can).
        #[arg(
            long,
            value_name = "MODE",
            default_value = "compliance",
            requires = "object_lock"
        )]
        object_lock_mode: relic::objectlock::Mode,
        #[arg(long)]
        json: bool,
    },
    /// Give a snapshot a new name (never an immaculate or sacred one).
    Rename { snapshot: String, new_name: String },
    /// Back up a whole stack (databases, images, files, git commit) as
    /// described by relic.toml into one snapshot.
    Snapshot(stack::SnapshotCmd),
    /// Print a stack snapshot's manifest (Markdown, or --json).
    Manifest {
        snapshot: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore the stack's newest immaculate baseline through the full
    /// safety chain. Asks twice: --confirm, and the baseline's name.
    Emergency(stack::EmergencyCmd),
    /// Immaculate and sacred baselines.
    #[command(subcommand)]
    Baseline(stack::BaselineCmd),
}

#[derive(Args)]
struct ForgetArgs {
    /// Snapshots to forget (id prefix or name); without them, the policy applies.
    snapshots: Vec<String>,
    /// Apply the policy to this tier only.
    #[arg(long)]
    tier: Option<String>,
    /// Apply the policy to this series (snapshot name) only.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    keep_last: Option<usize>,
    #[arg(long)]
    keep_daily: Option<usize>,
    #[arg(long)]
    keep_weekly: Option<usize>,
    #[arg(long)]
    keep_monthly: Option<usize>,
    /// Keep everything younger than this span (for example 7d, 2w, 1mo).
    #[arg(long)]
    keep_within: Option<String>,
    /// Show what would be kept and forgotten, and why; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Judge as if it were this time (RFC 3339).
    #[arg(long)]
    now: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KeyCommand {
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
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Recreate the index from the packs and snapshots.
    Rebuild,
}

#[derive(Subcommand)]
enum BackupSource {
    /// Back up a PostgreSQL database with pg_dump (plain SQL, streamed).
    Pg {
        /// libpq URL or key=value string; without it the PG* variables apply.
        conninfo: Option<String>,
        /// Snapshot name (default: the database name).
        #[arg(long)]
        name: Option<String>,
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
pub(crate) struct SnapshotArgs {
    /// daily, named, immaculate, sacred.
    #[arg(long, default_value = "daily")]
    tier: String,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl SnapshotArgs {
    pub(crate) fn options(&self, name: &str) -> Result<SnapshotOptions> {
        let tier: Tier = self.tier.parse()?;
        if tier == Tier::Safety {
            bail!("the safety tier is reserved for snapshots relic takes before a restore");
        }
        Ok(SnapshotOptions {
            name: name.to_string(),
            tier,
            labels: parse_labels(&self.labels)?,
            meta: BTreeMap::new(),
        })
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct BackupArgs {
    #[command(subcommand)]
    source: Option<BackupSource>,
    /// Snapshot name (backups under one name form a series).
    #[arg(long, required = true)]
    name: Option<String>,
    #[command(flatten)]
    snapshot: SnapshotArgs,
    /// Read the data from standard input.
    #[arg(long)]
    stdin: bool,
    /// Name of the stream inside the snapshot (default: the snapshot name).
    #[arg(long, requires = "stdin")]
    stdin_name: Option<String>,
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_anywhere(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
                    || matches!(c.downcast_ref::<relic::repo::Error>(),
                        Some(relic::repo::Error::Output(io)) if io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(141);
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

/// How long prune, repair and `index rebuild` wait for other relic
/// processes to close the index.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Parallel transfers to and from a repository on S3.
const REMOTE_JOBS: usize = 4;

/// Runs a command on a local repository, or on the local mirror of one on
/// S3: pulled first, pushed after (see relic::remote), under a lock in the
/// bucket.
fn run_anywhere(mut cli: Cli) -> Result<ExitCode> {
    let spec = match repo_path(&cli) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => return run(cli),
    };
    if !spec.starts_with("s3://") {
        return run(cli);
    }
    let bar = Bar::new(cli.quiet);
    let remote = relic::remote::Remote::open(&spec)?;
    let init = matches!(cli.command, Command::Init { .. });
    let exclusive = matches!(
        cli.command,
        Command::Prune { .. } | Command::Repair { .. } | Command::Index(_)
    );
    // Listing and reading need no lock (and read-only credentials suffice
    // for them: a lock that cannot be written is then only a warning).
    let _lock = if init {
        remote.prepare_init()?;
        None
    } else {
        let lock = match remote.lock(exclusive) {
            Ok(l) => Some(l),
            Err(relic::sync::Error::Store(e @ relic::store::Error::AccessDenied { .. }))
                if !exclusive =>
            {
                eprintln!("warning: {spec}: no lock taken ({e})");
                None
            }
            Err(e) => return Err(e).context("cannot lock the repository"),
        };
        remote
            .pull(REMOTE_JOBS, &bar)
            .with_context(|| format!("cannot read repository {spec}"))?;
        lock
    };
    cli.repo = Some(remote.mirror().to_path_buf());
    let result = run(cli);
    // What the command wrote goes to the bucket even when it failed later
    // (a safety snapshot taken before a failed restore, say).
    let pushed = remote
        .push(REMOTE_JOBS, &bar)
        .with_context(|| format!("cannot write repository {spec}; the local mirror {} holds the changes, the next command sends them", remote.mirror().display()));
    match (result, pushed) {
        (Ok(code), Ok(_)) => Ok(code),
        (Err(e), Ok(_)) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(p)) => {
            eprintln!("warning: {p:#}");
            Err(e)
        }
    }
}

/// `-r`, RELIC_REPO, or the `repository` of ./relic.toml.
fn repo_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(r) = &cli.repo {
        return Ok(r.clone());
    }
    if let Some(cfg) = stack::load_config(None, false)? {
        if let Some(r) = &cfg.repository {
            if r.to_string_lossy().starts_with("s3://") {
                return Ok(PathBuf::from(r));
            }
            return Ok(cfg.dir().join(r));
        }
    }
    bail!("no repository given: use -r PATH, set RELIC_REPO, or name it in ./relic.toml")
}

pub(crate) fn open(cli: &Cli) -> Result<Repository> {
    open_path(&repo_path(cli)?)
}

pub(crate) fn open_path(path: &std::path::Path) -> Result<Repository> {
    let path = path.to_path_buf();
    let context = || format!("cannot open repository {}", path.display());
    let config = Repository::read_config(&path).with_context(context)?;
    let pass = if config.encryption == "none" {
        None
    } else {
        Some(secret::passphrase()?)
    };
    Repository::open(&path, pass.as_ref().map(|p| p.as_bytes())).with_context(context)
}

fn kdf() -> KdfParams {
    KdfParams::default()
}

fn run(cli: Cli) -> Result<ExitCode> {
    let bar = Bar::new(cli.quiet);
    relic::lock::set_command(command_name(&cli.command));
    match &cli.command {
        Command::Init {
            chunk_avg,
            compression,
            no_encryption,
            delta_depth,
            kdf_memory,
        } => {
            let path = repo_path(&cli)?;
            if path.join("config").exists() {
                bail!(
                    "{} already exists and holds a relic repository",
                    path.display()
                );
            }
            let passphrase = if *no_encryption {
                None
            } else {
                Some(secret::new_passphrase(true)?.as_bytes().to_vec())
            };
            let opts = InitOptions {
                chunker: relic::chunker::ChunkerParams::with_avg(*chunk_avg),
                compression_level: *compression,
                delta_max_depth: *delta_depth,
                passphrase,
                kdf: KdfParams {
                    memory_kib: kdf_memory * 1024,
                    ..KdfParams::default()
                },
            };
            let repo = Repository::init(&path, &opts)
                .with_context(|| format!("cannot create repository {}", path.display()))?;
            println!(
                "created {} repository {} at {}",
                if repo.keys().cipher().is_some() {
                    "encrypted"
                } else {
                    "unencrypted"
                },
                repo.config().id,
                path.display()
            );
        }
        Command::Key(cmd) => key(&cli, cmd)?,
        Command::Forget(args) => forget(&cli, args)?,
        Command::Prune {
            dry_run,
            max_repack_ratio,
            json,
        } => {
            if !(0.0..=1.0).contains(max_repack_ratio) {
                bail!("--max-repack-ratio must be between 0 and 1");
            }
            let mut repo = open(&cli)?;
            repo.wait_for_index(INDEX_WAIT, &bar)?;
            let before = repo
                .index()
                .packs()?
                .iter()
                .map(|(_, i)| i.size)
                .sum::<u64>();
            let plan = relic::prune::prune(&repo, *max_repack_ratio, *dry_run, &bar)
                .context("prune failed; run it again to finish")?;
            let after = repo
                .index()
                .packs()?
                .iter()
                .map(|(_, i)| i.size)
                .sum::<u64>();
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"plan": plan, "pack_bytes_before": before, "pack_bytes_after": after, "dry_run": dry_run})
                    )?
                );
            } else {
                println!(
                    "{} snapshots, {} packs ({}), {} of {} blobs live ({} live, {} dead)",
                    plan.snapshots,
                    plan.packs,
                    HumanBytes(plan.pack_bytes),
                    plan.live_chunks,
                    plan.chunks,
                    HumanBytes(plan.live_bytes),
                    HumanBytes(plan.dead_bytes)
                );
                println!(
                    "{} {} packs, repack {} ({} to copy): frees about {}",
                    if *dry_run { "would delete" } else { "deleted" },
                    plan.delete.len(),
                    plan.repack.len(),
                    HumanBytes(plan.repack_bytes),
                    HumanBytes(plan.frees)
                );
                if !*dry_run {
                    println!(
                        "packs: {} before, {} after: {} freed",
                        HumanBytes(before),
                        HumanBytes(after),
                        HumanBytes(before.saturating_sub(after))
                    );
                }
            }
        }
        Command::Backup(args) => backup(&cli, args, &bar)?,
        Command::Snapshots { json } => list_snapshots(&open(&cli)?, *json)?,
        Command::Restore {
            snapshot,
            stdout,
            to,
            into_postgres,
            create,
            clean,
            expect_revision,
            no_safety_snapshot,
            dry_run,
            force,
            verify_data,
            into_docker,
            image,
            config,
            only,
        } => {
            let stack_mode = config.is_some()
                || !(*stdout || to.is_some() || into_postgres.is_some() || *into_docker);
            let cfg = if stack_mode {
                stack::load_config(config.as_deref(), config.is_some())?
            } else {
                None
            };
            let repo = stack::open(&cli, cfg.as_ref())?;
            let _lock = repo.lock_shared(&bar)?;
            repo.refresh()?;
            let (id, snap) = repo.find_snapshot(snapshot)?;
            let images = relic::docker::records(&snap)?;
            if stack_mode && snap.meta.contains_key(relic::stack::MANIFEST_KEY) {
                let cfg = cfg.with_context(|| {
                    format!(
                        "snapshot {} is a stack snapshot: give its relic.toml with --config (no ./relic.toml here)",
                        id.short()
                    )
                })?;
                let opts = relic::stack::RestoreOptions {
                    only: *only,
                    dry_run: *dry_run,
                    verify_data: *verify_data,
                    safety_snapshot: !*no_safety_snapshot,
                    force: *force,
                };
                stack::restore(&repo, &id, &snap, &cfg, &opts, &bar)?;
                return Ok(ExitCode::SUCCESS);
            }
            if only.is_some() {
                bail!(
                    "--only applies to stack snapshots; {} is not one",
                    id.short()
                );
            }
            if into_postgres.is_none()
                && (*dry_run || *force || *verify_data || *no_safety_snapshot)
            {
                bail!("--dry-run, --force, --verify-data and --no-safety-snapshot apply to --into-postgres and stack restores");
            }
            if *into_docker {
                let say = |m: &str| bar.say(m);
                let checks = relic::docker::restore(&repo, &snap, image.as_deref(), &bar, &say)
                    .with_context(|| {
                        format!("loading snapshot {} into the Docker engine", id.short())
                    })?;
                bar.finish();
                print_checks(&checks);
                println!("loaded snapshot {} and verified its tags", id.short());
            } else if *stdout
                || image.is_some()
                || (!images.is_empty() && to.as_ref().is_some_and(|p| !p.is_dir()))
            {
                let item = single_stream(&repo, &id, &snap, image.as_deref())?;
                bar.start("restoring", Some(item.size), Unit::Bytes);
                if let Some(path) = to.as_ref().filter(|_| !*stdout) {
                    restore_to_file(&repo, &item, path, &bar).with_context(|| {
                        format!("restoring snapshot {} to {}", id.short(), path.display())
                    })?;
                    bar.finish();
                    eprintln!(
                        "wrote {} ({}) from snapshot {}",
                        path.display(),
                        HumanBytes(item.size),
                        id.short()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                // Whole batches go straight to the descriptor: no line
                // buffering, no extra copy.
                use std::os::fd::AsFd;
                let mut out = std::fs::File::from(
                    io::stdout()
                        .as_fd()
                        .try_clone_to_owned()
                        .context("duplicating stdout")?,
                );
                repo.restore_item(&item, &mut out, &bar)
                    .with_context(|| format!("restoring snapshot {}", id.short()))?;
                bar.finish();
            } else if let Some(conninfo) = into_postgres {
                let opts = relic::postgres::RestoreOptions {
                    conninfo: conninfo.clone(),
                    create: *create,
                    clean: *clean,
                    expect_revision: expect_revision.clone(),
                    safety_snapshot: !*no_safety_snapshot,
                    dry_run: *dry_run,
                    force: *force,
                    verify_data: *verify_data,
                };
                let say = |m: &str| bar.say(m);
                let report = relic::postgres::restore(&repo, &id, &snap, &opts, &bar, &say)
                    .with_context(|| {
                        format!("restoring snapshot {} into PostgreSQL", id.short())
                    })?;
                bar.finish();
                print_checks(&report.checks);
                if report.restored {
                    println!("restored snapshot {} and verified it", id.short());
                }
            } else if let Some(dir) = to {
                let st = files::restore_to(&repo, &snap, dir, &bar).with_context(|| {
                    format!("restoring snapshot {} into {}", id.short(), dir.display())
                })?;
                bar.finish();
                eprintln!(
                    "restored snapshot {} into {}: {} files, {} directories, {} links, {}",
                    id.short(),
                    dir.display(),
                    st.files,
                    st.dirs,
                    st.links,
                    HumanBytes(st.bytes)
                );
                for (path, why) in &st.damaged {
                    eprintln!("damaged, not restored: {path}: {why}");
                }
                for (path, why) in &st.refused {
                    eprintln!("refused, not restored: {path}: {why}");
                }
                if !st.complete() {
                    eprintln!(
                        "error: {} item(s) damaged and {} refused; every other item was restored",
                        st.damaged.len(),
                        st.refused.len()
                    );
                    return Ok(ExitCode::from(3));
                }
            } else {
                bail!(
                    "say where to restore: --stdout, --to PATH, --into-postgres or --into-docker"
                );
            }
        }
        Command::Check { read_data, json } => {
            let repo = open(&cli)?;
            let _lock = repo.lock_shared(&bar)?;
            repo.refresh()?;
            let report = check(&repo, *read_data, &bar)?;
            if *read_data && !repo.is_read_only() {
                relic::check::record_damage(&repo, &report.damaged_snapshots)?;
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for p in &report.problems {
                    println!("{p}");
                }
                println!(
                    "{} packs, {} blobs, {} snapshots checked{}",
                    report.packs,
                    report.blobs,
                    report.snapshots,
                    if *read_data {
                        format!(", {} read", HumanBytes(report.bytes_read))
                    } else {
                        String::new()
                    }
                );
                for (id, name) in &report.damaged_snapshots {
                    println!("damaged snapshot: {} ({name})", &id[..8]);
                }
            }
            if !report.is_ok() {
                if !*json {
                    eprintln!(
                        "error: the repository has {} problem(s)",
                        report.problems.len()
                    );
                }
                return Ok(ExitCode::from(1));
            }
            if !*json {
                println!("no errors found");
            }
        }
        Command::Stats { json } => {
            let s = stats(&open(&cli)?)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("snapshots:          {}", s.snapshots);
                println!("total size:         {}", HumanBytes(s.total_size));
                println!(
                    "unique data:        {} in {} chunks",
                    HumanBytes(s.data_raw),
                    s.data_chunks
                );
                println!("stored data:        {}", HumanBytes(s.data_stored));
                println!(
                    "of which deltas:    {} chunks of {} stored in {}",
                    s.delta_chunks,
                    HumanBytes(s.delta_raw),
                    HumanBytes(s.delta_stored)
                );
                println!(
                    "metadata:           {} in {} blobs",
                    HumanBytes(s.meta_stored),
                    s.meta_blobs
                );
                println!(
                    "packs:              {} ({})",
                    s.packs,
                    HumanBytes(s.pack_bytes)
                );
                println!("dedup ratio:        {:.2}", s.dedup_ratio);
                println!("compression ratio:  {:.2}", s.compression_ratio);
                println!("total ratio:        {:.2}", s.total_ratio);
            }
        }
        Command::Snapshot(cmd) => stack::snapshot(&cli, cmd, &bar)?,
        Command::Drill { snapshot, config } => {
            stack::drill(&cli, snapshot.as_deref(), config.as_deref(), &bar)?
        }
        Command::Diff { from, to, json } => {
            let repo = open(&cli)?;
            let a = repo.find_snapshot(from)?;
            let b = repo.find_snapshot(to)?;
            let d = relic::stack::diff(&repo, (&a.0, &a.1), (&b.0, &b.1))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!("{} -> {}", d.from, d.to);
                for (title, lines) in [
                    ("databases", &d.databases),
                    ("images", &d.images),
                    ("added", &d.added),
                    ("removed", &d.removed),
                    ("changed", &d.changed),
                ] {
                    if !lines.is_empty() {
                        println!("{title}:");
                        for l in lines {
                            println!("  {l}");
                        }
                    }
                }
                if let Some(g) = &d.git {
                    println!("git: {g}");
                }
                println!(
                    "new data stored by {}: {} ({} after compression)",
                    d.to,
                    HumanBytes(d.new_bytes),
                    HumanBytes(d.stored_bytes)
                );
            }
        }
        Command::Sync {
            to,
            dry_run,
            verify,
            jobs,
            object_lock,
            object_lock_mode,
            json,
        } => {
            let repo = open(&cli)?;
            let _lock = repo.lock_shared(&bar)?;
            let dest = relic::store::open(to)?;
            let opts = relic::sync::Options {
                dry_run: *dry_run,
                verify: *verify,
                jobs: *jobs,
                object_lock: object_lock.map(|days| relic::sync::ObjectLock {
                    days,
                    mode: *object_lock_mode,
                }),
            };
            let r = relic::sync::sync(&repo, dest.as_ref(), &opts, &bar).map_err(|e| {
                if e.resumable() {
                    anyhow::Error::new(e)
                        .context(format!("sync to {to} stopped; run it again to resume"))
                } else {
                    e.into()
                }
            })?;
            bar.finish();
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}{}: {} packs ({}), {} snapshots, {} other objects{}{}, {:.1}s ({}/s)",
                    if *dry_run {
                        "would sync to "
                    } else {
                        "synced to "
                    },
                    r.dest,
                    r.packs,
                    HumanBytes(r.pack_bytes),
                    r.snapshots,
                    r.other,
                    if r.created {
                        ", repository created"
                    } else {
                        ""
                    },
                    if *verify {
                        format!(", {} verified", r.verified)
                    } else {
                        String::new()
                    },
                    r.seconds,
                    HumanBytes((r.pack_bytes as f64 / r.seconds.max(1e-3)) as u64)
                );
                if let Some(until) = &r.locked_until {
                    println!(
                        "object lock ({}): {} objects of immaculate and sacred snapshots {} until {until}{}",
                        object_lock_mode.as_str(),
                        r.lock_objects,
                        if *dry_run { "would be retained" } else { "retained" },
                        if *dry_run {
                            String::new()
                        } else {
                            format!(" ({} set or extended now)", r.locked)
                        }
                    );
                }
            }
        }
        Command::Rename { snapshot, new_name } => {
            let repo = open(&cli)?;
            let (id, _) = repo.find_snapshot(snapshot)?;
            let new_id = repo
                .rename(&id, new_name)
                .with_context(|| format!("renaming snapshot {}", id.short()))?;
            println!(
                "snapshot {} is now {} ({new_name})",
                id.short(),
                new_id.short()
            );
        }
        Command::Manifest { snapshot, json } => {
            let repo = stack::open(&cli, stack::load_config(None, false)?.as_ref())?;
            let (id, snap) = repo.find_snapshot(snapshot)?;
            let m = relic::stack::manifest(&id, &snap)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                print!("{}", relic::stack::manifest_markdown(&id, &snap, &m));
            }
        }
        Command::Emergency(cmd) => stack::emergency(&cli, cmd, &bar)?,
        Command::Baseline(cmd) => stack::baseline(&cli, cmd)?,
        Command::Unlock { stale } => {
            let path = repo_path(&cli)?;
            if !path.join("config").exists() {
                bail!("no relic repository at {}", path.display());
            }
            let backend = relic::store::Local::new(&path);
            let (removed, left) = relic::lock::unlock(&backend, *stale)
                .with_context(|| format!("removing the locks of {}", path.display()))?;
            let now = jiff::Timestamp::now().as_second().max(0) as u64;
            for l in &removed {
                println!("removed lock {}", l.describe(now));
            }
            for l in &left {
                println!("kept live lock {}", l.describe(now));
            }
            if removed.is_empty() && left.is_empty() {
                println!("the repository holds no locks");
            }
        }
        Command::Repair { json } => {
            let mut repo = open(&cli)?;
            repo.wait_for_index(INDEX_WAIT, &bar)?;
            let _lock = repo.lock_exclusive(&bar)?;
            let r = relic::check::repair(&repo, &bar).context("repairing the repository")?;
            bar.finish();
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "index rebuilt from {} packs ({} blobs, {} snapshots)",
                    r.rebuild.packs, r.rebuild.blobs, r.rebuild.snapshots
                );
                print_damaged_packs(&r.rebuild);
                for p in &r.check.problems {
                    println!("{p}");
                }
                for (id, name) in &r.check.damaged_snapshots {
                    println!("damaged snapshot: {} ({name})", &id[..8]);
                }
                println!(
                    "{} of {} snapshots intact; nothing was deleted",
                    r.intact_snapshots, r.check.snapshots
                );
            }
            if !r.check.is_ok() {
                eprintln!("error: the repository is damaged: damaged snapshots cannot be fully restored (their other items can, with restore --to); the intact ones restore as before");
                return Ok(ExitCode::from(3));
            }
        }
        Command::Index(IndexCommand::Rebuild) => {
            let mut repo = open(&cli)?;
            repo.wait_for_index(INDEX_WAIT, &bar)?;
            let _lock = repo.lock_exclusive(&bar)?;
            let r = repo.rebuild_index(&bar).context("rebuilding the index")?;
            bar.finish();
            println!(
                "index rebuilt: {} packs, {} blobs, {} snapshots",
                r.packs, r.blobs, r.snapshots
            );
            print_damaged_packs(&r);
            if r.lost_blobs > 0 {
                eprintln!(
                    "error: {} blob(s) of damaged packs could not be salvaged; run `relic repair` to see which snapshots they belong to",
                    r.lost_blobs
                );
                return Ok(ExitCode::from(3));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a rebuild did with packs whose trailer was damaged.
fn print_damaged_packs(r: &relic::repo::RebuildReport) {
    for p in &r.damaged_packs {
        println!(
            "pack {} is damaged ({}): {} blobs salvaged into new packs, {} lost; the pack was moved to damaged/packs/",
            p.pack, p.why, p.salvaged_blobs, p.lost_blobs
        );
    }
    if r.restored_snapshots > 0 {
        println!(
            "{} damaged snapshot object(s) rewritten from the index's copies (the damaged files are in damaged/snapshots/)",
            r.restored_snapshots
        );
    }
}

/// The command's name, recorded in the locks it takes.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Init { .. } => "init",
        Command::Key(_) => "key",
        Command::Backup(_) => "backup",
        Command::Snapshots { .. } => "snapshots",
        Command::Restore { .. } => "restore",
        Command::Check { .. } => "check",
        Command::Repair { .. } => "repair",
        Command::Prune { .. } => "prune",
        Command::Forget(_) => "forget",
        Command::Index(_) => "index rebuild",
        Command::Unlock { .. } => "unlock",
        _ => "relic",
    }
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("label '{l}' is not KEY=VALUE"),
        })
        .collect()
}

fn backup(cli: &Cli, args: &BackupArgs, bar: &Bar) -> Result<()> {
    if let Some(BackupSource::Image {
        references,
        file,
        name,
        snapshot,
    }) = &args.source
    {
        return backup_image(
            cli,
            references,
            file.as_deref(),
            name.as_deref(),
            snapshot,
            bar,
        );
    }
    if let Some(BackupSource::Pg {
        conninfo,
        name,
        snapshot,
    }) = &args.source
    {
        let name = match name {
            Some(n) => n.clone(),
            None => relic::postgres::config(conninfo.as_deref())?
                .get_dbname()
                .unwrap_or("postgres")
                .to_string(),
        };
        let opts = snapshot.options(&name)?;
        let repo = open(cli)?;
        bar.start("dumping", None, Unit::Bytes);
        let (id, snap) = relic::postgres::backup(&repo, &opts, conninfo.as_deref(), bar)
            .with_context(|| format!("database backup '{name}' failed; no snapshot was written"))?;
        bar.finish();
        return print_backup(&id, &snap, snapshot.json);
    }
    let name = args.name.clone().unwrap_or_default();
    let opts = args.snapshot.options(&name)?;
    if args.stdin != args.paths.is_empty() {
        bail!("give either --stdin or one or more paths");
    }
    let repo = open(cli)?;
    bar.start("backing up", None, Unit::Bytes);
    let (id, snap) = if args.stdin {
        let item = args.stdin_name.as_deref().unwrap_or(&name);
        relic::files::widen_pipe(&io::stdin());
        repo.backup_stream(&opts, item, io::stdin().lock(), bar)
    } else {
        repo.backup(&opts, bar, |w| files::backup_paths(w, &args.paths))
    }
    .with_context(|| format!("backup '{name}' failed; no snapshot was written"))?;
    bar.finish();
    print_backup(&id, &snap, args.snapshot.json)?;
    let mut partial = false;
    if let Some(n) = snap.meta.get("files.skipped") {
        eprintln!(
            "warning: {n} entries could not be read and are not in snapshot {}",
            id.short()
        );
        partial = true;
    }
    if let Some(n) = snap.meta.get("files.changed") {
        eprintln!(
            "warning: {n} file(s) changed while they were read and may be inconsistent in snapshot {}",
            id.short()
        );
        partial = true;
    }
    if partial {
        std::process::exit(3);
    }
    Ok(())
}

fn backup_image(
    cli: &Cli,
    references: &[String],
    file: Option<&std::path::Path>,
    name: Option<&str>,
    snapshot: &SnapshotArgs,
    bar: &Bar,
) -> Result<()> {
    let stdin = file.is_some_and(|f| f.as_os_str() == "-");
    let name = match (name, file) {
        (Some(n), _) => n.to_string(),
        (None, Some(_)) if stdin => "image-archive".to_string(),
        (None, Some(f)) => f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image-archive".into()),
        (None, None) if references.len() == 1 => image_name(&references[0]).to_string(),
        (None, None) => "images".to_string(),
    };
    let opts = snapshot.options(&name)?;
    let repo = open(cli)?;
    let (id, snap) = match file {
        Some(f) => {
            bar.start("backing up", None, Unit::Bytes);
            if stdin {
                relic::files::widen_pipe(&io::stdin());
                relic::docker::backup_archive(&repo, &opts, io::stdin().lock(), &name, bar)
            } else {
                let r =
                    std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
                let item = f.file_stem().map(|s| s.to_string_lossy().into_owned());
                relic::docker::backup_archive(
                    &repo,
                    &opts,
                    r,
                    item.as_deref().unwrap_or(&name),
                    bar,
                )
            }
        }
        None => relic::docker::backup(&repo, &opts, references, bar),
    }
    .with_context(|| format!("image backup '{name}' failed; no snapshot was written"))?;
    bar.finish();
    print_backup(&id, &snap, snapshot.json)
}

/// `registry:5000/app:1.2` → `registry:5000/app`; digests and ids stay.
fn image_name(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    }
}

/// The table of what a restore verified; image ids shortened to 12 digits.
pub(crate) fn print_checks(checks: &[relic::postgres::Check]) {
    if checks.is_empty() {
        return;
    }
    let short = |v: &str| {
        v.strip_prefix("sha256:")
            .map_or(v.to_string(), |h| h[..12.min(h.len())].to_string())
    };
    println!("{:<56}  {:>16}  {:>16}  OK", "CHECK", "EXPECTED", "FOUND");
    for c in checks {
        println!(
            "{:<56}  {:>16}  {:>16}  {}",
            c.what,
            short(&c.expected),
            short(&c.found),
            if c.ok { "yes" } else { "NO" }
        );
    }
}

/// The one stream a snapshot (or the image `image` of it) holds.
fn single_stream(
    repo: &Repository,
    id: &relic::SnapshotId,
    snap: &relic::Snapshot,
    image: Option<&str>,
) -> Result<relic::snapshot::Item> {
    let mut items = if let Some(spec) = image {
        let selected = relic::docker::select(&relic::docker::records(snap)?, Some(spec))?;
        relic::docker::items_for(repo, snap, &selected)?
    } else {
        repo.items(snap)
            .take(2)
            .collect::<relic::repo::Result<Vec<_>>>()?
    };
    if items.is_empty() {
        bail!("snapshot {} is empty", id.short());
    }
    if items.len() > 1 || !matches!(items[0].kind, ItemKind::Stream | ItemKind::File) {
        bail!(
            "snapshot {} holds more than one stream; use --image REF or --to DIR",
            id.short()
        );
    }
    Ok(items.remove(0))
}

/// Writes one item to a new file: temp file, fsync, rename.
fn restore_to_file(
    repo: &Repository,
    item: &relic::snapshot::Item,
    path: &std::path::Path,
    bar: &Bar,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.relic-tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let r = repo
        .restore_item(item, &mut f, bar)
        .map_err(anyhow::Error::from)
        .and_then(|_| f.sync_all().context("fsync"))
        .and_then(|_| std::fs::rename(&tmp, path).context("rename into place"));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

pub(crate) fn print_backup(
    id: &relic::SnapshotId,
    snap: &relic::Snapshot,
    json: bool,
) -> Result<()> {
    let s = &snap.summary;
    let secs = (s.duration_ms as f64 / 1000.0).max(1e-3);
    if json {
        println!(
            "{}",
            json!({
                "id": id.to_hex(), "name": snap.name, "tier": snap.tier.as_str(),
                "size": s.size, "items": s.items, "chunks": s.chunks,
                "new_chunks": s.new_chunks, "new_bytes": s.new_bytes,
                "stored_bytes": s.stored_bytes, "duration_ms": s.duration_ms,
            })
        );
    } else {
        println!(
            "snapshot {} ({}, {}) saved: {} read, {} new, {} stored, {:.1}s ({}/s)",
            id.short(),
            snap.name,
            snap.tier,
            HumanBytes(s.size),
            HumanBytes(s.new_bytes),
            HumanBytes(s.stored_bytes),
            secs,
            HumanBytes((s.size as f64 / secs) as u64)
        );
    }
    Ok(())
}

fn list_snapshots(repo: &Repository, json: bool) -> Result<()> {
    let list = repo.load_snapshots(false)?;
    let snaps = list.ok;
    let damaged = relic::check::damaged_snapshots(repo);
    for (name, e) in &list.damaged {
        eprintln!(
            "warning: snapshot {} is unreadable ({e}); run `relic check`",
            &name[..8]
        );
    }
    let mut out = io::stdout().lock();
    if json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                json!({
                    "id": id.to_hex(), "name": s.name, "tier": s.tier.as_str(),
                    "time": s.time().to_string(), "host": s.host, "labels": s.labels,
                    "parent": s.parent.map(|p| p.to_hex()),
                    "size": s.summary.size, "stored_size": s.summary.stored_bytes,
                    "items": s.summary.items, "meta": s.meta,
                    "damaged": damaged.contains_key(&id.to_hex()),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<8}  {:<20}  {:<24}  {:<10}  {:>10}  {:>10}",
        "ID", "TIME", "NAME", "TIER", "SIZE", "STORED"
    )?;
    for (id, s) in &snaps {
        let time = s.time().strftime("%Y-%m-%d %H:%M:%S").to_string();
        writeln!(
            out,
            "{:<8}  {:<20}  {:<24}  {:<10}  {:>10}  {:>10}{}",
            id.short(),
            time,
            // Names made before names were checked may hold control
            // characters: shown escaped, never interpreted by the terminal.
            s.name.escape_debug().to_string(),
            s.tier.as_str(),
            HumanBytes(s.summary.size).to_string(),
            HumanBytes(s.summary.stored_bytes).to_string(),
            if damaged.contains_key(&id.to_hex()) {
                "  DAMAGED (relic repair)"
            } else {
                ""
            }
        )?;
    }
    writeln!(out, "{} snapshots", snaps.len())?;
    Ok(())
}

fn key(cli: &Cli, cmd: &KeyCommand) -> Result<()> {
    let repo = open(cli)?;
    if repo.keys().cipher().is_none() {
        bail!("the repository is not encrypted: it has no passphrases");
    }
    match cmd {
        KeyCommand::List { json } => {
            let slots = repo.key_slots()?;
            if *json {
                let v: Vec<_> = slots
                    .iter()
                    .map(|(id, s)| json!({"id": id, "current": repo.unlocked_slot() == Some(id.as_str()), "created": s.created, "host": s.host, "kdf": s.kdf, "params": s.params}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<2}{:<10}  {:<28}  {:<16}  KDF",
                    "", "ID", "CREATED", "HOST"
                );
                for (id, s) in &slots {
                    let cur = if repo.unlocked_slot() == Some(id.as_str()) {
                        "*"
                    } else {
                        ""
                    };
                    println!(
                        "{cur:<2}{:<10}  {:<28}  {:<16}  {} {} MiB, {} passes",
                        &id[..8],
                        s.created,
                        s.host,
                        s.kdf,
                        s.params.memory_kib / 1024,
                        s.params.iterations
                    );
                }
            }
        }
        KeyCommand::Add => {
            let p = secret::new_passphrase(false)?;
            let id = repo.add_key(p.as_bytes(), kdf())?;
            println!("added key slot {}", &id[..8]);
        }
        KeyCommand::Remove { id } => {
            let id = repo.remove_key(id)?;
            println!("removed key slot {}", &id[..8]);
        }
        KeyCommand::Passwd => {
            let p = secret::new_passphrase(false)?;
            let id = repo.change_passphrase(p.as_bytes(), kdf())?;
            println!("passphrase changed (new key slot {})", &id[..8]);
        }
    }
    Ok(())
}

fn forget(cli: &Cli, args: &ForgetArgs) -> Result<()> {
    use relic::retention::{apply, Policy};
    let repo = open(cli)?;
    let snaps = repo.snapshots()?;
    if !args.snapshots.is_empty() {
        let mut ids = Vec::new();
        for spec in &args.snapshots {
            let (id, s) = relic::snapshot::select(&snaps, spec)?;
            ids.push((*id, s));
        }
        // Each line names what a spec resolved to: an id, a name, `~N`.
        let show = |(id, s): &(relic::SnapshotId, &relic::Snapshot)| {
            format!(
                "{} ({}, {}, {})",
                id.short(),
                s.name.escape_debug(),
                s.tier,
                s.time().strftime("%Y-%m-%d %H:%M:%S")
            )
        };
        if args.dry_run {
            for x in &ids {
                println!("would forget {}", show(x));
            }
            return Ok(());
        }
        repo.forget(&ids.iter().map(|(id, _)| *id).collect::<Vec<_>>())?;
        for x in &ids {
            println!("forgot {}", show(x));
        }
        println!(
            "forgot {} snapshot(s); their chunks stay stored until they are pruned",
            ids.len()
        );
        return Ok(());
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
    if args.json {
        let v: Vec<_> = decisions
            .iter()
            .zip(&chosen)
            .map(|(d, (id, s))| json!({"id": id.to_hex(), "name": s.name, "tier": s.tier.as_str(), "time": s.time().to_string(), "keep": d.keep, "reasons": d.reasons}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<8}  {:<20}  {:<20}  {:<10}  {:<6}  REASONS",
            "ID", "TIME", "NAME", "TIER", "ACTION"
        );
        for (d, (id, s)) in decisions.iter().zip(&chosen) {
            println!(
                "{:<8}  {:<20}  {:<20}  {:<10}  {:<6}  {}",
                id.short(),
                s.time().strftime("%Y-%m-%d %H:%M:%S"),
                s.name,
                s.tier.as_str(),
                if d.keep { "keep" } else { "forget" },
                d.reasons.join(", ")
            );
        }
    }
    let gone: Vec<_> = decisions.iter().filter(|d| !d.keep).map(|d| d.id).collect();
    if args.dry_run {
        eprintln!(
            "dry run: {} of {} snapshot(s) would be forgotten",
            gone.len(),
            decisions.len()
        );
        return Ok(());
    }
    repo.forget(&gone)?;
    eprintln!(
        "forgot {} of {} snapshot(s); their chunks stay stored until they are pruned",
        gone.len(),
        decisions.len()
    );
    Ok(())
}
