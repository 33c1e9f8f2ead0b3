//! The `relic` command: parse and run (`cli`), then exit with the outcome.
//! This is the one place the exit status is decided: 0 done, 1 an error
//! (or `check` found problems), 3 a partial or damaged result, 141
//! standard output closed early (as if killed by SIGPIPE); clap itself
//! exits 2 on a command line it cannot parse.

mod cli;

use cli::Outcome;
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Ok(Outcome::Partial) => ExitCode::from(3),
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            cli::render::error(&e);
            ExitCode::from(1)
        }
    }
}
