//! Pack files: immutable containers of blobs, ending in a trailer that lists
//! them, so the index can always be rebuilt from the packs alone.
//!
//! ```text
//! pack    = header blob* trailer footer
//! header  = "RELICPK1"
//! blob    = body (compress.rs: tag byte + payload)
//! trailer = count:u32 entry*
//! entry   = id[32] flags:u8 offset:u32 length:u32 raw_length:u32
//!           [base_id[32] depth:u8]   when flags & 0x20 (a delta)
//!           [sketch: 3 × u64]        when flags & 0x10
//!           flags & 0x0f is the blob kind (0 data, 1 meta)
//!           (the trailer is sealed with the repository cipher when it is encrypted)
//! footer  = trailer_length:u32 trailer_check[16] "RLCT"
//! ```
//! All integers little-endian. `trailer_check` is the first 16 bytes of the
//! plain BLAKE3 of the trailer. A pack's name is the keyed BLAKE3 of all its
//! bytes (see docs/format.md).

use crate::crypto::Cipher;
use crate::id::{ChunkId, PackId};
use crate::keys::Keys;
use crate::store::{Kind, Local, ObjectFile, TempObject};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use thiserror::Error;

pub const HEADER: &[u8; 8] = b"RELICPK1";
pub const FOOTER_MAGIC: &[u8; 4] = b"RLCT";
pub const FOOTER_LEN: usize = 4 + 16 + 4;
/// The fixed part of a trailer entry.
pub const ENTRY_LEN: usize = 32 + 1 + 4 + 4 + 4;
const FLAG_SKETCH: u8 = 0x10;
const FLAG_DELTA: u8 = 0x20;
const KIND_MASK: u8 = 0x0f;
const SKETCH_LEN: usize = 8 * crate::delta::SUPER_FEATURES;
/// A pack is sealed once it reaches this size.
pub const TARGET_SIZE: u64 = 32 << 20;
/// Packs are never larger than this (readers refuse bigger trailers).
pub const MAX_SIZE: u64 = 1 << 30;

#[derive(Debug, Error)]
pub enum Error {
    #[error("pack {pack}: {source}")]
    Io { pack: String, source: io::Error },
    #[error("pack {pack} is damaged: {what}")]
    Corrupt { pack: String, what: String },
}

fn corrupt(pack: &str, what: impl Into<String>) -> Error {
    Error::Corrupt {
        pack: pack.to_string(),
        what: what.into(),
    }
}

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of a stream.
    Data = 0,
    /// A chunk list or a piece of a snapshot's item stream.
    Meta = 1,
}

impl Entry {
    /// An entry for a blob not yet written (offset and length are set by
    /// [`PackWriter::add`]).
    pub fn new(id: ChunkId, kind: BlobKind, raw_length: u32) -> Self {
        Entry {
            id,
            kind,
            offset: 0,
            length: 0,
            raw_length,
            base: None,
            sketch: None,
        }
    }
}

impl BlobKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Meta),
            _ => None,
        }
    }
}

/// The chunk a delta blob is encoded against, and the delta's depth (its
/// base's depth + 1; a whole chunk has depth 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Base {
    pub id: ChunkId,
    pub depth: u8,
}

/// One blob as listed in a trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    /// Set when the body is a delta against another chunk.
    pub base: Option<Base>,
    /// The resemblance sketch of a data chunk (see delta.rs).
    pub sketch: Option<crate::delta::Sketch>,
}

pub fn encode_trailer(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * (ENTRY_LEN + SKETCH_LEN));
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.0);
        let mut flags = e.kind as u8;
        if e.base.is_some() {
            flags |= FLAG_DELTA;
        }
        if e.sketch.is_some() {
            flags |= FLAG_SKETCH;
        }
        out.push(flags);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.raw_length.to_le_bytes());
        if let Some(b) = &e.base {
            out.extend_from_slice(&b.id.0);
            out.push(b.depth);
        }
        if let Some(sk) = &e.sketch {
            for f in sk {
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
    }
    out
}

/// Decodes a trailer; `body_end` is where the blobs stop (the trailer's
/// offset), so every entry can be bounds-checked.
pub fn decode_trailer(pack: &str, bytes: &[u8], body_end: u64) -> Result<Vec<Entry>, Error> {
    let count = u32::from_le_bytes(
        bytes
            .get(..4)
            .ok_or_else(|| corrupt(pack, "trailer shorter than its count"))?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    // Every entry is at least ENTRY_LEN bytes: a count the trailer cannot
    // hold is refused before anything is allocated for it.
    if count > (bytes.len() - 4) / ENTRY_LEN {
        return Err(corrupt(
            pack,
            format!(
                "trailer of {} bytes cannot hold {count} entries",
                bytes.len()
            ),
        ));
    }
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
    let short = || corrupt(pack, "trailer ends inside an entry");
    let mut out = Vec::with_capacity(count);
    let mut rest = &bytes[4..];
    for _ in 0..count {
        let raw = rest.get(..ENTRY_LEN).ok_or_else(short)?;
        rest = &rest[ENTRY_LEN..];
        let flags = raw[32];
        let kind = BlobKind::from_u8(flags & KIND_MASK)
            .filter(|_| flags & !(KIND_MASK | FLAG_SKETCH | FLAG_DELTA) == 0)
            .ok_or_else(|| corrupt(pack, format!("unknown blob kind {flags:#x}")))?;
        let base = if flags & FLAG_DELTA != 0 {
            let b = rest.get(..33).ok_or_else(short)?;
            rest = &rest[33..];
            if b[32] == 0 || kind != BlobKind::Data {
                return Err(corrupt(pack, "delta entry with depth 0 or not of data"));
            }
            Some(Base {
                id: ChunkId::from_slice(&b[..32]).expect("32 bytes"),
                depth: b[32],
            })
        } else {
            None
        };
        let sketch = if flags & FLAG_SKETCH != 0 {
            let b = rest.get(..SKETCH_LEN).ok_or_else(short)?;
            rest = &rest[SKETCH_LEN..];
            let mut sk = [0u64; crate::delta::SUPER_FEATURES];
            for (f, w) in sk.iter_mut().zip(b.chunks_exact(8)) {
                *f = u64::from_le_bytes(w.try_into().expect("8"));
            }
            Some(sk)
        } else {
            None
        };
        let e = Entry {
            id: ChunkId::from_slice(&raw[..32]).expect("32 bytes"),
            kind,
            offset: u32_at(raw, 33),
            length: u32_at(raw, 37),
            raw_length: u32_at(raw, 41),
            base,
            sketch,
        };
        if (e.offset as u64) < HEADER.len() as u64
            || e.offset as u64 + e.length as u64 > body_end
            || e.length == 0
        {
            return Err(corrupt(
                pack,
                format!("blob {} lies outside the pack", e.id.short()),
            ));
        }
        out.push(e);
    }
    if !rest.is_empty() {
        return Err(corrupt(
            pack,
            format!("{} bytes after the last trailer entry", rest.len()),
        ));
    }
    Ok(out)
}

/// Associated data of a sealed trailer.
const TRAILER_AAD: &[u8] = b"relic pack trailer";

/// Where a pack's bytes are read from: its file, its bytes, or its tail
/// fetched from object storage.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for ObjectFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self, buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self, buf, offset)
    }
}

fn read_slice(bytes: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let src = start
        .checked_add(buf.len())
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
    buf.copy_from_slice(src);
    Ok(())
}

/// The tail of a pack fetched from object storage (the bytes from
/// `start` to its end), served from memory: what reading its trailer needs.
pub struct Tail {
    pub start: u64,
    pub bytes: Vec<u8>,
}

impl ReadAt for Tail {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = offset.checked_sub(self.start).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("byte {offset} is before the fetched tail"),
            )
        })?;
        read_slice(&self.bytes, buf, at)
    }
}

/// The range of a pack of `len` bytes that [`read_trailer_at_end`] reads
/// when its trailer is at most `tail` bytes.
pub fn trailer_range(len: u64, tail: u64) -> std::ops::Range<u64> {
    len.saturating_sub(tail.max(FOOTER_LEN as u64))..len
}

/// The length of the trailer the footer at the end of `tail` announces,
/// if it is a footer.
pub fn trailer_len(tail: &[u8]) -> Option<u64> {
    let f: &[u8; FOOTER_LEN] = tail
        .get(tail.len().checked_sub(FOOTER_LEN)?..)?
        .try_into()
        .ok()?;
    (&f[20..] == FOOTER_MAGIC).then(|| u32::from_le_bytes(f[..4].try_into().expect("4")) as u64)
}

/// Reads and checks (and with a cipher, opens) the trailer of a pack of
/// `len` bytes, and checks its header.
pub fn read_trailer(
    pack: &str,
    file: &(impl ReadAt + ?Sized),
    len: u64,
    cipher: Option<&Cipher>,
) -> Result<Vec<Entry>, Error> {
    let entries = read_trailer_at_end(pack, file, len, cipher)?;
    let mut header = [0u8; 8];
    file.read_exact_at(&mut header, 0)
        .map_err(|source| Error::Io {
            pack: pack.to_string(),
            source,
        })?;
    if &header != HEADER {
        return Err(corrupt(pack, "bad header"));
    }
    Ok(entries)
}

/// [`read_trailer`] from the end of a pack alone, without its header:
/// what object storage is asked for (one ranged GET of the tail). The
/// trailer's checksum and authentication still hold; the header is
/// checked wherever the whole pack is read.
pub fn read_trailer_at_end(
    pack: &str,
    file: &(impl ReadAt + ?Sized),
    len: u64,
    cipher: Option<&Cipher>,
) -> Result<Vec<Entry>, Error> {
    let io_err = |source| Error::Io {
        pack: pack.to_string(),
        source,
    };
    if len < (HEADER.len() + FOOTER_LEN) as u64 || len > MAX_SIZE {
        return Err(corrupt(pack, format!("impossible size {len}")));
    }
    let mut footer = [0u8; FOOTER_LEN];
    file.read_exact_at(&mut footer, len - FOOTER_LEN as u64)
        .map_err(io_err)?;
    if &footer[20..] != FOOTER_MAGIC {
        return Err(corrupt(pack, "footer magic missing (truncated?)"));
    }
    let tlen = u32::from_le_bytes(footer[..4].try_into().expect("4")) as u64;
    let body_end = len
        .checked_sub(FOOTER_LEN as u64 + tlen)
        .filter(|&e| e >= HEADER.len() as u64)
        .ok_or_else(|| corrupt(pack, "trailer length exceeds the pack"))?;
    let mut trailer = vec![0u8; tlen as usize];
    file.read_exact_at(&mut trailer, body_end).map_err(io_err)?;
    if blake3::hash(&trailer).as_bytes()[..16] != footer[4..20] {
        return Err(corrupt(pack, "trailer checksum mismatch"));
    }
    if let Some(c) = cipher {
        c.open(TRAILER_AAD, &mut trailer)
            .map_err(|_| corrupt(pack, "trailer authentication failed"))?;
    }
    decode_trailer(pack, &trailer, body_end)
}

/// A pack being written to a temp file.
pub struct PackWriter {
    file: BufWriter<TempObject>,
    hasher: blake3::Hasher,
    entries: Vec<Entry>,
    size: u64,
    cipher: Option<Cipher>,
}

/// What a pack would weigh, counted without writing it: the blobs a dry
/// run would pack, and the exact size of the file they would make.
pub struct PackSizer {
    entries: Vec<Entry>,
    size: u64,
    cipher: Option<Cipher>,
}

impl PackSizer {
    pub fn new(keys: &Keys) -> Self {
        PackSizer {
            entries: Vec::new(),
            size: HEADER.len() as u64,
            cipher: keys.cipher().cloned(),
        }
    }

    /// Counts a blob as [`PackWriter::add`] would write it.
    pub fn add(&mut self, mut entry: Entry, body_len: usize) {
        entry.offset = self.size as u32;
        entry.length = body_len as u32;
        self.size += body_len as u64;
        self.entries.push(entry);
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The size of the sealed file: blobs, trailer (sealed as
    /// [`PackWriter::seal`] seals it) and footer.
    pub fn sealed_size(&self) -> u64 {
        let trailer = sealed_trailer(&self.entries, self.cipher.as_ref());
        self.size + (trailer.len() + FOOTER_LEN) as u64
    }
}

/// A pack's trailer as written: its entries, sealed when there is a cipher.
fn sealed_trailer(entries: &[Entry], cipher: Option<&Cipher>) -> Vec<u8> {
    let mut trailer = encode_trailer(entries);
    if let Some(c) = cipher {
        c.seal(TRAILER_AAD, &mut trailer);
    }
    trailer
}

/// A pack sealed under its final name.
#[derive(Debug)]
pub struct Sealed {
    pub id: PackId,
    pub size: u64,
    pub entries: Vec<Entry>,
}

impl PackWriter {
    pub fn create(backend: &Local, keys: &Keys) -> io::Result<Self> {
        let mut w = PackWriter {
            file: BufWriter::with_capacity(1 << 20, backend.temp_object()?),
            hasher: keys.object_hasher(),
            entries: Vec::new(),
            size: 0,
            cipher: keys.cipher().cloned(),
        };
        w.write(HEADER)?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.file.write_all(b)?;
        self.hasher.update(b);
        self.size += b.len() as u64;
        Ok(())
    }

    /// Appends a blob body; `entry` says what it is (its offset and length
    /// are filled in here).
    pub fn add(&mut self, mut entry: Entry, body: &[u8]) -> io::Result<()> {
        entry.offset = self.size as u32;
        entry.length = body.len() as u32;
        self.write(body)?;
        self.entries.push(entry);
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes trailer and footer, fsyncs, and publishes the pack under its
    /// id. On failure (a full disk, say) the temp file is removed.
    pub fn seal(mut self, backend: &Local) -> io::Result<Sealed> {
        let trailer = sealed_trailer(&self.entries, self.cipher.as_ref());
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        footer.extend_from_slice(&blake3::hash(&trailer).as_bytes()[..16]);
        footer.extend_from_slice(FOOTER_MAGIC);
        self.write(&trailer)?;
        self.write(&footer)?;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        let id = PackId::from(self.hasher.finalize());
        file.publish(backend, Kind::Pack, &id.to_hex())?;
        Ok(Sealed {
            id,
            size: self.size,
            entries: self.entries,
        })
    }

    /// Drops an unfinished pack (its temp file is removed).
    pub fn abandon(self) {}
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sizer_counts_what_the_writer_writes() {
        let d = tempfile::tempdir().unwrap();
        let backend = Local::new(d.path());
        backend.create_layout().unwrap();
        let keys = Keys::from_master([5; 32], true);
        let mut w = PackWriter::create(&backend, &keys).unwrap();
        let mut z = PackSizer::new(&keys);
        for i in 0..50u32 {
            let body = vec![i as u8; 100 + i as usize * 37];
            let mut e = Entry::new(keys.chunk_id(&body), BlobKind::Data, body.len() as u32);
            e.sketch = (i % 3 == 0).then_some([u64::from(i), 1, 2]);
            w.add(e.clone(), &body).unwrap();
            z.add(e, body.len());
        }
        assert_eq!(z.sealed_size(), w.seal(&backend).unwrap().size);
    }
    use std::fs::{self, File};

    fn entry_strategy() -> impl Strategy<Value = Entry> {
        (
            any::<[u8; 32]>(),
            0u8..2,
            8u32..1000,
            1u32..1000,
            any::<u32>(),
            proptest::option::of((any::<[u8; 32]>(), 1u8..=255)),
            proptest::option::of(any::<[u64; 3]>()),
        )
            .prop_map(|(id, k, offset, length, raw_length, base, sketch)| Entry {
                id: ChunkId(id),
                kind: BlobKind::from_u8(k).unwrap(),
                offset,
                length,
                raw_length,
                base: base.filter(|_| k == 0).map(|(b, depth)| Base {
                    id: ChunkId(b),
                    depth,
                }),
                sketch,
            })
    }

    proptest! {
        #[test]
        fn trailer_round_trip(entries in proptest::collection::vec(entry_strategy(), 0..50)) {
            let bytes = encode_trailer(&entries);
            prop_assert_eq!(decode_trailer("p", &bytes, 2000).unwrap(), entries);
        }

        #[test]
        fn trailer_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_trailer("p", &bytes, 1 << 20);
        }
    }

    #[test]
    fn write_seal_read() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path());
        b.create_layout().unwrap();
        let keys = Keys::from_master([3; 32], true);
        let mut w = PackWriter::create(&b, &keys).unwrap();
        w.add(
            Entry::new(keys.chunk_id(b"a"), BlobKind::Data, 1),
            &[0, b'a'],
        )
        .unwrap();
        w.add(
            Entry::new(keys.chunk_id(b"bb"), BlobKind::Meta, 2),
            &[0, b'b', b'b'],
        )
        .unwrap();
        let sealed = w.seal(&b).unwrap();
        let name = sealed.id.to_hex();
        let bytes = b.read(Kind::Pack, &name).unwrap();
        assert_eq!(sealed.size, bytes.len() as u64);
        let mut h = keys.object_hasher();
        h.update(&bytes);
        assert_eq!(PackId::from(h.finalize()), sealed.id);
        let f = b.open(Kind::Pack, &name).unwrap();
        let entries = read_trailer(&name, &f, bytes.len() as u64, keys.cipher()).unwrap();
        assert_eq!(entries, sealed.entries);
        assert_eq!(entries[1].offset, 10);

        // A flipped trailer byte is caught by the checksum, truncation by the magic.
        let mut bad = bytes.clone();
        let at = bad.len() - FOOTER_LEN - 3;
        bad[at] ^= 1;
        fs::write(d.path().join("bad"), &bad).unwrap();
        let f = File::open(d.path().join("bad")).unwrap();
        assert!(matches!(
            read_trailer("bad", &f, bad.len() as u64, keys.cipher()),
            Err(Error::Corrupt { .. })
        ));
        let f = File::open(b.path(Kind::Pack, &name)).unwrap();
        assert!(read_trailer(&name, &f, bytes.len() as u64 - 1, keys.cipher()).is_err());
        // Without the key the sealed trailer does not decode.
        assert!(read_trailer(&name, &f, bytes.len() as u64, None).is_err());
    }
}
