//! PostgreSQL through the real binary and a real server (scripts/pg-start.sh
//! starts it; the current user is a superuser role, reached over the local
//! socket).

mod common;
use common::pg::*;
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A populated database, backed up as snapshot "app"; returns its name.
fn backed_up_db(repo: &Path, tag: &str, revision: &str) -> String {
    let db = dbname(tag);
    createdb(&db);
    populate(&db, revision);
    ok_pg(
        repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    db
}

fn relic_pg(repo: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_pg(repo: &Path, args: &[&str]) -> String {
    let out = relic_pg(repo, args);
    assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
}

/// `relic restore SNAP --into-postgres CONN EXTRA...`.
fn try_restore(repo: &Path, snap: &str, conn: &str, extra: &[&str]) -> Output {
    let mut args = vec!["restore", snap, "--into-postgres", conn];
    args.extend_from_slice(extra);
    relic_pg(repo, &args)
}

fn ok_restore(repo: &Path, snap: &str, conn: &str, extra: &[&str]) -> String {
    let out = try_restore(repo, snap, conn, extra);
    assert!(
        out.status.success(),
        "restore {snap} {extra:?}: {}",
        stderr(&out)
    );
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
}

#[test]
fn round_trip_through_drop_and_create_is_identical() {
    let (_d, repo) = new_repo();
    let db = dbname("rt");
    createdb(&db);
    populate(&db, "ae1027a6acf");
    let before = pg_dump(&db);
    ok_pg(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    let snaps = snapshots(&repo);
    assert_eq!(snaps.len(), 1);
    let meta = &snaps[0]["meta"];
    assert_eq!(meta["pg.alembic_revision"], "ae1027a6acf");
    assert_eq!(meta["pg.database"], db.as_str());
    let tables = meta["pg.tables"].clone();
    let people = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.people")
        .unwrap();
    assert_eq!(people["rows"], 3000);
    assert_eq!(people["exact"], true);

    dropdb(&db);
    let text = ok_restore(&repo, "app", &format!("dbname={db}"), &["--create"]);
    assert!(text.contains("5/5 verified"), "{text}");
    assert!(text.contains("public.assignments"), "{text}");
    assert_eq!(
        pg_dump(&db),
        before,
        "a fresh dump of the restored database equals the original"
    );
    dropdb(&db);
}

#[test]
fn a_second_backup_after_changing_one_percent_stores_a_small_increment() {
    let (_d, repo) = new_repo();
    let db = dbname("inc");
    createdb(&db);
    populate(&db, "r1");
    psql(&db, "INSERT INTO people (name, email, note) SELECT 'more ' || g, md5(g::text), md5((g * 3)::text) || md5((g * 5)::text) FROM generate_series(1, 60000) g");
    ok_pg(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    let first = repo_bytes(&repo);
    // 1% of the rows, the most recent ones (where an application's updates
    // cluster). Updates scattered uniformly over a table change nearly
    // every chunk of a dump: that is what delta compression is for.
    psql(
        &db,
        "UPDATE people SET note = 'changed ' || id WHERE id > (SELECT max(id) - 630 FROM people)",
    );
    ok_pg(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    let growth = repo_bytes(&repo) - first;
    assert!(
        growth * 4 < first,
        "1% of rows changed grew the repository by {growth} (first {first})"
    );
    dropdb(&db);
}

#[test]
fn failing_or_killed_pg_dump_leaves_no_snapshot() {
    let (d, repo) = new_repo();
    let out = relic_pg(&repo, &["backup", "pg", "dbname=relic_no_such_database"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("relic_no_such_database"),
        "{}",
        stderr(&out)
    );
    assert!(snapshots(&repo).is_empty());

    // A pg_dump that dies by SIGKILL half way through its output.
    let db = dbname("kill");
    createdb(&db);
    populate(&db, "r1");
    let bin_dir = d.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v pg_dump"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = bin_dir.join("pg_dump");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{} \"$@\" | head -c 100000\nkill -9 $$\n",
            real.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .env("PATH", path)
        .arg("-r")
        .arg(&repo)
        .args(["backup", "pg", &format!("dbname={db}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pg_dump failed"), "{}", stderr(&out));
    assert!(
        snapshots(&repo).is_empty(),
        "nothing half-written is listed"
    );
    ok(&repo, &["check"], b"");
    dropdb(&db);
}

#[test]
fn revision_mismatch_is_refused_and_safety_snapshot_taken() {
    let (_d, repo) = new_repo();
    let db = backed_up_db(&repo, "rev", "rev_old");
    // The target moves on to a newer schema.
    psql(&db, "UPDATE alembic_version SET version_num = 'rev_new'; INSERT INTO people (name) VALUES ('new hire')");
    let conn = format!("dbname={db}");
    let out = try_restore(&repo, "app", &conn, &["--clean"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rev_new") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        psql(&db, "SELECT version_num FROM alembic_version"),
        "rev_new",
        "nothing changed"
    );
    let out = try_restore(
        &repo,
        "app",
        &conn,
        &["--clean", "--expect-revision", "other"],
    );
    assert!(!out.status.success());
    // Dry run: the plan, nothing changed.
    let text = ok_restore(&repo, "app", &conn, &["--clean", "--force", "--dry-run"]);
    assert!(text.contains("would take a safety snapshot"), "{text}");
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3001");
    // Forced: restored, with a safety snapshot of the state before.
    ok_restore(&repo, "app", &conn, &["--clean", "--force"]);
    assert_eq!(
        psql(&db, "SELECT version_num FROM alembic_version"),
        "rev_old"
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3000");
    let snaps = snapshots(&repo);
    let safety: Vec<_> = snaps.iter().filter(|s| s["tier"] == "safety").collect();
    assert_eq!(safety.len(), 1, "{snaps:?}");
    assert_eq!(safety[0]["meta"]["pg.alembic_revision"], "rev_new");
    // The safety snapshot brings the newer state back.
    let sid = safety[0]["id"].as_str().unwrap()[..12].to_string();
    ok_restore(
        &repo,
        &sid,
        &conn,
        &["--clean", "--force", "--no-safety-snapshot"],
    );
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3001");
    dropdb(&db);
}

#[test]
fn row_count_verification_fails_loudly_on_a_tampered_restore() {
    let (_d, repo) = new_repo();
    let db = backed_up_db(&repo, "tamper", "r1");
    dropdb(&db);
    // The target drops every tenth row of `blobs` as it is loaded: a
    // trigger installed by an event trigger when the table is created.
    createdb(&db);
    psql(
        &db,
        "CREATE FUNCTION drop_some() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.id % 10 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;
         CREATE FUNCTION arm() RETURNS event_trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE object_identity = 'public.blobs' AND command_tag = 'CREATE TABLE') THEN
               EXECUTE 'CREATE TRIGGER tamper BEFORE INSERT ON public.blobs FOR EACH ROW EXECUTE FUNCTION public.drop_some()';
             END IF;
           END $$;
         CREATE EVENT TRIGGER arm ON ddl_command_end EXECUTE FUNCTION arm();",
    );
    let out = try_restore(&repo, "app", &format!("dbname={db}"), &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("verification failed") && err.contains("public.blobs"),
        "{err}"
    );
    assert!(err.contains("expected 400, found 360"), "{err}");
    dropdb(&db);
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let (_d, repo) = new_repo();
    let out = relic_pg(
        &repo,
        &[
            "backup",
            "pg",
            "host=127.0.0.1 port=1 dbname=x connect_timeout=2",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot connect to PostgreSQL"),
        "{}",
        stderr(&out)
    );
    assert!(snapshots(&repo).is_empty());
}

#[test]
fn a_failing_psql_rolls_back_and_names_the_safety_snapshot() {
    let (_d, repo) = new_repo();
    let (db, role) = db_with_own_role("fail");
    ok_pg(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    // The role the dump needs disappears: psql will fail part way through.
    drop_owner(&db, &role);
    let conn = format!("dbname={db}");
    let out = try_restore(&repo, "app", &conn, &["--clean"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("psql failed") && err.contains("rolled back"),
        "{err}"
    );
    assert!(
        err.contains(&format!("role \"{role}\" does not exist")),
        "{err}"
    );
    let safety = snapshots(&repo)
        .into_iter()
        .find(|s| s["tier"] == "safety")
        .expect("a safety snapshot was taken");
    let sid = &safety["id"].as_str().unwrap()[..8];
    assert!(
        err.contains(&format!("relic restore {sid} --into-postgres")),
        "{err}"
    );
    // Nothing of the failed restore is left, and --clean dropped nothing:
    // the load went into a new database beside it, dropped on failure.
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3000");
    // The command it names brings the database back.
    ok_restore(&repo, sid, &conn, &["--clean", "--no-safety-snapshot"]);
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3000");
    dropdb(&db);
}

/// The scratch database a drill's output names (`relic_drill_…`).
fn scratch_named(text: &str) -> String {
    let at = text
        .find("scratch database relic_drill_")
        .unwrap_or_else(|| panic!("no scratch database named in: {text}"));
    text[at + "scratch database ".len()..]
        .split(['@', ' ', '\n'])
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_drill_of_a_database_backup_restores_into_a_scratch_database_and_checks_counts() {
    let (_d, repo) = new_repo();
    let db = backed_up_db(&repo, "drill", "rev-drill");
    let snaps = snapshots(&repo);
    let meta = &snaps[0]["meta"];
    assert!(
        meta["pg.host"].as_str().is_some_and(|h| !h.is_empty()),
        "{meta}"
    );
    assert_eq!(meta["pg.port"], "5432", "{meta}");
    assert!(meta["pg.user"].as_str().is_some(), "{meta}");
    assert!(!meta.to_string().contains("password"), "{meta}");
    let leftovers = || {
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE 'relic_drill_{db}%'"),
        )
    };

    // On the server the backup recorded: restored, checked, dropped.
    let text = ok_pg(&repo, &["drill", "app"]);
    let scratch = scratch_named(&text);
    assert!(scratch.starts_with(&format!("relic_drill_{db}_")), "{text}");
    assert!(
        text.contains(&format!("dropped scratch database {scratch}")),
        "{text}"
    );
    assert!(
        text.contains("rows public.people") && text.contains("passed"),
        "{text}"
    );
    assert!(text.contains("alembic revision"), "{text}");
    assert_eq!(leftovers(), "0", "the scratch database is gone");

    // A copy of the snapshot whose recorded count of `people` is one short.
    {
        let r = relic::Repository::open(&repo, Some(PASSWORD.as_bytes())).unwrap();
        let (_, mut snap) = r.find_snapshot("app").unwrap();
        let mut tables: Vec<serde_json::Value> =
            serde_json::from_str(&snap.meta["pg.tables"]).unwrap();
        let people = tables
            .iter_mut()
            .find(|t| t["table"] == "public.people")
            .unwrap();
        assert_eq!(people["rows"], 3000);
        people["rows"] = 2999.into();
        snap.meta
            .insert("pg.tables".into(), serde_json::to_string(&tables).unwrap());
        snap.name = "tampered".into();
        r.save_snapshot(&snap).unwrap();
    }
    // On a server named with --postgres (its database is not used).
    let out = relic_pg(
        &repo,
        &["drill", "tampered", "--postgres", "dbname=postgres"],
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FAILED") && err.contains("rows public.people: expected 2999, found 3000"),
        "{err}"
    );
    let scratch = scratch_named(&err);
    assert!(
        err.contains(&format!("dropped scratch database {scratch}")),
        "{err}"
    );
    assert_eq!(leftovers(), "0", "dropped after a failed drill too");
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3000");
    dropdb(&db);
}

#[test]
fn a_clean_restore_says_it_terminates_the_open_sessions_first() {
    let (_d, repo) = new_repo();
    let db = backed_up_db(&repo, "sessions", "r1");
    let psql_sessions = || {
        psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'psql'"
            ),
        )
    };
    // An idle psql session on the target, held open by its stdin.
    let mut session = Command::new("psql")
        .args(["-X", "-q", "-d", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while psql_sessions() != "1" {
        assert!(
            t0.elapsed().as_secs() < 20,
            "the psql session never showed up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let conn = format!("dbname={db}");
    let said = format!("database '{db}' has 1 open connection: it will be terminated");

    let text = ok_restore(&repo, "app", &conn, &["--clean", "--dry-run"]);
    assert!(text.contains(&said), "{text}");
    assert_eq!(psql_sessions(), "1", "a dry run terminates nothing");

    let text = ok_restore(&repo, "app", &conn, &["--clean"]);
    let (told, restored) = (text.find(&said), text.find("4/5 restoring into"));
    assert!(
        told.is_some() && restored.is_some() && told < restored,
        "the session is reported before the restore acts: {text}"
    );
    assert!(text.contains("5/5 verified"), "{text}");
    assert_eq!(psql_sessions(), "0", "the session was terminated");
    assert_eq!(psql(&db, "SELECT count(*) FROM people"), "3000");
    drop(session.stdin.take());
    let _ = session.wait();
    dropdb(&db);
}
