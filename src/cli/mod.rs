//! Command-line interface: parse, run on a local repository or on the
//! local mirror of one on S3, and dispatch each command to `cmd/`. The
//! clap definitions are in `args`, what people see is in `render`;
//! everything a command does goes through the library.

mod args;
mod cmd;
mod open;
mod progress;
mod render;
mod secret;

use anyhow::{Context, Result};
use args::{Cli, Command, IndexCommand};
use clap::Parser;
use progress::Bar;
use std::io;
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_anywhere(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
                    || matches!(c.downcast_ref::<relic::repo::Error>(),
                        Some(relic::repo::Error::Output(io)) if io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(141);
            }
            render::error(&e);
            ExitCode::from(1)
        }
    }
}

/// Parallel transfers to and from a repository on S3.
const REMOTE_JOBS: usize = 4;

/// Runs a command on a local repository, or on the local mirror of one on
/// S3: pulled first, pushed after (see relic::remote), under a lock in the
/// bucket.
fn run_anywhere(mut cli: Cli) -> Result<ExitCode> {
    let spec = match open::repo_path(&cli) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => return run(cli),
    };
    if !spec.starts_with("s3://") {
        return run(cli);
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
            Err(relic::sync::Error::Dest { what, .. })
                if what.starts_with("access denied") && !exclusive =>
            {
                eprintln!("warning: {spec}: no lock taken ({what})");
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
    let result = run(cli);
    // What the command wrote goes to the bucket even when it failed later
    // (a safety snapshot taken before a failed restore, say).
    let pushed = remote
        .push(REMOTE_JOBS, &bar)
        .with_context(|| format!("cannot write repository {spec}; the local mirror {} holds the changes, the next command sends them", remote.mirror().display()));
    match (result, pushed) {
        (Ok(code), Ok(_)) => Ok(code),
        (Err(e), Ok(_)) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(p)) => {
            eprintln!("warning: {p:#}");
            Err(e)
        }
    }
}

/// Runs one command.
fn run(cli: Cli) -> Result<ExitCode> {
    let bar = &Bar::new(cli.quiet);
    relic::lock::set_command(command_name(&cli.command));
    let cli = &cli;
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match &cli.command {
        Command::Init(a) => done(cmd::init::run(cli, a)),
        Command::Key(c) => done(cmd::key::run(cli, c)),
        Command::Backup(a) => done(cmd::backup::run(cli, a, bar)),
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
        Command::Sync(a) => done(cmd::sync::run(cli, a, bar)),
        Command::Rename { snapshot, new_name } => {
            done(cmd::snapshots::rename(cli, snapshot, new_name))
        }
        Command::Snapshot(c) => done(cmd::stack::snapshot(cli, c, bar)),
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
