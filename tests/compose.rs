//! A docker compose stack as users run it: PostgreSQL inside a container
//! of the project (named data volume, no published port), the app's
//! images built under compose's names, and no PostgreSQL client on the
//! host for relic to use. Found from the compose labels, snapshotted,
//! lost, and brought back by `emergency`.

mod common;
use common::engine::*;
use common::pgcontainer::{path_without_host_clients, PgContainer};
use common::volumes::*;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Project {
    name: String,
    dir: PathBuf,
    repo: PathBuf,
    path: String,
    _tmp: tempfile::TempDir,
    _fake: tempfile::TempDir,
}

impl Project {
    fn new(tag: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("relict{}{tag}", std::process::id());
        let dir = tmp.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = tmp.path().join("repo");
        let fake = tempfile::tempdir().unwrap();
        let path = path_without_host_clients(fake.path());
        let p = Project {
            name,
            dir,
            repo,
            path,
            _tmp: tmp,
            _fake: fake,
        };
        p.ok(&["init"]);
        p
    }

    fn labels(&self, service: &str) -> Vec<String> {
        vec![
            "--label".into(),
            format!("com.docker.compose.project={}", self.name),
            "--label".into(),
            format!("com.docker.compose.service={service}"),
        ]
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(common::bin())
            .env("RELIC_PASSWORD", common::PASSWORD)
            .env("DOCKER_HOST", host())
            .env("PATH", &self.path)
            .arg("-r")
            .arg(&self.repo)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = common::stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("host pg_dump used") && !err.contains("host psql used"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cfg(&self) -> String {
        self.dir.join("relic.toml").display().to_string()
    }
}

fn dump(pg: &PgContainer, db: &str) -> String {
    let out = docker_ok(&["exec", &pg.name, "pg_dump", db]);
    String::from_utf8_lossy(&common::pg::unrestricted(&out)).into_owned()
}

fn start_db(p: &Project) -> PgContainer {
    let mut extra = p.labels("db");
    extra.extend(["-e".into(), "POSTGRES_DB=app".into()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    PgContainer::start_with(&format!("{}-db", p.name), &extra)
}

#[test]
fn a_compose_stack_comes_back_from_its_baseline_with_no_host_client() {
    let p = Project::new("s");
    let mut pg = start_db(&p);
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('a1');
         CREATE TABLE jobs AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 100000) g;",
    );
    // The app's images under the names compose gives what it builds, and
    // containers of the project that run them.
    let images = Images::build(&prefix("compose"), 2 << 20, 1 << 20, 7);
    let backend = format!("{}-backend:latest", p.name);
    docker_ok(&["tag", &images.app, &backend]);
    // The backend keeps uploads in a named volume.
    let uploads = format!("{}_uploads", p.name);
    let _ = docker(&["volume", "rm", "-f", &uploads]);
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    fill(&uploads, src.path());
    let create = |service: &str, image: &str| {
        let name = format!("{}-{service}-1", p.name);
        let mut args: Vec<String> = vec!["create".into(), "--name".into(), name.clone()];
        args.extend(p.labels(service));
        if service == "backend" {
            args.extend(["-v".into(), format!("{uploads}:/app/uploads")]);
        }
        args.extend([image.to_string(), "/app".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        name
    };
    let made = vec![
        create("backend", &backend),
        create("frontend", &images.base),
    ];
    let uploads_before = listing(&uploads);

    // init-stack writes what the engine runs; a pre-backup hook in the
    // database's container is added to it.
    let out = p.ok(&["init-stack", p.dir.to_str().unwrap()]);
    assert!(out.contains("wrote"), "{out}");
    let mut toml = std::fs::read_to_string(p.cfg()).unwrap();
    for want in [
        format!("name = \"{}\"", p.name),
        format!("\"{backend}\""),
        format!("\"{}\"", images.base),
        "service = \"db\"".to_string(),
        format!("volumes = [\n  \"{uploads}\",\n]"),
    ] {
        assert!(toml.contains(&want), "{want} in\n{toml}");
    }
    toml += "\n[hooks]\npre_backup = [{ service = \"db\", run = \"echo checkpointed; echo note >&2\" }]\n";
    std::fs::write(p.cfg(), &toml).unwrap();

    let baseline_dump = dump(&pg, "app");
    let out = p.run(&[
        "snapshot",
        "--config",
        &p.cfg(),
        "--tier",
        "immaculate",
        "--name",
        "known-good",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    assert!(
        said.contains("(in service db)")
            && said.contains("| checkpointed")
            && said.contains("| note"),
        "the hook ran in the database's container: {said}"
    );
    let first = common::repo_bytes(&p.repo);

    // A day's change: the second snapshot stores little more.
    pg.psql(
        "app",
        "UPDATE jobs SET payload = 'changed' WHERE id % 100 = 0",
    );
    p.ok(&["snapshot", "--config", &p.cfg()]);
    let second = common::repo_bytes(&p.repo) - first;
    assert!(
        second * 10 < first,
        "the second snapshot added {second} bytes to {first}"
    );
    // Without a relic.toml, --compose takes the project as it runs.
    let bare = tempfile::tempdir().unwrap();
    let out = p.ok(&[
        "snapshot",
        "--compose",
        bare.path().to_str().unwrap(),
        "--project",
        &p.name,
        "--name",
        "as-it-runs",
    ]);
    assert!(out.contains("as-it-runs"), "{out}");
    let m: serde_json::Value =
        serde_json::from_str(&p.ok(&["manifest", "as-it-runs", "--json"])).unwrap();
    assert_eq!(m["databases"][0]["name"], "db", "{m}");
    assert_eq!(m["images"].as_array().unwrap().len(), 3, "{m}");
    let m: serde_json::Value =
        serde_json::from_str(&p.ok(&["manifest", "known-good", "--json"])).unwrap();
    let recorded = m["images"].to_string();
    assert!(recorded.contains(&backend), "{recorded}");

    // The server is lost with its volume, the uploads volume too, and the
    // compose name of the backend image is gone.
    drop(pg);
    docker_ok(&["rm", "-f", &made[0]]);
    docker_ok(&["volume", "rm", &uploads]);
    docker_ok(&["rmi", &backend]);
    pg = start_db(&p);
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'app'"
        ),
        "0"
    );

    let out = p.ok(&[
        "emergency",
        "--config",
        &p.cfg(),
        "--confirm",
        "--yes-restore",
        "known-good",
    ]);
    assert!(out.contains("restored stack snapshot"), "{out}");
    assert!(
        dump(&pg, "app") == baseline_dump,
        "the database is the baseline's"
    );
    assert_eq!(
        image_id(&backend),
        image_id(&images.app),
        "compose's name runs the baseline's image"
    );
    assert_same(&listing(&uploads), &uploads_before, "the uploads volume");
    for c in made {
        let _ = docker(&["rm", "-f", &c]);
    }
    let _ = docker(&["volume", "rm", "-f", &uploads]);
}

/// A tiny image holding only `sleep`: a running container with no
/// PostgreSQL tools.
fn sleeper_image() -> String {
    host_binaries_image("relic-test/sleeper:1", &["/bin/sleep"], &[])
}

#[test]
fn a_killed_or_impossible_dump_in_a_container_writes_nothing() {
    let p = Project::new("k");
    let pg = start_db(&p);
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 4) AS v FROM generate_series(1, 1500000) g",
    );
    // pg_dump killed inside the container while it streams.
    let mut child = Command::new(common::bin())
        .env("RELIC_PASSWORD", common::PASSWORD)
        .env("DOCKER_HOST", host())
        .env("PATH", &p.path)
        .arg("-r")
        .arg(&p.repo)
        .args(["backup", "pg", "--container", &pg.name, "--name", "killed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let killer = "for p in /proc/[0-9]*; do read c < $p/comm 2>/dev/null || continue; \
                  if [ \"$c\" = pg_dump ]; then kill -9 ${p#/proc/}; echo killed; fi; done";
    let t0 = std::time::Instant::now();
    let mut killed = false;
    while child.try_wait().unwrap().is_none() && t0.elapsed().as_secs() < 60 {
        let out = docker_ok(&["exec", "-u", "0", &pg.name, "sh", "-c", killer]);
        killed |= String::from_utf8_lossy(&out).contains("killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(killed, "pg_dump was killed while relic ran");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("pg_dump failed") && err.contains(&pg.name),
        "{err}"
    );
    assert!(common::snapshots(&p.repo).is_empty(), "no snapshot");

    // A container without pg_dump, a stopped one, a wrong name: one line
    // each, non-zero.
    let sleeper = format!("{}-sleeper", p.name);
    docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &sleeper,
        &sleeper_image(),
        "/bin/sleep",
        "600",
    ]);
    let out = p.run(&["backup", "pg", "--container", &sleeper]);
    let err = common::stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("pg_dump cannot run in it") && err.contains(&sleeper),
        "{err}"
    );
    docker_ok(&["rm", "-f", &sleeper]);
    let out = p.run(&["backup", "pg", "--container", "relic-none-such"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("no container 'relic-none-such'"));
    docker_ok(&["stop", "-t", "5", &pg.name]);
    let out = p.run(&["backup", "pg", "--container", &pg.name]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("is not running"));
    assert!(common::snapshots(&p.repo).is_empty(), "still no snapshot");
}
