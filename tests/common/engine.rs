//! Docker helpers: the private engine scripts/docker-start.sh starts
//! (scripts/test.sh exports DOCKER_HOST), and test images made with
//! `docker import` and `docker build` (FROM + COPY).

use super::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The engine's address: DOCKER_HOST, or the private engine started here.
pub fn host() -> &'static str {
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

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", host())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker runs")
}

pub fn docker_ok(args: &[&str]) -> Vec<u8> {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn relic_docker(repo: &Path, args: &[&str], docker_host: &str) -> Output {
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

pub fn ok_docker(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = relic_docker(repo, args, host());
    assert!(out.status.success(), "relic {args:?}: {}", stderr(&out));
    out.stdout
}

pub fn image_id(reference: &str) -> String {
    String::from_utf8(docker_ok(&["inspect", "--format", "{{.Id}}", reference]))
        .unwrap()
        .trim()
        .to_string()
}

/// Two images: `<prefix>/base:1` imported from a tarball of `base_bytes` of
/// files, and `<prefix>/app:1` built FROM it with a COPY of `app_bytes`.
pub struct Images {
    pub base: String,
    pub app: String,
    _dir: tempfile::TempDir,
}

impl Images {
    pub fn build(prefix: &str, base_bytes: usize, app_bytes: usize, seed: u64) -> Images {
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

    pub fn remove(&self) {
        docker_ok(&["rmi", &self.app, &self.base]);
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.app, &self.base]);
    }
}

pub fn prefix(tag: &str) -> String {
    format!("relic-t{}-{tag}", std::process::id())
}

/// An image `reference` holding the host's `binaries` and the libraries
/// they load (`docker import`ed, owned by root; `changes` are `docker
/// import -c` lines), made once: no registry.
pub fn host_binaries_image(reference: &str, binaries: &[&str], changes: &[&str]) -> String {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap();
    if docker(&["image", "inspect", reference]).status.success() {
        return reference.to_string();
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut files: Vec<String> = binaries.iter().map(|b| b.to_string()).collect();
    for bin in binaries {
        let ldd = Command::new("ldd").arg(bin).output().unwrap();
        files.extend(
            String::from_utf8_lossy(&ldd.stdout)
                .split_whitespace()
                .filter(|w| w.starts_with('/'))
                .map(str::to_string),
        );
    }
    for f in &files {
        let to = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(f, &to).unwrap();
    }
    let tarball = dir.path().join("root.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.extend(["-c".to_string(), c.to_string()]);
    }
    args.extend([tarball.display().to_string(), reference.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args);
    reference.to_string()
}
