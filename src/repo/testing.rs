//! A small unencrypted repository in a temp dir, for the unit tests of the
//! submodules, and a backup helper.

use super::{InitOptions, Repository, SnapshotOptions};
use crate::id::SnapshotId;
use crate::snapshot::Tier;

pub fn repo() -> (tempfile::TempDir, Repository) {
    let d = tempfile::tempdir().unwrap();
    let r = Repository::init(&d.path().join("repo"), &InitOptions::default()).unwrap();
    (d, r)
}

pub fn backup(r: &Repository, name: &str, tier: Tier, data: &[u8]) -> SnapshotId {
    let opts = SnapshotOptions {
        name: name.into(),
        tier,
        labels: Default::default(),
        meta: Default::default(),
        time_ns: None,
    };
    r.backup_stream(&opts, "data", data, &crate::NoProgress)
        .unwrap()
        .0
}
