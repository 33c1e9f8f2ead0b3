//! `relic key`: list, add, remove and change the passphrases (key slots)
//! of an encrypted repository.

use crate::cli::args::{Cli, KeyCommand};
use crate::cli::{open::open, render, secret};
use anyhow::{bail, Result};
use relic::crypto::KdfParams;

pub fn run(cli: &Cli, cmd: &KeyCommand) -> Result<()> {
    let repo = open(cli)?;
    if repo.keys().cipher().is_none() {
        bail!("the repository is not encrypted: it has no passphrases");
    }
    match cmd {
        KeyCommand::List { json } => {
            render::key_slots(&repo.key_slots()?, repo.unlocked_slot(), *json)?;
        }
        KeyCommand::Add => {
            let p = secret::new_passphrase(false)?;
            let id = repo.add_key(p.as_bytes(), KdfParams::default())?;
            report!("added key slot {}", &id[..8]);
        }
        KeyCommand::Remove { id } => {
            let id = repo.remove_key(id)?;
            report!("removed key slot {}", &id[..8]);
        }
        KeyCommand::Forget => {
            if relic::keycache::forget(&repo.config().id) {
                report!("the cached key of this repository is gone");
            } else {
                report!("no key of this repository was cached");
            }
        }
        KeyCommand::Passwd => {
            let p = secret::new_passphrase(false)?;
            let id = repo.change_passphrase(p.as_bytes(), KdfParams::default())?;
            report!("passphrase changed (new key slot {})", &id[..8]);
        }
    }
    Ok(())
}
