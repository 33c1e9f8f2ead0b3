//! `relic restore`: a snapshot to standard output, a file or a directory,
//! into PostgreSQL, the Docker engine or a named volume, or a whole stack
//! (`cmd::stack`).

use crate::cli::args::{Cli, RestoreArgs};
use crate::cli::cmd::stack;
use crate::cli::open::{load_config, open_stack};
use crate::cli::progress::Bar;
use crate::cli::render;
use crate::cli::Outcome;
use anyhow::{anyhow, bail, Context, Result};
use relic::contents::{Kind, Part};
use relic::progress::{Progress, Unit};
use relic::snapshot::ItemKind;
use relic::{files, Repository, Snapshot, SnapshotId};
use std::path::Path;

pub fn run(cli: &Cli, a: &RestoreArgs, bar: &Bar) -> Result<Outcome> {
    let destination = a.stdout
        || a.to.is_some()
        || a.into_postgres.is_some()
        || a.into_docker
        || a.into_volume.is_some();
    let loaded = if destination {
        None
    } else {
        load_config(a.config.as_deref(), a.config.is_some())?
    };
    let repo = open_stack(cli, loaded.as_ref())?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = repo.find_snapshot(&a.snapshot)?;
    if !destination {
        let Ok(m) = relic::stack::manifest(&id, &snap) else {
            bail!("say where to restore: --stdout, --to PATH, --into-postgres, --into-docker or --into-volume");
        };
        if a.item.is_some() {
            bail!("say where --item goes: --to PATH, --stdout, --into-postgres or --into-docker (nothing was changed)");
        }
        let given = stack::given_config(a.config.is_some(), loaded, &m.stack);
        let cfg = stack::targets(&repo, &id, &snap, given, bar)?;
        let opts = relic::stack::RestoreOptions {
            only: a.only,
            dry_run: a.dry_run,
            verify_data: a.verify_data,
            safety_snapshot: !a.no_safety_snapshot,
            force: a.force,
            stop: a.stop,
            jobs: a
                .jobs
                .map_or_else(relic::postgres::default_jobs, usize::from),
        };
        stack::restore(&repo, &id, &snap, &cfg, &opts, a.json, bar)?;
        return Ok(Outcome::Done);
    }
    if a.only.is_some() {
        bail!("--only applies to a stack restore (without --to, --stdout, --into-postgres or --into-docker); to take one part out, use --item");
    }
    if let Some(volume) = &a.into_volume {
        if a.force || a.verify_data {
            bail!("--force and --verify-data do not apply to --into-volume");
        }
        return into_volume(&repo, a, &id, &snap, volume, bar);
    }
    if a.stop {
        bail!("--stop applies to --into-volume and stack restores");
    }
    if a.into_postgres.is_none() && (a.force || a.verify_data || a.no_safety_snapshot) {
        bail!("--force, --verify-data and --no-safety-snapshot apply to --into-postgres and stack restores");
    }
    // A stack snapshot's one database needs no --item to go into
    // PostgreSQL; several need it.
    let item = match (
        &a.item,
        &a.into_postgres,
        relic::stack::manifest(&id, &snap),
    ) {
        (None, Some(_), Ok(m)) => match m.databases.as_slice() {
            [one] => Some(format!("db/{}", one.name)),
            dbs => bail!(
                "stack snapshot {} holds {} databases: say which with --item ({})",
                id.short(),
                dbs.len(),
                dbs.iter()
                    .map(|d| format!("db/{}", d.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        (item, _, _) => item.clone(),
    };
    let part = match &item {
        Some(spec) => Some(relic::contents::select(&repo, &id, &snap, spec)?),
        None => None,
    };
    let what = match &item {
        Some(i) => format!("item {i} of snapshot {}", id.short()),
        None => format!("snapshot {}", id.short()),
    };
    if a.into_docker {
        let spec = match (&part, a.image.as_deref()) {
            (None, spec) => spec.map(str::to_string),
            (Some(Part::Images(r)), _) => Some(match r.as_slice() {
                [one] => one.id.clone(),
                _ => a
                    .item
                    .clone()
                    .unwrap_or_default()
                    .replacen("images/", "", 1),
            }),
            (Some(_), _) => bail!("{what} is not a Docker image"),
        };
        if a.dry_run {
            let records = relic::docker::select(&relic::docker::records(&snap)?, spec.as_deref())?;
            return render::docker_plan(&what, &records, a.json).map(|()| Outcome::Done);
        }
        let mut say = |s: relic::docker::LoadStep| bar.say(&render::load_step(&s));
        let checks = relic::docker::restore(&repo, &snap, spec.as_deref(), bar, &mut say)
            .with_context(|| format!("loading {what} into the Docker engine"))?;
        bar.finish();
        let r = render::Restored {
            id: &id,
            what: &what,
            into: "docker",
            checks: &checks,
            restored: true,
            safety_snapshot: None,
        };
        render::restored(&r, &format!("loaded {what} and verified its tags"), a.json)?;
    } else if let Some(conninfo) = &a.into_postgres {
        let target = match &a.container {
            Some(c) => relic::postgres::Target::Container {
                container: c.clone(),
                conninfo: conninfo.clone(),
            },
            None => relic::postgres::Target::Host(conninfo.clone()),
        };
        let opts = relic::postgres::RestoreOptions {
            target: target.clone(),
            create: a.create,
            clean: a.clean,
            expect_revision: a.expect_revision.clone(),
            safety_snapshot: !a.no_safety_snapshot,
            dry_run: a.dry_run,
            force: a.force,
            verify_data: a.verify_data,
            jobs: a
                .jobs
                .map_or_else(relic::postgres::default_jobs, usize::from),
        };
        let mut say = |s: relic::postgres::RestoreStep| bar.say(&render::postgres_step(&s));
        let report = match part {
            None => relic::postgres::restore(&repo, &id, &snap, &opts, bar, &mut say),
            Some(Part::Database { item, info }) => {
                let dump = relic::postgres::Dump { item, info };
                relic::postgres::restore_dump(&repo, &id, &snap, &dump, &opts, bar, &mut say)
            }
            Some(_) => bail!("{what} is not a database dump"),
        }
        .map_err(|e| postgres_error(e, &target))
        .with_context(|| format!("restoring {what} into PostgreSQL"))?;
        bar.finish();
        let r = render::Restored {
            id: &id,
            what: &what,
            into: "postgres",
            checks: &report.checks,
            restored: report.restored,
            safety_snapshot: report.safety_snapshot.as_deref(),
        };
        render::restored(&r, &format!("restored {what} and verified it"), a.json)?;
    } else {
        return to_file_or_dir(&repo, a, &id, &snap, part, &what, bar);
    }
    Ok(Outcome::Done)
}

/// `--stdout` and `--to`: a single stream to standard output or to a file
/// (in an existing directory, named as its item), a tree, a stack or
/// several images into a directory.
fn to_file_or_dir(
    repo: &Repository,
    a: &RestoreArgs,
    id: &SnapshotId,
    snap: &Snapshot,
    part: Option<Part>,
    what: &str,
    bar: &Bar,
) -> Result<Outcome> {
    let stream = match &part {
        Some(Part::Database { item, .. } | Part::Stream(item)) => Some(item.clone()),
        Some(Part::Images(r)) if r.len() == 1 => {
            relic::docker::items_for(repo, snap, r)?.into_iter().next()
        }
        Some(_) => None,
        None => match relic::contents::kind(repo, snap)? {
            Kind::Stream | Kind::Postgres => Some(single_stream(repo, id, snap, None)?),
            Kind::Docker
                if a.image.is_some() || relic::docker::records(snap)?.len() == 1 || a.stdout =>
            {
                Some(single_stream(repo, id, snap, a.image.as_deref())?)
            }
            Kind::Docker | Kind::Stack | Kind::Files | Kind::Volumes if a.stdout => {
                bail!("{what} holds more than one stream: use --item (relic ls lists them), or --to DIR")
            }
            _ => None,
        },
    };
    if let Some(item) = stream {
        if a.dry_run {
            let into =
                a.to.as_ref()
                    .filter(|_| !a.stdout)
                    .map(|p| p.display().to_string());
            return render::stream_plan(what, &item, into.as_deref(), a.json)
                .map(|()| Outcome::Done);
        }
        bar.start("restoring", Some(item.size), Unit::Bytes);
        if let Some(to) = a.to.as_ref().filter(|_| !a.stdout) {
            let path = if to.is_dir() {
                // The item's last name, which a hostile snapshot could
                // make `..`: only a plain name is taken.
                let name = item.path_lossy();
                let last = name.rsplit('/').next().unwrap_or_default();
                if matches!(last, "" | "." | "..") {
                    bail!(
                        "{what}: item '{}' has no file name to write in {}; give --to FILE",
                        name.escape_debug(),
                        to.display()
                    );
                }
                to.join(last)
            } else {
                to.clone()
            };
            restore_to_file(repo, &item, &path, bar)
                .with_context(|| format!("restoring {what} to {}", path.display()))?;
            bar.finish();
            if a.json {
                render::json(&serde_json::json!({"snapshot": id.to_hex(), "what": what,
                    "into": path.display().to_string(), "bytes": item.size, "restored": true}))?;
            } else {
                render::wrote_file(&path, item.size, id);
            }
            return Ok(Outcome::Done);
        }
        // Whole batches go straight to the descriptor: no line
        // buffering, no extra copy.
        let mut out = relic::files::user::stdout_file().context("duplicating stdout")?;
        repo.restore_item(&item, &mut out, bar)
            .with_context(|| format!("restoring {what}"))?;
        bar.finish();
        return Ok(Outcome::Done);
    }
    let Some(dir) = &a.to else {
        bail!("{what} is a directory: restore it with --to DIR");
    };
    if a.dry_run {
        let wanted = |p: &[u8]| match &part {
            Some(Part::Tree { prefix, .. }) => {
                p == prefix.as_slice()
                    || (p.starts_with(prefix) && p.get(prefix.len()) == Some(&b'/'))
            }
            Some(Part::Images(r)) => r.iter().any(|i| i.item.as_bytes() == p),
            _ => true,
        };
        let mut plan = files::RestoreStats::default();
        for item in repo.items(snap) {
            let item = item?;
            if !wanted(&item.path) {
                continue;
            }
            match item.kind {
                ItemKind::Dir => plan.dirs += 1,
                ItemKind::Symlink => plan.links += 1,
                ItemKind::File | ItemKind::Stream => {
                    plan.files += 1;
                    plan.bytes += item.size;
                }
            }
        }
        return render::tree_plan(what, dir, &plan, a.json).map(|()| Outcome::Done);
    }
    let st = match part {
        Some(Part::Tree { prefix, strip }) => {
            let under = [prefix.as_slice(), b"/"].concat();
            files::restore_mapped(
                repo,
                snap,
                dir,
                &|p| {
                    (p == prefix.as_slice() || p.starts_with(&under))
                        .then(|| p.strip_prefix(strip.as_slice()).unwrap_or(p).to_vec())
                },
                bar,
            )
        }
        Some(Part::Images(r)) => files::restore_mapped(
            repo,
            snap,
            dir,
            &|p| r.iter().any(|i| i.item.as_bytes() == p).then(|| p.to_vec()),
            bar,
        ),
        _ => files::restore_to(repo, snap, dir, bar),
    }
    .with_context(|| format!("restoring {what} into {}", dir.display()))?;
    bar.finish();
    render::files_restored(id, dir, &st, a.json)?;
    if !st.complete() {
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Done)
}

/// `--into-volume`: one volume of the snapshot (`--item` says which when
/// it holds several) into a Docker named volume.
fn into_volume(
    repo: &Repository,
    a: &RestoreArgs,
    id: &SnapshotId,
    snap: &Snapshot,
    volume: &str,
    bar: &Bar,
) -> Result<Outcome> {
    use relic::docker::volume;
    let record = volume::select(&volume::records(snap)?, a.item.as_deref())
        .with_context(|| format!("snapshot {}", id.short()))?;
    let engine = relic::docker::Engine::connect()?;
    if a.dry_run {
        let target = volume::target(&engine, volume)?;
        for line in render::volume_plan(&record, &target, a.stop, !a.no_safety_snapshot) {
            out!("{line}");
        }
        return Ok(Outcome::Done);
    }
    let mut say = |s: volume::VolumeStep| bar.say(&render::volume_step(&s));
    let to = volume::RestoreTo {
        volume: volume.to_string(),
        stop: a.stop,
        safety_for: (!a.no_safety_snapshot).then_some(*id),
    };
    let done = volume::restore(&engine, repo, snap, &record, &to, bar, &mut say)
        .map_err(render::volume_error)
        .with_context(|| {
            format!(
                "restoring {} of snapshot {} into volume '{volume}'",
                record.item,
                id.short()
            )
        })?;
    bar.finish();
    render::volume_restored(&record, id, &done)?;
    Ok(Outcome::Done)
}

/// A database restore's error with what to do about it in this command's
/// terms: the flag that allows it, or the command that restores the
/// safety snapshot taken before a failed load.
fn postgres_error(e: relic::postgres::Error, target: &relic::postgres::Target) -> anyhow::Error {
    let into = match target {
        relic::postgres::Target::Host(c) => format!("--into-postgres '{c}'"),
        relic::postgres::Target::Container {
            container,
            conninfo,
        } => format!("--into-postgres '{conninfo}' --container {container}"),
    };
    use relic::postgres::Error as E;
    match e {
        E::DatabaseMissing { .. } => anyhow!("{e}; add --create"),
        E::DatabaseNotEmpty { .. } => anyhow!("{e}; use --clean to replace it"),
        E::UnexpectedRevision { .. } | E::RevisionMismatch { .. } => {
            anyhow!("{e} (--force overrides)")
        }
        E::AfterSafetySnapshot {
            safety_snapshot,
            error,
        } => error
            .with_hint(&format!(
                "To return to the state before, restore the safety snapshot: relic restore {} {into} --clean",
                &safety_snapshot[..8]
            ))
            .into(),
        e => e.into(),
    }
}

/// The one stream a snapshot (or the image `image` of it) holds.
fn single_stream(
    repo: &Repository,
    id: &relic::SnapshotId,
    snap: &relic::Snapshot,
    image: Option<&str>,
) -> Result<relic::snapshot::Item> {
    let mut items = if let Some(spec) = image {
        let selected = relic::docker::select(&relic::docker::records(snap)?, Some(spec))?;
        relic::docker::items_for(repo, snap, &selected)?
    } else {
        repo.items(snap)
            .take(2)
            .collect::<relic::repo::Result<Vec<_>>>()?
    };
    if items.is_empty() {
        bail!("snapshot {} is empty", id.short());
    }
    if items.len() > 1 || !matches!(items[0].kind, ItemKind::Stream | ItemKind::File) {
        bail!(
            "snapshot {} holds more than one stream; use --item (relic ls lists them), --image REF or --to DIR",
            id.short()
        );
    }
    Ok(items.remove(0))
}

/// Writes one item to a new file: temp file, fsync, rename.
fn restore_to_file(
    repo: &Repository,
    item: &relic::snapshot::Item,
    path: &Path,
    bar: &Bar,
) -> Result<()> {
    relic::files::user::write_atomically(path, |f| {
        repo.restore_item(item, f, bar).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("writing {}", path.display()))
}
