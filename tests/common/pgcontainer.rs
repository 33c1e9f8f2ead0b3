//! A PostgreSQL server inside a container, as compose stacks run it: an
//! image built without a registry from the host's PostgreSQL 15
//! (scripts/pg-image.sh), a named data volume, no published port.

use super::engine::*;
use std::path::Path;
use std::process::Command;

/// A running PostgreSQL container with its own data volume, removed with
/// its volume on drop.
pub struct PgContainer {
    pub name: String,
    pub volume: String,
}

impl PgContainer {
    pub fn start(tag: &str) -> PgContainer {
        Self::start_with(tag, &[])
    }

    /// Started with more `docker run` arguments (labels, a volume name).
    pub fn start_with(tag: &str, extra: &[&str]) -> PgContainer {
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
        let mount = format!("{volume}:/var/lib/postgresql/data");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "-v",
            &mount,
        ];
        args.extend_from_slice(extra);
        args.push(&image);
        docker_ok(&args);
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

    pub fn psql(&self, db: &str, sql: &str) -> String {
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

/// A PATH whose `pg_dump` and `psql` always fail, before the real PATH:
/// relic must use the container's own.
pub fn path_without_host_clients(fake: &Path) -> String {
    for tool in ["pg_dump", "psql"] {
        let path = fake.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho host {tool} used >&2\nexit 99\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
