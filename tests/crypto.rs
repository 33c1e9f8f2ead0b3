//! Encryption through the real binary: nothing readable at rest, every
//! flipped byte caught and attributed, keyed ids, passphrase handling.

mod common;
use common::*;
use relic::Repository;
use std::path::{Path, PathBuf};

const MARKER: &str = "MARKER-PII-Ada-Lovelace-1815-12-10";

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            all_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn marker_appears_nowhere_in_the_repository() {
    let (d, repo) = new_repo();
    let mut data = rows(2 << 20, 1);
    for i in 0..500 {
        data.extend_from_slice(format!("{i}\t{MARKER}\n").as_bytes());
    }
    ok(&repo, &["backup", "--stdin", "--name", "people"], &data);
    let src = d.path().join(format!("dir-{MARKER}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(format!("{MARKER}.txt")), MARKER.repeat(100)).unwrap();
    ok(
        &repo,
        &["backup", "--name", "files", src.to_str().unwrap()],
        b"",
    );
    let mut files = vec![];
    all_files(&repo, &mut files);
    assert!(files.len() > 5);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "{} holds the marker",
            f.display()
        );
        assert!(
            !contains(&bytes, b"Ada-Lovelace"),
            "{} holds part of the marker",
            f.display()
        );
    }
    assert_eq!(ok(&repo, &["restore", "people", "--stdout"], b""), data);
}

/// Flips one byte at `at` of `file`, runs `check --read-data`, restores the byte.
fn flip_and_check(repo: &Path, file: &Path, at: usize) -> std::process::Output {
    let mut bytes = std::fs::read(file).unwrap();
    let orig = bytes.clone();
    bytes[at] ^= 0x20;
    std::fs::write(file, &bytes).unwrap();
    let out = relic(repo, &["check", "--read-data"]);
    std::fs::write(file, &orig).unwrap();
    out
}

#[test]
fn every_flipped_byte_fails_check_on_exactly_that_object() {
    let (d, repo) = new_repo();
    ok(
        &repo,
        &["backup", "--stdin", "--name", "a"],
        &rows(600 << 10, 2),
    );
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), random(300 << 10, 3)).unwrap();
    ok(
        &repo,
        &["backup", "--name", "b", src.to_str().unwrap()],
        b"",
    );
    let newpw = relic_env(&repo, &["key", "add"], &[("RELIC_NEW_PASSWORD", "second")]);
    assert!(newpw.status.success(), "{}", stderr(&newpw));
    ok(&repo, &["check", "--read-data"], b"");

    let mut objects: Vec<PathBuf> = packs(&repo);
    for dir in ["snapshots", "keys"] {
        for e in std::fs::read_dir(repo.join(dir)).unwrap() {
            objects.push(e.unwrap().path());
        }
    }
    let mut tried = 0;
    for obj in &objects {
        let name = obj.file_name().unwrap().to_str().unwrap().to_string();
        let len = std::fs::metadata(obj).unwrap().len() as usize;
        // Header, early body, middle, trailer region, footer, last byte.
        let mut spots = vec![0, 9, len / 3, len / 2, len.saturating_sub(40), len - 1];
        spots.dedup();
        for at in spots {
            let out = flip_and_check(&repo, obj, at);
            tried += 1;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
            assert!(
                !out.status.success(),
                "flip at {at} of {name} passed check:\n{text}"
            );
            if name.len() == 64 && !obj.starts_with(repo.join("keys")) || text.contains("key slot")
            {
                assert!(
                    text.contains(&name[..8]),
                    "flip at {at} of {name} not attributed:\n{text}"
                );
            }
            let problems: Vec<&str> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| {
                    l.starts_with("pack ")
                        || l.starts_with("snapshot ")
                        || l.starts_with("key slot ")
                })
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .leak()
                .iter()
                .map(|s| s.as_str())
                .collect();
            // Only the flipped object is reported damaged (snapshots that
            // need a damaged pack are listed as affected, not as damaged objects).
            for p in problems
                .iter()
                .filter(|p| p.starts_with("pack ") || p.starts_with("key slot "))
            {
                assert!(p.contains(&name[..8]), "flip in {name} blamed {p}");
            }
        }
    }
    assert!(tried >= 30, "tried {tried} flips");
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn restore_of_a_tampered_blob_is_an_authentication_error() {
    let (_d, repo) = new_repo();
    let data = random(2 << 20, 4);
    ok(&repo, &["backup", "--stdin", "--name", "x"], &data);
    let pack = packs(&repo)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&pack, &bytes).unwrap();
    let out = relic(&repo, &["restore", "x", "--stdout"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        out.stdout.len() < data.len(),
        "no garbage beyond the damage"
    );
}

fn relic_env(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null()).output().unwrap()
}

#[test]
fn two_repositories_with_the_same_data_share_no_ids_or_sizes() {
    let data = rows(4 << 20, 5);
    let (_d1, r1) = new_repo();
    let (_d2, r2) = new_repo();
    ok(&r1, &["backup", "--stdin", "--name", "x"], &data);
    ok(&r2, &["backup", "--stdin", "--name", "x"], &data);
    let chunks = |path: &Path| {
        let repo = Repository::open(path, Some(PASSWORD.as_bytes())).unwrap();
        let mut v = vec![];
        repo.index()
            .for_each_chunk(|id, e| -> Result<(), relic::internals::index::Error> {
                if e.kind == relic::internals::pack::BlobKind::Data {
                    v.push((id, e.raw_length));
                }
                Ok(())
            })
            .unwrap();
        v
    };
    let (a, b) = (chunks(&r1), chunks(&r2));
    assert!(a.len() > 20 && b.len() > 20);
    let ids_a: std::collections::HashSet<_> = a.iter().map(|(id, _)| *id).collect();
    assert!(
        b.iter().all(|(id, _)| !ids_a.contains(id)),
        "a chunk id is shared"
    );
    let mut la: Vec<u32> = a.iter().map(|(_, l)| *l).collect();
    let mut lb: Vec<u32> = b.iter().map(|(_, l)| *l).collect();
    la.sort();
    lb.sort();
    assert_ne!(la, lb, "chunk sizes are the same in both repositories");
    assert_ne!(
        packs(&r1)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum::<u64>(),
        0
    );
}

#[test]
fn passphrases_and_key_slots() {
    let (_d, repo) = new_repo();
    ok(&repo, &["backup", "--stdin", "--name", "x"], b"hello");
    // Wrong passphrase: one clear error, nothing changed.
    let out = relic_env(&repo, &["snapshots"], &[("RELIC_PASSWORD", "nope")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    // No passphrase and no terminal.
    let out = std::process::Command::new(bin())
        .arg("-r")
        .arg(&repo)
        .arg("snapshots")
        .env_remove("RELIC_PASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("RELIC_PASSWORD"), "{}", stderr(&out));
    // From a file and from a command.
    let pwfile = repo.parent().unwrap().join("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let out = std::process::Command::new(bin())
        .arg("-r")
        .arg(&repo)
        .arg("snapshots")
        .env_remove("RELIC_PASSWORD")
        .env("RELIC_PASSWORD_FILE", &pwfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = std::process::Command::new(bin())
        .arg("-r")
        .arg(&repo)
        .arg("snapshots")
        .env_remove("RELIC_PASSWORD")
        .env(
            "RELIC_PASSWORD_COMMAND",
            format!("cat {}", pwfile.display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // add, list, remove, passwd.
    let out = relic_env(
        &repo,
        &["key", "add"],
        &[("RELIC_NEW_PASSWORD", "second one")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list = relic_env(&repo, &["key", "list", "--json"], &[]);
    let slots: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(slots.as_array().unwrap().len(), 2);
    let current = slots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = slots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = relic_env(&repo, &["key", "remove", &current[..8]], &[]);
    assert!(!out.status.success(), "removing the slot in use is refused");
    let out = relic_env(
        &repo,
        &["restore", "x", "--stdout"],
        &[("RELIC_PASSWORD", "second one")],
    );
    assert_eq!(out.stdout, b"hello");
    let out = relic_env(
        &repo,
        &["key", "passwd"],
        &[("RELIC_NEW_PASSWORD", "third")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = relic_env(&repo, &["snapshots"], &[]);
    assert!(!out.status.success(), "the old passphrase is gone");
    let out = relic_env(
        &repo,
        &["key", "remove", &other[..8]],
        &[("RELIC_PASSWORD", "third")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = relic_env(
        &repo,
        &["key", "list", "--json"],
        &[("RELIC_PASSWORD", "third")],
    );
    let slots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(slots.as_array().unwrap().len(), 1);
    let out = relic_env(
        &repo,
        &["key", "remove", &slots[0]["id"].as_str().unwrap()[..8]],
        &[("RELIC_PASSWORD", "third")],
    );
    assert!(!out.status.success(), "the last slot stays");
    let out = relic_env(
        &repo,
        &["restore", "x", "--stdout"],
        &[("RELIC_PASSWORD", "third")],
    );
    assert_eq!(out.stdout, b"hello");
}

#[test]
fn an_altered_config_is_refused() {
    let (_d, repo) = new_repo();
    let cfg = std::fs::read_to_string(repo.join("config")).unwrap();
    std::fs::write(
        repo.join("config"),
        cfg.replace("\"compression_level\": 1", "\"compression_level\": 9"),
    )
    .unwrap();
    let out = relic(&repo, &["snapshots"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("config was altered"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unencrypted_repositories_still_work() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("plain");
    ok(&repo, &["init", "--no-encryption"], b"");
    let data = rows(1 << 20, 6);
    let out = std::process::Command::new(bin())
        .arg("-r")
        .arg(&repo)
        .args(["backup", "--stdin", "--name", "p"])
        .env_remove("RELIC_PASSWORD")
        .stdin(
            std::fs::File::open({
                let f = d.path().join("in");
                std::fs::write(&f, &data).unwrap();
                f
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ok(&repo, &["restore", "p", "--stdout"], b""), data);
}

#[test]
fn the_key_cache_is_opt_in_and_bound_to_the_passphrase_and_its_slot() {
    let (_d, repo) = new_repo();
    let cache = [("RELIC_KEY_CACHE", "5m")];
    // Without the option nothing is cached.
    ok(&repo, &["backup", "--stdin", "--name", "x"], b"hello");
    let out = relic_env(&repo, &["key", "forget"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no key"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // With it the key stays cached after the command.
    let out = relic_env(&repo, &["snapshots"], &cache);
    assert!(out.status.success(), "{}", stderr(&out));
    if stderr(&out).contains("keyring cannot be used") {
        eprintln!("the kernel keyring is not usable here: {}", stderr(&out));
        return;
    }
    // Another passphrase is never let in by the cache.
    let out = relic_env(
        &repo,
        &["snapshots"],
        &[cache[0], ("RELIC_PASSWORD", "nope")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    // Changing the passphrase removes the slot the cached key came from:
    // the old passphrase no longer opens, cache or not.
    let out = relic_env(
        &repo,
        &["key", "passwd"],
        &[cache[0], ("RELIC_NEW_PASSWORD", "the new one")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = relic_env(&repo, &["snapshots"], &cache);
    assert!(!out.status.success(), "the old passphrase still opens");
    let new = [cache[0], ("RELIC_PASSWORD", "the new one")];
    let out = relic_env(&repo, &["snapshots"], &new);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = relic_env(&repo, &["key", "forget"], &new);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is gone"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = relic_env(&repo, &["key", "forget"], &new[1..]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no key"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A bad duration is a usage error.
    let out = relic_env(&repo, &["snapshots"], &[("RELIC_KEY_CACHE", "5 weeks")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--key-cache"), "{}", stderr(&out));
}
