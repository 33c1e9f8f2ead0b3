//! Key slots: the passphrase-wrapped copies of the master key in `keys/`,
//! added, removed and tried on open.

use super::{io_at, Config, Error, Repository, Result};
use crate::crypto::{KdfParams, KeySlot};
use crate::keys::Keys;
use crate::store::{Kind, Local, Store};

impl Repository {
    /// The key slots: id → slot.
    pub fn key_slots(&self) -> Result<Vec<(String, KeySlot)>> {
        read_slots(&self.backend)
    }

    /// Key slots that do not parse or whose MAC does not match: id → why.
    pub fn key_slot_damage(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for id in self
            .backend
            .list(Kind::Key)
            .map_err(io_at(self.backend.root()))?
        {
            let path = self.backend.path(Kind::Key, &id);
            let bytes = self.backend.read(Kind::Key, &id).map_err(io_at(&path))?;
            if blake3::hash(&bytes).to_hex().as_str() != id {
                out.push((id, "content does not match its name".into()));
                continue;
            }
            match serde_json::from_slice::<KeySlot>(&bytes) {
                Err(e) => out.push((id, format!("cannot parse: {e}"))),
                Ok(slot) if self.keys.meta_mac(&slot.mac_input()) != slot.mac => {
                    out.push((id, "MAC does not match: the slot was altered".into()))
                }
                Ok(_) => {}
            }
        }
        Ok(out)
    }

    /// The id of the slot this session was unlocked with.
    pub fn unlocked_slot(&self) -> Option<&str> {
        self.unlocked_slot.as_deref()
    }

    /// Adds a key slot for another passphrase; returns its id.
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<String> {
        if self.keys.cipher().is_none() {
            return Err(Error::KeySlot("the repository is not encrypted".into()));
        }
        write_slot(
            &self.backend,
            self.origin.as_deref(),
            &self.keys,
            KeySlot::create(self.keys.master(), passphrase, kdf)?,
        )
    }

    /// Removes a key slot by id prefix. The slot in use and the last slot
    /// are refused: a repository must stay openable.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let slots = self.key_slots()?;
        let hits: Vec<_> = slots
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        let id = match hits.as_slice() {
            [(id, _)] => id.clone(),
            [] => return Err(Error::KeySlot(format!("no key slot matches '{prefix}'"))),
            _ => {
                return Err(Error::KeySlot(format!(
                    "'{prefix}' matches several key slots"
                )))
            }
        };
        if slots.len() == 1 {
            return Err(Error::KeySlot(
                "refusing to remove the last key slot".into(),
            ));
        }
        if self.unlocked_slot.as_deref() == Some(id.as_str()) {
            return Err(Error::KeySlot(
                "refusing to remove the slot of the passphrase in use; use `key passwd` to replace it".into(),
            ));
        }
        self.remove_object(Kind::Key, &id)?;
        Ok(id)
    }

    /// Replaces the slot in use by one for a new passphrase.
    pub fn change_passphrase(&self, new: &[u8], kdf: KdfParams) -> Result<String> {
        let old = self
            .unlocked_slot
            .clone()
            .ok_or_else(|| Error::KeySlot("the repository is not encrypted".into()))?;
        let id = self.add_key(new, kdf)?;
        self.remove_object(Kind::Key, &old)?;
        Ok(id)
    }
}

/// MACs a key slot and writes it under the hash of its JSON; returns its id.
pub(super) fn write_slot(
    backend: &Local,
    origin: Option<&dyn Store>,
    keys: &Keys,
    mut slot: KeySlot,
) -> Result<String> {
    slot.mac = keys.meta_mac(&slot.mac_input());
    let bytes = serde_json::to_vec_pretty(&slot).expect("slot serializes");
    let id = blake3::hash(&bytes).to_hex().to_string();
    super::origin::write_through(backend, origin, Kind::Key, &id, &bytes)?;
    Ok(id)
}

/// Key slots that parse and match their names.
pub(super) type Slots = Vec<(String, KeySlot)>;

/// The sound key slots, and the ids of those that are damaged (skipped
/// here, since another slot may still open the repository; `check` reports
/// them).
pub(super) fn read_slots_and_damage(backend: &Local) -> Result<(Slots, Vec<String>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for id in backend.list(Kind::Key).map_err(io_at(backend.root()))? {
        let path = backend.path(Kind::Key, &id);
        let bytes = backend.read(Kind::Key, &id).map_err(io_at(&path))?;
        match serde_json::from_slice(&bytes) {
            Ok(slot) if blake3::hash(&bytes).to_hex().as_str() == id => out.push((id, slot)),
            _ => damaged.push(id),
        }
    }
    Ok((out, damaged))
}

pub(super) fn read_slots(backend: &Local) -> Result<Slots> {
    Ok(read_slots_and_damage(backend)?.0)
}

/// Tries the passphrase on every key slot.
/// The keys of an encrypted repository and the id of the slot that opened
/// them: from the key cache when it holds this repository's key for this
/// passphrase (and the slot still exists, and the config's MAC checks out
/// with it), else by trying `pass` on every slot (then cached, if the
/// cache is on).
pub(super) fn unlock(backend: &Local, config: &Config, pass: &[u8]) -> Result<(Keys, String)> {
    let cached = crate::keycache::lookup(&config.id, pass)
        .filter(|(slot, _)| backend.path(Kind::Key, slot).exists())
        .map(|(slot, master)| (Keys::from_master(*master, true), slot))
        .filter(|(keys, _)| keys.meta_mac(&config.mac_input()) == config.mac);
    if let Some(hit) = cached {
        return Ok(hit);
    }
    let (slot, master) = try_slots(backend, pass)?;
    crate::keycache::store(&config.id, pass, &slot, &master);
    Ok((Keys::from_master(*master, true), slot))
}

fn try_slots(backend: &Local, pass: &[u8]) -> Result<(String, zeroize::Zeroizing<[u8; 32]>)> {
    let (slots, damaged) = read_slots_and_damage(backend)?;
    for (id, slot) in &slots {
        match slot.open(pass) {
            Ok(master) => return Ok((id.clone(), master)),
            Err(crate::crypto::Error::WrongPassphrase) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if !damaged.is_empty() {
        return Err(Error::KeySlot(format!(
            "no key slot opens with this passphrase, and key slot(s) {} are damaged (content does not match the name): restore keys/ from a copy, or use another passphrase",
            damaged.iter().map(|d| &d[..8]).collect::<Vec<_>>().join(", ")
        )));
    }
    if slots.is_empty() {
        return Err(Error::KeySlot("the repository has no key slots".into()));
    }
    Err(crate::crypto::Error::WrongPassphrase.into())
}
