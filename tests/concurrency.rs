//! A concurrency model test: several workers run randomized, seeded
//! interleavings of backup, forget, prune, repair, check and restore as
//! separate processes against one repository. Whatever the interleaving,
//! every snapshot a backup reported as saved (and nobody forgot) restores
//! byte-exact, a restore never returns wrong bytes, and `check
//! --read-data` is clean at the end.
//!
//! RELIC_CONCURRENCY_OPS (default 240) and RELIC_CONCURRENCY_SEED set the
//! size and the interleaving; the nightly harness runs thousands.

mod common;
use common::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// xorshift64*: small, seeded, repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A backup's content: one of a few bases with a seeded edit, so backups
/// share most chunks with earlier (possibly forgotten and pruned) ones.
#[derive(Clone, Copy, Debug)]
struct Recipe {
    base: u64,
    edit: u64,
}

const BASES: u64 = 3;
const BASE_LEN: usize = 768 << 10;

fn data(r: Recipe) -> Vec<u8> {
    let mut d = random(BASE_LEN, 1000 + r.base);
    if r.edit > 0 {
        let mut rng = Rng(r.edit * 7919 + 1);
        let at = rng.below((BASE_LEN - 8192) as u64) as usize;
        d[at..at + 8192].copy_from_slice(&random(8192, r.edit));
    }
    d
}

#[derive(Default)]
struct Model {
    /// Snapshot id → what it holds, for every backup reported saved.
    saved: BTreeMap<String, Recipe>,
    forgotten: HashSet<String>,
    counts: BTreeMap<&'static str, u64>,
}

impl Model {
    fn live(&self) -> Vec<String> {
        self.saved
            .keys()
            .filter(|k| !self.forgotten.contains(*k))
            .cloned()
            .collect()
    }
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
}

fn step(repo: &Path, rng: &mut Rng, model: &Mutex<Model>) {
    let op = rng.below(100);
    let pick = |rng: &mut Rng| {
        let live = model.lock().unwrap().live();
        (!live.is_empty()).then(|| live[rng.below(live.len() as u64) as usize].clone())
    };
    match op {
        0..=39 => {
            let r = Recipe {
                base: rng.below(BASES),
                // Few distinct edits: a backup often brings back exactly
                // the chunks a forget and a prune just removed.
                edit: rng.below(6),
            };
            let name = ["db", "app", "etc"][rng.below(3) as usize];
            let out = relic_in(
                repo,
                &["backup", "--stdin", "--name", name, "--json"],
                &data(r),
            );
            assert!(out.status.success(), "backup failed: {}", stderr(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            let mut m = model.lock().unwrap();
            m.saved.insert(id, r);
            m.count("backup");
        }
        40..=54 => {
            let Some(id) = pick(rng) else { return };
            // Marked first: a restore racing with this forget may then
            // find the snapshot gone, and only then.
            model.lock().unwrap().forgotten.insert(id.clone());
            let out = relic(repo, &["forget", &id]);
            assert!(out.status.success(), "forget failed: {}", stderr(&out));
            model.lock().unwrap().count("forget");
        }
        55..=69 => {
            let out = relic(repo, &["prune", "--max-repack-ratio", "0.9"]);
            assert!(out.status.success(), "prune failed: {}", stderr(&out));
            model.lock().unwrap().count("prune");
        }
        70..=84 => {
            let Some(id) = pick(rng) else { return };
            let out = relic(repo, &["restore", &id, "--stdout"]);
            let mut m = model.lock().unwrap();
            if out.status.success() {
                assert!(
                    out.stdout == data(m.saved[&id]),
                    "snapshot {id} restored wrong bytes"
                );
                m.count("restore");
            } else {
                assert!(
                    m.forgotten.contains(&id) && stderr(&out).contains("no snapshot matches"),
                    "restore of {id} failed: {}",
                    stderr(&out)
                );
                m.count("restore (forgotten meanwhile)");
            }
        }
        85..=94 => {
            let out = relic(repo, &["check"]);
            assert!(
                out.status.success(),
                "check failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            );
            model.lock().unwrap().count("check");
        }
        _ => {
            let out = relic(repo, &["repair"]);
            assert!(
                out.status.success(),
                "repair failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            );
            model.lock().unwrap().count("repair");
        }
    }
}

#[test]
fn randomized_interleavings_lose_no_saved_snapshot() {
    let ops: u64 = std::env::var("RELIC_CONCURRENCY_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let seed: u64 = std::env::var("RELIC_CONCURRENCY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026);
    eprintln!("RELIC_CONCURRENCY_SEED={seed} RELIC_CONCURRENCY_OPS={ops}");
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    ok(&repo, &["init", "--kdf-memory", "8"], b"");
    let model = Mutex::new(Model::default());
    const WORKERS: u64 = 3;
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (repo, model) = (&repo, &model);
            s.spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(2 * w + 1) | 1);
                for _ in 0..ops / WORKERS {
                    step(repo, &mut rng, model);
                }
            });
        }
    });
    let m = model.into_inner().unwrap();
    eprintln!("operations: {:?}", m.counts);
    // Every snapshot reported saved and not forgotten is listed and
    // restores byte-exact; nothing else is listed.
    let listed: HashSet<String> = snapshots(&repo)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let live: HashSet<String> = m.live().into_iter().collect();
    assert_eq!(listed, live, "listed snapshots differ from the model");
    for id in &live {
        let out = ok(&repo, &["restore", id, "--stdout"], b"");
        assert!(
            out == data(m.saved[id]),
            "snapshot {id} restored wrong bytes"
        );
    }
    let out = relic(&repo, &["check", "--read-data"]);
    assert!(
        out.status.success(),
        "check --read-data: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(m.counts.get("backup").copied().unwrap_or(0) > ops / 5);
    assert!(
        m.counts.get("prune").copied().unwrap_or(0) > 0,
        "no prune ran"
    );
}
