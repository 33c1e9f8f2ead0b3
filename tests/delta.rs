//! Near-duplicate chunks through the real binary: scattered edits are
//! stored as small deltas, restore byte for byte, are read through their
//! bases by `check --read-data`, keep their bases alive through prune, and
//! sync sends bases before the deltas that need them.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// `base` with one byte changed every `every` bytes: a dump whose rows
/// changed here and there, so nearly every chunk differs a little.
fn edited(base: &[u8], every: usize, seed: u8) -> Vec<u8> {
    let mut d = base.to_vec();
    let mut i = every / 2 + seed as usize;
    while i < d.len() {
        d[i] = b'a' + (seed.wrapping_add((i % 23) as u8)) % 26;
        i += every;
    }
    d
}

fn stats(repo: &Path) -> serde_json::Value {
    serde_json::from_slice(&ok(repo, &["stats", "--json"], b"")).unwrap()
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Backs up a series of days; returns the data and the stats after each.
fn series(repo: &Path, days: usize) -> (Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let mut data = vec![rows(3 << 20, 11)];
    for d in 1..days {
        data.push(edited(&data[d - 1], 20_000 + 3_000 * d, d as u8));
    }
    let mut st = vec![];
    for day in &data {
        ok(repo, &["backup", "--stdin", "--name", "db"], day);
        st.push(stats(repo));
    }
    (data, st)
}

/// The id of a repository's newest snapshot.
fn last_id(repo: &Path) -> String {
    snapshots(repo).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn init(dir: &Path, extra: &[&str]) -> PathBuf {
    let repo = dir.join("repo");
    let mut args = vec!["init", "--no-encryption"];
    args.extend_from_slice(extra);
    ok(&repo, &args, b"");
    repo
}

#[test]
fn scattered_edits_become_small_deltas_that_restore_exactly() {
    let d = tempfile::tempdir().unwrap();
    // Encrypted: delta bodies are sealed like any other.
    let repo = d.path().join("repo");
    ok(&repo, &["init"], b"");
    let (data, st) = series(&repo, 4);
    let day1 = n(&st[0], "pack_bytes");
    // A chunk whose boundaries moved may straddle two old chunks and match
    // neither's super-features: with ~38 new chunks a day (and chunk
    // boundaries keyed per repository) 0 to 4 of them a day are stored
    // whole. Over the three days at least 90% must be deltas.
    let (mut all_chunks, mut all_deltas) = (0, 0);
    for w in st.windows(2) {
        let new_chunks = n(&w[1], "data_chunks") - n(&w[0], "data_chunks");
        let new_deltas = n(&w[1], "delta_chunks") - n(&w[0], "delta_chunks");
        assert!(
            new_chunks > 20 && new_deltas * 10 >= new_chunks * 8,
            "{new_deltas} of {new_chunks} new chunks are deltas"
        );
        all_chunks += new_chunks;
        all_deltas += new_deltas;
        let growth = n(&w[1], "pack_bytes") - n(&w[0], "pack_bytes");
        assert!(
            growth * 8 < day1,
            "a day of scattered edits added {growth} bytes (day 1: {day1})"
        );
    }
    assert!(
        all_deltas * 10 >= all_chunks * 9,
        "{all_deltas} of {all_chunks} new chunks are deltas"
    );

    // The same series without deltas stores nearly every chunk again.
    let d0 = tempfile::tempdir().unwrap();
    let plain = init(d0.path(), &["--delta-depth", "0"]);
    let (_, st0) = series(&plain, 4);
    assert_eq!(n(&st0[3], "delta_chunks"), 0);
    let with = n(&st[3], "pack_bytes") - day1;
    let without = n(&st0[3], "pack_bytes") - n(&st0[0], "pack_bytes");
    assert!(
        with * 4 < without,
        "deltas: {with} bytes, whole chunks: {without}"
    );

    let snaps = snapshots(&repo);
    for (s, want) in snaps.iter().zip(&data) {
        let id = s["id"].as_str().unwrap();
        let got = ok(&repo, &["restore", id, "--stdout"], b"");
        assert!(got == *want, "snapshot {id} restored differently");
    }
    let out = ok(&repo, &["check", "--read-data"], b"");
    assert!(
        String::from_utf8_lossy(&out).contains("no errors"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn chains_stay_within_the_depth_bound_and_reach_back_to_their_root() {
    let d = tempfile::tempdir().unwrap();
    let repo = init(d.path(), &["--delta-depth", "2"]);
    let (data, st) = series(&repo, 6);
    // Past the bound, chunks are encoded against their chain's root
    // instead of being stored whole again.
    let day1 = n(&st[0], "pack_bytes");
    let growth = n(&st[5], "pack_bytes") - n(&st[4], "pack_bytes");
    assert!(
        growth * 5 < day1,
        "day 6 added {growth} bytes (day 1: {day1})"
    );
    let last = last_id(&repo);
    assert!(ok(&repo, &["restore", &last, "--stdout"], b"") == data[5]);
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn prune_keeps_the_bases_that_live_deltas_need() {
    let d = tempfile::tempdir().unwrap();
    let repo = init(d.path(), &[]);
    let (data, st) = series(&repo, 3);
    assert!(n(&st[2], "delta_chunks") > 0);
    // Forget the first two days: their chunks are bases of day 3's deltas.
    let snaps = snapshots(&repo);
    let ids: Vec<String> = snaps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ok(&repo, &["forget", &ids[0], &ids[1]], b"");
    // Repack everything partly live: bases must be copied, not dropped.
    ok(&repo, &["prune", "--max-repack-ratio", "0.99"], b"");
    assert!(ok(&repo, &["restore", &ids[2], "--stdout"], b"") == data[2]);
    ok(&repo, &["check", "--read-data"], b"");
    // With the last snapshot gone too, nothing is left behind.
    ok(&repo, &["forget", &ids[2]], b"");
    ok(&repo, &["prune"], b"");
    assert_eq!(n(&stats(&repo), "data_chunks"), 0);
}

#[test]
fn check_names_the_snapshots_whose_delta_bases_are_lost() {
    let d = tempfile::tempdir().unwrap();
    let repo = init(d.path(), &[]);
    // Edits dense enough that no chunk of day 2 is shared whole with day 1:
    // every chunk day 2 needs from day 1's pack is a delta base.
    let day1 = rows(1 << 20, 5);
    ok(&repo, &["backup", "--stdin", "--name", "db"], &day1);
    ok(
        &repo,
        &["backup", "--stdin", "--name", "db"],
        &edited(&day1, 3_000, 1),
    );
    assert!(n(&stats(&repo), "delta_chunks") > 0);
    // The oldest pack holds day 1: the bases.
    let mut ps = packs(&repo);
    ps.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    std::fs::remove_file(&ps[0]).unwrap();
    let o = relic(&repo, &["check"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(out.contains("delta base"), "{out}");
    let damaged = snapshots(&repo).len();
    assert_eq!(damaged, 2);
    // Both snapshots are named: day 2 through its deltas' bases.
    for s in snapshots(&repo) {
        let id = s["id"].as_str().unwrap();
        assert!(out.contains(&id[..8]), "{id} not named in {out}");
    }
}

#[test]
fn sync_sends_bases_before_the_deltas_that_need_them() {
    let d = tempfile::tempdir().unwrap();
    let repo = init(d.path(), &[]);
    let (data, _) = series(&repo, 5);
    let dest = d.path().join("copy");
    ok(
        &repo,
        &["sync", "--to", dest.to_str().unwrap(), "--jobs", "1"],
        b"",
    );
    // One pack per day; at the destination they must appear in the order
    // they were written (each day's deltas need the day before).
    let mut src = packs(&repo);
    src.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let arrived: Vec<std::time::SystemTime> = src
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&repo).unwrap();
            std::fs::metadata(dest.join(rel))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert!(arrived.windows(2).all(|w| w[0] <= w[1]), "{arrived:?}");
    let last = last_id(&dest);
    assert!(ok(&dest, &["restore", &last, "--stdout"], b"") == data[4]);
    ok(&dest, &["check", "--read-data"], b"");
}

#[test]
fn a_dead_delta_whose_base_was_pruned_is_no_problem_for_check() {
    // Found by the prune crash harness: a pack kept for its live blobs
    // also holds deltas nobody needs, whose bases prune deleted.
    let d = tempfile::tempdir().unwrap();
    let repo = init(d.path(), &[]);
    let day1 = rows(2 << 20, 9);
    let fresh = random(6 << 20, 10);
    ok(&repo, &["backup", "--stdin", "--name", "a"], &day1);
    // Deltas of deltas too: the chain's middle link stays in a kept pack.
    ok(
        &repo,
        &["backup", "--stdin", "--name", "a"],
        &[edited(&day1, 9_000, 2), fresh[..1 << 20].to_vec()].concat(),
    );
    // One pack: deltas against day 1, then fresh data.
    ok(
        &repo,
        &["backup", "--stdin", "--name", "b"],
        &[edited(&day1, 7_000, 3), fresh.clone()].concat(),
    );
    assert!(n(&stats(&repo), "delta_chunks") > 0);
    // Only the fresh part stays needed.
    ok(&repo, &["backup", "--stdin", "--name", "c"], &fresh);
    let ids: Vec<String> = snapshots(&repo)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ok(&repo, &["forget", &ids[0], &ids[1], &ids[2]], b"");
    ok(&repo, &["prune"], b"");
    let out = String::from_utf8(ok(&repo, &["check", "--read-data"], b"")).unwrap();
    assert!(out.contains("no errors"), "{out}");
    assert!(ok(&repo, &["restore", "c", "--stdout"], b"") == fresh);
}
