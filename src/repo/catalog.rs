//! The snapshot catalog: reading, listing, naming, forgetting and retiring
//! snapshot objects, and the audit log of retired baselines.

use super::{io_at, now_ns, Error, Repository, Result};
use crate::id::SnapshotId;
use crate::lock::Lock;
use crate::snapshot::{self, Snapshot};
use crate::store::{Kind, ObjectFile};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;

/// Associated data of sealed audit records.
pub(super) const AUDIT_AAD: &[u8] = b"relic audit";

/// What `relic baseline retire` leaves behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    pub action: String,
    pub name: String,
    pub snapshots: Vec<String>,
    pub tiers: Vec<String>,
    pub time_ns: i64,
    pub host: String,
    pub user: String,
    pub reason: String,
}

/// Snapshots as found on disk.
#[derive(Debug, Default)]
pub struct SnapshotList {
    /// Readable snapshots, oldest first.
    pub ok: Vec<(SnapshotId, Snapshot)>,
    /// Objects that could not be read or decoded: name → why.
    pub damaged: Vec<(String, Error)>,
}

impl Repository {
    /// Reads a snapshot object and checks that its bytes hash to its name.
    pub(super) fn read_snapshot_object(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.backend.path(Kind::Snapshot, name);
        let bytes = self
            .backend
            .read(Kind::Snapshot, name)
            .map_err(io_at(&path))?;
        let mut h = self.keys.object_hasher();
        h.update(&bytes);
        if h.finalize().to_hex().as_str() != name {
            return Err(snapshot::Error::Corrupt {
                id: name.to_string(),
                what: "content does not match its id".into(),
            }
            .into());
        }
        Ok(bytes)
    }

    /// Every snapshot object: the readable ones oldest first, and those that
    /// could not be read or decoded. With `from_disk` every object is read
    /// and its name verified (for `check`); otherwise the catalog is used.
    pub fn load_snapshots(&self, from_disk: bool) -> Result<SnapshotList> {
        let mut cached: HashMap<SnapshotId, Vec<u8>> = if from_disk {
            HashMap::new()
        } else {
            self.index.snapshots()?.into_iter().collect()
        };
        let mut list = SnapshotList::default();
        for name in self
            .backend
            .list(Kind::Snapshot)
            .map_err(io_at(self.backend.root()))?
        {
            let id = SnapshotId::from_hex(&name).expect("hex");
            let decoded = match cached.remove(&id) {
                Some(b) => Ok(b),
                None => self.read_snapshot_object(&name),
            }
            .and_then(|b| Ok(Snapshot::decode(&name, &b, self.keys.cipher())?));
            match decoded {
                Ok(s) => list.ok.push((id, s)),
                // Forgotten since it was listed: not damage.
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => list.damaged.push((name, e)),
            }
        }
        list.ok.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok(list)
    }

    /// Every readable snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.load_snapshots(false)?.ok)
    }

    /// Finds a snapshot by `latest`, name or id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let snaps = self.snapshots()?;
        Ok(snapshot::select(&snaps, spec)?.clone())
    }

    /// Removes snapshot objects (their data stays until a prune). Refuses
    /// immaculate and sacred snapshots: only `baseline retire` may.
    pub fn forget(&self, ids: &[SnapshotId]) -> Result<()> {
        let snaps = self.snapshots()?;
        for id in ids {
            if let Some((_, s)) = snaps.iter().find(|(i, _)| i == id) {
                if matches!(s.tier, snapshot::Tier::Immaculate | snapshot::Tier::Sacred) {
                    return Err(snapshot::Error::Protected {
                        what: format!(
                            "snapshot {} ({}) is {}: it can never be forgotten",
                            id.short(),
                            s.name,
                            s.tier
                        ),
                    }
                    .into());
                }
            }
        }
        let _lock = Lock::acquire(&self.locks, false, crate::lock::wait())?;
        for id in ids {
            self.remove_object(Kind::Snapshot, &id.to_hex())?;
            self.index.remove_snapshot(id)?;
        }
        Ok(())
    }

    /// Gives a snapshot a new name: a new snapshot object is written, then
    /// the old one removed. Immaculate and sacred snapshots never change,
    /// and no snapshot may take an immaculate baseline's name.
    pub fn rename(&self, id: &SnapshotId, new_name: &str) -> Result<SnapshotId> {
        let snaps = self.snapshots()?;
        let (_, old) = snaps
            .iter()
            .find(|(i, _)| i == id)
            .ok_or_else(|| snapshot::Error::NotFound(id.short()))?;
        if matches!(
            old.tier,
            snapshot::Tier::Immaculate | snapshot::Tier::Sacred
        ) {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "snapshot {} ({}) is {}: it can never be renamed or changed; make a new baseline instead",
                    id.short(),
                    old.name,
                    old.tier
                ),
            }
            .into());
        }
        snapshot::validate_name(new_name)?;
        let _lock = self.lock_shared(&crate::progress::NoProgress)?;
        let _guard = self.name_guard(new_name)?;
        let snaps = self.snapshots()?;
        self.check_name_free(&snaps, new_name, old.tier)?;
        let taken = snaps
            .iter()
            .any(|(_, s)| s.name == new_name && s.tier == snapshot::Tier::Immaculate)
            || self.audit_log()?.iter().any(|r| r.name == new_name);
        if taken {
            return Err(snapshot::Error::Protected {
                what: format!("the name '{new_name}' belongs to an immaculate baseline"),
            }
            .into());
        }
        let mut renamed = old.clone();
        renamed.name = new_name.to_string();
        renamed.parent = snaps
            .iter()
            .rev()
            .find(|(i, s)| s.name == new_name && i != id)
            .map(|(i, _)| *i);
        let new_id = self.save_snapshot(&renamed)?;
        self.forget(&[*id])?;
        Ok(new_id)
    }

    /// Makes a write-once baseline (`tier`: immaculate or sacred) named
    /// `name` of snapshot `id`, as it is: a new snapshot object with the
    /// same tree, labelled `promoted-from`; the original stays as it was.
    /// A baseline is whole: a partial snapshot is refused, as is a
    /// snapshot that is a baseline already.
    pub fn promote(&self, id: &SnapshotId, tier: snapshot::Tier, name: &str) -> Result<SnapshotId> {
        let snaps = self.snapshots()?;
        let (_, old) = snaps
            .iter()
            .find(|(i, _)| i == id)
            .ok_or_else(|| snapshot::Error::NotFound(id.short()))?;
        let protected = |what: String| -> Error { snapshot::Error::Protected { what }.into() };
        if !matches!(tier, snapshot::Tier::Immaculate | snapshot::Tier::Sacred) {
            return Err(protected(format!(
                "a promotion makes an immaculate or sacred baseline, not {tier}"
            )));
        }
        if matches!(
            old.tier,
            snapshot::Tier::Immaculate | snapshot::Tier::Sacred
        ) {
            return Err(protected(format!(
                "snapshot {} ({}) is a {} baseline already",
                id.short(),
                old.name,
                old.tier
            )));
        }
        snapshot::validate_name(name)?;
        let _lock = self.lock_shared(&crate::progress::NoProgress)?;
        let _guard = self.name_guard(name)?;
        let snaps = self.snapshots()?;
        self.check_name_free(&snaps, name, tier)?;
        let mut baseline = old.clone();
        baseline.name = name.to_string();
        baseline.tier = tier;
        baseline.labels.insert("promoted-from".into(), id.to_hex());
        // Its data is the promoted snapshot's: it adds no pack.
        baseline
            .meta
            .insert(snapshot::ADDED_KEY.to_string(), "0".to_string());
        baseline.parent = snaps
            .iter()
            .rev()
            .find(|(_, s)| s.name == name)
            .map(|(i, _)| *i);
        self.save_snapshot(&baseline)
    }

    /// Retires the immaculate or sacred snapshots named `name`: writes an
    /// audit record (sealed in an encrypted repository) naming them, then
    /// deletes them. Their data goes with the next prune; the name stays
    /// reserved for immaculate baselines.
    pub fn retire(&self, name: &str, reason: &str) -> Result<Vec<SnapshotId>> {
        let snaps = self.snapshots()?;
        let victims: Vec<&(SnapshotId, Snapshot)> = snaps
            .iter()
            .filter(|(_, s)| {
                s.name == name
                    && matches!(s.tier, snapshot::Tier::Immaculate | snapshot::Tier::Sacred)
            })
            .collect();
        if victims.is_empty() {
            return Err(snapshot::Error::NoBaseline(name.to_string()).into());
        }
        let _lock = Lock::acquire(&self.locks, false, crate::lock::wait())?;
        let record = AuditRecord {
            action: "retire".into(),
            name: name.to_string(),
            snapshots: victims.iter().map(|(id, _)| id.to_hex()).collect(),
            tiers: victims.iter().map(|(_, s)| s.tier.to_string()).collect(),
            time_ns: now_ns(),
            host: crate::sys::hostname(),
            user: std::env::var("USER").unwrap_or_default(),
            reason: reason.to_string(),
        };
        let mut bytes = serde_json::to_vec_pretty(&record).expect("record serializes");
        if let Some(c) = self.keys.cipher() {
            c.seal(AUDIT_AAD, &mut bytes);
        }
        let id = blake3::hash(&bytes).to_hex().to_string();
        self.write_object(Kind::Audit, &id, &bytes)?;
        for (sid, _) in &victims {
            self.remove_object(Kind::Snapshot, &sid.to_hex())?;
            self.index.remove_snapshot(sid)?;
        }
        Ok(victims.iter().map(|(id, _)| *id).collect())
    }

    /// The audit records, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditRecord>> {
        let names = match self.backend.list(Kind::Audit) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(self.backend.root())(e)),
        };
        let mut out = Vec::new();
        for n in names {
            let path = self.backend.path(Kind::Audit, &n);
            let mut bytes = self.backend.read(Kind::Audit, &n).map_err(io_at(&path))?;
            if let Some(c) = self.keys.cipher() {
                c.open(AUDIT_AAD, &mut bytes)?;
            }
            let r: AuditRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                path: path.display().to_string(),
                what: format!("audit record unreadable: {e}"),
            })?;
            out.push(r);
        }
        out.sort_by_key(|r| r.time_ns);
        Ok(out)
    }

    /// Writes a snapshot object (the last step of a backup).
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        // A baseline is whole: whatever asks, a partial snapshot is never
        // written at a baseline's tier.
        if snap.meta.contains_key(snapshot::PARTIAL_KEY)
            && matches!(
                snap.tier,
                snapshot::Tier::Immaculate | snapshot::Tier::Sacred
            )
        {
            return Err(snapshot::Error::PartialBaseline {
                name: snap.name.clone(),
                tier: snap.tier,
            }
            .into());
        }
        let bytes = snap.encode(self.keys.cipher());
        let mut h = self.keys.object_hasher();
        h.update(&bytes);
        let id = SnapshotId::from(h.finalize());
        self.write_object(Kind::Snapshot, &id.to_hex(), &bytes)?;
        self.index.put_snapshot(&id, &bytes)?;
        Ok(id)
    }

    /// An exclusive `flock` on a file of this name's own, held while a
    /// snapshot of that name is checked and written (released by the
    /// kernel if the process dies, so it is never stale).
    pub(super) fn name_guard(&self, name: &str) -> Result<ObjectFile> {
        let file = format!(
            "name-{}.flock",
            &blake3::hash(name.as_bytes()).to_hex()[..32]
        );
        self.backend
            .flock(&file)
            .map_err(io_at(&self.backend.root().join("locks").join(&file)))
    }

    /// Refuses a backup whose name is taken: by an immaculate baseline (or
    /// for an immaculate one, by any snapshot), by a retired baseline, or
    /// by snapshots of another tier (a name belongs to one tier).
    pub(super) fn check_name_free(
        &self,
        snaps: &[(SnapshotId, Snapshot)],
        name: &str,
        tier: snapshot::Tier,
    ) -> Result<()> {
        if let Some((id, s)) = snaps
            .iter()
            .find(|(_, s)| s.name == name && s.tier != tier && s.tier != snapshot::Tier::Immaculate)
        {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "the name '{}' belongs to the {} snapshots (newest {}): a name belongs to one tier, so `restore {}` always means one thing; choose another name",
                    name,
                    s.tier,
                    id.short(),
                    name
                ),
            }
            .into());
        }
        if let Some((id, s)) = snaps.iter().find(|(_, s)| {
            s.name == name
                && (s.tier == snapshot::Tier::Immaculate || tier == snapshot::Tier::Immaculate)
        }) {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "the name '{}' is taken by {} snapshot {}: an immaculate baseline is never updated; make a new one under a new name",
                    name,
                    s.tier,
                    id.short()
                ),
            }
            .into());
        }
        if tier == snapshot::Tier::Immaculate && self.audit_log()?.iter().any(|r| r.name == name) {
            return Err(snapshot::Error::Protected {
                what: format!(
                    "the name '{}' belonged to a retired baseline: an immaculate name is never reused; choose a new one",
                    name
                ),
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backup, repo};
    use crate::snapshot::{self, Tier};
    use crate::store::Kind;

    #[test]
    fn the_catalog_and_the_objects_on_disk_agree_and_damage_is_listed() {
        let (_d, r) = repo();
        let a = backup(&r, "a", Tier::Daily, b"one");
        let b = backup(&r, "b", Tier::Named, b"two");
        let cached = r.load_snapshots(false).unwrap();
        let read = r.load_snapshots(true).unwrap();
        let ids = |l: &super::SnapshotList| l.ok.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        assert_eq!(ids(&cached), vec![a, b]);
        assert_eq!(ids(&read), ids(&cached));
        // A flipped byte: the object no longer hashes to its name.
        let path = r.backend().path(Kind::Snapshot, &b.to_hex());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let read = r.load_snapshots(true).unwrap();
        assert_eq!(ids(&read), vec![a]);
        assert_eq!(read.damaged.len(), 1);
        assert_eq!(read.damaged[0].0, b.to_hex());
    }

    /// A verified daily becomes a baseline as it is; a partial snapshot
    /// never does, by promotion or by any other write.
    #[test]
    fn promotion_makes_whole_baselines_only() {
        let (_d, r) = repo();
        let daily = backup(&r, "nightly", Tier::Daily, b"day");
        let gold = r.promote(&daily, Tier::Immaculate, "gold").unwrap();
        let snaps = r.snapshots().unwrap();
        let (_, g) = snaps.iter().find(|(i, _)| *i == gold).unwrap();
        let (_, d) = snaps.iter().find(|(i, _)| *i == daily).unwrap();
        assert_eq!((g.tier, g.tree.clone()), (Tier::Immaculate, d.tree.clone()));
        assert_eq!(g.labels["promoted-from"], daily.to_hex());
        assert!(r.promote(&gold, Tier::Sacred, "again").is_err(), "once");
        assert!(
            r.promote(&daily, Tier::Immaculate, "gold").is_err(),
            "name taken"
        );
        assert!(
            r.promote(&daily, Tier::Named, "n").is_err(),
            "baselines only"
        );

        let mut partial = d.clone();
        partial.name = "night".into();
        partial
            .meta
            .insert(snapshot::PARTIAL_KEY.into(), "[]".into());
        let p = r.save_snapshot(&partial).unwrap();
        assert!(matches!(
            r.promote(&p, Tier::Immaculate, "broken"),
            Err(super::Error::Snapshot(
                snapshot::Error::PartialBaseline { .. }
            ))
        ));
        partial.tier = Tier::Sacred;
        assert!(r.save_snapshot(&partial).is_err());
    }

    #[test]
    fn forget_and_rename_never_touch_a_baseline() {
        let (_d, r) = repo();
        let base = backup(&r, "base", Tier::Immaculate, b"frozen");
        let daily = backup(&r, "nightly", Tier::Daily, b"day");
        assert!(matches!(
            r.forget(&[base]),
            Err(super::Error::Snapshot(snapshot::Error::Protected { .. }))
        ));
        assert!(r.rename(&base, "other").is_err());
        // No snapshot may take a baseline's name.
        assert!(r.rename(&daily, "base").is_err());
        let renamed = r.rename(&daily, "kept").unwrap();
        let names: Vec<String> = r
            .snapshots()
            .unwrap()
            .into_iter()
            .map(|(_, s)| s.name)
            .collect();
        assert_eq!(names, vec!["base", "kept"]);
        r.forget(&[renamed]).unwrap();
        assert!(!r.backend().exists(Kind::Snapshot, &renamed.to_hex()));
        assert_eq!(r.snapshots().unwrap().len(), 1);
    }

    #[test]
    fn retire_leaves_an_audit_record_and_the_name_is_never_reused() {
        let (_d, r) = repo();
        assert!(matches!(
            r.retire("base", "why"),
            Err(super::Error::Snapshot(snapshot::Error::NoBaseline(_)))
        ));
        let base = backup(&r, "base", Tier::Immaculate, b"frozen");
        assert_eq!(r.retire("base", "superseded").unwrap(), vec![base]);
        assert!(r.snapshots().unwrap().is_empty());
        let log = r.audit_log().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].snapshots, vec![base.to_hex()]);
        assert_eq!(log[0].reason, "superseded");
        let opts = crate::SnapshotOptions {
            name: "base".into(),
            tier: Tier::Immaculate,
            labels: Default::default(),
            meta: Default::default(),
            time_ns: None,
        };
        assert!(r
            .backup_stream(&opts, "data", &b"again"[..], &crate::NoProgress)
            .is_err());
    }
}
