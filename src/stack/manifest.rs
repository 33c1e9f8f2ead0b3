//! The manifest a stack snapshot keeps in its metadata (what each part is,
//! how big, its checksums, Alembic revision, image ids, git commit and the
//! command that restores it). It is data: `relic manifest` words it.

use super::{Error, Result};
use crate::docker::volume::VolumeRecord;
use crate::docker::ImageRecord;
use crate::postgres::{DbInfo, TableCount};
use crate::snapshot::{PartFailure, Snapshot};
use crate::SnapshotId;
use serde::{Deserialize, Serialize};

/// The snapshot metadata key holding the manifest.
pub const MANIFEST_KEY: &str = "stack.manifest";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub stack: String,
    /// The relic.toml the snapshot was made from.
    pub config: String,
    pub databases: Vec<DbPart>,
    pub images: Vec<ImageRecord>,
    /// Docker named volumes (absent from manifests made before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeRecord>,
    pub files: Option<FilesSummary>,
    pub git: Option<GitState>,
    /// The command that restores this snapshot.
    pub restore_command: String,
    /// The parts a partial snapshot lacks, and why (empty when whole).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<PartFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbPart {
    pub name: String,
    pub item: String,
    pub database: String,
    pub server_version: String,
    pub alembic_revision: Option<String>,
    pub tables: Vec<TableCount>,
    pub size: u64,
    pub blake3: String,
}

impl DbPart {
    /// What the database's backup recorded, as a plain dump records it.
    pub fn info(&self) -> DbInfo {
        DbInfo {
            server_version: self.server_version.clone(),
            database: self.database.clone(),
            alembic_revision: self.alembic_revision.clone(),
            tables: self.tables.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSummary {
    pub root: String,
    pub paths: Vec<String>,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    pub path: String,
    pub commit: String,
    /// Uncommitted changes were present.
    pub dirty: bool,
}

/// The manifest of a stack snapshot.
pub fn manifest(id: &SnapshotId, snap: &Snapshot) -> Result<Manifest> {
    let j = snap
        .meta
        .get(MANIFEST_KEY)
        .ok_or_else(|| Error::NotAStack(id.short()))?;
    serde_json::from_str(j)
        .map_err(|e| Error::NotAStack(format!("{}: manifest unreadable: {e}", id.short())))
}
