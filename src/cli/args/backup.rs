//! `relic backup`'s arguments: its sources (standard input, paths, a
//! database, volumes, images) and the options every snapshot takes.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use relic::repo::SnapshotOptions;
use relic::snapshot::Tier;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BackupSource {
    /// Back up a PostgreSQL database with pg_dump (plain SQL, streamed).
    #[command(
        after_help = "Examples:\n  relic backup pg 'dbname=app host=127.0.0.1 user=backup'\n  relic backup pg --container app-db-1 --name app"
    )]
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
    #[command(
        after_help = "Examples:\n  relic backup volume app_uploads app_media\n  relic backup volume app_pgdata --stop"
    )]
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
    #[command(
        after_help = "Examples:\n  relic backup image backend:latest worker:latest --name images\n  docker save backend | relic backup image --file - --name backend"
    )]
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
    /// Read, chunk, deduplicate and compress as a backup does, and say
    /// what it would add to the repository; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The snapshot's time instead of now (RFC 3339, e.g.
    /// 2026-01-31T03:15:00Z): a dump made earlier, or a replayed series.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
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
            labels: crate::cli::parse::labels(&self.labels)?,
            meta: BTreeMap::new(),
            time_ns: self
                .time
                .as_deref()
                .map(crate::cli::parse::time_ns)
                .transpose()?,
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
