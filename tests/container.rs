//! A PostgreSQL server inside a container, as compose stacks run it: an
//! image built without a registry from the host's PostgreSQL 15
//! (scripts/pg-image.sh), a named data volume, no published port. relic
//! runs the container's own client tools through the engine's exec
//! endpoint and reads their output as a stream.

mod common;
use common::engine::*;
use common::pgcontainer::{path_without_host_clients, PgContainer};
use relic::docker::{Engine, Error, ExecSpec};
use std::io::Read;
use std::path::Path;
use std::process::Command;

fn spec(cmd: &[&str]) -> ExecSpec {
    ExecSpec {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A plain dump without its random `\restrict` / `\unrestrict` lines.
fn unrestricted(dump: &[u8]) -> String {
    String::from_utf8_lossy(dump)
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_containers_own_pg_dump_streams_out_through_the_engine() {
    let pg = PgContainer::start("exec");
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE rows AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g",
    );
    std::env::set_var("DOCKER_HOST", host());
    let engine = Engine::connect().unwrap();

    // The dump, read as a stream in small reads, is what `docker exec`
    // gives, and the command's end is reported.
    let mut e = engine.exec(&pg.name, &spec(&["pg_dump", "app"])).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = e.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let status = e.finish().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(got.len() > 5 << 20, "{} bytes", got.len());
    let cli = docker_ok(&["exec", &pg.name, "pg_dump", "app"]);
    assert!(unrestricted(&got) == unrestricted(&cli), "same dump");

    // A failing command: its exit code and standard error.
    let (out, status) = engine
        .exec_output(&pg.name, &spec(&["pg_dump", "nosuchdb"]))
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(status.code, Some(1));
    assert!(
        status.stderr.contains("\"nosuchdb\" does not exist"),
        "{status:?}"
    );

    // Environment and user are passed (the image runs as 999 otherwise).
    let mut s = spec(&["sh", "-c", "echo $GREETING; cat /proc/self/status"]);
    s.env = vec!["GREETING=hello".into()];
    s.user = Some("0".into());
    let (out, status) = engine.exec_output(&pg.name, &s).unwrap();
    assert!(status.success(), "{status:?}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("hello\n"), "{out}");
    assert!(out.contains("\nUid:\t0\t"), "{out}");

    // A wrong container and a stopped one are said so.
    let err = engine
        .exec("relic-no-such-container", &spec(&["true"]))
        .err()
        .unwrap();
    assert!(matches!(err, Error::NoSuchContainer { .. }), "{err}");
    assert!(err.to_string().contains("relic-no-such-container"), "{err}");
    docker_ok(&["stop", "-t", "5", &pg.name]);
    let err = engine.exec(&pg.name, &spec(&["true"])).err().unwrap();
    assert!(matches!(err, Error::NotRunning { .. }), "{err}");
}

/// relic with the engine of the tests, and a `pg_dump` and a `psql` first
/// on PATH that always fail: a database in a container must never use the
/// host's (of another major version, or none at all).
fn relic_no_host_pg_dump(repo: &Path, args: &[&str]) -> std::process::Output {
    let fake = tempfile::tempdir().unwrap();
    let path = path_without_host_clients(fake.path());
    Command::new(common::bin())
        .env("RELIC_PASSWORD", common::PASSWORD)
        .env("DOCKER_HOST", host())
        .env("PATH", path)
        .arg("-r")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn backup_pg_container_dumps_with_the_containers_own_client() {
    let pg = PgContainer::start("backup");
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('c0ffee');
         CREATE TABLE people AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 30000) g;
         CREATE TABLE \"Odd Name\" (a int); INSERT INTO \"Odd Name\" VALUES (1), (2);",
    );
    let (_d, repo) = common::new_repo();
    let out = relic_no_host_pg_dump(
        &repo,
        &[
            "backup",
            "pg",
            "--container",
            &pg.name,
            "dbname=app",
            "--name",
            "app",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));

    // What the backup recorded, read from the dump as it streamed.
    let m: serde_json::Value =
        serde_json::from_slice(&common::ok(&repo, &["manifest", "app", "--json"], b"")).unwrap();
    assert_eq!(m["database"]["alembic_revision"], "c0ffee");
    assert!(m["database"]["server_version"]
        .as_str()
        .unwrap()
        .starts_with("15."));
    let tables = m["database"]["tables"].to_string();
    for t in [
        r#"{"exact":true,"rows":30000,"table":"public.people"}"#,
        r#"{"exact":true,"rows":2,"table":"public.\"Odd Name\""}"#,
    ] {
        assert!(tables.contains(t), "{tables}");
    }
    let stored = common::ok(&repo, &["restore", "app", "--stdout"], b"");
    let cli = docker_ok(&["exec", &pg.name, "pg_dump", "app"]);
    assert!(unrestricted(&stored) == unrestricted(&cli), "the same dump");

    // Failures leave no snapshot and say what failed, in one line each.
    let count = common::snapshots(&repo).len();
    for (args, says) in [
        (
            vec!["backup", "pg", "--container", &pg.name, "dbname=nosuch"],
            "\"nosuch\" does not exist",
        ),
        (
            vec!["backup", "pg", "--container", "relic-no-such-container"],
            "no container 'relic-no-such-container'",
        ),
    ] {
        let out = relic_no_host_pg_dump(&repo, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = common::stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("host pg_dump used"), "{err}");
    }
    docker_ok(&["stop", "-t", "5", &pg.name]);
    let out = relic_no_host_pg_dump(&repo, &["backup", "pg", "--container", &pg.name]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("is not running"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(common::snapshots(&repo).len(), count, "nothing was written");
}

#[test]
fn restore_into_a_container_goes_through_its_own_psql() {
    let pg = PgContainer::start("restore");
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('c0ffee');
         CREATE TABLE people AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 50000) g;
         CREATE INDEX people_name ON people (name);",
    );
    let (_d, repo) = common::new_repo();
    let run = |args: &[&str]| relic_no_host_pg_dump(&repo, args);
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
        assert!(
            !common::stderr(&out).contains("host "),
            "{}",
            common::stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&[
        "backup",
        "pg",
        "--container",
        &pg.name,
        "dbname=app",
        "--name",
        "app",
    ]);
    let dump = |db: &str| unrestricted(&docker_ok(&["exec", &pg.name, "pg_dump", db]));

    // Into a new database, created: the same dump comes out of it.
    let c = pg.name.as_str();
    let out = ok(&[
        "restore",
        "app",
        "--into-postgres",
        "dbname=copy",
        "--container",
        c,
        "--create",
    ]);
    assert!(out.contains("verified"), "{out}");
    assert!(
        dump("copy") == dump("app"),
        "the restored database dumps the same"
    );

    // An existing database with tables is refused without --clean.
    let out = run(&[
        "restore",
        "app",
        "--into-postgres",
        "dbname=copy",
        "--container",
        c,
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("--clean"),
        "{}",
        common::stderr(&out)
    );

    // With --clean: a safety snapshot of what is there, then the snapshot.
    pg.psql("copy", "DELETE FROM people WHERE id > 100");
    ok(&[
        "restore",
        "app",
        "--into-postgres",
        "dbname=copy",
        "--container",
        c,
        "--clean",
    ]);
    assert!(dump("copy") == dump("app"));
    let snaps = common::snapshots(&repo);
    let safety = snaps
        .iter()
        .find(|s| s["name"] == "safety-copy")
        .expect("a safety snapshot of the replaced database");
    assert_eq!(safety["meta"]["pg.container"], pg.name.as_str());
    assert!(safety["meta"]["pg.tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["rows"] == 100));

    // Another Alembic revision in the target is refused.
    pg.psql("copy", "UPDATE alembic_version SET version_num = 'beef'");
    let out = run(&[
        "restore",
        "app",
        "--into-postgres",
        "dbname=copy",
        "--container",
        c,
        "--clean",
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("Alembic revision beef"),
        "{}",
        common::stderr(&out)
    );

    // A load that fails part way is rolled back whole, and said so.
    pg.psql("postgres", "CREATE DATABASE clash");
    pg.psql("clash", "CREATE TYPE people AS (x int)");
    let out = run(&[
        "restore",
        "app",
        "--into-postgres",
        "dbname=clash",
        "--container",
        c,
    ]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("psql failed") && err.contains("already exists"),
        "{err}"
    );
    assert!(!err.contains("host psql used"), "{err}");
    assert_eq!(
        pg.psql(
            "clash",
            "SELECT count(*) FROM pg_class WHERE relname = 'alembic_version'"
        ),
        "0",
        "nothing of the failed load stayed"
    );

    // A wrong container is one clear line.
    let out = run(&[
        "restore",
        "app",
        "--into-postgres",
        "--container",
        "relic-no-such",
        "--create",
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("no container 'relic-no-such'"),
        "{}",
        common::stderr(&out)
    );
}
