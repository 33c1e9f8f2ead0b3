//! Where passphrases come from: RELIC_PASSWORD, RELIC_PASSWORD_FILE,
//! RELIC_PASSWORD_COMMAND, or a prompt on the terminal (read from /dev/tty,
//! so `pg_dump | relic backup --stdin` can still ask). New passphrases (for
//! `key add` and `key passwd`) come from RELIC_NEW_PASSWORD or
//! RELIC_NEW_PASSWORD_FILE, or the prompt, asked twice.

use anyhow::{bail, Context, Result};
use std::process::Command;
use zeroize::Zeroizing;

fn trim_newline(mut s: String) -> String {
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    s
}

fn from_env(var: &str, file_var: &str) -> Result<Option<Zeroizing<String>>> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Some(Zeroizing::new(p)));
    }
    if let Ok(f) = std::env::var(file_var) {
        let s = relic::files::user::read_text(std::path::Path::new(&f))
            .with_context(|| format!("reading {file_var}={f}"))?;
        return Ok(Some(Zeroizing::new(trim_newline(s))));
    }
    Ok(None)
}

/// No passphrase could be had: no variable set and no terminal to ask on
/// (exit code 12, as for a wrong one).
#[derive(Debug, thiserror::Error)]
#[error("no passphrase given: set RELIC_PASSWORD, RELIC_PASSWORD_FILE or RELIC_PASSWORD_COMMAND (no terminal to ask on)")]
pub struct NoPassphrase(#[source] std::io::Error);

fn prompt(text: &str) -> Result<Zeroizing<String>> {
    Ok(rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(NoPassphrase)?)
}

/// The passphrase of an existing repository.
pub fn passphrase() -> Result<Zeroizing<String>> {
    if let Some(p) = from_env("RELIC_PASSWORD", "RELIC_PASSWORD_FILE")? {
        return Ok(p);
    }
    if let Ok(cmd) = std::env::var("RELIC_PASSWORD_COMMAND") {
        return from_command(&cmd, "RELIC_PASSWORD_COMMAND");
    }
    match CONFIGURED.get() {
        Some(Configured::File(f)) => {
            let s = relic::files::user::read_text(f)
                .with_context(|| format!("reading password_file {} (relic.toml)", f.display()))?;
            Ok(Zeroizing::new(trim_newline(s)))
        }
        Some(Configured::Command(cmd)) => from_command(cmd, "password_command (relic.toml)"),
        None => prompt("repository passphrase: "),
    }
}

/// A relic.toml's passphrase source, used when no variable gives one.
enum Configured {
    File(std::path::PathBuf),
    Command(String),
}

static CONFIGURED: std::sync::OnceLock<Configured> = std::sync::OnceLock::new();

/// Takes the passphrase source of the relic.toml a command was given (its
/// `password_file`, relative to the file's directory, or its
/// `password_command`); the first one given stays.
pub fn use_config(cfg: &relic::stack::StackConfig) {
    let source = match (&cfg.password_file, &cfg.password_command) {
        (Some(f), _) => Configured::File(cfg.dir().join(f)),
        (None, Some(c)) => Configured::Command(c.clone()),
        (None, None) => return,
    };
    let _ = CONFIGURED.set(source);
}

fn from_command(cmd: &str, what: &str) -> Result<Zeroizing<String>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .with_context(|| format!("running {what} '{cmd}'"))?;
    if !out.status.success() {
        bail!(
            "{what} '{cmd}' failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let s = String::from_utf8(out.stdout).with_context(|| format!("{what} printed non-UTF-8"))?;
    Ok(Zeroizing::new(trim_newline(s)))
}

/// A passphrase for a new key slot; `init` takes it from the usual sources.
pub fn new_passphrase(for_init: bool) -> Result<Zeroizing<String>> {
    let env = if for_init {
        from_env("RELIC_PASSWORD", "RELIC_PASSWORD_FILE")?
    } else {
        from_env("RELIC_NEW_PASSWORD", "RELIC_NEW_PASSWORD_FILE")?
    };
    let p = match env {
        Some(p) => p,
        None => {
            let a = prompt("new passphrase: ")?;
            let b = prompt("the same again: ")?;
            if *a != *b {
                bail!("the two passphrases differ; nothing was changed");
            }
            a
        }
    };
    if p.is_empty() {
        bail!("an empty passphrase protects nothing; choose one (or init with --no-encryption)");
    }
    Ok(p)
}
