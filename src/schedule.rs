//! `relic run` on a schedule: a systemd service and timer (system-wide or
//! the user's), or, on a machine without systemd, a cron.d entry. What is
//! written names the relic binary, the relic.toml and, when configured, an
//! environment file: never a passphrase or a key (the run reads the
//! passphrase from the `password_file` or `password_command` of the
//! relic.toml).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: String,
        source: std::io::Error,
    },
    #[error("systemd does not accept the calendar expression '{expr}': {why}")]
    Calendar { expr: String, why: String },
    #[error("{program} {args} failed: {why}")]
    Command {
        program: &'static str,
        args: String,
        why: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What runs, when, and as whom.
#[derive(Clone, Debug)]
pub struct Job {
    pub stack: String,
    /// The relic binary, absolute.
    pub relic: PathBuf,
    /// The relic.toml, absolute.
    pub config: PathBuf,
    /// The OnCalendar expression.
    pub on_calendar: String,
    pub environment_file: Option<PathBuf>,
    /// A system unit's `User=` (the user installing it); none for a user
    /// unit.
    pub user: Option<String>,
}

impl Job {
    /// `relic-<stack>`, in the characters unit and cron.d file names allow.
    pub fn unit_name(&self) -> String {
        unit_name(&self.stack)
    }

    fn dir(&self) -> &Path {
        self.config.parent().unwrap_or(Path::new("/"))
    }
}

pub fn unit_name(stack: &str) -> String {
    let clean: String = stack
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("relic-{clean}")
}

/// A word of a unit file's command line, quoted as systemd reads it
/// (`%` and `$` would be specifiers and variables).
fn unit_word(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{escaped}\"")
}

/// A path as a unit setting's value (specifiers escaped; no quotes).
fn unit_path(p: &Path) -> String {
    p.display().to_string().replace('%', "%%")
}

/// A word for `sh`, in single quotes; `%` escaped for cron.
fn sh_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''").replace('%', "\\%"))
}

pub fn service(job: &Job) -> String {
    let mut s = format!(
        "# Written by `relic schedule install` for stack {stack}; `relic schedule remove` deletes it.\n\
         [Unit]\n\
         Description=relic run of stack {stack} (snapshot, forget, prune, check, sync, drill)\n\
         Wants=network-online.target\n\
         After=network-online.target docker.service postgresql.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={relic} run --config {config}\n\
         WorkingDirectory={dir}\n",
        stack = job.stack.replace('%', "%%"),
        relic = unit_word(&job.relic.display().to_string()),
        config = unit_word(&job.config.display().to_string()),
        dir = unit_path(job.dir()),
    );
    if let Some(u) = &job.user {
        s.push_str(&format!("User={u}\n"));
    }
    if let Some(e) = &job.environment_file {
        s.push_str(&format!("EnvironmentFile={}\n", unit_path(e)));
    }
    s.push_str(
        "# Production keeps the machine: relic gets what is left of the CPU and the disks.\n\
         Nice=19\n\
         CPUSchedulingPolicy=batch\n\
         IOSchedulingClass=idle\n\
         # A run with a drill may take hours; systemd never starts a second one\n\
         # while this one is active, and relic run takes a lock of its own too.\n\
         TimeoutStartSec=infinity\n",
    );
    s
}

pub fn timer(job: &Job) -> String {
    format!(
        "# Written by `relic schedule install` for stack {stack}; `relic schedule remove` deletes it.\n\
         [Unit]\n\
         Description=relic run of stack {stack}, on schedule\n\
         \n\
         [Timer]\n\
         OnCalendar={cal}\n\
         # A run missed while the machine was off runs at the next boot.\n\
         Persistent=true\n\
         Unit={unit}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        stack = job.stack.replace('%', "%%"),
        cal = job.on_calendar,
        unit = job.unit_name(),
    )
}

/// The cron.d file: `fields` are cron's five time fields.
pub fn cron(job: &Job, fields: &str) -> String {
    let user = job.user.as_deref().unwrap_or("root");
    let env = job
        .environment_file
        .as_ref()
        .map(|e| {
            format!(
                "set -a && . {} && set +a && ",
                sh_word(&e.display().to_string())
            )
        })
        .unwrap_or_default();
    format!(
        "# Written by `relic schedule install` for stack {stack}; `relic schedule remove` deletes it.\n\
         # Unlike a systemd timer, cron does not run a missed night at boot.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {fields} {user} cd {dir} && {env}nice -n 19 ionice -c 3 {relic} -q run --config {config}\n",
        stack = job.stack,
        dir = sh_word(&job.dir().display().to_string()),
        relic = sh_word(&job.relic.display().to_string()),
        config = sh_word(&job.config.display().to_string()),
    )
}

/// systemd manages this machine (it is PID 1).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Where units go: `/etc/systemd/system`, or the user's
/// `~/.config/systemd/user`.
pub fn unit_dir(user: bool) -> PathBuf {
    if !user {
        return PathBuf::from("/etc/systemd/system");
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("systemd/user")
}

pub const CRON_DIR: &str = "/etc/cron.d";

/// Writes a schedule file whole (temp file, fsync, rename), readable by
/// all: it holds no secret.
pub fn write(path: &Path, text: &str) -> Result<()> {
    let werr = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(d) = path.parent() {
        crate::files::user::ensure_dir(d).map_err(werr)?;
    }
    crate::files::user::write_public(path, text.as_bytes()).map_err(werr)
}

/// Removes a schedule file; false when there was none.
pub fn remove(path: &Path) -> Result<bool> {
    crate::files::user::remove_file(path).map_err(|source| Error::Remove {
        path: path.display().to_string(),
        source,
    })
}

fn run(program: &'static str, args: &[&str]) -> Result<String> {
    let failed = |why: String| Error::Command {
        program,
        args: args.join(" "),
        why,
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(failed(format!("{}: {err}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// systemd's own reading of a calendar expression: its next elapse, or
/// `None` when systemd-analyze is not installed.
pub fn next_elapse(expr: &str) -> Result<Option<String>> {
    let out = match Command::new("systemd-analyze")
        .args(["calendar", expr])
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Calendar {
                expr: expr.into(),
                why: e.to_string(),
            })
        }
        Ok(o) => o,
    };
    if !out.status.success() {
        return Err(Error::Calendar {
            expr: expr.into(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Next elapse:"))
        .map(|s| s.trim().to_string()))
}

/// `systemctl [--user] ARGS…`: its output.
pub fn systemctl(user: bool, args: &[&str]) -> Result<String> {
    let mut all = Vec::with_capacity(args.len() + 1);
    if user {
        all.push("--user");
    }
    all.extend_from_slice(args);
    run("systemctl", &all)
}

/// The timer's next run as systemd has it scheduled.
pub fn timer_next(user: bool, unit: &str) -> Option<String> {
    systemctl(
        user,
        &[
            "show",
            &format!("{unit}.timer"),
            "--property=NextElapseUSecRealtime",
            "--value",
        ],
    )
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            stack: "my app".into(),
            relic: "/usr/local/bin/relic".into(),
            config: "/srv/my app/relic.toml".into(),
            on_calendar: "*-*-* 03:15:00".into(),
            environment_file: Some("/etc/relic/50%.env".into()),
            user: Some("root".into()),
        }
    }

    #[test]
    fn units_quote_paths_and_name_no_secret() {
        let j = job();
        assert_eq!(j.unit_name(), "relic-my-app");
        let s = service(&j);
        assert!(s.contains(
            "ExecStart=\"/usr/local/bin/relic\" run --config \"/srv/my app/relic.toml\"\n"
        ));
        assert!(s.contains("EnvironmentFile=/etc/relic/50%%.env\n"));
        assert!(s.contains("IOSchedulingClass=idle\n"));
        let t = timer(&j);
        for line in [
            "OnCalendar=*-*-* 03:15:00\n",
            "Persistent=true\n",
            "Unit=relic-my-app.service\n",
        ] {
            assert!(t.contains(line), "{t}");
        }
        let c = cron(&j, "15 3 * * *");
        assert!(c.ends_with(
            "15 3 * * * root cd '/srv/my app' && set -a && . '/etc/relic/50\\%.env' && set +a && nice -n 19 ionice -c 3 '/usr/local/bin/relic' -q run --config '/srv/my app/relic.toml'\n"
        ), "{c}");
    }
}
