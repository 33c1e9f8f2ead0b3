//! The parallel load of `restore --into-postgres -j N` against the real
//! server: the same database as one session loads, big tables cut across
//! sessions, and a load that fails part way (a backend killed, a role
//! gone) leaves the old database as it was and no scratch database.

mod common;
use common::pg::*;
use common::*;
use std::process::{Command, Stdio};

fn scratch_left(db: &str) -> String {
    psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{db}%relic_new'"),
    )
    .trim()
    .to_string()
}

/// Sorted lines of a plain dump, without the random `\restrict` key: rows
/// loaded by several sessions at once come back in another physical order.
fn content(db: &str) -> Vec<String> {
    let mut l: Vec<String> = String::from_utf8(unrestricted(&pg_dump(db)))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    l.sort();
    l
}

/// `restore app --into-postgres dbname=DB --clean -j 2`, running.
fn spawn_restore(repo: &std::path::Path, db: &str) -> std::process::Child {
    Command::new(bin())
        .env("RELIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args([
            "restore",
            "app",
            "--into-postgres",
            &format!("dbname={db}"),
            "--clean",
            "-j",
            "2",
            "--no-safety-snapshot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to 30 s) until a COPY runs in `db`'s scratch database, and
/// returns what `select` (over those sessions) answered last.
fn when_copying(db: &str, select: &str) -> String {
    let started = std::time::Instant::now();
    let mut answer = String::new();
    while started.elapsed() < std::time::Duration::from_secs(30) {
        answer = psql(
            "postgres",
            &format!(
                "SELECT {select} FROM pg_stat_activity
                 WHERE datname = '{db}_relic_new' AND query LIKE 'COPY%'"
            ),
        );
        if answer.trim() != "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    answer
}

/// Drops the test's databases, then its tablespace, when the test ends,
/// failed or not, before its temporary directory (which holds the
/// tablespace's) is removed: a server left with tables in a removed
/// directory fails every checkpoint after.
struct Placed {
    dbs: Vec<String>,
    ts: String,
}

impl Drop for Placed {
    fn drop(&mut self) {
        let mut sql: Vec<String> = self
            .dbs
            .iter()
            .flat_map(|d| [d.clone(), format!("{d}_relic_new")])
            .map(|d| format!("DROP DATABASE IF EXISTS {d} WITH (FORCE)"))
            .collect();
        sql.push(format!("DROP TABLESPACE IF EXISTS {}", self.ts));
        for s in sql {
            // No panic here: this may run while a failed test unwinds.
            let _ = Command::new("psql")
                .args(["-X", "-q", "-d", "postgres", "-c", &s])
                .output();
        }
    }
}

#[test]
fn a_parallel_load_gives_the_database_one_session_gives() {
    let (d, repo) = new_repo();
    let db = dbname("par");
    createdb(&db);
    populate(&db, "rev-par");
    // Indexes in a tablespace of their own and in the default one: pg_dump
    // says where only when it changes from one entry to the next, and a
    // parallel load builds them on several sessions in another order.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ts_dir = d.path().join("ts");
    std::fs::create_dir(&ts_dir).unwrap();
    let chown = Command::new("chown")
        .arg("postgres")
        .arg(&ts_dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let ts = format!("{db}_ts");
    let (one, two) = (format!("{db}_one"), format!("{db}_two"));
    let _placed = Placed {
        dbs: vec![db.clone(), one.clone(), two.clone()],
        ts: ts.clone(),
    };
    psql(
        "postgres",
        &format!("CREATE TABLESPACE {ts} LOCATION '{}'", ts_dir.display()),
    );
    // A table well over one batch, so its rows load on both sessions.
    psql(
        &db,
        "CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO big SELECT g, md5(g::text) || repeat('x', 60) FROM generate_series(1, 150000) g;
         CREATE INDEX big_v ON big (v);
         ALTER TABLE assignments ADD CONSTRAINT assignments_big FOREIGN KEY (id) REFERENCES big (id);",
    );
    psql(
        &db,
        &format!(
            "CREATE TABLE placed (a int, b int) TABLESPACE {ts};
             INSERT INTO placed SELECT g, g FROM generate_series(1, 1000) g;
             CREATE INDEX placed_a ON placed (a) TABLESPACE {ts};
             CREATE INDEX placed_b ON placed (b) TABLESPACE pg_default;
             CREATE INDEX placed_ab ON placed (a, b) TABLESPACE {ts};
             CREATE INDEX placed_ba ON placed (b, a) TABLESPACE {ts};"
        ),
    );
    let o = relic(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (target, jobs) in [(&one, "1"), (&two, "2")] {
        let o = relic(
            &repo,
            &[
                "restore",
                "app",
                "--into-postgres",
                &format!("dbname={target}"),
                "--create",
                "-j",
                jobs,
            ],
        );
        assert!(o.status.success(), "-j {jobs}: {}", stderr(&o));
    }
    assert_eq!(content(&two), content(&one));
    assert_eq!(content(&two), content(&db));
    assert_eq!(scratch_left(&db), "0");
}

#[test]
fn a_parallel_load_that_fails_leaves_the_old_database_and_no_scratch() {
    let (_d, repo) = new_repo();
    // A role the dump names is gone by restore time: pre-data fails.
    let (db, role) = db_with_own_role("parfail");
    let o = relic(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    drop_owner(&db, &role);
    psql(&db, "INSERT INTO people (name) VALUES ('after the backup')");
    let before = content(&db);
    let o = relic(
        &repo,
        &[
            "restore",
            "app",
            "--into-postgres",
            &format!("dbname={db}"),
            "--clean",
            "--force",
            "-j",
            "2",
            "--no-safety-snapshot",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&role), "{}", stderr(&o));
    assert_eq!(content(&db), before, "the old database changed");
    assert_eq!(scratch_left(&db), "0");

    // A backend killed in the middle of the rows.
    psql(
        &db,
        "CREATE TABLE big (id bigint PRIMARY KEY, v text);
         INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;",
    );
    psql(
        &db,
        &format!("CREATE ROLE {role}; ALTER TABLE blobs OWNER TO {role}"),
    );
    let o = relic(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let before = content(&db);
    let child = spawn_restore(&repo, &db);
    let killed = when_copying(&db, "count(pg_terminate_backend(pid))");
    let o = child.wait_with_output().unwrap();
    assert_ne!(killed.trim(), "0", "no COPY session was seen to kill");
    assert!(!o.status.success(), "the load survived its killed backend");
    assert_eq!(o.status.code(), Some(13), "{}", stderr(&o));
    assert_eq!(content(&db), before, "the old database changed");
    assert_eq!(scratch_left(&db), "0");

    // relic itself killed (-9) mid-rows: the old database is as it was;
    // the scratch database it leaves is dropped by the next restore, which
    // then completes.
    let mut child = spawn_restore(&repo, &db);
    when_copying(&db, "count(*)");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(content(&db), before, "the old database changed");
    let o = restore_clean(&repo, &db);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(content(&db), before);
    assert_eq!(scratch_left(&db), "0");
    drop_owner(&db, &role);
    dropdb(&db);
}

/// `restore app --into-postgres dbname=DB --clean -j 2`, to its end.
fn restore_clean(repo: &std::path::Path, db: &str) -> std::process::Output {
    spawn_restore(repo, db).wait_with_output().unwrap()
}

#[test]
fn an_index_that_cannot_be_built_or_a_backend_killed_in_it_leaves_the_old_database() {
    let (_d, repo) = new_repo();
    let db = dbname("paridx");
    createdb(&db);
    // A unique index whose keys all collide in the database a parallel
    // load builds it in (its name ends in _relic_new): it cannot be made
    // there, as a unique key over data that breaks it cannot.
    psql(
        &db,
        "CREATE FUNCTION k(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
         BEGIN
           IF current_database() LIKE '%relic_new' THEN RETURN 0; END IF;
           RETURN $1;
         END $$;
         CREATE TABLE t (a int NOT NULL);
         INSERT INTO t SELECT g FROM generate_series(1, 1000) g;
         CREATE UNIQUE INDEX t_k ON t (k(a));
         CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000000) g;
         CREATE INDEX big_v ON big (v);",
    );
    let o = relic(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    psql(&db, "INSERT INTO t VALUES (1001)");
    let before = content(&db);
    let o = restore_clean(&repo, &db);
    assert_eq!(o.status.code(), Some(13), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("could not create unique index"),
        "{}",
        stderr(&o)
    );
    assert_eq!(content(&db), before, "the old database changed");
    assert_eq!(scratch_left(&db), "0");

    // Without that index, a backend building the others is killed.
    psql(&db, "DROP INDEX t_k");
    let o = relic(
        &repo,
        &["backup", "pg", &format!("dbname={db}"), "--name", "app"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    psql(&db, "INSERT INTO t VALUES (1002)");
    let before = content(&db);
    let child = spawn_restore(&repo, &db);
    let started = std::time::Instant::now();
    let mut killed = String::from("0");
    while killed.trim() == "0" && started.elapsed() < std::time::Duration::from_secs(60) {
        killed = psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = '{db}_relic_new'
                   AND (query LIKE 'CREATE INDEX%' OR query LIKE 'ALTER TABLE%PRIMARY KEY%')"
            ),
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    assert_ne!(killed.trim(), "0", "no index build was seen to kill");
    assert_eq!(o.status.code(), Some(13), "{}", stderr(&o));
    assert_eq!(content(&db), before, "the old database changed");
    assert_eq!(scratch_left(&db), "0");

    // And with nothing in the way, the load completes.
    let o = restore_clean(&repo, &db);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(scratch_left(&db), "0");
    assert_eq!(psql(&db, "SELECT count(*) FROM big").trim(), "1000000");
    dropdb(&db);
}
