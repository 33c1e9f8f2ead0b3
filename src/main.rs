//! The `relic` command: parse and run (`cli`), then exit with the status
//! `cli::exit` decides (its table is in `relic --help` and docs/cli.md).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(cli::main())
}
