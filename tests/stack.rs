//! Stack snapshots through the real binary, a real PostgreSQL server and a
//! real Docker engine: one snapshot of a database, two images and files;
//! damage, restore, verify; baselines that cannot change; emergency.

mod common;
use common::engine::*;
use common::pg::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A stack on disk: an app directory (a git checkout with `.env`,
/// `docker-compose.yml`, `secrets/`) and its relic.toml.
struct Stack {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    app: PathBuf,
    config: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=relic test", "-c", "user.email=test@relic"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Stack {
    /// `db`: a database name (or none); `images`: references.
    fn new(name: &str, db: Option<&str>, images: &[&str]) -> Stack {
        let (dir, repo) = new_repo();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("secrets")).unwrap();
        std::fs::write(app.join(".env"), "DATABASE_URL=postgres://app\nMODE=prod\n").unwrap();
        std::fs::write(app.join("docker-compose.yml"), "services:\n  backend: {}\n").unwrap();
        std::fs::write(app.join("secrets/token"), random(3000, 9)).unwrap();
        git(&app, &["init", "-q"]);
        git(&app, &["add", "-A"]);
        git(&app, &["commit", "-qm", "stack"]);
        let mut toml = format!(
            "name = \"{name}\"\nimages = [{}]\n\n",
            images
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(db) = db {
            toml += &format!("[[database]]\nname = \"main\"\nconninfo = \"dbname={db}\"\n\n");
        }
        toml += "[files]\npaths = [\".env\", \"docker-compose.yml\", \"secrets\"]\n\n[git]\n\n";
        toml += "[hooks]\npost_restore = [\"echo flushed >> hook.log\"]\n";
        let config = dir.path().join("relic.toml");
        std::fs::write(&config, toml).unwrap();
        // The files live in app/, the config beside it.
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("[files]\n", "[files]\nroot = \"app\"\n"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace("[git]\n", "[git]\npath = \"app\"\n")).unwrap();
        Stack {
            _dir: dir,
            repo,
            app,
            config,
        }
    }

    fn relic(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .env("RELIC_PASSWORD", PASSWORD)
            .env("DOCKER_HOST", host())
            .current_dir(self.config.parent().unwrap())
            .arg("-r")
            .arg(&self.repo)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.relic(args);
        assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.relic(args);
        assert!(!out.status.success(), "relic {args:?} should fail");
        stderr(&out)
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// `relic snapshot --config … --tier TIER --name NAME`.
    fn snapshot(&self, tier: &str, name: &str) -> String {
        self.ok(&[
            "snapshot",
            "--config",
            self.cfg(),
            "--tier",
            tier,
            "--name",
            name,
        ])
    }
}

#[test]
fn a_damaged_stack_comes_back_whole_with_a_safety_snapshot() {
    let db = dbname("stack");
    createdb(&db);
    populate(&db, "rev-7");
    let dump_before = pg_dump(&db);
    let imgs = Images::build(&prefix("stack"), 1 << 20, 300 << 10, 31);
    let (base_id, app_id) = (image_id(&imgs.base), image_id(&imgs.app));
    let st = Stack::new("scheduler", Some(&db), &[&imgs.app, &imgs.base]);
    let env_before = std::fs::read(st.app.join(".env")).unwrap();
    let token_before = std::fs::read(st.app.join("secrets/token")).unwrap();

    st.snapshot("immaculate", "loaded-1");
    let m: serde_json::Value = serde_json::from_str(
        &st.ok(&["manifest", "loaded-1", "--json"])
            .lines()
            .collect::<String>(),
    )
    .unwrap();
    assert_eq!(m["stack"], "scheduler");
    assert_eq!(m["databases"][0]["alembic_revision"], "rev-7");
    assert_eq!(m["databases"][0]["tables"].as_array().unwrap().len(), 4);
    assert_eq!(m["images"][0]["id"], app_id.as_str());
    assert_eq!(m["images"][1]["id"], base_id.as_str());
    assert_eq!(
        m["git"]["commit"],
        git(&st.app, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(m["files"]["entries"], 4);
    let md = st.ok(&["manifest", "loaded-1"]);
    assert!(
        md.contains("| main |") && md.contains("rev-7") && md.contains("restore"),
        "{md}"
    );

    // Damage all three parts.
    psql(&db, "DROP TABLE assignments");
    imgs.remove();
    std::fs::write(st.app.join(".env"), "DATABASE_URL=wrong\n").unwrap();
    std::fs::remove_file(st.app.join("secrets/token")).unwrap();

    let plan = st.ok(&["restore", "loaded-1", "--config", st.cfg(), "--dry-run"]);
    assert!(
        plan.contains("would drop, recreate and restore database 'main'"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("database 'main' ({db}) has no open connection")),
        "{plan}"
    );
    assert_eq!(
        std::fs::read(st.app.join(".env")).unwrap(),
        b"DATABASE_URL=wrong\n"
    );

    let out = st.ok(&["restore", "loaded-1", "--config", st.cfg()]);
    for step in [
        "1/6 disk space",
        "2/6 verify",
        "3/6 safety snapshot",
        "5/6 running",
        "6/6 verified",
    ] {
        assert!(out.contains(step), "missing {step}: {out}");
    }
    assert!(!out.contains(" NO\n"), "{out}");
    assert_eq!(pg_dump(&db), dump_before, "the database came back exactly");
    assert_eq!(image_id(&imgs.app), app_id);
    assert_eq!(image_id(&imgs.base), base_id);
    assert_eq!(std::fs::read(st.app.join(".env")).unwrap(), env_before);
    assert_eq!(
        std::fs::read(st.app.join("secrets/token")).unwrap(),
        token_before
    );
    assert_eq!(
        std::fs::read_to_string(st.config.parent().unwrap().join("hook.log")).unwrap(),
        "flushed\n"
    );
    // The damaged state was kept: the safety snapshot holds the wrong .env.
    let snaps = snapshots(&st.repo);
    let safety = snaps
        .iter()
        .find(|s| s["tier"] == "safety")
        .expect("a safety snapshot");
    let sid = safety["id"].as_str().unwrap();
    let dir = st.config.parent().unwrap().join("kept");
    st.ok(&["restore", &sid[..8], "--to", dir.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(dir.join("files/.env")).unwrap(),
        b"DATABASE_URL=wrong\n"
    );
    dropdb(&db);
}

#[test]
fn a_failing_database_restore_stops_before_the_other_parts() {
    let (db, role) = db_with_own_role("stfail");
    let st = Stack::new("failing", Some(&db), &[]);
    st.ok(&["snapshot", "--config", st.cfg(), "--name", "day"]);
    drop_owner(&db, &role);
    psql(&db, "DELETE FROM assignments WHERE id > 2000");
    std::fs::write(st.app.join(".env"), "EDITED=1\n").unwrap();
    let err = st.fails(&["restore", "day", "--config", st.cfg()]);
    assert!(
        err.contains(&format!("role \"{role}\" does not exist")),
        "{err}"
    );
    assert!(err.contains("Nothing was changed before it"), "{err}");
    let sid = snapshots(&st.repo)
        .into_iter()
        .find(|s| s["tier"] == "safety")
        .expect("safety snapshot")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("restore {}", &sid[..8])),
        "the error names the way back: {err}"
    );
    // The database is as it was (restored beside it, never swapped in),
    // and the files were not touched.
    assert_eq!(psql(&db, "SELECT count(*) FROM assignments"), "2000");
    assert_eq!(std::fs::read(st.app.join(".env")).unwrap(), b"EDITED=1\n");
    dropdb(&db);
}

#[test]
fn an_immaculate_baseline_never_changes_until_retired() {
    let st = Stack::new("frozen", None, &[]);
    st.snapshot("immaculate", "gold");
    let gold = snapshots(&st.repo)[0]["id"].as_str().unwrap().to_string();
    // Overwritten: by a stack snapshot, by any backup, in any tier.
    for args in [
        vec!["snapshot", "--config", st.cfg(), "--name", "gold"],
        vec!["backup", "--stdin", "--name", "gold", "--tier", "named"],
        vec![
            "snapshot",
            "--config",
            st.cfg(),
            "--tier",
            "immaculate",
            "--name",
            "gold",
        ],
    ] {
        let err = st.fails(&args);
        assert!(err.contains("never updated"), "{err}");
    }
    // Renamed, forgotten by id or by policy, pruned.
    let err = st.fails(&["rename", "gold", "silver"]);
    assert!(err.contains("can never be renamed"), "{err}");
    let err = st.fails(&["forget", &gold[..8]]);
    assert!(err.contains("can never be forgotten"), "{err}");
    st.ok(&["snapshot", "--config", st.cfg(), "--name", "daily"]);
    st.ok(&["forget", "--keep-last", "1"]);
    st.ok(&["prune"]);
    let snaps = snapshots(&st.repo);
    assert!(
        snaps.iter().any(|s| s["id"] == gold.as_str()),
        "gold survived"
    );
    st.ok(&["check", "--read-data"]);
    let dir = st.config.parent().unwrap().join("gold");
    st.ok(&["restore", "gold", "--to", dir.to_str().unwrap()]);

    // Retire asks for the name again; then an audit record stays and the
    // name can never make an immaculate baseline again.
    let err = st.fails(&["baseline", "retire", "gold"]);
    assert!(err.contains("--confirm gold"), "{err}");
    let err = st.fails(&["baseline", "retire", "gold", "--confirm", "glod"]);
    assert!(err.contains("nothing was retired"), "{err}");
    assert!(snapshots(&st.repo).iter().any(|s| s["id"] == gold.as_str()));
    st.ok(&[
        "baseline",
        "retire",
        "gold",
        "--confirm",
        "gold",
        "--reason",
        "superseded",
        "--last",
    ]);
    assert!(!snapshots(&st.repo).iter().any(|s| s["id"] == gold.as_str()));
    let audit = st.ok(&["baseline", "audit"]);
    assert!(
        audit.contains("retire  gold (immaculate)") && audit.contains("superseded"),
        "{audit}"
    );
    let err = st.fails(&[
        "snapshot",
        "--config",
        st.cfg(),
        "--tier",
        "immaculate",
        "--name",
        "gold",
    ]);
    assert!(err.contains("never reused"), "{err}");
}

#[test]
fn emergency_needs_both_confirmations() {
    let st = Stack::new("urgent", None, &[]);
    st.snapshot("immaculate", "known-good");
    std::fs::write(st.app.join(".env"), "BROKEN=1\n").unwrap();
    let count = snapshots(&st.repo).len();
    for (args, says) in [
        (vec!["emergency", "--config", st.cfg()], "--confirm"),
        (
            vec!["emergency", "--config", st.cfg(), "--confirm"],
            "--yes-restore known-good",
        ),
        (
            vec![
                "emergency",
                "--config",
                st.cfg(),
                "--confirm",
                "--yes-restore",
                "other",
            ],
            "not the baseline's name",
        ),
        (
            vec![
                "emergency",
                "--config",
                st.cfg(),
                "--yes-restore",
                "known-good",
            ],
            "--confirm",
        ),
    ] {
        let err = st.fails(&args);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(std::fs::read(st.app.join(".env")).unwrap(), b"BROKEN=1\n");
        assert_eq!(snapshots(&st.repo).len(), count, "nothing was written");
    }
    let out = st.ok(&[
        "emergency",
        "--config",
        st.cfg(),
        "--confirm",
        "--yes-restore",
        "known-good",
    ]);
    assert!(out.contains("immaculate baseline 'known-good'"), "{out}");
    assert_eq!(
        std::fs::read(st.app.join(".env")).unwrap(),
        b"DATABASE_URL=postgres://app\nMODE=prod\n"
    );
}

#[test]
fn a_bad_relic_toml_is_a_clear_error_naming_the_line() {
    let st = Stack::new("cfg", None, &[]);
    let text = std::fs::read_to_string(&st.config).unwrap();
    std::fs::write(&st.config, format!("{text}\n[extras]\nunknown = 1\n")).unwrap();
    let err = st.fails(&["snapshot", "--config", st.cfg()]);
    assert!(
        err.contains("relic.toml") && err.contains("line") && err.contains("extras"),
        "{err}"
    );
    std::fs::write(&st.config, "name = \"x\"\n").unwrap();
    let err = st.fails(&["snapshot", "--config", st.cfg()]);
    assert!(err.contains("the stack has no parts"), "{err}");
    assert!(snapshots(&st.repo).is_empty());
}

#[test]
fn a_drill_passes_on_a_good_snapshot_and_fails_on_a_missing_chunk() {
    let db = dbname("drill");
    createdb(&db);
    populate(&db, "rev-d");
    let imgs = Images::build(&prefix("drill"), 1 << 20, 200 << 10, 41);
    let st = Stack::new("drilled", Some(&db), &[&imgs.app]);
    st.snapshot("immaculate", "base");
    let dump_before = pg_dump(&db);

    let out = st.ok(&["drill", "--config", st.cfg()]);
    assert!(out.contains("passed"), "{out}");
    assert!(out.contains("main: rows public.people"), "{out}");
    assert!(out.contains(&format!("image {}", imgs.app)), "{out}");
    // Production untouched, scratch copies gone.
    assert_eq!(pg_dump(&db), dump_before);
    let dbs = psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'relic_drill%'",
    );
    assert_eq!(dbs, "0");
    let listed = String::from_utf8(docker_ok(&["images", "--format", "{{.Repository}}"])).unwrap();
    assert!(!listed.contains("relic-drill"), "{listed}");

    // Lose a pack: the drill fails and says so.
    let biggest = packs(&st.repo)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(biggest).unwrap();
    let err = st.fails(&["drill", "base", "--config", st.cfg()]);
    assert!(err.contains("FAILED") && err.contains("damaged"), "{err}");
    dropdb(&db);
}

#[test]
fn diff_names_what_changed_between_two_stack_snapshots() {
    let db = dbname("diff");
    createdb(&db);
    populate(&db, "rev-a");
    let st = Stack::new("diffed", Some(&db), &[]);
    st.snapshot("daily", "day");
    psql(
        &db,
        "UPDATE alembic_version SET version_num = 'rev-b'; DELETE FROM assignments WHERE id <= 10",
    );
    std::fs::write(st.app.join(".env"), "MODE=dev\n").unwrap();
    std::fs::write(st.app.join("secrets/new-key"), "k").unwrap();
    git(&st.app, &["commit", "-qam", "next"]);
    st.snapshot("daily", "day");
    let out = st.ok(&["diff", "day~1", "day", "--json"]);
    let json = out
        .lines()
        .take_while(|l| !l.is_empty())
        .collect::<String>();
    let d: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {out}"));
    let has = |k: &str, want: serde_json::Value| {
        d[k].as_array().unwrap().iter().any(|v| {
            want.as_object()
                .unwrap()
                .iter()
                .all(|(field, value)| &v[field] == value)
        })
    };
    use serde_json::json;
    assert!(
        has(
            "databases",
            json!({"change": "alembic", "old": "rev-a", "new": "rev-b"})
        ),
        "{d}"
    );
    assert!(
        has(
            "databases",
            json!({"change": "table_rows", "table": "public.assignments", "old": 5000, "new": 4990})
        ),
        "{d}"
    );
    assert!(
        has("items", json!({"change": "changed", "path": "files/.env"})),
        "{d}"
    );
    assert!(
        has(
            "items",
            json!({"change": "added", "path": "files/secrets/new-key"})
        ),
        "{d}"
    );
    assert!(d["git"]["new_commit"].as_str().is_some(), "{d}");
    assert!(d["new_bytes"].as_u64().unwrap() > 0);
    dropdb(&db);
}

#[test]
fn a_stack_restore_records_the_tags_it_moves_in_its_safety_snapshot() {
    let imgs = Images::build(&prefix("moved"), 1 << 20, 200 << 10, 43);
    let (base_id, app_id) = (image_id(&imgs.base), image_id(&imgs.app));
    let st = Stack::new("moved", None, &[&imgs.app]);
    st.snapshot("named", "before");
    // The app's tag moves to another image (a rebuild gone wrong).
    docker_ok(&["tag", &imgs.base, &imgs.app]);
    let out = st.ok(&["restore", "before", "--config", st.cfg()]);
    assert_eq!(image_id(&imgs.app), app_id);
    let snaps = snapshots(&st.repo);
    let safety = snaps
        .iter()
        .find(|s| s["tier"] == "safety")
        .expect("a safety snapshot");
    let replaced = safety["meta"]["stack.replaced_tags"].clone();
    assert_eq!(replaced.as_array().unwrap().len(), 1, "{replaced}");
    assert_eq!(replaced[0]["tag"], imgs.app.as_str());
    assert_eq!(replaced[0]["old_id"], base_id.as_str());
    let kept = replaced[0]["kept_as"].as_str().unwrap();
    assert!(kept.starts_with("relic-replaced/"), "{kept}");
    assert!(out.contains(&format!("tagged {kept} to keep it")), "{out}");
    assert_eq!(image_id(kept), base_id, "the recorded tag is the one made");
    docker_ok(&["rmi", kept]);
}

#[test]
fn retiring_a_stacks_last_immaculate_baseline_asks_again() {
    let st = Stack::new("lonely", None, &[]);
    st.snapshot("immaculate", "one");
    st.snapshot("immaculate", "two");
    // Not the last: no warning, no extra flag.
    let out = st.ok(&["baseline", "retire", "one", "--confirm", "one"]);
    assert!(!out.contains("last immaculate baseline"), "{out}");

    // The last: a warning, and without a terminal, a refusal without --last.
    let count = snapshots(&st.repo).len();
    let err = st.fails(&["baseline", "retire", "two", "--confirm", "two"]);
    assert!(
        err.contains("'two' is the last immaculate baseline of stack 'lonely'")
            && err.contains("emergency restore")
            && err.contains("add --last")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshots(&st.repo).len(), count, "nothing was retired");
    st.ok(&["emergency", "--config", st.cfg(), "--dry-run"]);

    let out = st.ok(&["baseline", "retire", "two", "--confirm", "two", "--last"]);
    assert!(out.contains("last immaculate baseline"), "{out}");
    assert_eq!(snapshots(&st.repo).len(), count - 1);
    let err = st.fails(&["emergency", "--config", st.cfg(), "--dry-run"]);
    assert!(err.contains("no immaculate baseline"), "{err}");
}
