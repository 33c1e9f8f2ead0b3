//! Telling someone how a run went: an HTTP POST of the summary to each
//! URL (healthchecks.io-style start/success/fail pings), or a command run
//! with the summary on its stdin and in its environment. Every delivery is
//! bounded by a timeout and reported back; none can fail the run.

use crate::plan::Target;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What is being told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Success,
    Failure,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Failure => "failure",
        }
    }
}

/// The message: the stack, the exit code, one summary line and the log of
/// the steps.
#[derive(Clone, Debug)]
pub struct Message {
    pub event: Event,
    pub stack: String,
    pub exit_code: u8,
    pub summary: String,
    pub log: String,
}

impl Message {
    fn body(&self) -> String {
        if self.log.is_empty() {
            format!("{}\n", self.summary)
        } else {
            format!("{}\n\n{}", self.summary, self.log)
        }
    }
}

/// How one delivery went.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub target: String,
    pub ok: bool,
    /// The HTTP status or exit status, or why it failed.
    pub detail: String,
    pub took: Duration,
}

/// Delivers `message` to every target at once, each within `timeout`.
pub fn deliver(targets: &[Target], message: &Message, timeout: Duration) -> Vec<Delivery> {
    std::thread::scope(|s| {
        let all: Vec<_> = targets
            .iter()
            .map(|t| {
                s.spawn(move || {
                    let started = Instant::now();
                    let r = match t {
                        Target::Http(url) => post(url, message, timeout, true),
                        Target::Get(url) => post(url, message, timeout, false),
                        Target::Exec(cmd) => exec(cmd, message, timeout),
                    };
                    Delivery {
                        target: t.to_string(),
                        ok: r.is_ok(),
                        detail: r.unwrap_or_else(|e| e),
                        took: started.elapsed(),
                    }
                })
            })
            .collect();
        all.into_iter()
            .map(|h| h.join().expect("notification thread"))
            .collect()
    })
}

/// A POST of the summary, or (`body` false) a plain GET.
fn post(url: &str, m: &Message, timeout: Duration, body: bool) -> Result<String, String> {
    let rt = crate::runtime::get().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("relic/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let request = if body {
        client
            .post(url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(m.body())
    } else {
        client.get(url)
    };
    let request = async {
        let r = request
            .header("x-relic-event", m.event.as_str())
            .header("x-relic-exit-code", m.exit_code.to_string())
            .send()
            .await
            // The URL is the secret part of a ping: never in a message.
            .map_err(|e| describe(&e.without_url()))?;
        let status = r.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("HTTP {status}"))
        }
    };
    // The client's own timeout covers the whole request; this one also
    // bounds a resolver that hangs.
    rt.block_on(async {
        tokio::time::timeout(timeout + Duration::from_millis(200), request)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs_f64())))
    })
}

/// reqwest's error with its cause (refused, timed out…), which its
/// Display leaves out.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within the timeout".into();
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(c) = source {
        s = format!("{s}: {c}");
        source = c.source();
    }
    s
}

/// Variables a notification command does not get: the passphrase's and
/// the bucket's credentials.
const WITHHELD: [&str; 6] = [
    "RELIC_PASSWORD",
    "RELIC_PASSWORD_FILE",
    "RELIC_PASSWORD_COMMAND",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Kills the process group `pid` leads (the command and what it started).
fn kill_group(pid: u32) {
    // SAFETY: kill(2) with the negated id of a group the child leads: no
    // memory is touched; a group already gone is ESRCH.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

fn exec(cmd: &str, m: &Message, timeout: Duration) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("sh");
    for v in WITHHELD {
        command.env_remove(v);
    }
    let mut child = command
        .arg("-c")
        .arg(cmd)
        .env("RELIC_EVENT", m.event.as_str())
        .env("RELIC_STACK", &m.stack)
        .env("RELIC_EXIT_CODE", m.exit_code.to_string())
        .env("RELIC_SUMMARY", &m.summary)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout stops what it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let body = m.body();
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A command that does not read its input, or writes much to stderr,
    // must not block the run: each pipe is served by a thread of its own.
    std::thread::spawn(move || {
        let _ = stdin.write_all(body.as_bytes());
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if kept.len() < 4096 {
                kept.extend_from_slice(&buf[..n.min(4096 - kept.len())]);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(format!("killed after {}s", timeout.as_secs_f64()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    // What it left running in the background would hold stderr open.
    kill_group(child.id());
    let err = reader.join().unwrap_or_default();
    if status.success() {
        Ok(status.to_string())
    } else {
        Err(format!("{status}: {}", err.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            event: Event::Failure,
            stack: "app".into(),
            exit_code: 20,
            summary: "relic run app: FAILED".into(),
            log: "snapshot: failed".into(),
        }
    }

    #[test]
    fn a_command_gets_the_summary_on_stdin_and_in_its_environment() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let cmd = format!(
            "cat > {0}; echo \"$RELIC_EVENT $RELIC_STACK $RELIC_EXIT_CODE\" >> {0}",
            out.display()
        );
        let r = deliver(&[Target::Exec(cmd)], &message(), Duration::from_secs(5));
        assert!(r[0].ok, "{:?}", r[0]);
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            got,
            "relic run app: FAILED\n\nsnapshot: failedfailure app 20\n"
        );
    }

    #[test]
    fn a_command_that_hangs_is_killed_at_the_timeout() {
        let started = Instant::now();
        let r = deliver(
            &[Target::Exec("sleep 30".into())],
            &message(),
            Duration::from_millis(300),
        );
        assert!(!r[0].ok);
        assert!(r[0].detail.contains("killed"), "{}", r[0].detail);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_command_that_leaves_something_running_or_writes_much_returns_at_once() {
        let started = Instant::now();
        let r = deliver(
            &[Target::Exec(
                "head -c 200000 /dev/zero >&2; (sleep 30 >&2 &); exit 0".into(),
            )],
            &message(),
            Duration::from_secs(10),
        );
        assert!(r[0].ok, "{:?}", r[0]);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_failing_command_reports_its_status_and_stderr() {
        let r = deliver(
            &[Target::Exec("echo nope >&2; exit 3".into())],
            &message(),
            Duration::from_secs(5),
        );
        assert!(!r[0].ok);
        assert!(r[0].detail.contains("nope"), "{}", r[0].detail);
    }
}
