//! Commands run around a stack's backups and restores (`[hooks]` of
//! relic.toml): on the host with `sh -c` in the stack's directory, or
//! inside a container of the stack through the engine (a Redis BGSAVE
//! before its volume is copied, say).

use super::{Error, Result, StackConfig};
use crate::docker::{Engine, ExecSpec};
use serde::{Deserialize, Serialize};
use std::process::Command;

/// `[hooks]`: each a list of commands, run in order; the first failing
/// one stops the step it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Before a stack snapshot reads anything: failing, no snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_backup: Vec<Hook>,
    /// After the snapshot is written: failing, the command fails (the
    /// snapshot stays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_backup: Vec<Hook>,
    /// Before a restore changes anything (after its checks and safety
    /// snapshot): failing, nothing is restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_restore: Vec<Hook>,
    /// After every part is restored, before the restore is verified (a
    /// cache flush, say).
    #[serde(default)]
    pub post_restore: Vec<Hook>,
}

/// One command: a string runs on the host, a table inside a container.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Hook {
    Host(String),
    InContainer(ContainerHook),
}

/// `{ service = "redis", run = "redis-cli BGSAVE" }`: `run` with `sh -c`
/// inside the running container of a compose service (or a container
/// named with `container`), through the engine.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerHook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub run: String,
    /// The user to run it as (the image's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Host(c) => f.write_str(c),
            Hook::InContainer(h) => match (&h.service, &h.container) {
                (Some(s), _) => write!(f, "{} (in service {s})", h.run),
                (None, Some(c)) => write!(f, "{} (in container {c})", h.run),
                (None, None) => f.write_str(&h.run),
            },
        }
    }
}

impl Hooks {
    /// Every list with its name, for messages.
    pub fn lists(&self) -> [(&'static str, &Vec<Hook>); 4] {
        [
            ("pre-backup", &self.pre_backup),
            ("post-backup", &self.post_backup),
            ("pre-restore", &self.pre_restore),
            ("post-restore", &self.post_restore),
        ]
    }

    /// All of them in one line, for messages (empty when there are none).
    pub fn summary(&self) -> String {
        self.lists()
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(name, l)| {
                let cmds: Vec<String> = l.iter().map(Hook::to_string).collect();
                format!("{name}: {}", cmds.join("; "))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|(_, l)| l.is_empty())
    }

    /// Checks each container hook names where it runs.
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        for (name, list) in self.lists() {
            for h in list {
                if let Hook::InContainer(c) = h {
                    if c.service.is_some() == c.container.is_some() {
                        return Err(format!(
                            "{name} hook '{}': give `service` or `container`, one of them",
                            c.run
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `hooks` (named `which`, as in "pre-backup") in order; `said`
/// hears each before it runs and its output after. The first failing
/// stops the rest and is the error: its command, exit and output.
pub fn run(
    cfg: &StackConfig,
    which: &str,
    hooks: &[Hook],
    said: &mut dyn FnMut(HookEvent),
) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    // On a new host the stack's directory may not be there yet.
    crate::files::user::ensure_dir(cfg.dir()).map_err(|e| Error::Hook {
        which: which.to_string(),
        command: String::new(),
        what: format!("{}: {e}", cfg.dir().display()),
    })?;
    let mut engine: Option<Engine> = None;
    for h in hooks {
        said(HookEvent::Running(h.to_string()));
        let failed = |what: String| Error::Hook {
            which: which.to_string(),
            command: h.to_string(),
            what,
        };
        match h {
            Hook::Host(cmd) => {
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .current_dir(cfg.dir())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| failed(e.to_string()))?;
                let text = output_text(&out.stdout, &out.stderr);
                if !out.status.success() {
                    return Err(failed(format!("{}: {text}", out.status)));
                }
                if !text.is_empty() {
                    said(HookEvent::Output(text));
                }
            }
            Hook::InContainer(c) => {
                if engine.is_none() {
                    engine = Some(Engine::connect()?);
                }
                let e = engine.as_ref().expect("connected above");
                let container = match (&c.container, &c.service) {
                    (Some(name), _) => name.clone(),
                    (None, Some(s)) => e.compose_container(&cfg.project(), s)?,
                    (None, None) => return Err(failed("no service or container".into())),
                };
                let spec = ExecSpec {
                    cmd: vec!["sh".into(), "-c".into(), c.run.clone()],
                    user: c.user.clone(),
                    ..Default::default()
                };
                let (stdout, status) = e.exec_output(&container, &spec)?;
                let text = output_text(&stdout, status.stderr.as_bytes());
                if !status.success() {
                    let code = status
                        .code
                        .map(|c| format!("exit status: {c}"))
                        .unwrap_or_else(|| "killed".into());
                    return Err(failed(format!("{code} in container {container}: {text}")));
                }
                if !text.is_empty() {
                    said(HookEvent::Output(text));
                }
            }
        }
    }
    Ok(())
}

/// What running hooks reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookEvent {
    /// This command is starting.
    Running(String),
    /// What it printed (standard output, then standard error), trimmed.
    Output(String),
}

fn output_text(stdout: &[u8], stderr: &[u8]) -> String {
    let mut t = String::from_utf8_lossy(stdout).trim().to_string();
    let e = String::from_utf8_lossy(stderr);
    if !e.trim().is_empty() {
        if !t.is_empty() {
            t.push('\n');
        }
        t.push_str(e.trim());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_strings_or_tables() {
        let h: Hooks = toml::from_str(
            "pre_backup = [\"sync\", { service = \"redis\", run = \"redis-cli BGSAVE\" }]\npost_restore = [\"echo done\"]\n",
        )
        .unwrap();
        assert_eq!(h.pre_backup[0], Hook::Host("sync".into()));
        assert_eq!(
            h.pre_backup[1].to_string(),
            "redis-cli BGSAVE (in service redis)"
        );
        assert!(h.check().is_ok());
        assert_eq!(
            h.summary(),
            "pre-backup: sync; redis-cli BGSAVE (in service redis) | post-restore: echo done"
        );
        let bad: Hooks = toml::from_str("pre_restore = [{ run = \"x\" }]").unwrap();
        assert!(bad
            .check()
            .unwrap_err()
            .contains("`service` or `container`"));
        assert!(
            toml::from_str::<Hooks>("pre_restore = [{ run = \"x\", servce = \"a\" }]").is_err()
        );
        let back: Hooks = toml::from_str(&toml::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
