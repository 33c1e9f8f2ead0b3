//! `relic backup`: standard input, files and directories, a PostgreSQL
//! database (`backup pg`), Docker images (`backup image`) or named volumes
//! (`backup volume`).

use crate::cli::args::{BackupArgs, BackupSource, Cli, SnapshotArgs};
use crate::cli::progress::Bar;
use crate::cli::Outcome;
use crate::cli::{open::open, render};
use anyhow::{Context, Result};
use relic::files;
use relic::progress::{Progress, Unit};
use std::io;
use std::path::Path;

pub fn run(cli: &Cli, args: &BackupArgs, bar: &Bar) -> Result<Outcome> {
    match &args.source {
        Some(BackupSource::Image {
            references,
            file,
            name,
            snapshot,
        }) => image(
            cli,
            references,
            file.as_deref(),
            name.as_deref(),
            snapshot,
            bar,
        )
        .map(|()| Outcome::Done),
        Some(BackupSource::Pg {
            conninfo,
            container,
            name,
            snapshot,
        }) => postgres(
            cli,
            conninfo.as_deref(),
            container.as_deref(),
            name.as_deref(),
            snapshot,
            bar,
        )
        .map(|()| Outcome::Done),
        Some(BackupSource::Volume {
            volumes,
            name,
            stop,
            snapshot,
        }) => volume(cli, volumes, name.as_deref(), *stop, snapshot, bar),
        None => paths(cli, args, bar),
    }
}

/// Standard input or files and directories; partial when an entry could
/// not be read or changed while it was read (the snapshot is written).
fn paths(cli: &Cli, args: &BackupArgs, bar: &Bar) -> Result<Outcome> {
    let name = args.name.clone().unwrap_or_default();
    let opts = args.snapshot.options(&name)?;
    if args.stdin != args.paths.is_empty() {
        return Err(crate::cli::exit::Usage(
            "give either --stdin or one or more paths to back up".into(),
        )
        .into());
    }
    let repo = open(cli)?;
    repo.set_dry_run(args.snapshot.dry_run);
    // The scan (a second walk, metadata only) only gives the bar a total.
    if args.stdin || !bar.is_visible() {
        bar.start("backing up", None, Unit::Bytes);
    } else {
        let (files, bytes) = files::scan(&args.paths);
        bar.start(&format!("{files} files"), Some(bytes), Unit::Bytes);
    }
    let (id, snap) = if args.stdin {
        let item = args.stdin_name.as_deref().unwrap_or(&name);
        relic::files::widen_pipe(&io::stdin());
        repo.backup_stream(&opts, item, io::stdin().lock(), bar)
    } else {
        repo.backup(&opts, bar, |w| files::backup_paths(w, &args.paths))
    }
    .with_context(|| format!("backup '{name}' failed; no snapshot was written"))?;
    bar.finish();
    render::backup(&id, &snap, args.snapshot.json, args.snapshot.dry_run)?;
    let mut partial = false;
    if let Some(n) = snap.meta.get("files.skipped") {
        eprintln!(
            "warning: {n} entries could not be read and are not in snapshot {}",
            id.short()
        );
        partial = true;
    }
    if let Some(n) = snap.meta.get("files.changed") {
        eprintln!(
            "warning: {n} file(s) changed while they were read and may be inconsistent in snapshot {}",
            id.short()
        );
        partial = true;
    }
    Ok(if partial {
        Outcome::Partial
    } else {
        Outcome::Done
    })
}

/// One database, through pg_dump.
fn postgres(
    cli: &Cli,
    conninfo: Option<&str>,
    container: Option<&str>,
    name: Option<&str>,
    snapshot: &SnapshotArgs,
    bar: &Bar,
) -> Result<()> {
    let name = match (name, container, conninfo) {
        (Some(n), _, _) => n.to_string(),
        (None, Some(c), None) => c.to_string(),
        (None, _, conninfo) => relic::postgres::config(conninfo)?
            .get_dbname()
            .unwrap_or("postgres")
            .to_string(),
    };
    let opts = snapshot.options(&name)?;
    let repo = open(cli)?;
    repo.set_dry_run(snapshot.dry_run);
    bar.start("dumping", None, Unit::Bytes);
    let target = match container {
        Some(c) => relic::postgres::Target::Container {
            container: c.to_string(),
            conninfo: conninfo.unwrap_or_default().to_string(),
        },
        None => relic::postgres::Target::host(conninfo),
    };
    let done = relic::postgres::backup(&repo, &opts, &target, bar);
    let (id, snap) =
        done.with_context(|| format!("database backup '{name}' failed; no snapshot was written"))?;
    bar.finish();
    render::backup(&id, &snap, snapshot.json, snapshot.dry_run)
}

/// Docker named volumes, through the engine; partial when an entry could
/// not be stored (a device, a fifo).
fn volume(
    cli: &Cli,
    volumes: &[String],
    name: Option<&str>,
    stop: bool,
    snapshot: &SnapshotArgs,
    bar: &Bar,
) -> Result<Outcome> {
    let name = match (name, volumes) {
        (Some(n), _) => n.to_string(),
        (None, [one]) => one.clone(),
        (None, _) => "volumes".to_string(),
    };
    let opts = snapshot.options(&name)?;
    let repo = open(cli)?;
    repo.set_dry_run(snapshot.dry_run);
    let mut say = |s: relic::docker::volume::VolumeStep| bar.say(&render::volume_step(&s));
    let (id, snap) = relic::docker::volume::backup(&repo, &opts, volumes, stop, bar, &mut say)
        .map_err(render::volume_error)
        .with_context(|| format!("volume backup '{name}' failed; no snapshot was written"))?;
    bar.finish();
    render::backup(&id, &snap, snapshot.json, snapshot.dry_run)?;
    if let Some(n) = snap.meta.get("files.skipped") {
        eprintln!(
            "warning: {n} entries (devices, fifos) are not in snapshot {}",
            id.short()
        );
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Done)
}

/// Images through the engine, or a `docker save` archive.
fn image(
    cli: &Cli,
    references: &[String],
    file: Option<&Path>,
    name: Option<&str>,
    snapshot: &SnapshotArgs,
    bar: &Bar,
) -> Result<()> {
    let stdin = file.is_some_and(|f| f.as_os_str() == "-");
    let name = match (name, file) {
        (Some(n), _) => n.to_string(),
        (None, Some(_)) if stdin => "image-archive".to_string(),
        (None, Some(f)) => f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image-archive".into()),
        (None, None) if references.len() == 1 => image_name(&references[0]).to_string(),
        (None, None) => "images".to_string(),
    };
    let opts = snapshot.options(&name)?;
    let repo = open(cli)?;
    repo.set_dry_run(snapshot.dry_run);
    let (id, snap) = match file {
        Some(f) => {
            let size = (!stdin).then(|| files::scan(&[f.to_path_buf()]).1);
            bar.start("backing up", size, Unit::Bytes);
            if stdin {
                relic::files::widen_pipe(&io::stdin());
                relic::docker::backup_archive(&repo, &opts, io::stdin().lock(), &name, bar)
            } else {
                let r = relic::files::user::open(f)
                    .with_context(|| format!("opening {}", f.display()))?;
                let item = f.file_stem().map(|s| s.to_string_lossy().into_owned());
                relic::docker::backup_archive(
                    &repo,
                    &opts,
                    r,
                    item.as_deref().unwrap_or(&name),
                    bar,
                )
            }
        }
        None => relic::docker::backup(&repo, &opts, references, bar),
    }
    .with_context(|| format!("image backup '{name}' failed; no snapshot was written"))?;
    bar.finish();
    render::backup(&id, &snap, snapshot.json, snapshot.dry_run)
}

/// `registry:5000/app:1.2` → `registry:5000/app`; digests and ids stay.
fn image_name(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    }
}
