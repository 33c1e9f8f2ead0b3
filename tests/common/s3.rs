//! A real S3-compatible server for tests: s3s-fs (installed by
//! scripts/test.sh) on a free loopback port.

use super::stderr;
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

/// A moto S3 server (PyPI `moto[server]`, installed by scripts/deps.sh) on
/// a free loopback port, killed on drop. Unlike s3s-fs it implements S3
/// Object Lock: versioned buckets, PutObjectRetention, retention on HEAD,
/// and it refuses to delete a retained object version.
pub struct Moto {
    pub child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        // `python3 -m moto.server` rather than the `moto_server` script: a
        // pip install under pyenv needs a rehash before scripts are on PATH.
        let (child, port) = serve("python3", |c, port| {
            c.args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]);
        });
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// Runs a Python snippet with `s3`, a boto3 client of this server, and
    /// returns what it prints.
    pub fn py(&self, code: &str) -> String {
        let script = format!(
            "import boto3, datetime, json\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\n{code}",
            self.endpoint
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(out.status.success(), "python: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every object in a bucket: key → (lock mode, retain-until as a Unix
    /// time, version id).
    pub fn objects(
        &self,
        bucket: &str,
    ) -> std::collections::BTreeMap<String, (String, i64, String)> {
        let out = self.py(&format!(
            "r = {{}}\nfor o in s3.list_objects_v2(Bucket='{bucket}').get('Contents', []):\n    h = s3.head_object(Bucket='{bucket}', Key=o['Key'])\n    u = h.get('ObjectLockRetainUntilDate')\n    r[o['Key']] = [h.get('ObjectLockMode') or '', int(u.timestamp()) if u else 0, h['VersionId']]\nprint(json.dumps(r))"
        ));
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
