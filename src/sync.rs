//! Off-site copies: `relic sync --to DEST` copies what DEST lacks, packs
//! first, then snapshot objects, so DEST is a consistent repository at every
//! moment. DEST is a directory or S3-compatible object storage
//! (`s3://bucket/prefix`), laid out exactly like a local repository, so a
//! synced copy is opened, checked and restored from like any other.
//!
//! Objects are content-addressed and written once: a copy never replaces an
//! object at the destination (a directory: temp file, fsync, no-replace
//! link; S3: `If-None-Match: *`, or a HEAD before a multipart upload), and
//! sync never deletes anything there, so immaculate and sacred snapshots
//! stay wherever they were sent.

use crate::id::{ChunkId, PackId};
use crate::index::{self, Index};
use crate::objectlock;
use crate::progress::{Progress, Unit};
use crate::repo::Repository;
use crate::runtime::parallel;
use crate::store::{self, object_path, Kind, Local, Store};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{dest}: {what}")]
    Dest { dest: String, what: String },
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Index(#[from] index::Error),
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
    #[error("{dest} holds another repository (id {theirs}, this one is {ours}); choose another destination")]
    Foreign {
        dest: String,
        theirs: String,
        ours: String,
    },
    #[error("verification failed at {dest}: {what}")]
    Verify { dest: String, what: String },
}

impl Error {
    /// Whether running the same sync again can finish it: not when DEST
    /// is another repository or cannot lock objects.
    pub fn resumable(&self) -> bool {
        !matches!(
            self,
            Error::Foreign { .. }
                | Error::Store(store::Error::ObjectLock {
                    why: objectlock::Error::NotEnabled { .. }
                        | objectlock::Error::NotS3
                        | objectlock::Error::Unsupported(_),
                    ..
                })
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dest: String,
    pub created: bool,
    pub packs: u64,
    pub pack_bytes: u64,
    pub snapshots: u64,
    pub other: u64,
    pub verified: u64,
    pub skipped_existing: u64,
    /// Objects of immaculate and sacred snapshots under `--object-lock`
    /// (snapshot objects and every pack holding their chunks or delta
    /// bases).
    pub lock_objects: u64,
    /// Of those, objects whose retention this sync set or extended.
    pub locked: u64,
    /// The retain-until date set (RFC 3339).
    pub locked_until: Option<String>,
    pub seconds: f64,
}

/// `--object-lock DAYS`: keep the objects of immaculate and sacred
/// snapshots at DEST under S3 Object Lock.
#[derive(Clone, Copy, Debug)]
pub struct ObjectLock {
    pub days: u32,
    pub mode: objectlock::Mode,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub dry_run: bool,
    pub verify: bool,
    pub jobs: usize,
    pub object_lock: Option<ObjectLock>,
}

/// Copies what `dest` lacks: the config and key slots (when DEST holds no
/// repository yet), then packs (in parallel), then snapshot objects and
/// audit records. Never deletes or replaces anything at `dest`.
pub fn sync(
    repo: &Repository,
    dest: &dyn Store,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    // Before anything travels: can DEST lock at all, and what must it lock?
    let protect = match opts.object_lock {
        Some(lock) => {
            dest.object_lock_check()?;
            Some((lock, protected_objects(repo)?))
        }
        None => None,
    };
    let mut report = sync_from(
        repo.store(),
        repo.backend(),
        repo.index(),
        &repo.config().id,
        dest,
        opts,
        progress,
    )?;
    let Some((lock, objects)) = protect else {
        return Ok(report);
    };
    report.lock_objects = objects.len() as u64;
    let (min, until) = retention_window(jiff::Timestamp::now(), lock.days);
    report.locked_until = Some(until.to_string());
    if opts.dry_run {
        return Ok(report);
    }
    let started = std::time::Instant::now();
    progress.start("locking", Some(objects.len() as u64), Unit::Items);
    let changed = AtomicU64::new(0);
    let locked = parallel(&objects, opts.jobs, |(kind, name)| -> Result<()> {
        if dest.retain(*kind, name, lock.mode, min, until)? {
            changed.fetch_add(1, Ordering::Relaxed);
        }
        progress.inc(1);
        Ok(())
    });
    progress.finish();
    locked?;
    report.locked = changed.into_inner();
    report.seconds += started.elapsed().as_secs_f64();
    Ok(report)
}

/// The retention `--object-lock DAYS` asks for at `now`: objects retained
/// until at least `now + DAYS` are left alone; others get the end of that
/// UTC day, so syncs later the same day send no further requests.
pub fn retention_window(now: jiff::Timestamp, days: u32) -> (jiff::Timestamp, jiff::Timestamp) {
    let min = now + jiff::SignedDuration::from_hours(24 * i64::from(days));
    let secs = min.as_second();
    let until = jiff::Timestamp::from_second(secs - secs.rem_euclid(86_400) + 86_400)
        .expect("a date within jiff's range");
    (min, until)
}

/// Every object an immaculate or sacred snapshot needs: its snapshot
/// object, the packs holding its tree, its lists, its chunks and,
/// transitively, their delta bases, and the config and key slots without
/// which none of it can be read. Packs first.
pub fn protected_objects(repo: &Repository) -> Result<Vec<(Kind, String)>> {
    use crate::snapshot::Tier;
    let mut packs: HashSet<PackId> = HashSet::new();
    let mut snaps = Vec::new();
    for (id, snap) in repo.snapshots()? {
        if !matches!(snap.tier, Tier::Immaculate | Tier::Sacred) {
            continue;
        }
        repo.snapshot_blobs(&snap, |_, e| {
            packs.insert(e.pack);
        })?;
        snaps.push((Kind::Snapshot, id.to_hex()));
    }
    if snaps.is_empty() {
        return Ok(Vec::new());
    }
    // Without the config and a key slot the packs cannot be read.
    snaps.push((Kind::Config, "config".into()));
    for k in repo.store().list(Kind::Key)? {
        snaps.push((Kind::Key, k));
    }
    let mut packs: Vec<PackId> = packs.into_iter().collect();
    packs.sort_unstable();
    let mut out: Vec<(Kind, String)> = packs.iter().map(|p| (Kind::Pack, p.to_hex())).collect();
    out.extend(snaps);
    Ok(out)
}

/// [`sync`] from a repository's store and index, without its key (the
/// objects travel as they are). Objects of a source that is not a
/// directory pass through a temp file in `staging`.
pub fn sync_from(
    src: &dyn Store,
    staging: &Local,
    index: &Index,
    id: &str,
    dest: &dyn Store,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let started = std::time::Instant::now();
    let mut report = Report {
        dest: dest.describe(),
        ..Default::default()
    };
    let ours = id.to_string();

    // The destination is empty, or this very repository.
    if dest.list(Kind::Config)?.is_empty() {
        report.created = true;
    } else {
        let theirs = dest_config_id(dest)?;
        if theirs != ours {
            return Err(Error::Foreign {
                dest: dest.describe(),
                theirs,
                ours,
            });
        }
    }

    let have_packs = dest.list(Kind::Pack)?;
    let have_snaps = dest.list(Kind::Snapshot)?;
    let mut todo_packs = Vec::new();
    let mut packs = src.list_sized(Kind::Pack)?;
    packs.sort();
    for (name, size) in packs {
        if have_packs.contains(&name) {
            report.skipped_existing += 1;
            continue;
        }
        todo_packs.push((name, size));
    }
    let mut todo_snaps: Vec<String> = src
        .list(Kind::Snapshot)?
        .into_iter()
        .filter(|n| !have_snaps.contains(n))
        .collect();
    todo_snaps.sort();
    report.packs = todo_packs.len() as u64;
    report.pack_bytes = todo_packs.iter().map(|p| p.1).sum();
    report.snapshots = todo_snaps.len() as u64;
    if opts.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    // 1. Config and key slots first: without them nothing else is readable,
    // and with them alone DEST is a valid, empty repository... but only
    // once the packs it names exist, which is why snapshots come last.
    let mut singles: Vec<(Kind, String)> = Vec::new();
    if report.created {
        for k in src.list(Kind::Key)? {
            singles.push((Kind::Key, k));
        }
    } else {
        let have = dest.list(Kind::Key)?;
        for k in src.list(Kind::Key)? {
            if !have.contains(&k) {
                singles.push((Kind::Key, k));
            }
        }
    }
    for (kind, name) in &singles {
        if send(src, staging, dest, *kind, name, false)?.0 {
            report.other += 1;
        }
    }
    if report.created {
        send(src, staging, dest, Kind::Config, "config", false)?;
        report.other += 1;
    }

    // 2. Packs, in parallel, in waves: a pack holding delta bases is sent
    // (completely) before any pack with deltas against them.
    let waves = pack_waves(index, &todo_packs)?;
    progress.start("sending packs", Some(report.pack_bytes), Unit::Bytes);
    let verified = AtomicU64::new(0);
    let sent = waves.into_iter().try_for_each(|wave| {
        let wave: Vec<&(String, u64)> = wave.iter().map(|&i| &todo_packs[i]).collect();
        parallel(&wave, opts.jobs, |(name, size)| -> Result<()> {
            if send(src, staging, dest, Kind::Pack, name, opts.verify)?.1 {
                verified.fetch_add(1, Ordering::Relaxed);
            }
            progress.inc(*size);
            Ok(())
        })
    });
    progress.finish();
    sent?;

    // 3. Snapshots and audit records: only now do they name packs that are
    // all there.
    for name in &todo_snaps {
        if send(src, staging, dest, Kind::Snapshot, name, opts.verify)?.1 {
            verified.fetch_add(1, Ordering::Relaxed);
        }
    }
    let have_audit = dest.list(Kind::Audit)?;
    if let Ok(audit) = src.list(Kind::Audit) {
        let mut audit: Vec<String> = audit.into_iter().collect();
        audit.sort();
        for name in audit.into_iter().filter(|n| !have_audit.contains(n)) {
            send(src, staging, dest, Kind::Audit, &name, false)?;
            report.other += 1;
        }
    }
    report.verified = verified.into_inner();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Orders the packs to send (indexes into `todo`) into waves: wave 0 holds
/// packs none of whose deltas has its base in another pack still to send;
/// wave n+1 packs whose bases are in waves up to n. Packs that (after
/// repacking) depend on each other go in one wave.
fn pack_waves(index: &Index, todo: &[(String, u64)]) -> Result<Vec<Vec<usize>>> {
    let at: HashMap<PackId, usize> = todo
        .iter()
        .enumerate()
        .filter_map(|(i, (name, _))| PackId::from_hex(name).map(|p| (p, i)))
        .collect();
    // Edges pack → packs holding its deltas' bases, both still to send.
    let mut deps: Vec<HashSet<usize>> = vec![HashSet::new(); todo.len()];
    let mut bases: Vec<(usize, ChunkId)> = Vec::new();
    index.for_each_chunk(|_, e| -> std::result::Result<(), index::Error> {
        if let (Some(&i), Some(b)) = (at.get(&e.pack), e.base) {
            bases.push((i, b.id));
        }
        Ok(())
    })?;
    for (i, base) in bases {
        let found = index.get(&base)?;
        if let Some(j) = found.and_then(|b| at.get(&b.pack)) {
            if *j != i {
                deps[i].insert(*j);
            }
        }
    }
    // Longest-path levels; a cycle stops growing at the bound and its
    // packs simply travel in one wave.
    let mut level = vec![0usize; todo.len()];
    for _ in 0..todo.len().min(256) {
        let mut changed = false;
        for i in 0..todo.len() {
            let want = deps[i].iter().map(|&j| level[j] + 1).max().unwrap_or(0);
            if want > level[i] && want <= 256 {
                level[i] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut waves: Vec<Vec<usize>> = vec![Vec::new(); level.iter().max().map_or(0, |m| m + 1)];
    for (i, l) in level.into_iter().enumerate() {
        waves[l].push(i);
    }
    Ok(waves)
}

/// Copies one object of `src` to `dest` (unless it is there already);
/// with `verify`, re-reads it at the destination and compares its BLAKE3
/// with the source's. Returns (copied, verified).
fn send(
    src: &dyn Store,
    staging: &Local,
    dest: &dyn Store,
    kind: Kind,
    name: &str,
    verify: bool,
) -> Result<(bool, bool)> {
    let io_at = |store: &dyn Store| {
        let store = store.describe();
        move |source| store::Error::Io { store, source }
    };
    let copied = match src.local_file(kind, name)? {
        Some((path, size)) => dest.put_file(kind, name, &path, size)?,
        None => {
            let mut tmp = staging.temp_object().map_err(io_at(staging))?;
            let size = src.get_into(kind, name, &mut tmp)?;
            tmp.flush().map_err(io_at(staging))?;
            dest.put_file(kind, name, tmp.path(), size)?
        }
    };
    if !verify {
        return Ok((copied, false));
    }
    let (want, want_len) = src.hash(kind, name)?;
    let (got, got_len) = dest.hash(kind, name)?;
    if got != want || got_len != want_len {
        return Err(Error::Verify {
            dest: dest.describe(),
            what: format!(
                "{} differs from the source ({got_len} bytes there, {want_len} here)",
                object_path(kind, name)
            ),
        });
    }
    Ok((copied, true))
}

/// The repository id in DEST's config.
fn dest_config_id(dest: &dyn Store) -> Result<String> {
    let bytes = dest.read(Kind::Config, "config")?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Dest {
        dest: dest.describe(),
        what: format!("its config does not parse: {e}"),
    })?;
    Ok(v.get("id")
        .and_then(|i| i.as_str())
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_ends_at_the_utc_midnight_after_the_period() {
        let now: jiff::Timestamp = "2026-11-22T10:15:00Z".parse().unwrap();
        let (min, until) = retention_window(now, 30);
        assert_eq!(min.to_string(), "2026-12-22T10:15:00Z");
        assert_eq!(until.to_string(), "2026-12-23T00:00:00Z");
        // Later the same day the same date comes out: nothing to extend.
        let later: jiff::Timestamp = "2026-11-22T23:59:59Z".parse().unwrap();
        let (min2, until2) = retention_window(later, 30);
        assert_eq!(until2, until);
        assert!(until >= min2);
        // The next day it moves on by one day.
        let next: jiff::Timestamp = "2026-11-23T00:00:01Z".parse().unwrap();
        let (min3, until3) = retention_window(next, 30);
        assert!(until < min3);
        assert_eq!(until3.to_string(), "2026-12-24T00:00:00Z");
    }
}
