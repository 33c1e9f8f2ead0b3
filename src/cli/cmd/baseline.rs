//! `relic baseline`: retire an immaculate or sacred baseline (typing its
//! name again), and the audit records retiring leaves.

use crate::cli::args::{BaselineCmd, Cli};
use crate::cli::{open::open, render};
use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};

pub fn run(cli: &Cli, cmd: &BaselineCmd) -> Result<()> {
    let repo = open(cli)?;
    match cmd {
        BaselineCmd::Retire {
            name,
            confirm,
            reason,
        } => {
            let typed = match confirm {
                Some(n) => n.clone(),
                None if std::io::stdin().is_terminal() => {
                    eprint!("retiring deletes baseline '{name}' for good; type its name again: ");
                    std::io::stderr().flush()?;
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim().to_string()
                }
                None => {
                    bail!("no terminal to confirm at: add --confirm {name} (nothing was changed)")
                }
            };
            if &typed != name {
                bail!("'{typed}' is not '{name}'; nothing was retired");
            }
            let ids = repo.retire(name, reason)?;
            for id in ids {
                println!(
                    "retired {} ({name}); an audit record stays in the repository",
                    id.short()
                );
            }
        }
        BaselineCmd::Audit { json } => {
            let log = repo.audit_log()?;
            if *json {
                render::json(&log)?;
            } else {
                render::audit(&log);
            }
        }
    }
    Ok(())
}
