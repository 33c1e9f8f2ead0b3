//! Object ids: 32-byte keyed BLAKE3 hashes, shown as hex and found by unique prefix.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Full lower-case hex (64 characters).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parses 64 hex characters.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }

            /// Takes exactly 32 bytes.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                Some(Self(b.try_into().ok()?))
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(h: blake3::Hash) -> Self {
                Self(*h.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

define_id!(
    /// Keyed hash of a blob's plaintext (a chunk, a chunk list, a tree piece).
    ChunkId
);
define_id!(
    /// Keyed hash of a whole pack file.
    PackId
);
define_id!(
    /// Keyed hash of a whole snapshot object.
    SnapshotId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ChunkId([7u8; 32]);
        assert_eq!(ChunkId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.short(), "07070707");
        assert!(ChunkId::from_hex("zz").is_none());
        assert!(ChunkId::from_slice(&[1, 2, 3]).is_none());
    }
}
