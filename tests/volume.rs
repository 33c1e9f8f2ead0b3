//! Docker named volumes through the real binary and a real engine
//! (scripts/docker-start.sh): backed up by reading the engine's archive of
//! a helper container, restored by writing one, compared by content,
//! mode, owner and mtime; volumes in use refused or, with --stop, their
//! containers stopped and started again; a running PostgreSQL server's data
//! volume never copied under it. Images are `docker import`ed from host
//! binaries: no registry.

mod common;
use common::engine::*;
use common::pgcontainer::PgContainer;
use common::volumes::*;
use common::*;
use std::path::Path;

/// Volumes and containers a test made, removed when it ends.
struct Cleanup {
    volumes: Vec<String>,
    containers: Vec<String>,
}

impl Cleanup {
    fn new() -> Cleanup {
        Cleanup {
            volumes: Vec::new(),
            containers: Vec::new(),
        }
    }

    fn volume(&mut self, name: &str) -> String {
        let _ = docker(&["volume", "rm", "-f", name]);
        self.volumes.push(name.to_string());
        name.to_string()
    }

    /// A new volume holding [`tree`].
    fn filled(&mut self, name: &str) -> String {
        let vol = self.volume(name);
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        fill(&vol, src.path());
        vol
    }

    /// A container of the tools image, running, with `volume` at `at`.
    fn running(&mut self, name: &str, volume: &str, at: &str) -> String {
        let _ = docker(&["rm", "-f", name]);
        self.containers.push(name.to_string());
        docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            &format!("{volume}:{at}"),
            &tools_image(),
        ]);
        name.to_string()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
    }
}

fn snapshot_json(repo: &Path, name: &str) -> serde_json::Value {
    snapshots(repo)
        .into_iter()
        .rev()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[test]
fn a_volume_round_trips_and_a_second_backup_stores_only_the_change() {
    let mut c = Cleanup::new();
    let vol = c.volume(&prefix("data"));
    let fresh = c.volume(&prefix("fresh"));
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    fill(&vol, src.path());
    let before = listing(&vol);
    assert!(before.len() >= 14, "{:?}", before.keys());
    let (_d, repo) = new_repo();

    ok_docker(&repo, &["backup", "volume", &vol, "--name", "vol"]);
    let first = snapshot_json(&repo, "vol");
    assert!(first["size"].as_u64().unwrap() > 4 << 20, "{first}");

    // A change: a file added, a small one rewritten.
    let change = tempfile::tempdir().unwrap();
    std::fs::write(change.path().join("new.txt"), b"new file\n").unwrap();
    with_container(&vol, |c| {
        docker_ok(&[
            "cp",
            &format!("{}/new.txt", change.path().display()),
            &format!("{c}:/v/uploads/new.txt"),
        ]);
        docker_ok(&[
            "cp",
            &format!("{}/new.txt", change.path().display()),
            &format!("{c}:/v/run.sh"),
        ]);
    });
    let changed = listing(&vol);
    let bytes0 = repo_bytes(&repo);
    ok_docker(&repo, &["backup", "volume", &vol, "--name", "vol"]);
    let second = snapshot_json(&repo, "vol");
    assert_ne!(first["id"], second["id"]);
    let grew = repo_bytes(&repo) - bytes0;
    let stored = second["stored_size"].as_u64().unwrap();
    assert!(
        stored < 64 << 10 && grew < 256 << 10,
        "the second backup stored {stored} new bytes (the repository grew by {grew}); only the change is new"
    );

    // Into a volume that does not exist: created, equal to the source by
    // content, mode, owner and mtime.
    let out = ok_docker(&repo, &["restore", "vol", "--into-volume", &fresh]);
    assert!(String::from_utf8_lossy(&out).contains("volume created"));
    assert_same(&listing(&fresh), &changed, "a fresh volume");

    // The first snapshot over it: what it holds now goes, so it equals
    // the first state exactly (the added file is gone).
    let first_id = first["id"].as_str().unwrap();
    ok_docker(
        &repo,
        &["restore", &first_id[..12], "--into-volume", &fresh],
    );
    assert_same(&listing(&fresh), &before, "the first snapshot over it");
    // What it held went into a safety snapshot first, which goes back.
    let safety = snapshot_json(&repo, &format!("safety-{fresh}"));
    assert_eq!(safety["tier"], "safety", "{safety}");
    let safety_id = safety["id"].as_str().unwrap();
    ok_docker(
        &repo,
        &[
            "restore",
            &safety_id[..12],
            "--into-volume",
            &fresh,
            "--no-safety-snapshot",
        ],
    );
    assert_same(&listing(&fresh), &changed, "the safety snapshot back");
    assert_eq!(
        snapshots(&repo)
            .iter()
            .filter(|s| s["tier"] == "safety")
            .count(),
        1,
        "--no-safety-snapshot took none"
    );

    // The files machinery reads the tree: ls, and restore --to.
    let ls = String::from_utf8_lossy(&ok(&repo, &["ls", "vol"], b"")).into_owned();
    assert!(
        ls.contains("-rw-------") && ls.contains("é 日本語.txt"),
        "{ls}"
    );
    let to = tempfile::tempdir().unwrap();
    ok(
        &repo,
        &["restore", "vol", "--to", to.path().to_str().unwrap()],
        b"",
    );
    let key = to
        .path()
        .join("volumes")
        .join(&vol)
        .join("conf.d/secret.key");
    assert_eq!(std::fs::read(&key).unwrap(), b"k3y\n");
    let m = std::fs::symlink_metadata(
        to.path()
            .join("volumes")
            .join(&vol)
            .join("uploads/2026/01/photo.bin"),
    )
    .unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&m),
            std::os::unix::fs::MetadataExt::gid(&m)
        ),
        (1000, 1001)
    );
    let manifest = String::from_utf8_lossy(&ok(&repo, &["manifest", "vol"], b"")).into_owned();
    assert!(
        manifest.contains(&format!("--into-volume {vol}")),
        "{manifest}"
    );

    // Unknown volumes write nothing.
    let n = snapshots(&repo).len();
    let out = relic_docker(&repo, &["backup", "volume", "relic-no-such-volume"], host());
    fails_with(&out, "no volume 'relic-no-such-volume'");
    assert_eq!(snapshots(&repo).len(), n);
}

#[test]
fn a_volume_in_use_is_refused_and_stop_restarts_its_container() {
    let mut c = Cleanup::new();
    let vol = c.filled(&prefix("busy"));
    let app = c.running(&prefix("app"), &vol, "/srv/data");
    let (_d, repo) = new_repo();

    // Not a database: copied while it runs, and said so.
    let out = relic_docker(&repo, &["backup", "volume", &vol, "--name", "busy"], host());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("copied while {app}")),
        "{}",
        stderr(&out)
    );
    let saved = listing(&vol);

    docker_ok(&["exec", &app, "sh", "-c", "echo later > /srv/data/later.txt"]);
    let now = listing(&vol);
    assert_ne!(now, saved);
    let started = |c: &str| {
        String::from_utf8(docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.StartedAt}}",
            c,
        ]))
        .unwrap()
    };
    let was = started(&app);

    let out = relic_docker(
        &repo,
        &["restore", "busy", "--into-volume", &vol, "--dry-run"],
        host(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
        "REFUSED without --stop: running container(s) {app}"
    )));
    let out = relic_docker(&repo, &["restore", "busy", "--into-volume", &vol], host());
    fails_with(&out, &format!("is used by running container(s) {app}"));
    fails_with(&out, "--stop");
    assert_same(&listing(&vol), &now, "nothing was changed");
    assert_eq!(started(&app), was, "the container was left alone");

    let out = relic_docker(
        &repo,
        &["restore", "busy", "--into-volume", &vol, "--stop"],
        host(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let stop = err.find(&format!("stopping container {app}")).expect(&err);
    let empty = err.find("emptying volume").expect(&err);
    let start = err
        .find(&format!("starting container {app} again"))
        .expect(&err);
    assert!(stop < empty && empty < start, "{err}");
    assert_eq!(
        listing(&vol),
        saved,
        "the volume holds the snapshot, later.txt is gone"
    );
    let is = started(&app);
    assert!(
        is.starts_with("true ") && is != was,
        "started again: {was} -> {is}"
    );
}

#[test]
fn a_running_databases_volume_is_never_copied_under_it() {
    let mut c = Cleanup::new();
    let (_d, repo) = new_repo();

    // A volume with PG_VERSION at its root, used by a running container.
    let vol = c.volume(&prefix("pgv"));
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("PG_VERSION"), b"15\n").unwrap();
    fill(&vol, src.path());
    c.running(&prefix("looks-pg"), &vol, "/srv/pg");
    let out = relic_docker(&repo, &["backup", "volume", &vol], host());
    fails_with(&out, "holds the data of the PostgreSQL server");

    // A real server, its data volume mounted where the image keeps it.
    let pg = PgContainer::start("vol-db");
    let (db, data) = (pg.name.clone(), pg.volume.clone());
    let ready = || {
        let t0 = std::time::Instant::now();
        while !docker(&["exec", &db, "pg_isready", "-q"]).status.success() {
            assert!(t0.elapsed().as_secs() < 60, "the server never came up");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let out = relic_docker(&repo, &["backup", "volume", &data, "--name", "pg"], host());
    fails_with(
        &out,
        &format!("the PostgreSQL server running in container '{db}'"),
    );
    fails_with(&out, &format!("relic backup pg --container {db}"));
    assert!(snapshots(&repo).is_empty(), "nothing was written");

    // --stop: copied with the server stopped, the server started again.
    let out = relic_docker(
        &repo,
        &["backup", "volume", &data, "--name", "pg", "--stop"],
        host(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("starting container {db} again")));
    ready();
    let ls = String::from_utf8_lossy(&ok(&repo, &["ls", "pg"], b"")).into_owned();
    assert!(ls.contains(&format!("volumes/{data}/PG_VERSION")), "{ls}");
    assert!(
        ls.contains(&format!("volumes/{data}/global/pg_control")),
        "{ls}"
    );
}

#[test]
fn a_stack_snapshot_holds_its_volumes_and_puts_them_back() {
    let mut c = Cleanup::new();
    let vol = c.filled(&prefix("stackvol"));
    let saved = listing(&vol);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relic.toml");
    std::fs::write(&cfg, format!("name = \"vs\"\nvolumes = [\"{vol}\"]\n")).unwrap();
    let cfg = cfg.to_str().unwrap();
    let (_d, repo) = new_repo();
    ok_docker(&repo, &["snapshot", "--config", cfg]);
    let m: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["manifest", "vs", "--json"], b"")).unwrap();
    assert_eq!(m["volumes"][0]["name"], vol.as_str(), "{m}");

    // Gone, then the stack restore: created again, equal.
    docker_ok(&["volume", "rm", &vol]);
    let out = relic_docker(
        &repo,
        &["restore", "vs", "--config", cfg, "--no-safety-snapshot"],
        host(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("creating volume '{vol}'")),
        "{}",
        stderr(&out)
    );
    assert_same(&listing(&vol), &saved, "created by the stack restore");

    // In use: refused before anything changes; --stop restores under a
    // safety snapshot that holds the volume as it was.
    let app = c.running(&prefix("stackapp"), &vol, "/data");
    docker_ok(&["exec", &app, "sh", "-c", "echo x > /data/extra"]);
    let out = relic_docker(&repo, &["restore", "vs", "--config", cfg], host());
    fails_with(&out, "is used by running container(s)");
    assert!(snapshots(&repo).len() == 1, "no safety snapshot either");
    let out = relic_docker(&repo, &["restore", "vs", "--config", cfg, "--stop"], host());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(&listing(&vol), &saved, "restored with --stop");
    let safety = snapshot_json(&repo, "safety-vs");
    let extra = format!("volumes/{vol}/extra");
    let ls = String::from_utf8_lossy(&ok(&repo, &["ls", safety["id"].as_str().unwrap()], b""))
        .into_owned();
    assert!(ls.contains(&extra), "{ls}");
}
