//! The tar splitter: reads a `docker save` tar and passes it through
//! unchanged, ending a chunking segment before and after every big entry
//! ([`TarSplitter`]), and keeps the small entries that describe the images.
//! Also the tar header decoding the retagger shares.

use super::archive::{parse_images, ArchiveImage};
use super::{Error, Result};
use crate::chunker::Segmented;
use std::collections::BTreeMap;
use std::io::{self, Read};

/// The tar block size: headers and padded data come in blocks.
pub(super) const BLOCK: usize = 512;
/// Entries at least this large are chunked as segments of their own.
const OWN_SEGMENT: u64 = 64 << 10;
/// Entries up to this size are kept in memory for the image records.
pub(super) const CAPTURE_MAX: u64 = 1 << 20;
/// At most this much is kept in all.
const CAPTURE_TOTAL: usize = 64 << 20;

/// A tar entry seen while splitting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading headers and small entries into `out`.
    Headers,
    /// The segment ends; a big entry's data of `left` bytes follows.
    EndBeforeData {
        left: u64,
    },
    /// Passing a big entry's data (padding included) through.
    Data {
        left: u64,
    },
    /// The segment of a big entry ends; headers follow.
    EndAfterData,
    /// After the end-of-archive block: the rest passes through as it is.
    Trailer,
    Done,
}

/// Passes a tar stream through unchanged, ending a segment before and after
/// the data of every big entry ([`Segmented`]), and keeps the small entries
/// that describe the images.
pub struct TarSplitter<R> {
    inner: R,
    state: State,
    out: Vec<u8>,
    pos: usize,
    offset: u64,
    long_name: Option<String>,
    pax_path: Option<String>,
    pax_size: Option<u64>,
    entries: Vec<Entry>,
    captured: BTreeMap<String, Vec<u8>>,
    captured_bytes: usize,
}

impl<R: Read> TarSplitter<R> {
    pub fn new(inner: R) -> Self {
        TarSplitter {
            inner,
            state: State::Headers,
            out: Vec::new(),
            pos: 0,
            offset: 0,
            long_name: None,
            pax_path: None,
            pax_size: None,
            entries: Vec::new(),
            captured: BTreeMap::new(),
            captured_bytes: 0,
        }
    }

    /// The regular-file entries seen so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The images the archive describes (after the whole stream was read).
    pub fn images(&self) -> Result<Vec<ArchiveImage>> {
        if self.state != State::Done {
            return Err(Error::BadArchive(
                "the archive was not read to its end".into(),
            ));
        }
        parse_images(&self.captured, &self.entries)
    }

    fn bad(&self, at: u64, what: impl std::fmt::Display) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a valid tar archive: at byte {at}: {what}"),
        )
    }

    fn truncated(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the tar archive is truncated: it ends at byte {} inside an entry or before its end-of-archive marker",
                self.offset
            ),
        )
    }

    /// Reads headers and small entries into `out` until a big entry, the
    /// end-of-archive block, or 1 MiB of output.
    fn fill_headers(&mut self) -> io::Result<()> {
        while self.out.len() < 1 << 20 {
            let at = self.offset;
            let start = self.out.len();
            self.out.resize(start + BLOCK, 0);
            if crate::chunker::read_full(&mut self.inner, &mut self.out[start..])? < BLOCK {
                return Err(self.truncated());
            }
            self.offset += BLOCK as u64;
            let h: [u8; BLOCK] = self.out[start..].try_into().expect("one block");
            if h.iter().all(|&b| b == 0) {
                self.state = State::Trailer;
                return Ok(());
            }
            let hdr = parse_header(&h).map_err(|w| self.bad(at, w))?;
            let meta = matches!(hdr.typeflag, b'x' | b'g' | b'L' | b'K');
            let (name, size) = if meta {
                (hdr.name, hdr.size)
            } else {
                let name = self
                    .long_name
                    .take()
                    .or(self.pax_path.take())
                    .unwrap_or(hdr.name);
                let size = self.pax_size.take().unwrap_or(hdr.size);
                match hdr.typeflag {
                    // Header-only types: no data whatever the size field says.
                    b'1'..=b'6' => (name, 0),
                    b'S' => return Err(self.bad(at, "GNU sparse entries are not supported")),
                    _ => (name, size),
                }
            };
            let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
            if !meta && size >= OWN_SEGMENT {
                self.entries.push(Entry { name, size });
                self.state = State::EndBeforeData { left: padded };
                return Ok(());
            }
            let start = self.out.len();
            self.out.resize(start + padded as usize, 0);
            if (crate::chunker::read_full(&mut self.inner, &mut self.out[start..])? as u64) < padded
            {
                return Err(self.truncated());
            }
            self.offset += padded;
            let data = &self.out[start..start + size as usize];
            match hdr.typeflag {
                b'x' => {
                    let (path, sz) = parse_pax(data).map_err(|w| self.bad(at, w))?;
                    self.pax_path = path;
                    self.pax_size = sz;
                }
                b'L' => self.long_name = Some(cstr(data)),
                b'g' | b'K' => {}
                b'0' | 0 | b'7' => {
                    if size <= CAPTURE_MAX && self.captured_bytes + data.len() <= CAPTURE_TOTAL {
                        self.captured_bytes += data.len();
                        self.captured.insert(name.clone(), data.to_vec());
                    }
                    self.entries.push(Entry { name, size });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarSplitter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.out.clear();
            self.pos = 0;
            match self.state {
                State::Headers => self.fill_headers()?,
                State::EndBeforeData { .. } | State::EndAfterData | State::Done => return Ok(0),
                State::Data { left } => {
                    let want = buf.len().min(left.min(usize::MAX as u64) as usize);
                    let n = loop {
                        match self.inner.read(&mut buf[..want]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    if n == 0 {
                        return Err(self.truncated());
                    }
                    self.offset += n as u64;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::EndAfterData
                    } else {
                        State::Data { left }
                    };
                    return Ok(n);
                }
                State::Trailer => {
                    let n = loop {
                        match self.inner.read(buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    self.offset += n as u64;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
            }
        }
    }
}

impl<R: Read> Segmented for TarSplitter<R> {
    fn next_segment(&mut self) -> io::Result<bool> {
        match self.state {
            State::EndBeforeData { left } => self.state = State::Data { left },
            State::EndAfterData => self.state = State::Headers,
            State::Done => return Ok(false),
            // Only reached if a reader gave up early: nothing more to cut.
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The fields of a tar header the splitter and the retagger use.
pub(super) struct Header {
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) typeflag: u8,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A numeric field: octal, or GNU base-256 when the high bit is set.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    octal(field)
}

pub(super) fn parse_header(h: &[u8; BLOCK]) -> std::result::Result<Header, String> {
    let recorded = octal(&h[148..156]).ok_or("the header checksum field is not a number")?;
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if recorded != unsigned && recorded as i64 != signed {
        return Err("bad header checksum".into());
    }
    let size = number(&h[124..136]).ok_or("the size field is not a number")?;
    let mut name = cstr(&h[..100]);
    if &h[257..262] == b"ustar" {
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok(Header {
        name,
        size,
        typeflag: h[156],
    })
}

/// The `path` and `size` records of a pax extended header.
fn parse_pax(mut data: &[u8]) -> std::result::Result<(Option<String>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a pax record has no length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a pax record length is not a number")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("a pax record is malformed".into());
        }
        let rec = &data[sp + 1..len - 1];
        if let Some(eq) = rec.iter().position(|&b| b == b'=') {
            let (k, v) = (&rec[..eq], &rec[eq + 1..]);
            match k {
                b"path" => path = Some(String::from_utf8_lossy(v).into_owned()),
                b"size" => {
                    size = Some(
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or("the pax size is not a number")?,
                    )
                }
                _ => {}
            }
        }
        data = &data[len..];
    }
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::testing::{noise, segments, tar};

    #[test]
    fn splits_around_big_entries_and_passes_bytes_through() {
        let layer = noise(200_000, 7);
        let t = tar(&[
            ("abc/VERSION", b"1.0".to_vec()),
            ("abc/layer.tar", layer.clone()),
            ("manifest.json", b"[]".to_vec()),
        ]);
        let mut sp = TarSplitter::new(&t[..]);
        let segs = segments(&mut sp).unwrap();
        assert_eq!(segs.concat(), t, "the stream passes through unchanged");
        assert_eq!(segs.len(), 3);
        assert_eq!(
            &segs[1][..layer.len()],
            &layer[..],
            "the layer is a segment of its own"
        );
        assert_eq!(segs[1].len(), layer.len().div_ceil(BLOCK) * BLOCK);
        assert_eq!(
            sp.entries(),
            &[
                Entry {
                    name: "abc/VERSION".into(),
                    size: 3
                },
                Entry {
                    name: "abc/layer.tar".into(),
                    size: 200_000
                },
                Entry {
                    name: "manifest.json".into(),
                    size: 2
                },
            ]
        );
    }

    #[test]
    fn truncated_and_foreign_input_fail() {
        let t = tar(&[("a/layer.tar", noise(100_000, 3)), ("b", b"x".to_vec())]);
        for cut in [100, 512, 700, 50_000, t.len() - 2 * BLOCK] {
            let e = segments(TarSplitter::new(&t[..cut])).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
        }
        let e = segments(TarSplitter::new(&noise(4096, 9)[..])).unwrap_err();
        assert!(e.to_string().contains("not a valid tar"), "{e}");
    }

    #[test]
    fn pax_and_base256_sizes() {
        assert_eq!(
            parse_pax(b"30 path=some/very/long/name.x\n13 size=4096\n").unwrap(),
            (Some("some/very/long/name.x".into()), Some(4096))
        );
        assert!(parse_pax(b"99 path=x\n").is_err());
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[10] = 0x01;
        f[11] = 0x02;
        assert_eq!(number(&f), Some(0x0102));
        assert_eq!(number(b"00000001000\0"), Some(512));
    }
}
