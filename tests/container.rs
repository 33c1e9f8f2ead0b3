//! A PostgreSQL server inside a container, as compose stacks run it: an
//! image built without a registry from the host's PostgreSQL 15
//! (scripts/pg-image.sh), a named data volume, no published port. relic
//! runs the container's own client tools through the engine's exec
//! endpoint and reads their output as a stream.

mod common;
use common::engine::*;
use relic::docker::{Engine, Error, ExecSpec};
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// A running PostgreSQL container with its own data volume, removed with
/// its volume on drop.
struct PgContainer {
    name: String,
    volume: String,
}

impl PgContainer {
    fn start(tag: &str) -> PgContainer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-image.sh");
        let out = Command::new(script)
            .env("DOCKER_HOST", host())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the PostgreSQL image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let name = format!("relic-t{}-{tag}", std::process::id());
        let volume = format!("{name}-data");
        let _ = docker(&["rm", "-f", &name]);
        let _ = docker(&["volume", "rm", "-f", &volume]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "-v",
            &format!("{volume}:/var/lib/postgresql/data"),
            &image,
        ]);
        let c = PgContainer { name, volume };
        let t0 = std::time::Instant::now();
        while !docker(&["exec", &c.name, "pg_isready", "-q"])
            .status
            .success()
        {
            assert!(t0.elapsed().as_secs() < 60, "the server never came up");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        c
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = docker(&["exec", &self.name, "psql", "-XAtq", "-d", db, "-c", sql]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgContainer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
    }
}

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
