//! Blob bodies: one tag byte, then the payload (raw, zstd, or a delta
//! against a base chunk: a zstd frame with the base as dictionary in
//! format version 2, a copy/insert list from version 3; see delta/).
//!
//! A blob is stored raw when zstd would save less than 1/32 of it: already
//! compressed data (gzip layers, media) then costs one byte and no
//! decompression on restore.

use std::io;
use thiserror::Error;

pub const TAG_RAW: u8 = 0;
pub const TAG_ZSTD: u8 = 1;
pub const TAG_DELTA: u8 = 2;
pub const TAG_COPY: u8 = 3;

#[derive(Debug, Error)]
pub enum Error {
    #[error("empty blob body")]
    Empty,
    #[error("unknown compression tag {0}")]
    UnknownTag(u8),
    #[error("raw blob has {got} bytes, expected {want}")]
    Length { got: usize, want: usize },
    #[error("zstd: {0}")]
    Zstd(io::Error),
    #[error("{0}")]
    Delta(io::Error),
    #[error("a delta blob cannot be decoded without its base")]
    NoBase,
    #[error("a whole blob was given a base")]
    NotDelta,
}

/// Which delta blobs a [`Compressor`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaFormat {
    /// Tag 2, format version 2: a zstd frame with the base as dictionary.
    ZstdDict,
    /// Tag 3, format version 3: a copy/insert list.
    Copy,
}

/// A reusable zstd context (one per worker thread).
pub struct Compressor {
    zstd: zstd::bulk::Compressor<'static>,
    delta: zstd::zstd_safe::CCtx<'static>,
    format: DeltaFormat,
    copy: crate::delta::copy::Encoder,
}

impl Compressor {
    /// A compressor writing deltas of the newest format.
    pub fn new(level: i32) -> io::Result<Self> {
        Self::with_deltas(level, DeltaFormat::Copy)
    }

    pub fn with_deltas(level: i32, format: DeltaFormat) -> io::Result<Self> {
        Ok(Compressor {
            zstd: zstd::bulk::Compressor::new(level)?,
            delta: zstd::zstd_safe::CCtx::create(),
            format,
            copy: Default::default(),
        })
    }

    /// Encodes `data` into `out` (cleared first) as a delta against
    /// `base`; false (and `out` empty) when no delta is worth writing.
    pub fn encode_delta(
        &mut self,
        data: &[u8],
        base: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        out.clear();
        match self.format {
            DeltaFormat::ZstdDict => {
                out.push(TAG_DELTA);
                crate::delta::encode(&mut self.delta, data, base, out)?;
            }
            DeltaFormat::Copy => {
                out.push(TAG_COPY);
                if !self.copy.encode(&mut self.delta, data, base, out)? {
                    out.clear();
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Encodes `data` into `out` (cleared first) as tag + payload.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        let bound = zstd::zstd_safe::compress_bound(data.len());
        out.resize(1 + bound, 0);
        out[0] = TAG_ZSTD;
        let n = self.zstd.compress_to_buffer(data, &mut out[1..])?;
        if n + n / 32 + 1 >= data.len() {
            out.clear();
            out.push(TAG_RAW);
            out.extend_from_slice(data);
        } else {
            out.truncate(1 + n);
        }
        Ok(())
    }
}

/// A reusable zstd decompression context.
pub struct Decompressor {
    zstd: zstd::bulk::Decompressor<'static>,
    delta: zstd::zstd_safe::DCtx<'static>,
    /// A copy/insert delta's instruction list.
    ops: Vec<u8>,
}

impl Decompressor {
    pub fn new() -> io::Result<Self> {
        Ok(Decompressor {
            zstd: zstd::bulk::Decompressor::new()?,
            delta: zstd::zstd_safe::DCtx::create(),
            ops: Vec::new(),
        })
    }

    /// Decodes a body whose plaintext is `raw_len` bytes, appending it to
    /// `out` (into its spare capacity: no zero-filling first). A delta body
    /// needs the plaintext of its base.
    pub fn decode_with(
        &mut self,
        body: &[u8],
        base: Option<&[u8]>,
        raw_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        match (body.first(), base) {
            (Some(&TAG_DELTA), Some(base)) => {
                crate::delta::decode(&mut self.delta, &body[1..], base, raw_len, out)
                    .map_err(Error::Zstd)
            }
            (Some(&TAG_COPY), Some(base)) => crate::delta::copy::decode(
                &mut self.delta,
                &body[1..],
                base,
                raw_len,
                &mut self.ops,
                out,
            )
            .map_err(Error::Delta),
            (Some(&TAG_DELTA | &TAG_COPY), None) => Err(Error::NoBase),
            (_, Some(_)) => Err(Error::NotDelta),
            (_, None) => self.decode(body, raw_len, out),
        }
    }

    /// Decodes a whole (non-delta) body whose plaintext is `raw_len` bytes,
    /// appending it to `out`.
    pub fn decode(&mut self, body: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        let (&tag, payload) = body.split_first().ok_or(Error::Empty)?;
        match tag {
            TAG_RAW => {
                if payload.len() != raw_len {
                    return Err(Error::Length {
                        got: payload.len(),
                        want: raw_len,
                    });
                }
                out.extend_from_slice(payload);
            }
            TAG_ZSTD => {
                let start = out.len();
                out.reserve(raw_len);
                let mut tail = std::io::Cursor::new(&mut *out);
                tail.set_position(start as u64);
                let n = self
                    .zstd
                    .decompress_to_buffer(payload, &mut tail)
                    .map_err(Error::Zstd)?;
                if n != raw_len || out.len() != start + raw_len {
                    out.truncate(start);
                    return Err(Error::Length {
                        got: n,
                        want: raw_len,
                    });
                }
            }
            TAG_DELTA | TAG_COPY => return Err(Error::NoBase),
            t => return Err(Error::UnknownTag(t)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_compresses_random_stays_raw() {
        let mut c = Compressor::new(3).unwrap();
        let mut d = Decompressor::new().unwrap();
        let text = b"INSERT INTO people VALUES (1, 'Ada');\n".repeat(1000);
        let mut out = vec![];
        c.encode(&text, &mut out).unwrap();
        assert_eq!(out[0], TAG_ZSTD);
        assert!(out.len() < text.len() / 10);
        let mut back = b"prefix".to_vec();
        d.decode(&out, text.len(), &mut back).unwrap();
        assert_eq!(&back[..6], b"prefix");
        assert_eq!(&back[6..], &text[..]);
        back.clear();

        let noise: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        c.encode(&noise, &mut out).unwrap();
        if out[0] == TAG_RAW {
            assert_eq!(out.len(), noise.len() + 1);
        }
        d.decode(&out, noise.len(), &mut back).unwrap();
        assert_eq!(back, noise);
    }

    #[test]
    fn each_delta_format_writes_its_tag_and_both_decode() {
        let base = b"INSERT INTO people VALUES (1, 'Ada', 'London');\n".repeat(400);
        let mut data = base.clone();
        data[5000..5004].copy_from_slice(b"Bob,");
        let mut d = Decompressor::new().unwrap();
        for (format, tag) in [
            (DeltaFormat::ZstdDict, TAG_DELTA),
            (DeltaFormat::Copy, TAG_COPY),
        ] {
            let mut c = Compressor::with_deltas(1, format).unwrap();
            let mut out = vec![];
            assert!(c.encode_delta(&data, &base, &mut out).unwrap());
            assert_eq!(out[0], tag);
            assert!(out.len() < 100, "{format:?}: {} bytes", out.len());
            let mut back = vec![];
            d.decode_with(&out, Some(&base), data.len(), &mut back)
                .unwrap();
            assert!(back == data);
            assert!(matches!(
                d.decode_with(&out, None, data.len(), &mut back),
                Err(Error::NoBase)
            ));
            assert!(matches!(
                d.decode(&out, data.len(), &mut back),
                Err(Error::NoBase)
            ));
        }
        assert_eq!(Compressor::new(1).unwrap().format, DeltaFormat::Copy);
    }

    #[test]
    fn bad_bodies_are_errors() {
        let mut d = Decompressor::new().unwrap();
        let mut out = vec![];
        assert!(matches!(d.decode(&[], 0, &mut out), Err(Error::Empty)));
        assert!(matches!(
            d.decode(&[9, 1], 1, &mut out),
            Err(Error::UnknownTag(9))
        ));
        assert!(matches!(
            d.decode(&[0, 1, 2], 1, &mut out),
            Err(Error::Length { .. })
        ));
        assert!(d.decode(&[1, 1, 2, 3], 10, &mut out).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), level in 1i32..6) {
            let mut c = Compressor::new(level).unwrap();
            let mut d = Decompressor::new().unwrap();
            let mut body = vec![];
            c.encode(&data, &mut body).unwrap();
            let mut back = vec![];
            d.decode(&body, data.len(), &mut back).unwrap();
            prop_assert_eq!(back, data);
        }
    }
}
