//! The day the server is gone: a stack snapshot restores, part by part or
//! whole, from the repository alone (a synced copy, an empty cache, no
//! relic.toml, no stack directory), through the real binary, a real
//! PostgreSQL server and a real Docker engine.

mod common;
use common::engine::*;
use common::pg::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A stack on disk: `app/` (`.env`, `docker-compose.yml`, `secrets/token`)
/// and `relic.toml` beside it, its repository in `repo/`.
struct Site {
    dir: tempfile::TempDir,
    repo: PathBuf,
    app: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new(name: &str, db: Option<&str>, images: &[&str], extra: &str) -> Site {
        let (dir, repo) = new_repo();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("secrets")).unwrap();
        std::fs::write(app.join(".env"), "DATABASE_URL=postgres://app\n").unwrap();
        std::fs::write(app.join("docker-compose.yml"), "services:\n  db: {}\n").unwrap();
        std::fs::write(app.join("secrets/token"), random(5000, 3)).unwrap();
        std::fs::set_permissions(
            app.join("secrets/token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(app.join(".env"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut toml = format!("name = \"{name}\"\n{extra}images = [");
        toml += &images
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ");
        toml += "]\n\n";
        if let Some(db) = db {
            toml += &format!("[[database]]\nname = \"main\"\nconninfo = \"dbname={db}\"\n\n");
        }
        toml +=
            "[files]\nroot = \"app\"\npaths = [\".env\", \"docker-compose.yml\", \"secrets\"]\n";
        let config = dir.path().join("relic.toml");
        std::fs::write(&config, toml).unwrap();
        Site {
            dir,
            repo,
            app,
            config,
        }
    }

    /// relic in `cwd` against repository `repo`, with `XDG_CACHE_HOME` at
    /// `cache` when given.
    fn relic_at(&self, repo: &Path, cwd: &Path, cache: Option<&Path>, args: &[&str]) -> Output {
        let mut c = Command::new(bin());
        c.env("RELIC_PASSWORD", PASSWORD)
            .env("DOCKER_HOST", host())
            .current_dir(cwd)
            .arg("-r")
            .arg(repo)
            .args(args)
            .stdin(Stdio::null());
        if let Some(cache) = cache {
            c.env("XDG_CACHE_HOME", cache);
        }
        c.output().unwrap()
    }

    /// relic in the site's directory against its repository.
    fn run(&self, args: &[&str]) -> Output {
        self.relic_at(&self.repo, self.dir.path(), None, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    }

    fn raw(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
        out.stdout
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }
}

/// Content and permission bits of each file under `root`, by relative path.
fn files_of(root: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = Vec::new();
    for rel in [".env", "docker-compose.yml", "secrets/token"] {
        let p = root.join(rel);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        out.push((rel.to_string(), std::fs::read(&p).unwrap(), mode));
    }
    out
}

#[test]
fn the_server_is_gone_and_emergency_brings_the_stack_back_from_a_synced_copy() {
    let db = dbname("gone");
    createdb(&db);
    populate(&db, "rev-9");
    let dump_before = pg_dump(&db);
    let imgs = Images::build(&prefix("gone"), 1 << 20, 200 << 10, 41);
    let (base_id, app_id) = (image_id(&imgs.base), image_id(&imgs.app));
    let site = Site::new("gone", Some(&db), &[&imgs.app, &imgs.base], "");
    let mut toml = std::fs::read_to_string(&site.config).unwrap();
    toml += "\n[hooks]\npost_restore = [\"echo flushed > hook.log\"]\n";
    std::fs::write(&site.config, toml).unwrap();
    let files_before = files_of(&site.app);
    site.ok(&[
        "snapshot",
        "--config",
        site.cfg(),
        "--tier",
        "immaculate",
        "--name",
        "known-good",
    ]);
    let copy = site.dir.path().join("offsite");
    site.ok(&["sync", "--to", copy.to_str().unwrap()]);

    // The day before it dies, a migration moved the database on: the
    // emergency's dry run shows the mismatch it would undo.
    psql(&db, "UPDATE alembic_version SET version_num = 'rev-10'");
    let o = site.relic_at(&copy, site.dir.path(), None, &["emergency", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stderr(&o);
    assert!(
        plan.contains("snapshot at rev-9, target at rev-10: REVISION MISMATCH"),
        "{plan}"
    );

    // The machine dies: the stack directory, relic.toml, the database
    // and the images are gone; a new host has the synced copy, an empty
    // cache and a passphrase.
    std::fs::remove_dir_all(&site.app).unwrap();
    std::fs::remove_file(&site.config).unwrap();
    dropdb(&db);
    imgs.remove();
    let host_dir = tempfile::tempdir().unwrap();
    let cache = host_dir.path().join("cache");
    let cwd = host_dir.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let run = |args: &[&str]| site.relic_at(&copy, &cwd, Some(&cache), args);

    // The manifest works from the copy alone and prints commands that
    // need nothing else.
    let out = run(&["manifest", "known-good"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(md.contains("--item db/main --into-postgres"), "{md}");
    assert!(
        md.lines()
            .filter(|l| l.starts_with("relic "))
            .all(|l| !l.contains("--config")),
        "{md}"
    );

    // A dry run changes nothing and says what would happen.
    let out = run(&["emergency", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stderr(&out);
    assert!(plan.contains("immaculate baseline 'known-good'"), "{plan}");
    assert!(!site.app.exists(), "a dry run restores nothing");

    // The prompts, answered: the first confirmation and the name.
    let out = run(&["emergency", "--confirm", "--yes-restore", "known-good"]);
    assert!(out.status.success(), "emergency: {}", stderr(&out));
    assert!(
        pg_dump(&db) == dump_before,
        "the database came back exactly"
    );
    assert_eq!(image_id(&imgs.app), app_id);
    assert_eq!(image_id(&imgs.base), base_id);
    assert_eq!(files_of(&site.app), files_before, "content and modes");
    assert_eq!(
        std::fs::read_to_string(site.dir.path().join("hook.log")).unwrap(),
        "flushed\n",
        "the stored relic.toml's hook ran"
    );

    // With no snapshot named and no relic.toml, a drill takes the newest
    // immaculate baseline of the repository, into scratch targets.
    let out = run(&["drill"]);
    assert!(out.status.success(), "drill: {}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(said.contains("(known-good) passed"), "{said}");
    assert!(pg_dump(&db) == dump_before, "production untouched");
    dropdb(&db);
}

#[test]
fn every_part_of_a_stack_snapshot_comes_out_alone() {
    let db = dbname("items");
    createdb(&db);
    populate(&db, "rev-3");
    let dump_before = pg_dump(&db);
    let imgs = Images::build(&prefix("items"), 600 << 10, 100 << 10, 43);
    let saved_base = docker_ok(&["save", &imgs.base]);
    let app_id = image_id(&imgs.app);
    let site = Site::new("items", Some(&db), &[&imgs.app, &imgs.base], "");
    let files_before = files_of(&site.app);
    site.ok(&["snapshot", "--config", site.cfg(), "--name", "day"]);
    let out = site.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let at = |p: &str| out.join(p).to_str().unwrap().to_string();

    // ls lists every item, as text and as JSON.
    let ls = site.ok(&["ls", "day"]);
    for p in [
        "db/main.sql",
        "relic.toml",
        "files/.env",
        "files/secrets/token",
    ] {
        assert!(ls.contains(p), "ls lacks {p}: {ls}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&site.raw(&["ls", "day", "files", "--json"])).unwrap();
    let paths: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"files/secrets/token"), "{paths:?}");
    assert!(!paths.contains(&"db/main.sql"), "{paths:?}");

    // The dump, as a file and on standard output: what pg_dump wrote.
    site.ok(&[
        "restore",
        "day",
        "--item",
        "db/main",
        "--to",
        &at("main.sql"),
    ]);
    assert!(unrestricted(&std::fs::read(out.join("main.sql")).unwrap()) == dump_before);
    assert!(
        unrestricted(&site.raw(&["restore", "day", "--item", "db/main", "--stdout"]))
            == dump_before
    );

    // The database, into a new one, through the safety chain.
    let copy = format!("{db}_copy");
    site.ok(&[
        "restore",
        "day",
        "--item",
        "db/main",
        "--into-postgres",
        &format!("dbname={copy}"),
        "--create",
    ]);
    assert!(pg_dump(&copy) == dump_before);
    dropdb(&copy);
    // The stack's one database needs no --item.
    site.ok(&[
        "restore",
        "day",
        "--into-postgres",
        &format!("dbname={copy}"),
        "--create",
    ]);
    assert!(pg_dump(&copy) == dump_before);
    dropdb(&copy);

    // One image into the engine, the other as a docker save tar.
    imgs.remove();
    site.ok(&[
        "restore",
        "day",
        "--item",
        &format!("images/{}", imgs.app),
        "--into-docker",
    ]);
    assert_eq!(image_id(&imgs.app), app_id);
    assert!(
        !docker(&["inspect", &imgs.base]).status.success(),
        "only the image asked for was loaded"
    );
    site.ok(&[
        "restore",
        "day",
        "--item",
        &format!("images/{}", imgs.base),
        "--to",
        &at("base.tar"),
    ]);
    assert!(std::fs::read(out.join("base.tar")).unwrap() == saved_base);

    // The files, as the stack's root.
    site.ok(&["restore", "day", "--item", "files", "--to", &at("files")]);
    assert_eq!(files_of(&out.join("files")), files_before);

    // The whole stack as files: --to is a directory for a stack.
    site.ok(&["restore", "day", "--to", &at("all")]);
    assert!(unrestricted(&std::fs::read(out.join("all/db/main.sql")).unwrap()) == dump_before);
    assert_eq!(
        std::fs::read(out.join("all/relic.toml")).unwrap(),
        std::fs::read(&site.config).unwrap()
    );
    assert_eq!(files_of(&out.join("all/files")), files_before);

    // A name the snapshot does not hold is refused, naming what it holds.
    let o = site.run(&["restore", "day", "--item", "db/nope", "--to", &at("x")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("db/main"), "{}", stderr(&o));
    dropdb(&db);
}

#[test]
fn a_stack_restores_without_its_relic_toml_and_config_only_moves_targets() {
    let site = Site::new("moved", None, &[], "");
    site.ok(&["snapshot", "--config", site.cfg(), "--name", "day"]);
    let before = files_of(&site.app);
    std::fs::remove_dir_all(&site.app).unwrap();
    std::fs::remove_file(&site.config).unwrap();

    // No relic.toml anywhere: the files go back where they were.
    site.ok(&["restore", "day"]);
    assert_eq!(files_of(&site.app), before);

    // Another root: the change is said before anything changes.
    let other = site.dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let cfg = other.join("relic.toml");
    std::fs::write(
        &cfg,
        "name = \"moved\"\n[files]\nroot = \"srv\"\npaths = [\".env\"]\n",
    )
    .unwrap();
    let out = site.ok(&["restore", "day", "--config", cfg.to_str().unwrap()]);
    assert!(out.contains("files root"), "{out}");
    assert!(out.contains(other.join("srv").to_str().unwrap()), "{out}");
    assert_eq!(files_of(&other.join("srv")), before, "every file, moved");
}

#[test]
fn a_partial_snapshot_keeps_what_succeeded_and_is_never_a_baseline() {
    let db = dbname("partial");
    createdb(&db);
    populate(&db, "rev-1");
    let dump_before = pg_dump(&db);
    let missing = format!("{}/nowhere:1", prefix("partial"));
    let site = Site::new("partial", Some(&db), &[&missing], "");
    let count = snapshots(&site.repo).len();

    // Without the flag: all or nothing, as before; the Docker step's
    // failure has its exit code.
    let o = site.run(&["snapshot", "--config", site.cfg(), "--name", "night"]);
    assert_eq!(o.status.code(), Some(13), "{}", stderr(&o));
    assert_eq!(snapshots(&site.repo).len(), count, "nothing was written");

    // With it: the database and files are kept, the snapshot is marked
    // partial, and the exit code says so.
    let o = site.run(&[
        "snapshot",
        "--config",
        site.cfg(),
        "--name",
        "night",
        "--allow-partial",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("PARTIAL"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&missing), "{}", stderr(&o));
    let list = site.ok(&["snapshots"]);
    assert!(list.contains("PARTIAL"), "{list}");
    let m = site.ok(&["manifest", "night"]);
    assert!(m.contains("PARTIAL") && m.contains(&missing), "{m}");
    assert!(
        unrestricted(&site.raw(&["restore", "night", "--item", "db/main", "--stdout"]))
            == dump_before
    );
    let out = site.dir.path().join("files");
    site.ok(&[
        "restore",
        "night",
        "--item",
        "files",
        "--to",
        out.to_str().unwrap(),
    ]);
    assert_eq!(files_of(&out), files_of(&site.app));

    // The engine down: the database and files are still kept.
    let o = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .current_dir(site.dir.path())
        .arg("-r")
        .arg(&site.repo)
        .args([
            "snapshot",
            "--config",
            site.cfg(),
            "--name",
            "night",
            "--allow-partial",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let m = site.ok(&["manifest", "night"]);
    assert!(m.contains("- images:") && m.contains("| main |"), "{m}");

    // It can never be a baseline: asking for one is refused whole, and
    // nothing is written.
    let count = snapshots(&site.repo).len();
    for tier in ["immaculate", "sacred"] {
        let o = site.run(&[
            "snapshot",
            "--config",
            site.cfg(),
            "--name",
            "gold",
            "--tier",
            tier,
            "--allow-partial",
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("whole or nothing"), "{}", stderr(&o));
    }
    assert_eq!(snapshots(&site.repo).len(), count);
    let o = site.run(&["baseline", "promote", "night", "--name", "gold"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("whole or nothing"), "{}", stderr(&o));
    assert_eq!(snapshots(&site.repo).len(), count, "no baseline was made");
    let o = site.run(&["baseline", "retire", "night", "--confirm", "night"]);
    assert!(!o.status.success(), "a partial daily is no baseline");
    let diff = site.ok(&["diff", "night", "night"]);
    assert!(
        diff.contains("partial:") && diff.contains("lacks images"),
        "{diff}"
    );
    dropdb(&db);
}

#[test]
fn manifest_describes_every_kind_of_snapshot() {
    let db = dbname("manif");
    createdb(&db);
    populate(&db, "rev-5");
    let (_d, repo) = new_repo();
    let out = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .args(["-r", repo.to_str().unwrap(), "backup", "pg", "--name", "pg"])
        .arg(format!("dbname={db}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    ok(
        &repo,
        &["backup", "--stdin", "--name", "s"],
        b"one stream\n",
    );
    let m: serde_json::Value =
        serde_json::from_slice(&ok(&repo, &["manifest", "pg", "--json"], b"")).unwrap();
    assert_eq!(m["kind"], "postgres");
    assert_eq!(m["database"]["alembic_revision"], "rev-5");
    assert_eq!(m["database"]["tables"].as_array().unwrap().len(), 4);
    let cmds = m["restore_commands"].to_string();
    assert!(cmds.contains("--into-postgres"), "{cmds}");
    let md = String::from_utf8(ok(&repo, &["manifest", "s"], b"")).unwrap();
    assert!(md.contains("(stream)") && md.contains("--stdout"), "{md}");

    // --to is a file for a single stream, a directory's file when it
    // names a directory.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("dump.sql");
    ok(&repo, &["restore", "pg", "--to", f.to_str().unwrap()], b"");
    assert!(unrestricted(&std::fs::read(&f).unwrap()) == pg_dump(&db));
    ok(
        &repo,
        &["restore", "s", "--to", d.path().to_str().unwrap()],
        b"",
    );
    assert_eq!(std::fs::read(d.path().join("s")).unwrap(), b"one stream\n");

    // A stream named `..` is never written beside the directory.
    ok(
        &repo,
        &["backup", "--stdin", "--name", "up", "--stdin-name", ".."],
        b"climb\n",
    );
    let into = d.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let o = relic(&repo, &["restore", "up", "--to", into.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no file name"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        3,
        "dump.sql, s, into"
    );
    dropdb(&db);
}

#[test]
fn an_unencrypted_repository_restores_its_files_but_never_runs_stored_hooks() {
    let site = Site::new("plain", None, &[], "");
    std::fs::remove_dir_all(&site.repo).unwrap();
    ok(&site.repo, &["init", "--no-encryption"], b"");
    let mut toml = std::fs::read_to_string(&site.config).unwrap();
    toml += "\n[hooks]\npost_restore = [\"echo ran > hook.log\"]\n";
    std::fs::write(&site.config, toml).unwrap();
    site.ok(&["snapshot", "--config", site.cfg(), "--name", "day"]);
    let before = files_of(&site.app);
    std::fs::remove_dir_all(&site.app).unwrap();
    std::fs::remove_file(&site.config).unwrap();

    // Anyone able to write to the repository could have put the hook
    // there: the files come back, the hook is named and not run.
    let out = site.ok(&["restore", "day"]);
    assert!(out.contains("not encrypted"), "{out}");
    assert!(
        out.contains("echo ran > hook.log (stored) -> none"),
        "{out}"
    );
    assert_eq!(files_of(&site.app), before);
    assert!(
        !site.dir.path().join("hook.log").exists(),
        "no stored hook ran"
    );
}
