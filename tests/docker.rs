//! Docker images through the real binary and a real engine: Debian's dockerd
//! with the vfs driver on a private socket (scripts/docker-start.sh starts
//! it; scripts/test.sh exports DOCKER_HOST). Test images come from
//! `docker import` of a tarball and `docker build` FROM it with COPY steps.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The engine's address: DOCKER_HOST, or the private engine started here.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            if !h.is_empty() {
                return h;
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-start.sh");
        let out = Command::new(script).output().expect("run docker-start.sh");
        assert!(
            out.status.success(),
            "starting the test engine: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", host())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker runs")
}

fn docker_ok(args: &[&str]) -> Vec<u8> {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn relic_docker(repo: &Path, args: &[&str], docker_host: &str) -> Output {
    Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .env("DOCKER_HOST", docker_host)
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("relic runs")
}

fn ok_docker(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = relic_docker(repo, args, host());
    assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
    out.stdout
}

fn image_id(reference: &str) -> String {
    String::from_utf8(docker_ok(&["inspect", "--format", "{{.Id}}", reference]))
        .unwrap()
        .trim()
        .to_string()
}

/// Two images: `<prefix>/base:1` imported from a tarball of `base_bytes` of
/// files, and `<prefix>/app:1` built FROM it with a COPY of `app_bytes`.
struct Images {
    base: String,
    app: String,
    _dir: tempfile::TempDir,
}

impl Images {
    fn build(prefix: &str, base_bytes: usize, app_bytes: usize, seed: u64) -> Images {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("srv/data")).unwrap();
        std::fs::write(root.join("srv/hello.txt"), b"hello from the base\n").unwrap();
        // Half incompressible, half text: a layer like a real one.
        std::fs::write(root.join("srv/data/blob"), random(base_bytes / 2, seed)).unwrap();
        std::fs::write(root.join("srv/data/rows"), rows(base_bytes / 2, seed)).unwrap();
        let tarball = dir.path().join("base.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let base = format!("{prefix}/base:1");
        let app = format!("{prefix}/app:1");
        docker_ok(&["import", tarball.to_str().unwrap(), &base]);
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("app.bin"), random(app_bytes, seed + 1)).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {base}\nCOPY app.bin /app/app.bin\n"),
        )
        .unwrap();
        docker_ok(&["build", "-q", "-t", &app, ctx.to_str().unwrap()]);
        Images {
            base,
            app,
            _dir: dir,
        }
    }

    fn remove(&self) {
        docker_ok(&["rmi", &self.app, &self.base]);
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.app, &self.base]);
    }
}

fn prefix(tag: &str) -> String {
    format!("relic-t{}-{tag}", std::process::id())
}

#[test]
fn two_images_round_trip_through_rmi_and_load() {
    let imgs = Images::build(&prefix("rt"), 3 << 20, 1 << 20, 11);
    let (base_id, app_id) = (image_id(&imgs.base), image_id(&imgs.app));
    let saved_base = docker_ok(&["save", &imgs.base]);
    let saved_app = docker_ok(&["save", &imgs.app]);
    let (_d, repo) = new_repo();
    ok_docker(
        &repo,
        &["backup", "image", &imgs.app, &imgs.base, "--name", "stack"],
    );

    // The tars come back byte for byte, each on its own.
    let out = ok_docker(
        &repo,
        &["restore", "stack", "--stdout", "--image", &imgs.app],
    );
    assert!(
        out == saved_app,
        "restored app tar differs from docker save"
    );
    let file: PathBuf = _d.path().join("base.tar");
    ok_docker(
        &repo,
        &[
            "restore",
            "stack",
            "--image",
            &imgs.base,
            "--to",
            file.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(&file).unwrap() == saved_base);

    imgs.remove();
    assert!(!docker(&["inspect", &imgs.app]).status.success());
    let out = ok_docker(&repo, &["restore", "stack", "--into-docker"]);
    let table = String::from_utf8_lossy(&out);
    assert!(
        table.contains(&imgs.app) && table.contains(&imgs.base),
        "{table}"
    );
    assert_eq!(image_id(&imgs.base), base_id);
    assert_eq!(image_id(&imgs.app), app_id);
    assert!(docker_ok(&["save", &imgs.app]) == saved_app);
    assert!(docker_ok(&["save", &imgs.base]) == saved_base);

    // One image alone.
    docker_ok(&["rmi", &imgs.app]);
    ok_docker(
        &repo,
        &["restore", "stack", "--into-docker", "--image", &imgs.app],
    );
    assert_eq!(image_id(&imgs.app), app_id);
    ok(&repo, &["check", "--read-data"], b"");
}

#[test]
fn layers_dedup_across_images_and_days() {
    let app_layer = 2 << 20;
    let imgs = Images::build(&prefix("dd"), 6 << 20, app_layer, 23);
    let (_d, repo) = new_repo();
    ok_docker(&repo, &["backup", "image", &imgs.base]);
    let after_base = repo_bytes(&repo);
    ok_docker(&repo, &["backup", "image", &imgs.app]);
    let after_app = repo_bytes(&repo);
    let growth = after_app - after_base;
    // The app image holds the base layer too: only its own (random, so
    // incompressible) layer is new, plus headers, config and the snapshot.
    assert!(
        growth >= app_layer as u64 && growth < app_layer as u64 + (256 << 10),
        "second image added {growth} bytes for a {app_layer}-byte layer"
    );
    ok_docker(
        &repo,
        &["backup", "image", &imgs.app, &imgs.base, "--name", "both"],
    );
    let again = repo_bytes(&repo) - after_app;
    assert!(
        again < 64 << 10,
        "backing up the same images again added {again} bytes"
    );

    // The same tar from a file dedups against what the engine gave.
    let tar = _d.path().join("app.tar");
    std::fs::write(&tar, docker_ok(&["save", &imgs.app])).unwrap();
    let before = repo_bytes(&repo);
    ok_docker(&repo, &["backup", "image", "--file", tar.to_str().unwrap()]);
    assert!(repo_bytes(&repo) - before < 64 << 10);
    let snaps = snapshots(&repo);
    let last = snaps.last().unwrap();
    let records: serde_json::Value =
        serde_json::from_str(last["meta"]["docker.images"].as_str().unwrap()).unwrap();
    assert_eq!(records[0]["id"], image_id(&imgs.app));
    assert_eq!(records[0]["tags"][0], imgs.app.as_str());
    assert_eq!(records[0]["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn engine_down_unknown_image_and_bad_archives_write_nothing() {
    let (d, repo) = new_repo();
    let down = format!("unix://{}/no-engine.sock", d.path().display());
    let out = relic_docker(&repo, &["backup", "image", "anything:1"], &down);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the Docker engine"),
        "{}",
        stderr(&out)
    );

    let missing = format!("{}/nothing:here", prefix("missing"));
    let out = relic_docker(&repo, &["backup", "image", &missing], host());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not in the Docker engine"),
        "{}",
        stderr(&out)
    );

    let imgs = Images::build(&prefix("bad"), 1 << 20, 200 << 10, 5);
    let tar = docker_ok(&["save", &imgs.app]);
    let cut = d.path().join("cut.tar");
    std::fs::write(&cut, &tar[..tar.len() / 2]).unwrap();
    let out = relic_docker(
        &repo,
        &["backup", "image", "--file", cut.to_str().unwrap()],
        host(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));

    let junk = d.path().join("junk.tar");
    std::fs::write(&junk, random(10_000, 1)).unwrap();
    let out = relic_docker(
        &repo,
        &["backup", "image", "--file", junk.to_str().unwrap()],
        host(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a valid tar"), "{}", stderr(&out));

    assert_eq!(
        snapshots(&repo).len(),
        0,
        "a failed backup listed a snapshot"
    );

    // Restoring into an engine that is down fails before touching anything.
    ok_docker(&repo, &["backup", "image", &imgs.base]);
    let out = relic_docker(&repo, &["restore", "latest", "--into-docker"], &down);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot reach the Docker engine"));
    let out = relic_docker(
        &repo,
        &["restore", "latest", "--into-docker", "--image", "no/such:9"],
        host(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no image 'no/such:9'"),
        "{}",
        stderr(&out)
    );
}
