//! `relic restore`: a snapshot to standard output, a file or a directory,
//! into PostgreSQL or the Docker engine, or a whole stack (`cmd::stack`).

use crate::cli::args::{Cli, RestoreArgs};
use crate::cli::cmd::stack;
use crate::cli::open::{load_config, open_stack};
use crate::cli::progress::Bar;
use crate::cli::render;
use crate::cli::Outcome;
use anyhow::{anyhow, bail, Context, Result};
use relic::progress::{Progress, Unit};
use relic::snapshot::ItemKind;
use relic::{files, Repository};
use std::path::Path;

pub fn run(cli: &Cli, a: &RestoreArgs, bar: &Bar) -> Result<Outcome> {
    let stack_mode = a.config.is_some()
        || !(a.stdout || a.to.is_some() || a.into_postgres.is_some() || a.into_docker);
    let cfg = if stack_mode {
        load_config(a.config.as_deref(), a.config.is_some())?
    } else {
        None
    };
    let repo = open_stack(cli, cfg.as_ref())?;
    let _lock = repo.lock_shared(bar)?;
    repo.refresh()?;
    let (id, snap) = repo.find_snapshot(&a.snapshot)?;
    let images = relic::docker::records(&snap)?;
    if stack_mode && snap.meta.contains_key(relic::stack::MANIFEST_KEY) {
        let cfg = cfg.with_context(|| {
            format!(
                "snapshot {} is a stack snapshot: give its relic.toml with --config (no ./relic.toml here)",
                id.short()
            )
        })?;
        let opts = relic::stack::RestoreOptions {
            only: a.only,
            dry_run: a.dry_run,
            verify_data: a.verify_data,
            safety_snapshot: !a.no_safety_snapshot,
            force: a.force,
        };
        stack::restore(&repo, &id, &snap, &cfg, &opts, bar)?;
        return Ok(Outcome::Done);
    }
    if a.only.is_some() {
        bail!(
            "--only applies to stack snapshots; {} is not one",
            id.short()
        );
    }
    if a.into_postgres.is_none() && (a.dry_run || a.force || a.verify_data || a.no_safety_snapshot)
    {
        bail!("--dry-run, --force, --verify-data and --no-safety-snapshot apply to --into-postgres and stack restores");
    }
    if a.into_docker {
        let mut say = |s: relic::docker::LoadStep| bar.say(&render::load_step(&s));
        let checks = relic::docker::restore(&repo, &snap, a.image.as_deref(), bar, &mut say)
            .with_context(|| format!("loading snapshot {} into the Docker engine", id.short()))?;
        bar.finish();
        render::checks(&checks);
        println!("loaded snapshot {} and verified its tags", id.short());
    } else if a.stdout
        || a.image.is_some()
        || (!images.is_empty() && a.to.as_ref().is_some_and(|p| !p.is_dir()))
    {
        let item = single_stream(&repo, &id, &snap, a.image.as_deref())?;
        bar.start("restoring", Some(item.size), Unit::Bytes);
        if let Some(path) = a.to.as_ref().filter(|_| !a.stdout) {
            restore_to_file(&repo, &item, path, bar).with_context(|| {
                format!("restoring snapshot {} to {}", id.short(), path.display())
            })?;
            bar.finish();
            render::wrote_file(path, item.size, &id);
            return Ok(Outcome::Done);
        }
        // Whole batches go straight to the descriptor: no line
        // buffering, no extra copy.
        let mut out = relic::files::user::stdout_file().context("duplicating stdout")?;
        repo.restore_item(&item, &mut out, bar)
            .with_context(|| format!("restoring snapshot {}", id.short()))?;
        bar.finish();
    } else if let Some(conninfo) = &a.into_postgres {
        let opts = relic::postgres::RestoreOptions {
            conninfo: conninfo.clone(),
            create: a.create,
            clean: a.clean,
            expect_revision: a.expect_revision.clone(),
            safety_snapshot: !a.no_safety_snapshot,
            dry_run: a.dry_run,
            force: a.force,
            verify_data: a.verify_data,
        };
        let mut say = |s: relic::postgres::RestoreStep| bar.say(&render::postgres_step(&s));
        let report = relic::postgres::restore(&repo, &id, &snap, &opts, bar, &mut say)
            .map_err(|e| postgres_error(e, conninfo))
            .with_context(|| format!("restoring snapshot {} into PostgreSQL", id.short()))?;
        bar.finish();
        render::checks(&report.checks);
        if report.restored {
            println!("restored snapshot {} and verified it", id.short());
        }
    } else if let Some(dir) = &a.to {
        let st = files::restore_to(&repo, &snap, dir, bar)
            .with_context(|| format!("restoring snapshot {} into {}", id.short(), dir.display()))?;
        bar.finish();
        render::files_restored(&id, dir, &st);
        if !st.complete() {
            return Ok(Outcome::Partial);
        }
    } else {
        bail!("say where to restore: --stdout, --to PATH, --into-postgres or --into-docker");
    }
    Ok(Outcome::Done)
}

/// A database restore's error with what to do about it in this command's
/// terms: the flag that allows it, or the command that restores the
/// safety snapshot taken before a failed load.
fn postgres_error(e: relic::postgres::Error, conninfo: &str) -> anyhow::Error {
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
                "To return to the state before, restore the safety snapshot: relic restore {} --into-postgres '{conninfo}' --clean",
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
            "snapshot {} holds more than one stream; use --image REF or --to DIR",
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
