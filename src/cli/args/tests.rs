//! The command line's help: every argument explained, every command with
//! an example.

use clap::CommandFactory;

/// `relic help COMMAND` explains every argument and shows an example.
#[test]
fn every_argument_has_help_and_every_command_an_example() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if !a.is_hide_set() && !["help", "version"].contains(&id) && a.get_help().is_none() {
                missing.push(format!("{path} {id}: no help"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(format!("{p}: no description"));
            }
            let example = sub
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"));
            if sub.get_subcommands().next().is_none() && !example {
                missing.push(format!("{p}: no example"));
            }
            walk(sub, &p, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&super::Cli::command(), "relic", &mut missing);
    assert!(missing.is_empty(), "{missing:#?}");
}
