//! Command-line interface: parse, run on a local repository or on the
//! local mirror of one on S3, and dispatch each command to `cmd/`. The
//! clap definitions are in `args`, what people see is in `render`;
//! everything a command does goes through the library.

/// A line on standard output. A closed output is an error that ends the
/// command quietly with exit code 141, never a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// A report line on standard output (what a command did): none under `-q`.
macro_rules! report {
    ($($arg:tt)*) => {
        if !$crate::cli::render::quiet() {
            out!($($arg)*)
        }
    };
}

/// A notice on standard error (a step, a summary of what was done): none
/// under `-q`. Warnings and errors are not notices.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::cli::render::quiet() {
            eprintln!($($arg)*)
        }
    };
}

mod args;
mod cmd;
pub mod exit;
mod open;
mod parse;
mod progress;
pub mod render;
mod secret;

use anyhow::Result;
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

/// Parses the command line, runs the command and returns the exit status
/// (`exit` decides it; errors are printed here).
pub fn main() -> u8 {
    match run_anywhere(Cli::parse()) {
        Ok(outcome) => exit::of_outcome(outcome),
        Err(e) => {
            let code = exit::of(&e);
            if code != exit::CLOSED_OUTPUT {
                render::error(&e);
            }
            code
        }
    }
}

/// The error came from writing to a standard output that was closed
/// (`relic restore --stdout … | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<relic::repo::Error>(),
                Some(relic::repo::Error::Output(io)) if io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}

/// Runs a command. A repository on S3 is worked on in place, through its
/// cache (see relic::repo's origin module); a mirror an older relic kept
/// of it is removed, saying so.
fn run_anywhere(cli: Cli) -> Result<Outcome> {
    if let Ok(spec) = open::repo_path(&cli) {
        let spec = spec.to_string_lossy();
        if spec.starts_with("s3://") {
            open::remove_legacy_mirror(&spec);
        }
    }
    run_one(cli)
}

/// Runs one command.
fn run_one(cli: Cli) -> Result<Outcome> {
    let bar = &Bar::new(cli.quiet);
    render::set_verbosity(cli.quiet, cli.verbose);
    relic::lock::set_wait(cli.retry_lock);
    relic::lock::set_command(command_name(&cli.command));
    if let Some(ttl) = cli.key_cache {
        if let Err(e) = relic::keycache::enable(ttl) {
            eprintln!("warning: --key-cache: the kernel keyring cannot be used here ({e}); every command derives the key again");
        }
    }
    let cli = &cli;
    let done = |r: Result<()>| r.map(|()| Outcome::Done);
    match &cli.command {
        Command::Init(a) => done(cmd::init::run(cli, a)),
        Command::Key(c) => done(cmd::key::run(cli, c)),
        Command::Backup(a) => cmd::backup::run(cli, a, bar),
        Command::Snapshots(a) => done(cmd::snapshots::list(cli, a)),
        Command::Restore(a) => cmd::restore::run(cli, a, bar),
        Command::Check(a) => cmd::check::check(cli, a, bar),
        Command::Repair { json } => cmd::repair::repair(cli, *json, bar),
        Command::Stats { snapshot, json } => {
            done(cmd::check::stats(cli, snapshot.as_deref(), *json))
        }
        Command::Forget(a) => done(cmd::forget::run(cli, a).map(|_| ())),
        Command::Prune(a) => done(cmd::prune::run(cli, a, bar)),
        Command::Index(IndexCommand::Rebuild) => cmd::repair::rebuild_index(cli, bar),
        Command::Unlock {
            stale,
            dry_run,
            json,
        } => done(cmd::unlock::run(cli, *stale, *dry_run, *json)),
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
        Command::Run(a) => cmd::run::run(cli, a, bar),
        Command::Schedule(c) => done(cmd::schedule::run(cli, c)),
        Command::Report(a) => done(cmd::report::run(cli, a)),
    }
}

/// The command's name, recorded in the locks it takes.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Init { .. } => "init",
        Command::Key(_) => "key",
        Command::Backup(_) => "backup",
        Command::Snapshots(_) => "snapshots",
        Command::Restore { .. } => "restore",
        Command::Check { .. } => "check",
        Command::Repair { .. } => "repair",
        Command::Prune { .. } => "prune",
        Command::Forget(_) => "forget",
        Command::Index(_) => "index rebuild",
        Command::Unlock { .. } => "unlock",
        Command::Run(_) => "run",
        _ => "relic",
    }
}
