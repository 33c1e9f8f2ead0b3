//! A real S3-compatible server for tests: s3s-fs (installed by
//! scripts/test.sh) on a free loopback port.

use std::process::{Child, Command, Stdio};

pub const KEY: &str = "relic-test-key";
pub const SECRET: &str = "relic-test-secret";

/// Starts `program` (set up by `args` for a port) on a free loopback port
/// and waits until it accepts connections.
pub fn serve(program: &str, args: impl FnOnce(&mut Command, u16)) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Command::new(program);
    args(&mut c, port);
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is installed (scripts/test.sh installs it): {e}"));
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, port)
}

/// An s3s-fs server on a free loopback port, killed on drop.
pub struct S3 {
    pub child: Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

impl S3 {
    pub fn start() -> S3 {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bucket")).unwrap();
        let (child, port) = serve("s3s-fs", |c, port| {
            c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", KEY, "--secret-key", SECRET])
                .arg(root.path());
        });
        S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        }
    }

    /// Objects stored.
    pub fn objects(&self) -> usize {
        super::bucket::count(&self.root.path().join("bucket"))
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3_env(s3: &S3) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", s3.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}
