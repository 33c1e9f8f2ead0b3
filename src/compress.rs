//! Blob bodies: one tag byte, then the payload (raw, zstd, or a zstd delta
//! against a base chunk: see delta.rs).
//!
//! A blob is stored raw when zstd would save less than 1/32 of it: already
//! compressed data (gzip layers, media) then costs one byte and no
//! decompression on restore.

use std::io;
use thiserror::Error;

pub const TAG_RAW: u8 = 0;
pub const TAG_ZSTD: u8 = 1;
pub const TAG_DELTA: u8 = 2;

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
    #[error("a delta blob cannot be decoded without its base")]
    NoBase,
    #[error("a whole blob was given a base")]
    NotDelta,
}

/// A reusable zstd context (one per worker thread).
pub struct Compressor {
    zstd: zstd::bulk::Compressor<'static>,
    delta: zstd::zstd_safe::CCtx<'static>,
}

impl Compressor {
    pub fn new(level: i32) -> io::Result<Self> {
        Ok(Compressor {
            zstd: zstd::bulk::Compressor::new(level)?,
            delta: zstd::zstd_safe::CCtx::create(),
        })
    }

    /// Encodes `data` into `out` (cleared first) as a delta against `base`.
    pub fn encode_delta(&mut self, data: &[u8], base: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.push(TAG_DELTA);
        crate::delta::encode(&mut self.delta, data, base, out)?;
        Ok(())
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
}

impl Decompressor {
    pub fn new() -> io::Result<Self> {
        Ok(Decompressor {
            zstd: zstd::bulk::Decompressor::new()?,
            delta: zstd::zstd_safe::DCtx::create(),
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
            (Some(&TAG_DELTA), None) => Err(Error::NoBase),
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
            TAG_DELTA => return Err(Error::NoBase),
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
