//! Key material of a repository and the keyed hashes derived from it.
//!
//! A random 32-byte master key is the root of everything keyed: chunk ids,
//! object ids (packs, snapshots) and the FastCDC gear seed are derived from it
//! with BLAKE3's key derivation, so two repositories holding the same data
//! share neither ids nor chunk boundaries.

use crate::crypto::Cipher;
use crate::id::ChunkId;
use rand::RngCore;

const CTX_CHUNK_ID: &str = "relic 2026-11 chunk id";
const CTX_OBJECT_ID: &str = "relic 2026-11 object id";
const CTX_GEAR_SEED: &str = "relic 2026-11 chunker gear seed";
const CTX_DATA: &str = "relic 2026-11 data encryption";
const CTX_META_MAC: &str = "relic 2026-11 metadata mac";

/// The master key and the subkeys derived from it.
#[derive(Clone)]
pub struct Keys {
    master: [u8; 32],
    chunk_id: [u8; 32],
    object_id: [u8; 32],
    gear_seed: u64,
    meta_mac: [u8; 32],
    cipher: Option<Cipher>,
}

impl Keys {
    /// A fresh random master key.
    pub fn generate(encrypt: bool) -> Self {
        let mut master = [0u8; 32];
        rand::rng().fill_bytes(&mut master);
        Self::from_master(master, encrypt)
    }

    /// Derives every subkey; `encrypt` adds the cipher that seals objects.
    pub fn from_master(master: [u8; 32], encrypt: bool) -> Self {
        let seed = blake3::derive_key(CTX_GEAR_SEED, &master);
        Keys {
            master,
            chunk_id: blake3::derive_key(CTX_CHUNK_ID, &master),
            object_id: blake3::derive_key(CTX_OBJECT_ID, &master),
            gear_seed: u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")),
            meta_mac: blake3::derive_key(CTX_META_MAC, &master),
            cipher: encrypt.then(|| Cipher::new(&blake3::derive_key(CTX_DATA, &master))),
        }
    }

    /// The cipher sealing stored objects; `None` in an unencrypted repository.
    pub fn cipher(&self) -> Option<&Cipher> {
        self.cipher.as_ref()
    }

    /// MAC of a small metadata object (the config, a key slot), so an
    /// altered one is refused.
    pub fn meta_mac(&self, bytes: &[u8]) -> String {
        blake3::keyed_hash(&self.meta_mac, bytes)
            .to_hex()
            .to_string()
    }

    pub fn master(&self) -> &[u8; 32] {
        &self.master
    }

    /// The id of a blob: BLAKE3 keyed with the chunk-id subkey.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        blake3::keyed_hash(&self.chunk_id, data).into()
    }

    /// A hasher for whole objects (packs, snapshots): their names.
    pub fn object_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.object_id)
    }

    /// The seed XORed into FastCDC's gear table.
    pub fn gear_seed(&self) -> u64 {
        self.gear_seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_masters_give_different_ids_and_seeds() {
        let a = Keys::from_master([1; 32], true);
        let b = Keys::from_master([2; 32], true);
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(a.gear_seed(), b.gear_seed());
        assert_eq!(
            a.chunk_id(b"x"),
            Keys::from_master([1; 32], false).chunk_id(b"x")
        );
    }
}
