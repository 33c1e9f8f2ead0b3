//! `relic report`: what the repository keeps, what each day cost, which
//! baselines exist, whether restores still work and how far behind each
//! off-site copy is, gathered from the snapshot objects (the index's
//! catalog), the index's pack table and the local records (runs, events,
//! damage) only: no pack is read, so a 1 TB repository reports at once.
//! [`html`] draws it as one self-contained page.

mod html;
mod svg;

pub use html::page;

use crate::repo::Repository;
use crate::runs;
use crate::snapshot::{Snapshot, Tier};
use crate::SnapshotId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
    #[error(transparent)]
    Index(#[from] crate::index::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// No successful backup for this long is a warning.
pub const STALE_BACKUP_HOURS: i64 = 26;
/// A copy whose newest snapshot is this much older than ours is behind.
pub const SYNC_LAG_HOURS: i64 = 24;

/// Everything the page shows (`--json` prints it as it is).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub generated: String,
    pub repository: String,
    /// The stack (or snapshot name) the report is limited to.
    pub scope: Option<String>,
    pub warnings: Vec<String>,
    pub totals: Totals,
    pub days: Vec<Day>,
    pub size_history: Vec<SizePoint>,
    pub snapshots: Vec<SnapRow>,
    pub baselines: Vec<Baseline>,
    pub databases: Vec<Database>,
    pub layers: Vec<Layer>,
    pub images: Vec<String>,
    pub last_drill: Option<runs::Event>,
    /// The last `check --read-data` (every byte).
    pub last_data_check: Option<runs::Event>,
    /// The last `check --read-data-subset` (a slice of the packs).
    pub last_slice_check: Option<runs::Event>,
    pub last_check: Option<runs::Event>,
    pub syncs: Vec<SyncLag>,
    pub damaged: Vec<SnapRow>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub snapshots: usize,
    /// Bytes the snapshots hold, as read.
    pub raw: u64,
    /// Bytes of packs in the repository (the index's pack table).
    pub stored: u64,
    pub packs: usize,
    /// The newest snapshot that is not a safety snapshot.
    pub newest: Option<String>,
}

/// What one day's snapshots read and what they added, split by how the
/// bytes were saved (each snapshot's own costs, as `stats NAME` shows).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Day {
    /// YYYY-MM-DD in the local time zone.
    pub date: String,
    pub snapshots: usize,
    pub raw: u64,
    /// Bytes that were already stored.
    pub deduplicated: u64,
    /// New bytes stored as deltas, and what the deltas took.
    pub delta_raw: u64,
    pub delta_stored: u64,
    /// New bytes compressed whole, and what they took.
    pub new_raw: u64,
    pub new_stored: u64,
    /// All the day added to the repository (pack overhead included).
    pub added: u64,
}

/// The repository's size after a run (from the run records), or the sum of
/// what the snapshots kept added, by day, when there are none.
#[derive(Clone, Debug, Serialize)]
pub struct SizePoint {
    pub time: String,
    pub bytes: u64,
    /// `forget` or `prune` ran and freed something.
    pub event: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapRow {
    pub id: String,
    pub time: String,
    pub name: String,
    pub tier: String,
    pub size: u64,
    pub added: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    pub snapshot: SnapRow,
    pub age_days: i64,
    /// How to get it back, from its manifest.
    pub restore: Vec<String>,
}

/// One database's row counts and revision, snapshot by snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Database {
    pub name: String,
    pub points: Vec<DbPoint>,
    /// Tables by rows gained from the first point to the last, most first.
    pub growth: Vec<TableGrowth>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DbPoint {
    pub time: String,
    pub revision: Option<String>,
    pub rows: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableGrowth {
    pub table: String,
    pub first: i64,
    pub last: i64,
}

/// One image layer: which images and how many days have it.
#[derive(Clone, Debug, Serialize)]
pub struct Layer {
    pub digest: String,
    pub images: Vec<String>,
    pub days: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct SyncLag {
    pub destination: String,
    pub last_sync: String,
    pub ok: bool,
    /// A sync to it ever succeeded.
    pub ever_ok: bool,
    /// The newest snapshot there at its last good sync.
    pub newest_there: Option<String>,
    /// Hours between our newest snapshot and that one (none: unknown).
    pub lag_hours: Option<f64>,
}

fn row(id: &SnapshotId, s: &Snapshot) -> SnapRow {
    SnapRow {
        id: id.to_hex(),
        time: s.time().to_string(),
        name: s.name.clone(),
        tier: s.tier.as_str().to_string(),
        size: s.summary.size,
        added: s.costs().added,
    }
}

/// Which snapshots a scope covers: its name, or the stack's (its manifest).
fn in_scope(id: &SnapshotId, s: &Snapshot, scope: Option<&str>) -> bool {
    let Some(name) = scope else { return true };
    s.name == name || crate::stack::manifest(id, s).is_ok_and(|m| m.stack == name)
}

fn restore_commands(id: &SnapshotId, s: &Snapshot) -> Vec<String> {
    if let Ok(m) = crate::stack::manifest(id, s) {
        return vec![
            m.restore_command.clone(),
            "relic emergency --confirm".to_string(),
        ];
    }
    let short = &id.to_hex()[..8];
    if crate::postgres::DbInfo::from_snapshot(id, s).is_ok() {
        return vec![format!(
            "relic restore {short} --into-postgres 'dbname=…' --clean"
        )];
    }
    if crate::docker::records(s).is_ok_and(|r| !r.is_empty()) {
        return vec![format!("relic restore {short} --into-docker")];
    }
    vec![format!("relic restore {short} --to DIR")]
}

/// A database as one snapshot records it: its name, Alembic revision and
/// each table's rows.
struct DbRecord {
    name: String,
    revision: Option<String>,
    tables: Vec<(String, i64)>,
}

/// The databases a snapshot records: a `backup pg` snapshot's, or each of
/// a stack's.
fn databases_of(id: &SnapshotId, s: &Snapshot) -> Vec<DbRecord> {
    if let Ok(m) = crate::stack::manifest(id, s) {
        return m
            .databases
            .iter()
            .map(|d| DbRecord {
                name: format!("{}/{}", m.stack, d.name),
                revision: d.alembic_revision.clone(),
                tables: d.tables.iter().map(|t| (t.table.clone(), t.rows)).collect(),
            })
            .collect();
    }
    match crate::postgres::DbInfo::from_snapshot(id, s) {
        // Dumps of one database under several names (daily, baseline)
        // are one series.
        Ok(info) => vec![DbRecord {
            name: if info.database.is_empty() {
                s.name.clone()
            } else {
                info.database.clone()
            },
            revision: info.alembic_revision.clone(),
            tables: info
                .tables
                .iter()
                .map(|t| (t.table.clone(), t.rows))
                .collect(),
        }],
        Err(_) => Vec::new(),
    }
}

fn images_of(id: &SnapshotId, s: &Snapshot) -> Vec<crate::docker::ImageRecord> {
    if let Ok(m) = crate::stack::manifest(id, s) {
        return m.images;
    }
    crate::docker::records(s).unwrap_or_default()
}

/// Gathers the report of `repo` (or of the snapshots `scope` names) at
/// `now`, days cut in `tz`.
pub fn build(
    repo: &Repository,
    location: &str,
    scope: Option<&str>,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<Report> {
    let all = repo.snapshots()?;
    let snaps: Vec<&(SnapshotId, Snapshot)> = all
        .iter()
        .filter(|(id, s)| in_scope(id, s, scope))
        .collect();
    let state = repo.backend();
    let runs: Vec<runs::Run> = match scope {
        Some(name) => runs::of(state, name),
        None => runs::read(state),
    };
    let events = runs::events(state);
    let day_of = |t: jiff::Timestamp| t.to_zoned(tz.clone()).date().to_string();

    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for (_, s) in &snaps {
        let c = s.costs();
        let d = days.entry(day_of(s.time())).or_default();
        d.snapshots += 1;
        // The bytes read, split three ways that add up to them: new bytes
        // also count the snapshot's own tree, which was not read, so the
        // new part is capped at what the deltas leave.
        let delta = c.delta_raw.min(c.size);
        let new = c.compressed_raw.min(c.size - delta);
        d.raw += c.size;
        d.deduplicated += c.size - delta - new;
        d.delta_raw += delta;
        d.delta_stored += c.delta_stored;
        d.new_raw += new;
        d.new_stored += c.compressed_stored;
        d.added += c.added;
    }
    let days: Vec<Day> = days
        .into_iter()
        .map(|(date, mut d)| {
            d.date = date;
            d
        })
        .collect();

    let packs = repo.index().packs()?;
    let stored: u64 = packs.iter().map(|(_, p)| p.size).sum();
    let routine = |s: &Snapshot| s.tier != Tier::Safety;
    let newest = snaps
        .iter()
        .filter(|(_, s)| routine(s))
        .map(|(_, s)| s.time())
        .max();
    let totals = Totals {
        snapshots: snaps.len(),
        raw: snaps.iter().map(|(_, s)| s.summary.size).sum(),
        stored,
        packs: packs.len(),
        newest: newest.map(|t| t.to_string()),
    };

    // Size over time: what each run left, forget and prune marked.
    let mut size_history: Vec<SizePoint> = runs
        .iter()
        .filter_map(|r| {
            let bytes = r.repo_bytes?;
            let freed = ["forget", "prune"]
                .iter()
                .filter(|n| {
                    r.step(n).is_some_and(|s| {
                        s.status == runs::Status::Ok && !s.detail.starts_with("0 snapshot")
                    })
                })
                .copied()
                .collect::<Vec<_>>();
            Some(SizePoint {
                time: r.finished.clone(),
                bytes,
                event: (!freed.is_empty()).then(|| freed.join(" + ")),
            })
        })
        .collect();
    if size_history.is_empty() {
        let mut sum = 0;
        for d in &days {
            sum += d.added;
            // The end of that day where it was cut.
            let end = d
                .date
                .parse::<jiff::civil::Date>()
                .ok()
                .and_then(|date| date.at(23, 59, 59, 0).to_zoned(tz.clone()).ok())
                .map(|z| z.timestamp().to_string());
            if let Some(time) = end {
                size_history.push(SizePoint {
                    time,
                    bytes: sum,
                    event: None,
                });
            }
        }
    }

    let snapshots: Vec<SnapRow> = snaps.iter().map(|(id, s)| row(id, s)).collect();
    let baselines = snaps
        .iter()
        .filter(|(_, s)| matches!(s.tier, Tier::Immaculate | Tier::Sacred))
        .map(|(id, s)| Baseline {
            snapshot: row(id, s),
            age_days: now.duration_since(s.time()).as_hours() / 24,
            restore: restore_commands(id, s),
        })
        .collect();

    // Databases over time.
    let mut dbs: BTreeMap<String, Vec<(jiff::Timestamp, DbRecord)>> = BTreeMap::new();
    for (id, s) in &snaps {
        for d in databases_of(id, s) {
            dbs.entry(d.name.clone()).or_default().push((s.time(), d));
        }
    }
    let databases = dbs
        .into_iter()
        .map(|(name, mut pts)| {
            pts.sort_by_key(|p| p.0);
            let first: BTreeMap<&str, i64> = pts[0]
                .1
                .tables
                .iter()
                .map(|(t, r)| (t.as_str(), *r))
                .collect();
            let last = &pts[pts.len() - 1].1.tables;
            let mut growth: Vec<TableGrowth> = last
                .iter()
                .map(|(t, r)| TableGrowth {
                    table: t.clone(),
                    first: first.get(t.as_str()).copied().unwrap_or(0),
                    last: *r,
                })
                .collect();
            growth.sort_by_key(|g| std::cmp::Reverse(g.last - g.first));
            growth.truncate(10);
            Database {
                name,
                points: pts
                    .iter()
                    .map(|(t, d)| DbPoint {
                        time: t.to_string(),
                        revision: d.revision.clone(),
                        rows: d.tables.iter().map(|(_, r)| r).sum(),
                    })
                    .collect(),
                growth,
            }
        })
        .collect();

    // Image layers: which images, how many days.
    let mut layer_images: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut layer_days: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut image_names: BTreeSet<String> = BTreeSet::new();
    for (id, s) in &snaps {
        for img in images_of(id, s) {
            // An image loaded from an archive has no reference: its first
            // tag, else its id, names it.
            let name = if !img.reference.is_empty() {
                img.reference.clone()
            } else if let Some(t) = img.tags.first() {
                t.clone()
            } else {
                img.id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect()
            };
            image_names.insert(name.clone());
            for l in &img.layers {
                layer_images
                    .entry(l.clone())
                    .or_default()
                    .insert(name.clone());
                layer_days
                    .entry(l.clone())
                    .or_default()
                    .insert(day_of(s.time()));
            }
        }
    }
    let mut layers: Vec<Layer> = layer_images
        .into_iter()
        .map(|(digest, images)| Layer {
            days: layer_days.get(&digest).map_or(0, |d| d.len()),
            images: images.into_iter().collect(),
            digest,
        })
        .collect();
    layers.sort_by_key(|l| (std::cmp::Reverse(l.images.len()), std::cmp::Reverse(l.days)));

    let last = |pred: &dyn Fn(&runs::Event) -> bool| events.iter().rev().find(|e| pred(e)).cloned();
    let last_drill = last(&|e| e.kind == "drill");
    let last_data_check = last(&|e| e.kind == "check --read-data");
    let last_slice_check = last(&|e| e.kind == "check --read-data-subset");
    let last_check = last(&|e| e.kind.starts_with("check"));
    let mut dests: BTreeSet<String> = BTreeSet::new();
    for e in events.iter().filter(|e| e.kind == "sync") {
        if let Some(t) = &e.target {
            dests.insert(t.clone());
        }
    }
    let syncs: Vec<SyncLag> = dests
        .into_iter()
        .map(|d| {
            let mine: Vec<&runs::Event> = events
                .iter()
                .filter(|e| e.kind == "sync" && e.target.as_deref() == Some(d.as_str()))
                .collect();
            let latest = mine.last().expect("a destination has an event");
            let good = mine.iter().rev().find(|e| e.ok);
            let newest_there = good.and_then(|e| e.newest.clone());
            // Both sides count the same snapshots (no safety ones): a copy
            // holding our newest is current; what cannot be told is none.
            let lag_hours = match (&newest, &newest_there, good) {
                (Some(here), Some(there), _) => there
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .map(|t| (here.duration_since(t).as_secs_f64() / 3600.0).max(0.0)),
                // A good sync of a repository with no snapshot yet.
                (None, None, Some(_)) => Some(0.0),
                _ => None,
            };
            SyncLag {
                destination: d,
                last_sync: latest.time.clone(),
                ok: latest.ok,
                ever_ok: good.is_some(),
                newest_there,
                lag_hours,
            }
        })
        .collect();

    let damaged_ids = crate::check::damaged_snapshots(repo);
    let damaged: Vec<SnapRow> = snaps
        .iter()
        .filter(|(id, _)| damaged_ids.contains_key(&id.to_hex()))
        .map(|(id, s)| row(id, s))
        .collect();

    let mut warnings = Vec::new();
    match newest {
        None => warnings.push("no backup at all".to_string()),
        Some(t) if now.duration_since(t).as_hours() >= STALE_BACKUP_HOURS => {
            warnings.push(format!(
                "no successful backup in {} hours (the newest is from {})",
                now.duration_since(t).as_hours(),
                t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M")
            ))
        }
        _ => {}
    }
    if let Some(d) = &last_drill {
        if !d.ok {
            warnings.push(format!(
                "the last restore drill FAILED ({}): {}",
                d.time, d.detail
            ));
        }
    }
    if let Some(c) = &last_check {
        if !c.ok {
            warnings.push(format!("the last check FAILED ({}): {}", c.time, c.detail));
        }
    }
    for s in &syncs {
        if !s.ok {
            warnings.push(format!(
                "the last sync to {} FAILED ({})",
                s.destination, s.last_sync
            ));
        }
        match s.lag_hours {
            Some(h) if h > SYNC_LAG_HOURS as f64 => warnings.push(format!(
                "{} is {:.0} hours behind (more than a day)",
                s.destination, h
            )),
            None if !s.ever_ok => {
                warnings.push(format!("{} has never had a good sync", s.destination))
            }
            _ => {}
        }
    }
    if !damaged.is_empty() {
        warnings.push(format!(
            "{} damaged snapshot(s): {} (relic repair)",
            damaged.len(),
            damaged
                .iter()
                .map(|d| format!("{} ({})", &d.id[..8], d.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    Ok(Report {
        generated: now.to_string(),
        repository: location.to_string(),
        scope: scope.map(str::to_string),
        warnings,
        totals,
        days,
        size_history,
        snapshots,
        baselines,
        databases,
        layers,
        images: image_names.into_iter().collect(),
        last_drill,
        last_data_check,
        last_slice_check,
        last_check,
        syncs,
        damaged,
    })
}
