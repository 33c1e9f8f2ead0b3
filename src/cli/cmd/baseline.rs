//! `relic baseline`: retire an immaculate or sacred baseline (typing its
//! name again, and RETIRE-LAST, or --last, when it is a stack's last
//! immaculate baseline), and the audit records retiring leaves.

use crate::cli::args::{BaselineCmd, Cli};
use crate::cli::{open::open, render};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};

pub fn run(cli: &Cli, cmd: &BaselineCmd) -> Result<()> {
    let repo = open(cli)?;
    match cmd {
        BaselineCmd::Retire {
            name,
            confirm,
            reason,
            last,
        } => {
            let orphaned = relic::stack::last_baseline_of(&repo, name)?;
            if !orphaned.is_empty() {
                eprintln!(
                    "warning: '{name}' is the last immaculate baseline of stack {}: once it is retired, an emergency restore of {} has nothing to restore",
                    quoted(&orphaned),
                    if orphaned.len() == 1 { "it" } else { "them" }
                );
            }
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
            if !orphaned.is_empty() && !last {
                if !std::io::stdin().is_terminal() {
                    bail!("no terminal to confirm at: add --last to retire a stack's last immaculate baseline (nothing was changed)");
                }
                eprint!(
                    "stack {} would have no immaculate baseline left; type RETIRE-LAST to go on: ",
                    quoted(&orphaned)
                );
                std::io::stderr().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if line.trim() != "RETIRE-LAST" {
                    bail!("'{}' is not RETIRE-LAST; nothing was retired", line.trim());
                }
            }
            let ids = repo.retire(name, reason)?;
            for id in ids {
                report!(
                    "retired {} ({name}); an audit record stays in the repository",
                    id.short()
                );
            }
        }
        BaselineCmd::Promote {
            snapshot,
            name,
            tier,
        } => {
            let (id, snap) = repo.find_snapshot(snapshot)?;
            let new_id = repo
                .promote(&id, tier.parse()?, name)
                .with_context(|| format!("promoting snapshot {} ({})", id.short(), snap.name))?;
            report!(
                "snapshot {} ({}) is now also {tier} baseline {name}: {}",
                id.short(),
                snap.name,
                new_id.short()
            );
        }
        BaselineCmd::Audit { json } => {
            let log = repo.audit_log()?;
            if *json {
                render::json(&log)?;
            } else {
                render::audit(&log)?;
            }
        }
    }
    Ok(())
}

/// Names as a list for people: `'a'`, `'a' and 'b'`, `'a', 'b' and 'c'`.
fn quoted(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match q.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}
