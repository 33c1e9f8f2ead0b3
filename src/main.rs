//! The `relic` command: parse, run, map errors to a message and an exit code.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
