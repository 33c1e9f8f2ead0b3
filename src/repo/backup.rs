//! A backup: a write session under a shared lock, then the snapshot
//! naming what it stored, its name checked again atomically with the write.

use super::{now_ns, Error, FinishedTree, Repository, Result, Writer};
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::snapshot::{self, Snapshot};
use std::io::Read;

/// What a new snapshot is called and how it is protected.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    pub name: String,
    pub tier: snapshot::Tier,
    pub labels: std::collections::BTreeMap<String, String>,
    pub meta: std::collections::BTreeMap<String, String>,
    /// The snapshot's time (nanoseconds since the epoch) when not now: a
    /// backup of yesterday's dump, or a replayed series (`--time`).
    pub time_ns: Option<i64>,
}

impl Repository {
    /// Makes this handle's backups dry runs (or real ones again): they
    /// read, chunk, deduplicate and compress as always, count the packs
    /// they would write and the snapshot they would save (returned with
    /// an all-zero id), and write nothing.
    pub fn set_dry_run(&self, on: bool) {
        self.dry_run.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` to store items, then writes the snapshot naming them. Nothing
    /// is listed unless `f` and every pack write succeed.
    ///
    /// `f` fails with the caller's own error type, which a failure of the
    /// repository converts into, so a source's typed error (an image that
    /// changed while exported, a dump that failed) reaches the caller as
    /// it was.
    pub fn backup<E: From<Error>>(
        &self,
        opts: &SnapshotOptions,
        progress: &dyn Progress,
        f: impl FnOnce(&mut Writer<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(SnapshotId, Snapshot), E> {
        let mut failed = None;
        let r = self.backup_inner(opts, progress, |w| match f(w) {
            Ok(()) => Ok(()),
            Err(e) => {
                failed = Some(e);
                Err(Error::SourceFailed)
            }
        });
        match (r, failed) {
            (Err(Error::SourceFailed), Some(e)) | (Ok(_), Some(e)) => Err(e),
            // The pipeline failed (a full disk), and the source with it:
            // the pipeline's error is the cause.
            (Err(cause), _) => Err(cause.into()),
            (Ok(done), None) => Ok(done),
        }
    }

    fn backup_inner(
        &self,
        opts: &SnapshotOptions,
        progress: &dyn Progress,
        f: impl FnOnce(&mut Writer<'_>) -> Result<()>,
    ) -> Result<(SnapshotId, Snapshot)> {
        snapshot::validate_name(&opts.name)?;
        // Held from before the first lookup in the index until the
        // snapshot is written: a prune (exclusive) can neither delete a
        // chunk this backup counts as stored, nor miss the new snapshot.
        let lock = self.lock_shared(progress)?;
        let snaps = self.snapshots()?;
        self.check_name_free(&snaps, &opts.name, opts.tier)?;
        let parent = snaps
            .iter()
            .rev()
            .find(|(_, s)| s.name == opts.name)
            .map(|(id, _)| *id);
        let time_ns = opts.time_ns.unwrap_or_else(now_ns);
        let (
            FinishedTree {
                tree,
                mut summary,
                meta,
            },
            stats,
            reused,
        ) = self.write(progress, |w| {
            f(w)?;
            w.finish_tree()
        })?;
        self.verify_packs_present(&reused)?;
        summary.new_chunks = stats.new_chunks;
        summary.new_bytes = stats.new_bytes;
        summary.stored_bytes = stats.stored_bytes;
        summary.duration_ms = stats.duration.as_millis() as u64;
        let snap = Snapshot {
            name: opts.name.clone(),
            tier: opts.tier,
            labels: opts.labels.clone(),
            host: crate::sys::hostname(),
            time_ns,
            parent,
            tree,
            summary,
            meta: opts
                .meta
                .clone()
                .into_iter()
                .chain(meta)
                .chain([
                    (
                        crate::snapshot::ADDED_KEY.to_string(),
                        stats.pack_bytes.to_string(),
                    ),
                    (
                        crate::snapshot::DELTAS_KEY.to_string(),
                        format!(
                            "{} {} {}",
                            stats.delta_chunks, stats.delta_raw, stats.delta_stored
                        ),
                    ),
                ])
                .collect(),
        };
        if self.is_dry_run() {
            return Ok((SnapshotId([0; 32]), snap));
        }
        // The name is checked again, atomically with the write: two
        // backups of one name cannot both pass while neither is written.
        let guard = self.name_guard(&opts.name)?;
        self.refresh()?;
        self.check_name_free(&self.snapshots()?, &opts.name, opts.tier)?;
        lock.check_held()?;
        let id = self.save_snapshot(&snap)?;
        drop(guard);
        drop(lock);
        Ok((id, snap))
    }

    /// Backs up one stream (stdin, a dump) as a one-item snapshot.
    pub fn backup_stream(
        &self,
        opts: &SnapshotOptions,
        item_name: &str,
        reader: impl Read,
        progress: &dyn Progress,
    ) -> Result<(SnapshotId, Snapshot)> {
        self.backup(opts, progress, |w| {
            let s = w.store_stream(reader)?;
            w.add_item(&s.into_item(item_name, 0o644))
        })
    }
}
