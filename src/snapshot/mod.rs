//! Snapshots: immutable objects naming a tree of items.
//!
//! A snapshot object is small: its fields plus the chunk list of its item
//! stream. The item stream (every item, length-prefixed, in order) is stored
//! like any other stream, chunked into `Meta` blobs, so a tree of a million
//! files dedups against yesterday's and never has to fit in memory. Long
//! chunk lists of one item are split into list blobs of [`LIST_MAX`] ids.

mod costs;
pub use costs::{Costs, ADDED_KEY, DELTAS_KEY};

use crate::crypto::Cipher;
use crate::id::{ChunkId, SnapshotId};
use bincode::Options;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Object header: magic and format version.
pub const MAGIC: &[u8; 4] = b"RLCS";
pub const VERSION: u8 = 1;
/// Body encodings of a snapshot object.
pub const ENCODING_PLAIN: u8 = 0;
pub const ENCODING_SEALED: u8 = 2;
const SNAPSHOT_AAD: &[u8] = b"relic snapshot";
/// Ids per chunk list blob (128 KiB); lists up to this length stay inline.
pub const LIST_MAX: usize = 4096;
/// Largest encoded item or snapshot accepted by the decoder.
const DECODE_LIMIT: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum Error {
    #[error("snapshot {id}: {what}")]
    Corrupt { id: String, what: String },
    #[error("no snapshot matches '{0}'; `relic snapshots` lists them")]
    NotFound(String),
    #[error("no immaculate or sacred snapshot is named '{0}'; `relic snapshots` lists them")]
    NoBaseline(String),
    #[error("'{spec}' matches several snapshots ({ids}); give more of the id")]
    Ambiguous { spec: String, ids: String },
    #[error("unknown tier '{0}' (daily, named, immaculate, sacred, safety)")]
    UnknownTier(String),
    #[error("refused: {what}")]
    Protected { what: String },
    #[error("'{name}' cannot name a snapshot: {why}")]
    BadName { name: String, why: &'static str },
    /// A partial snapshot may not be written as an immaculate or sacred
    /// baseline: a baseline is whole.
    #[error("refused: a {tier} baseline is whole or nothing, and '{name}' misses parts")]
    PartialBaseline { name: String, tier: Tier },
}

/// The metadata key that marks a snapshot partial: a JSON list of
/// [`PartFailure`], the parts it was meant to hold and does not.
pub const PARTIAL_KEY: &str = "partial";

/// A part a partial snapshot lacks, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartFailure {
    /// The part (`db/main`, `images/backend:latest`, `files`, `git`).
    pub part: String,
    /// What went wrong.
    pub error: String,
}

/// The shortest id prefix a selector can be: shorter hex strings (`db`,
/// `abc`) are names only.
pub const MIN_ID_PREFIX: usize = 4;

/// Refuses names that could not be told apart from a snapshot selector
/// or that would be unsafe to show or to use as a path: empty, control
/// characters, `.`, `..` or empty parts between slashes (`org/app` is
/// fine: image names look like that), `latest`, `~`, a leading `-`, or
/// [`MIN_ID_PREFIX`] or more hex digits only (an id prefix).
pub fn validate_name(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if name.chars().any(char::is_control) {
        Some("it holds control characters")
    } else if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        // Image names hold slashes (`org/app`); paths that walk do not.
        Some("`.`, `..` and empty parts between slashes read as a path")
    } else if name == "latest" {
        Some("`latest` always means the newest snapshot")
    } else if name.contains('~') {
        Some("`NAME~N` selects the Nth snapshot before NAME's newest")
    } else if name.starts_with('-') {
        Some("it would read as an option")
    } else if name != name.trim() {
        Some("it begins or ends with white space")
    } else if name.len() >= MIN_ID_PREFIX && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some("it could be read as a snapshot id prefix; add a letter beyond a-f or a dash (db-2026 instead of 2026)")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::BadName {
            name: name.escape_debug().to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// The fixed bincode configuration of every encoded structure (docs/format.md).
pub fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(DECODE_LIMIT)
        .reject_trailing_bytes()
}

/// Protection class of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Tier {
    /// Routine backups, subject to retention.
    Daily,
    /// Kept until deleted by name.
    Named,
    /// Write-once baselines: never changed, never deleted by retention.
    Immaculate,
    /// Milestones (a PR, a release): never pruned automatically.
    Sacred,
    /// Taken automatically before a restore overwrites something.
    Safety,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Daily => "daily",
            Tier::Named => "named",
            Tier::Immaculate => "immaculate",
            Tier::Sacred => "sacred",
            Tier::Safety => "safety",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "daily" => Tier::Daily,
            "named" => Tier::Named,
            "immaculate" => Tier::Immaculate,
            "sacred" => Tier::Sacred,
            "safety" => Tier::Safety,
            _ => return Err(Error::UnknownTier(s.to_string())),
        })
    }
}

/// The ordered chunks of a stream: inline, or (when long) the ids of list
/// blobs that each hold up to [`LIST_MAX`] chunk ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkList {
    Inline(Vec<ChunkId>),
    Indirect(Vec<ChunkId>),
}

impl Default for ChunkList {
    fn default() -> Self {
        ChunkList::Inline(Vec::new())
    }
}

/// Encodes ids as a list blob (concatenated 32-byte ids).
pub fn encode_list(ids: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 32);
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

pub fn decode_list(bytes: &[u8]) -> Option<Vec<ChunkId>> {
    if !bytes.len().is_multiple_of(32) || bytes.len() / 32 > LIST_MAX {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| ChunkId::from_slice(c).expect("32 bytes"))
            .collect(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// A stream read from stdin or a program (a dump, a tarball).
    Stream,
    File,
    Dir,
    Symlink,
}

/// One entry of a snapshot's tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Relative path, `/`-separated, raw bytes (paths need not be UTF-8).
    pub path: Vec<u8>,
    pub kind: ItemKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Content size in bytes.
    pub size: u64,
    /// Plain BLAKE3 of the content (zero for directories and links).
    pub hash: [u8; 32],
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    pub content: ChunkList,
}

impl Item {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Totals recorded when a snapshot is written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Bytes of content in the snapshot.
    pub size: u64,
    pub items: u64,
    pub chunks: u64,
    /// Blobs this backup added to the repository, their raw and stored bytes.
    pub new_chunks: u64,
    pub new_bytes: u64,
    pub stored_bytes: u64,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub tier: Tier,
    pub labels: BTreeMap<String, String>,
    pub host: String,
    /// Creation time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub parent: Option<SnapshotId>,
    /// The chunk list of the item stream.
    pub tree: ChunkList,
    pub summary: Summary,
    /// What the source recorded (database revision, image ids, …).
    pub meta: BTreeMap<String, String>,
}

impl Snapshot {
    /// The parts this snapshot lacks ([`PARTIAL_KEY`]); empty when whole.
    pub fn partial(&self) -> Vec<PartFailure> {
        self.meta
            .get(PARTIAL_KEY)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }

    /// The object bytes: magic, version, body encoding, body. The body is
    /// sealed when the repository has a cipher.
    pub fn encode(&self, cipher: Option<&Cipher>) -> Vec<u8> {
        let mut body = codec().serialize(self).expect("snapshot serializes");
        let encoding = match cipher {
            Some(c) => {
                c.seal(SNAPSHOT_AAD, &mut body);
                ENCODING_SEALED
            }
            None => ENCODING_PLAIN,
        };
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(encoding);
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(id: &str, bytes: &[u8], cipher: Option<&Cipher>) -> Result<Self, Error> {
        let bad = |what: String| Error::Corrupt {
            id: id.to_string(),
            what,
        };
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(bad("not a snapshot object".into()));
        }
        if bytes[4] != VERSION {
            return Err(bad(format!("format version {} is not supported", bytes[4])));
        }
        let mut body = bytes[6..].to_vec();
        match (bytes[5], cipher) {
            (ENCODING_PLAIN, None) => {}
            (ENCODING_SEALED, Some(c)) => c
                .open(SNAPSHOT_AAD, &mut body)
                .map_err(|_| bad("authentication failed".into()))?,
            (e, _) => {
                return Err(bad(format!(
                    "body encoding {e} does not fit this repository"
                )))
            }
        }
        codec()
            .deserialize(&body)
            .map_err(|e| bad(format!("cannot decode: {e}")))
    }

    pub fn time(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_nanosecond(self.time_ns as i128)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// Appends one item to an item stream.
pub fn encode_item(item: &Item, out: &mut Vec<u8>) {
    let body = codec().serialize(item).expect("item serializes");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Splits the next item off the front of an item stream buffer. `Ok(None)`
/// when the buffer does not yet hold a whole item.
pub fn decode_item(buf: &[u8]) -> Result<Option<(Item, usize)>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4")) as usize;
    if len as u64 > DECODE_LIMIT {
        return Err(format!("item of {len} bytes is impossible"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let item = codec()
        .deserialize(&buf[4..4 + len])
        .map_err(|e| format!("cannot decode item: {e}"))?;
    Ok(Some((item, 4 + len)))
}

/// Finds a snapshot by `latest`, name (its newest) or unique id prefix.
/// `snaps` must be sorted oldest first.
pub fn select<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    spec: &str,
) -> Result<&'a (SnapshotId, Snapshot), Error> {
    if spec == "latest" {
        return snaps.last().ok_or_else(|| Error::NotFound(spec.into()));
    }
    // NAME~N: the Nth snapshot of the series before its newest.
    if let Some((name, back)) = spec.rsplit_once('~') {
        if let Ok(back) = back.parse::<usize>() {
            let series: Vec<_> = snaps
                .iter()
                .filter(|(_, s)| name == "latest" || s.name == name)
                .collect();
            return series
                .len()
                .checked_sub(back + 1)
                .map(|i| series[i])
                .ok_or_else(|| Error::NotFound(spec.into()));
        }
    }
    let by_name = snaps.iter().rev().find(|(_, s)| s.name == spec);
    let lower = spec.to_ascii_lowercase();
    if lower.len() < MIN_ID_PREFIX || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return by_name.ok_or_else(|| Error::NotFound(spec.into()));
    }
    let hits: Vec<_> = snaps
        .iter()
        .filter(|(id, _)| id.to_hex().starts_with(&lower))
        .collect();
    // A name that looks like an id (made before such names were refused)
    // never silently wins over an id prefix, nor the other way round.
    if let Some(named) = by_name {
        if hits.is_empty() {
            return Ok(named);
        }
        let mut ids: Vec<String> = hits.iter().map(|(id, _)| id.short()).collect();
        ids.push(format!("{} named '{}'", named.0.short(), spec));
        return Err(Error::Ambiguous {
            spec: spec.into(),
            ids: ids.join(", "),
        });
    }
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::NotFound(spec.into())),
        many => Err(Error::Ambiguous {
            spec: spec.into(),
            ids: many
                .iter()
                .map(|(id, _)| id.short())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snap(name: &str, t: i64) -> Snapshot {
        Snapshot {
            name: name.into(),
            tier: Tier::Daily,
            labels: BTreeMap::from([("k".into(), "v".into())]),
            host: "h".into(),
            time_ns: t,
            parent: None,
            tree: ChunkList::Inline(vec![ChunkId([1; 32])]),
            summary: Summary::default(),
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn snapshot_round_trip_and_rejects() {
        let s = snap("db", 5);
        let b = s.encode(None);
        assert_eq!(Snapshot::decode("x", &b, None).unwrap(), s);
        assert!(Snapshot::decode("x", &b[..b.len() - 1], None).is_err());
        let mut v = b.clone();
        v[4] = 99;
        assert!(Snapshot::decode("x", &v, None).is_err());
        let c = Cipher::new(&[4; 32]);
        let sealed = s.encode(Some(&c));
        assert_eq!(Snapshot::decode("x", &sealed, Some(&c)).unwrap(), s);
        assert!(Snapshot::decode("x", &sealed, None).is_err());
        assert!(
            Snapshot::decode("x", &b, Some(&c)).is_err(),
            "no downgrade to plain"
        );
        let mut t = sealed.clone();
        let at = t.len() / 2;
        t[at] ^= 1;
        assert!(Snapshot::decode("x", &t, Some(&c)).is_err());
    }

    #[test]
    fn names_that_read_as_selectors_are_refused() {
        for bad in [
            "", "latest", "x~1", ".", "..", "../x", "a/../b", "/a", "a/", "a//b", "8e82", "-x",
            " x", "a\u{1b}b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "db",
            "abc",
            "db-2026",
            "safety-app",
            "loaded-1",
            "é",
            "org/app",
            "ghcr.io/org/app",
        ] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn selection() {
        let snaps = vec![
            (SnapshotId([0xab; 32]), snap("db", 1)),
            (SnapshotId([0xac; 32]), snap("db", 2)),
            (SnapshotId([0x12; 32]), snap("web", 3)),
        ];
        assert_eq!(select(&snaps, "latest").unwrap().1.name, "web");
        assert_eq!(select(&snaps, "db").unwrap().0, SnapshotId([0xac; 32]));
        assert_eq!(select(&snaps, "abab").unwrap().0, SnapshotId([0xab; 32]));
        assert!(matches!(select(&snaps, "aaaa"), Err(Error::NotFound(_))));
        assert!(
            matches!(select(&snaps, "a"), Err(Error::NotFound(_))),
            "too short for an id"
        );
        let mut two = snaps.clone();
        two.push((SnapshotId([0xa0; 32]), snap("x", 4)));
        assert_eq!(select(&two, "a0a0").unwrap().1.name, "x");
        // An old name that looks like an id prefix never silently wins.
        two.push((SnapshotId([0x77; 32]), snap("a0a0", 5)));
        assert!(matches!(select(&two, "a0a0"), Err(Error::Ambiguous { .. })));
        assert_eq!(select(&two, "7777").unwrap().1.name, "a0a0");
        assert!(matches!(select(&snaps, "nope"), Err(Error::NotFound(_))));
        assert!(matches!(select(&[], "latest"), Err(Error::NotFound(_))));
        assert_eq!(select(&snaps, "db~0").unwrap().0, SnapshotId([0xac; 32]));
        assert_eq!(select(&snaps, "db~1").unwrap().0, SnapshotId([0xab; 32]));
        assert!(matches!(select(&snaps, "db~2"), Err(Error::NotFound(_))));
        assert_eq!(
            select(&snaps, "latest~2").unwrap().0,
            SnapshotId([0xab; 32])
        );
    }

    fn item_strategy() -> impl Strategy<Value = Item> {
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            0u8..4,
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
            proptest::collection::vec(any::<[u8; 32]>(), 0..5),
            any::<bool>(),
        )
            .prop_map(|(path, k, mode, mtime_ns, size, hash, target, ids, ind)| {
                let ids = ids.into_iter().map(ChunkId).collect();
                Item {
                    path,
                    kind: [
                        ItemKind::Stream,
                        ItemKind::File,
                        ItemKind::Dir,
                        ItemKind::Symlink,
                    ][k as usize],
                    mode,
                    uid: mode / 3,
                    gid: mode / 5,
                    mtime_ns,
                    size,
                    hash,
                    target,
                    content: if ind {
                        ChunkList::Indirect(ids)
                    } else {
                        ChunkList::Inline(ids)
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn item_stream_round_trip(items in proptest::collection::vec(item_strategy(), 0..20)) {
            let mut buf = vec![];
            for i in &items { encode_item(i, &mut buf); }
            let mut at = 0;
            let mut back = vec![];
            while let Some((item, n)) = decode_item(&buf[at..]).unwrap() {
                back.push(item);
                at += n;
            }
            prop_assert_eq!(at, buf.len());
            prop_assert_eq!(back, items);
        }

        #[test]
        fn item_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_item(&bytes);
        }

        #[test]
        fn snapshot_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = b"RLCS\x01\x00".to_vec();
            v.extend(bytes);
            let _ = Snapshot::decode("x", &v, None);
        }

        #[test]
        fn list_round_trip(ids in proptest::collection::vec(any::<[u8; 32]>(), 0..100)) {
            let ids: Vec<ChunkId> = ids.into_iter().map(ChunkId).collect();
            prop_assert_eq!(decode_list(&encode_list(&ids)).unwrap(), ids);
        }
    }
}
