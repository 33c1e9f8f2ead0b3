//! Looking at snapshots: `snapshots` (the list), `diff`, `manifest`, and
//! `rename`.

use crate::cli::args::{Cli, DiffArgs, LsArgs, SnapshotsArgs};
use crate::cli::open::{load_config, open, open_stack};
use crate::cli::render;
use anyhow::{Context, Result};

pub fn list(cli: &Cli, a: &SnapshotsArgs) -> Result<()> {
    let tiers = a
        .tier
        .iter()
        .map(|t| t.parse::<relic::Tier>())
        .collect::<Result<Vec<_>, _>>()?;
    let labels = crate::cli::parse::labels(&a.label)?;
    let now = jiff::Timestamp::now();
    let since = a
        .since
        .as_deref()
        .map(|t| crate::cli::parse::time(t, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|t| crate::cli::parse::time(t, now))
        .transpose()?;
    let repo = crate::cli::open::open_catalog(cli)?;
    let mut list = repo.load_snapshots(false)?;
    list.ok.retain(|(_, s)| {
        (a.names.is_empty() || a.names.contains(&s.name))
            && (tiers.is_empty() || tiers.contains(&s.tier))
            && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
            && since.is_none_or(|t| s.time() >= t)
            && until.is_none_or(|t| s.time() < t)
    });
    let json = a.json;
    let damaged = relic::check::damaged_snapshots(&repo);
    for (name, e) in &list.damaged {
        eprintln!(
            "warning: snapshot {} is unreadable ({e}); run `relic check`",
            &name[..8]
        );
    }
    render::snapshots(&list.ok, &damaged, json)
}

pub fn diff(cli: &Cli, a: &DiffArgs) -> Result<()> {
    let repo = open(cli)?;
    let from = repo.find_snapshot(&a.from)?;
    let to = repo.find_snapshot(&a.to)?;
    let d = relic::diff::diff(&repo, (&from.0, &from.1), (&to.0, &to.1))?;
    render::diff(&d, a.json)
}

/// The items of a snapshot, those under `paths` when given.
pub fn ls(cli: &Cli, a: &LsArgs) -> Result<()> {
    let repo = open(cli)?;
    let (_, snap) = repo.find_snapshot(&a.snapshot)?;
    let wanted = |p: &[u8]| {
        a.paths.is_empty()
            || a.paths.iter().any(|w| {
                let w = w.trim_end_matches('/').as_bytes();
                p == w || (p.starts_with(w) && p.get(w.len()) == Some(&b'/'))
            })
    };
    let mut items = Vec::new();
    for item in repo.items(&snap) {
        let item = item?;
        if wanted(&item.path) {
            items.push(item);
        }
    }
    render::ls(&items, a.json)
}

pub fn manifest(cli: &Cli, snapshot: &str, json: bool) -> Result<()> {
    let repo = open_stack(cli, load_config(None, false)?.as_ref())?;
    let (id, snap) = repo.find_snapshot(snapshot)?;
    let contents = relic::contents::describe(&repo, &id, &snap)
        .with_context(|| format!("reading what snapshot {} holds", id.short()))?;
    let root = repo.backend().root();
    let at = if root.exists() {
        relic::files::user::canonical(root).display().to_string()
    } else {
        root.display().to_string()
    };
    let at = cli
        .repo
        .as_ref()
        .filter(|r| r.to_string_lossy().starts_with("s3://"))
        .map_or(at, |r| r.display().to_string());
    if json {
        render::json(&render::manifest_json(&at, &id, &contents)?)
    } else {
        print!("{}", render::manifest(&at, &id, &snap, &contents));
        Ok(())
    }
}

pub fn rename(cli: &Cli, snapshot: &str, new_name: &str) -> Result<()> {
    let repo = open(cli)?;
    let (id, _) = repo.find_snapshot(snapshot)?;
    let new_id = repo
        .rename(&id, new_name)
        .with_context(|| format!("renaming snapshot {}", id.short()))?;
    report!(
        "snapshot {} is now {} ({new_name})",
        id.short(),
        new_id.short()
    );
    Ok(())
}
