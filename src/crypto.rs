//! Authenticated encryption of stored objects and the key slots that wrap
//! the master key.
//!
//! Every blob body, pack trailer and snapshot object is sealed with
//! XChaCha20-Poly1305 under a key derived from the random master key: a
//! fresh random 24-byte nonce per object, the object's id (or role) as
//! associated data, so a body moved to another id fails to open. The master
//! key itself is stored only wrapped, once per key slot, by a key derived
//! from a passphrase with Argon2id.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Debug, Error)]
pub enum Error {
    #[error("authentication failed: the data was altered or truncated")]
    Auth,
    #[error("wrong passphrase: it opens none of the repository's key slots")]
    WrongPassphrase,
    #[error("key derivation: {0}")]
    Kdf(String),
}

/// Seals and opens objects with one key.
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Cipher {
            aead: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Replaces `buf` (plaintext) with nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, aad: &[u8], buf: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let tag = self
            .aead
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, buf)
            .expect("XChaCha20-Poly1305 seals any length we store");
        buf.extend_from_slice(&tag);
        buf.splice(0..0, nonce);
    }

    /// Opens what [`Cipher::seal`] produced, in place.
    pub fn open(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), Error> {
        if buf.len() < OVERHEAD {
            return Err(Error::Auth);
        }
        let nonce: [u8; NONCE_LEN] = buf[..NONCE_LEN].try_into().expect("24 bytes");
        let tag_at = buf.len() - TAG_LEN;
        let tag: [u8; TAG_LEN] = buf[tag_at..].try_into().expect("16 bytes");
        buf.truncate(tag_at);
        buf.drain(..NONCE_LEN);
        self.aead
            .decrypt_in_place_detached(XNonce::from_slice(&nonce), aad, buf, (&tag).into())
            .map_err(|_| Error::Auth)
    }
}

/// Argon2id parameters of a key slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 2 passes, 1 lane: about 0.1 s here, above OWASP's
    /// recommendation (46 MiB, 1 pass); see docs/security.md.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

fn derive(passphrase: &[u8], salt: &[u8], p: &KdfParams) -> Result<Zeroizing<[u8; 32]>, Error> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::Kdf(e.to_string()))?;
    let blocks = params.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    let mut memory = kdf_memory(blocks);
    argon
        .hash_password_into_with_memory(passphrase, salt, out.as_mut(), &mut memory[..])
        .map_err(|e| Error::Kdf(e.to_string()))?;
    // The blocks held passphrase-derived state.
    for b in memory.iter_mut() {
        *b = argon2::Block::default();
    }
    Ok(out)
}

/// Argon2's working memory, backed by transparent huge pages where the
/// kernel offers them (`madvise` mode, Debian's default): 64 MiB then
/// costs 32 page faults instead of 16 384, about a third of the key
/// derivation's time on this machine.
fn kdf_memory(blocks: usize) -> Vec<argon2::Block> {
    let mut v: Vec<argon2::Block> = Vec::with_capacity(blocks);
    crate::sys::advise_huge_pages(&mut v);
    v.resize(blocks, argon2::Block::default());
    v
}

/// A key slot: the master key wrapped under one passphrase (`keys/<id>`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySlot {
    pub kdf: String,
    pub params: KdfParams,
    /// Hex, 32 bytes.
    pub salt: String,
    /// Hex: nonce ‖ wrapped master key ‖ tag.
    pub wrapped: String,
    pub created: String,
    pub host: String,
    /// Keyed BLAKE3 (metadata MAC key) of this slot with an empty `mac`.
    #[serde(default)]
    pub mac: String,
}

const SLOT_AAD: &[u8] = b"relic key slot v1";

impl KeySlot {
    /// Wraps `master` under `passphrase`.
    pub fn create(
        master: &[u8; 32],
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<KeySlot, Error> {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        let kek = derive(passphrase, &salt, &params)?;
        let mut buf = master.to_vec();
        Cipher::new(&kek).seal(SLOT_AAD, &mut buf);
        Ok(KeySlot {
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            wrapped: hex::encode(buf),
            created: jiff::Timestamp::now().to_string(),
            host: crate::sys::hostname(),
            mac: String::new(),
        })
    }

    /// The bytes the slot's MAC covers.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut s = self.clone();
        s.mac.clear();
        serde_json::to_vec(&s).expect("slot serializes")
    }

    /// The master key, if `passphrase` is this slot's.
    pub fn open(&self, passphrase: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
        if self.kdf != "argon2id" {
            return Err(Error::Kdf(format!("unknown key derivation '{}'", self.kdf)));
        }
        let salt = hex::decode(&self.salt).map_err(|_| Error::Kdf("bad salt".into()))?;
        let mut buf = hex::decode(&self.wrapped).map_err(|_| Error::Auth)?;
        let kek = derive(passphrase, &salt, &self.params)?;
        Cipher::new(&kek)
            .open(SLOT_AAD, &mut buf)
            .map_err(|_| Error::WrongPassphrase)?;
        let master: [u8; 32] = buf.as_slice().try_into().map_err(|_| Error::Auth)?;
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(Zeroizing::new(master))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn light() -> KdfParams {
        KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn slot_opens_with_its_passphrase_only() {
        let slot = KeySlot::create(&[5; 32], b"correct horse", light()).unwrap();
        assert_eq!(*slot.open(b"correct horse").unwrap(), [5; 32]);
        assert!(matches!(slot.open(b"wrong"), Err(Error::WrongPassphrase)));
    }

    #[test]
    fn sealed_objects_bind_their_aad_and_detect_tampering() {
        let c = Cipher::new(&[1; 32]);
        let mut buf = b"secret row".to_vec();
        c.seal(b"id-1", &mut buf);
        assert_eq!(buf.len(), 10 + OVERHEAD);
        assert!(!buf.windows(6).any(|w| w == b"secret"));
        let sealed = buf.clone();
        c.open(b"id-1", &mut buf).unwrap();
        assert_eq!(buf, b"secret row");
        let mut other = sealed.clone();
        assert!(c.open(b"id-2", &mut other).is_err());
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                c.open(b"id-1", &mut t).is_err(),
                "flip at {i} went unnoticed"
            );
        }
        let mut short = sealed[..sealed.len() - 1].to_vec();
        assert!(c.open(b"id-1", &mut short).is_err());
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2000), aad in proptest::collection::vec(any::<u8>(), 0..40)) {
            let c = Cipher::new(&[9; 32]);
            let mut buf = data.clone();
            c.seal(&aad, &mut buf);
            c.open(&aad, &mut buf).unwrap();
            prop_assert_eq!(buf, data);
        }

        #[test]
        fn open_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let c = Cipher::new(&[9; 32]);
            let mut buf = data;
            let _ = c.open(b"x", &mut buf);
        }
    }
}
