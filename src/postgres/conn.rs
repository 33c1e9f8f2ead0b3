//! Connecting: the settings libpq would use (CONNINFO, the PG* variables,
//! ~/.pgpass, libpq's defaults), the tokio runtime and the connection.

use super::{Error, Result};
use tokio_postgres::{Client, Config, NoTls};

/// The password ~/.pgpass (or PGPASSFILE) gives for this connection, as
/// libpq reads it: `host:port:database:user:password` lines, `*` matching
/// anything, `\\` escaping `:` and `\\`, a socket directory matching
/// `localhost`; the file is ignored unless only its owner may read it.
fn pgpass_lookup(file: &std::path::Path, c: &Config) -> Option<String> {
    let text = crate::files::user::read_private_text(file)?;
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
    let want = [
        host.as_str(),
        port.as_str(),
        c.get_dbname().unwrap_or_default(),
        c.get_user().unwrap_or_default(),
    ];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            _ => out.last_mut().expect("one field").push(ch),
        }
    }
    out
}

/// Connection settings as libpq would take them: the CONNINFO string (URL
/// or key/value), then the PG* environment variables, then libpq's
/// defaults (the local socket directory, the OS user, a database named
/// after the user).
pub fn config(conninfo: Option<&str>) -> Result<Config> {
    let mut c: Config = match conninfo {
        Some(s) if !s.is_empty() => s
            .parse()
            .map_err(|e| Error::Config(format!("'{s}': {e}")))?,
        _ => Config::new(),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if c.get_hosts().is_empty() {
        let host = env("PGHOST").unwrap_or_else(|| {
            ["/var/run/postgresql", "/tmp"]
                .iter()
                .find(|d| std::path::Path::new(d).join(".s.PGSQL.5432").exists())
                .unwrap_or(&"/var/run/postgresql")
                .to_string()
        });
        for h in host.split(',') {
            if h.starts_with('/') {
                c.host_path(h);
            } else {
                c.host(h);
            }
        }
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            c.port(
                p.parse()
                    .map_err(|_| Error::Config(format!("PGPORT '{p}'")))?,
            );
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(crate::sys::user_name)
            .ok_or_else(|| Error::Config("no user: set PGUSER".into()))?;
        c.user(&user);
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_dbname().is_none() {
        let db = env("PGDATABASE").unwrap_or_else(|| c.get_user().unwrap_or_default().to_string());
        c.dbname(&db);
    }
    if c.get_password().is_none() {
        let file = env("PGPASSFILE")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")));
        if let Some(pw) = file.and_then(|f| pgpass_lookup(&f, &c)) {
            c.password(pw);
        }
    }
    c.application_name(own_application_name());
    c.connect_timeout(std::time::Duration::from_secs(10));
    Ok(c)
}

/// The `application_name` of this process's own connections
/// (`relic-<pid>`): counting the sessions a drop would terminate leaves
/// them out, even one still closing.
pub(super) fn own_application_name() -> String {
    format!("relic-{}", std::process::id())
}

/// A conninfo for people, without its password: `db on host:port as
/// user` (what libpq would pick when a part is not given: the local
/// socket, the default port, the login user).
pub fn display_target(conninfo: &str) -> String {
    let Ok(c) = config(Some(conninfo)) else {
        return "(unreadable conninfo)".into();
    };
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "the local socket".into(),
    };
    let port = c
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "'{}' on {host}{port} as '{}'",
        c.get_dbname().unwrap_or_default(),
        c.get_user().unwrap_or_default()
    )
}

pub(super) fn describe(c: &Config) -> String {
    format!(
        "database '{}' as '{}'",
        c.get_dbname().unwrap_or_default(),
        c.get_user().unwrap_or_default()
    )
}

/// The process's runtime (see `crate::runtime`), which drives connections.
pub(super) fn runtime() -> Result<&'static crate::runtime::Runtime> {
    crate::runtime::get().map_err(Error::Runtime)
}

/// Connects; the connection is driven by the runtime's tasks.
pub(super) fn connect(rt: &crate::runtime::Runtime, c: &Config) -> Result<Client> {
    let (client, conn) = rt
        .block_on(c.connect(NoTls))
        .map_err(|source| Error::Connect {
            target: describe(c),
            source,
        })?;
    rt.spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\ndbhost:5432:other:app:nope\ndbhost:*:app:app:s3cr\\:et\nlocalhost:5432:*:*:local\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c: Config = "host=dbhost port=6000 dbname=app user=app".parse().unwrap();
        assert_eq!(pgpass_lookup(&f, &c).as_deref(), Some("s3cr:et"));
        let c: Config = "host=/var/run/postgresql dbname=x user=y".parse().unwrap();
        assert_eq!(pgpass_lookup(&f, &c).as_deref(), Some("local"));
        let c: Config = "host=elsewhere dbname=app user=app".parse().unwrap();
        assert_eq!(pgpass_lookup(&f, &c), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c: Config = "host=dbhost dbname=app user=app".parse().unwrap();
        assert_eq!(
            pgpass_lookup(&f, &c),
            None,
            "a world-readable file is ignored"
        );
    }
}
