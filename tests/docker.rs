//! Docker images through the real binary and a real engine: Debian's dockerd
//! with the vfs driver on a private socket (scripts/docker-start.sh starts
//! it; scripts/test.sh exports DOCKER_HOST). Test images come from
//! `docker import` of a tarball and `docker build` FROM it with COPY steps.

mod common;
use common::engine::*;
use common::*;
use std::path::PathBuf;

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
    let records = last["meta"]["docker.images"].clone();
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

#[test]
fn a_restore_over_a_moved_tag_keeps_the_old_image_reachable() {
    let imgs = Images::build(&prefix("kept"), 1 << 20, 200 << 10, 17);
    let (base_id, app_id) = (image_id(&imgs.base), image_id(&imgs.app));
    let (_d, repo) = new_repo();
    ok_docker(&repo, &["backup", "image", &imgs.app, "--name", "app"]);

    // A drill of the image backup loads it under scratch tags only.
    let out = relic_docker(&repo, &["drill", "app"], host());
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("loading the images under scratch tags"),
        "{text}"
    );
    let listed = String::from_utf8(docker_ok(&["images", "--format", "{{.Repository}}"])).unwrap();
    assert!(!listed.contains("relic-drill"), "{listed}");
    assert_eq!(image_id(&imgs.app), app_id, "the drill moved no tag");

    // The app's tag now points at the base image, its only tag.
    docker_ok(&["tag", &imgs.base, &imgs.app]);
    docker_ok(&["rmi", &imgs.base]);
    assert_eq!(image_id(&imgs.app), base_id);
    let out = relic_docker(&repo, &["restore", "app", "--into-docker"], host());
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(image_id(&imgs.app), app_id);
    let kept: Vec<String> = String::from_utf8(docker_ok(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]))
    .unwrap()
    .lines()
    .filter(|l| l.starts_with("relic-replaced/") && l.ends_with(&base_id))
    .map(|l| l.split(' ').next().unwrap().to_string())
    .collect();
    assert_eq!(
        kept.len(),
        1,
        "the old image is kept under one tag: {kept:?}"
    );
    let kept = &kept[0];
    let sanitized = imgs.app.replace(['/', ':'], "-");
    assert!(
        kept.starts_with(&format!("relic-replaced/{sanitized}:")),
        "{kept}"
    );
    assert!(
        text.contains(&format!("tagged {kept} to keep it")),
        "the restore said so: {text}"
    );
    assert_eq!(image_id(kept), base_id);
    docker_ok(&["rmi", kept]);
}
