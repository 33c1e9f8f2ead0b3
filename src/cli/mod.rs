//! Command-line interface: parse, run on a local repository or on the
//! local mirror of one on S3, and dispatch each command to `cmd/`. The
//! clap definitions are in `args`, what people see is in `render`;
//! everything a command does goes through the library.

mod args;
mod cmd;
mod open;
mod progress;
pub mod render;
mod secret;

use anyhow::{Context, Result};
use args::{Cli, Command, IndexCommand};
use clap::Parser;
use progress::Bar;
use std::io;

/// How a command that ran to its end went; `main` turns it into the exit
/// status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// Exit 1, as for an error: `check` found problems.
    Problems,
    /// Exit 3: a partial or damaged result, reported on stderr: a backup
    /// that skipped or saw changing entries (its snapshot is written), a
    /// restore that left out damaged or refused items, a repair or index
    /// rebuild that found damage.
    Partial,
}

/// Parses the command line and runs the command.
pub fn run() -> Result<Outcome> {
    run_anywhere(Cli::parse())
}

/// The error came from writing to a standard output that was closed
/// (`relic restore --stdout … | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<relic::repo::Error>(),
                Some(relic::repo::Error::Output(io)) if io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Parallel transfers to and from a repository on S3.
const REMOTE_JOBS: usize = 4;

/// Runs a command on a local repository, or on the local mirror of one on
/// S3: pulled first, pushed after (see relic::remote), under a lock in the
/// bucket.
fn run_anywhere(mut cli: Cli) -> Result<Outcome> {
    if matches!(cli.command, Command::InitStack(_)) {
        return run_one(cli);
    }
    let spec = match open::repo_path(&cli) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => return run_one(cli),
    };
    if !spec.starts_with("s3://") {
        return run_one(cli);
    }
    let bar = Bar::new(cli.quiet);
    let remote = relic::remote::Remote::open(&spec)?;
    let init = matches!(cli.command, Command::Init { .. });
    let exclusive = matches!(
        cli.command,
        Command::Prune { .. } | Command::Repair { .. } | Command::Index(_)
    );
    // Listing and reading need no lock (and read-only credentials suffice
    // for them: a lock that cannot be written is then only a warning).
    let _lock = if init {
        remote.prepare_init()?;
        None
    } else {
        let lock = match remote.lock(exclusive) {
            Ok(l) => Some(l),
            Err(relic::sync::Error::Store(e @ relic::store::Error::AccessDenied { .. }))
                if !exclusive =>
            {
                eprintln!("warning: no lock taken ({e})");
                None
            }
            Err(e) => return Err(e).context("cannot lock the repository"),
        };
        remote
            .pull(REMOTE_JOBS, &bar)
            .with_context(|| format!("cannot read repository {spec}"))?;
        lock
    };
    cli.repo = Some(remote.mirror().to_path_buf());
    let result = run_one(cli);
    // What the command wrote goes to the bucket even when it failed later
    // (a safety snapshot taken before a failed restore, say).
    let pushed = remote
        .push(REMOTE_JOBS, &bar)
        .with_context(|| format!("cannot write repository {spec}; the local mirror {} holds the changes, the next command sends them", remote.mirror().display()));
    match (result, pushed) {
        (Ok(outcome), Ok(_)) => Ok(outcome),
        (Err(e), Ok(_)) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(p)) => {
            eprintln!("warning: {p:#}");
            Err(e)
        }
    }
}

/// Runs one command.
fn run_one(cli: Cli) -> Result<Outcome> {
    let bar = &Bar::new(cli.quiet);
    relic::lock::set_command(command_name(&cli.command));
    let cli = &cli;
    let done = |r: Result<()>| r.map(|()| Outcome::Done);
    match &cli.command {
        Command::Init(a) => done(cmd::init::run(cli, a)),
        Command::Key(c) => done(cmd::key::run(cli, c)),
        Command::Backup(a) => cmd::backup::run(cli, a, bar),
        Command::Snapshots { json } => done(cmd::snapshots::list(cli, *json)),
        Command::Restore(a) => cmd::restore::run(cli, a, bar),
        Command::Check(a) => cmd::check::check(cli, a, bar),
        Command::Repair { json } => cmd::repair::repair(cli, *json, bar),
        Command::Stats { json } => done(cmd::check::stats(cli, *json)),
        Command::Forget(a) => done(cmd::forget::run(cli, a)),
        Command::Prune(a) => done(cmd::prune::run(cli, a, bar)),
        Command::Index(IndexCommand::Rebuild) => cmd::repair::rebuild_index(cli, bar),
        Command::Unlock { stale } => done(cmd::unlock::run(cli, *stale)),
        Command::Drill(a) => done(cmd::stack::drill(cli, a, bar)),
        Command::Diff(a) => done(cmd::snapshots::diff(cli, a)),
        Command::Ls(a) => done(cmd::snapshots::ls(cli, a)),
        Command::Sync(a) => done(cmd::sync::run(cli, a, bar)),
        Command::Rename { snapshot, new_name } => {
            done(cmd::snapshots::rename(cli, snapshot, new_name))
        }
        Command::Snapshot(c) => cmd::stack::snapshot(cli, c, bar),
        Command::InitStack(c) => done(cmd::stack::init_stack(c)),
        Command::Manifest { snapshot, json } => {
            done(cmd::snapshots::manifest(cli, snapshot, *json))
        }
        Command::Emergency(c) => done(cmd::stack::emergency(cli, c, bar)),
        Command::Baseline(c) => done(cmd::baseline::run(cli, c)),
    }
}

/// The command's name, recorded in the locks it takes.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Init { .. } => "init",
        Command::Key(_) => "key",
        Command::Backup(_) => "backup",
        Command::Snapshots { .. } => "snapshots",
        Command::Restore { .. } => "restore",
        Command::Check { .. } => "check",
        Command::Repair { .. } => "repair",
        Command::Prune { .. } => "prune",
        Command::Forget(_) => "forget",
        Command::Index(_) => "index rebuild",
        Command::Unlock { .. } => "unlock",
        _ => "relic",
    }
}
