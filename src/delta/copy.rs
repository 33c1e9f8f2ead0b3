//! Copy/insert deltas (blob tag 3, format version 3): a chunk as a list of
//! "copy this stretch of the base" and "insert these bytes", the list
//! stored as it is when short, else as one small zstd frame.
//!
//! A zstd frame with the base as dictionary (tag 2) finds the same copies,
//! but zstd first indexes the whole base at every position, and at the
//! levels that find the matches that indexing was half of a daily delta
//! backup's time. Here the base is indexed only at content-defined
//! anchors (one position in 16 on average, where the Gear hash of the 64
//! bytes before has its top 4 bits clear), so the same content anchors the
//! same way in both chunks, in the style of Ddelta (Xia et al., 2014):
//! - the base: each anchor's offset goes into a table keyed by the hash
//!   that made it an anchor;
//! - the chunk: at each anchor two candidates are verified, the copy that
//!   would continue the previous one (an edit that kept the length) and
//!   the table's; each is extended backwards into the pending insert and
//!   forwards as far as the bytes agree, the longer is taken (repetitive
//!   rows match at the wrong place too), and scanning resumes after it.
//!
//! The instruction list: repeated `[insert length][inserted bytes]
//! [copy length][copy offset]`, lengths as LEB128 varints, the copy
//! offset as a zigzag varint relative to where the previous copy ended in
//! the base; it ends where the chunk's known length is reached (after an
//! insert or after a copy). docs/format.md has it byte by byte.

use super::{gear, WINDOW};
use std::io;

/// Bytes compared at an anchor: shorter matches are left as inserts.
const MIN_MATCH: usize = 16;
/// An anchor follows a Gear hash with these bits clear (one in 16).
const ANCHOR_MASK: u64 = 0xf << 60;
/// zstd level for the instruction list: mostly copy offsets and a few
/// inserted bytes, it is no smaller at 3 or 9 (docs/design.md).
pub const LEVEL: i32 = 1;
/// Instruction lists up to this long are stored without zstd.
const RAW_OPS: usize = 32;
/// First byte of a delta: how the instruction list follows.
const PLAIN: u8 = 0;
const ZSTD: u8 = 1;

/// Reusable state of the encoder (one per worker thread).
#[derive(Default)]
pub struct Encoder {
    table: Vec<u32>,
    ops: Vec<u8>,
}

/// Table slot of an anchor's Gear hash (its top bits are clear: the low
/// ones are mixed up).
#[inline(always)]
fn slot(h: u64, bits: u32) -> usize {
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// Records every anchor of `base` in `table`, by the hash that made it
/// one.
#[inline(never)]
fn index(table: &mut [u32], bits: u32, base: &[u8]) {
    super::gear_hits(base, ANCHOR_MASK, |h, at| table[slot(h, bits)] = at as u32);
}

/// Length of the common prefix of `a` and `b`.
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8"))
            ^ u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

impl Encoder {
    /// Appends to `out` the delta of `data` against `base`: one zstd
    /// frame of the instruction list. Returns false, appending nothing,
    /// when the list would be longer than the chunk itself.
    pub fn encode(
        &mut self,
        cctx: &mut zstd::zstd_safe::CCtx<'static>,
        data: &[u8],
        base: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let bits = (usize::BITS - base.len().leading_zeros()).clamp(12, 20) - 3;
        self.table.clear();
        self.table.resize(1 << bits, u32::MAX);
        index(&mut self.table, bits, base);
        let ops = &mut self.ops;
        ops.clear();
        let (n, mut lit, mut expect, mut j) = (data.len(), 0usize, 0usize, 0usize);
        let mut h = 0u64;
        while j < n {
            h = gear(h, data[j]);
            j += 1;
            if h & ANCHOR_MASK != 0 {
                continue;
            }
            // Position a of the chunk is position p of the base: the copy
            // that continues the last one, or the base's anchor with the
            // same hash. Taken when at least MIN_MATCH bytes around agree.
            let a = j;
            let around = |p: usize| {
                if p > base.len() {
                    return None;
                }
                let back = data[lit..a]
                    .iter()
                    .rev()
                    .zip(base[..p].iter().rev())
                    .take_while(|(x, y)| x == y)
                    .count();
                let fwd = common_prefix(&data[a..], &base[p..]);
                (back + fwd >= MIN_MATCH).then_some((back, fwd, p))
            };
            let t = self.table[slot(h, bits)] as usize;
            // Repetitive content (runs of blanks) can match at the wrong
            // place: of two candidates the longer match wins.
            let rep = expect + (a - lit);
            let best = match (around(rep), (t != rep).then(|| around(t)).flatten()) {
                (Some(x), Some(y)) => Some(if y.0 + y.1 > x.0 + x.1 { y } else { x }),
                (x, y) => x.or(y),
            };
            let Some((back, fwd, p)) = best else {
                continue;
            };
            let (s, q, e) = (a - back, p - back, a + fwd);
            put_varint(ops, (s - lit) as u64);
            ops.extend_from_slice(&data[lit..s]);
            put_varint(ops, (e - s) as u64);
            let rel = q as i64 - expect as i64;
            put_varint(ops, ((rel << 1) ^ (rel >> 63)) as u64);
            expect = q + (e - s);
            lit = e;
            // Resume after the copy with the hash it would have there.
            j = e;
            h = data[e.saturating_sub(WINDOW)..e]
                .iter()
                .fold(0, |h, &b| gear(h, b));
            if ops.len() > n {
                return Ok(false);
            }
        }
        if lit < n {
            put_varint(ops, (n - lit) as u64);
            ops.extend_from_slice(&data[lit..]);
        }
        if ops.len() > n {
            return Ok(false);
        }
        // A short list goes as it is: a zstd frame costs 9 bytes more.
        if ops.len() <= RAW_OPS {
            out.push(PLAIN);
            out.extend_from_slice(ops);
            return Ok(true);
        }
        out.push(ZSTD);
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(ops.len()));
        let mut tail = io::Cursor::new(&mut *out);
        tail.set_position(start as u64);
        cctx.compress(&mut tail, ops, LEVEL)
            .map_err(super::zstd_error)?;
        Ok(true)
    }
}

/// Decodes a copy/insert delta against `base`, appending exactly `raw_len`
/// bytes to `out` or failing (and then appending nothing).
pub fn decode(
    dctx: &mut zstd::zstd_safe::DCtx<'static>,
    frame: &[u8],
    base: &[u8],
    raw_len: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("delta: {what}"));
    let ops: &[u8] = match frame.split_first() {
        Some((&PLAIN, list)) => list,
        Some((&ZSTD, z)) => {
            // An encoder never writes an instruction list longer than the
            // chunk: a frame that says otherwise is refused unread.
            match zstd::zstd_safe::get_frame_content_size(z) {
                Ok(Some(len)) if len <= raw_len as u64 => {}
                _ => return Err(bad("instruction list of no or too large a size")),
            }
            scratch.clear();
            scratch.reserve(raw_len);
            dctx.decompress(&mut *scratch, z)
                .map_err(super::zstd_error)?;
            scratch
        }
        _ => return Err(bad("unknown instruction list encoding")),
    };
    let start = out.len();
    out.reserve(raw_len);
    let end = start + raw_len;
    let (mut at, mut expect) = (0usize, 0usize);
    let r = (|| {
        while out.len() < end {
            let lit = get_varint(ops, &mut at).ok_or_else(|| bad("truncated"))? as usize;
            let bytes = ops
                .get(at..at.saturating_add(lit))
                .filter(|_| lit <= end - out.len())
                .ok_or_else(|| bad("insert past the end"))?;
            out.extend_from_slice(bytes);
            at += lit;
            if out.len() == end {
                break;
            }
            let len = get_varint(ops, &mut at).ok_or_else(|| bad("truncated"))? as usize;
            let z = get_varint(ops, &mut at).ok_or_else(|| bad("truncated"))?;
            let rel = (z >> 1) as i64 ^ -((z & 1) as i64);
            let from = (expect as i64)
                .checked_add(rel)
                .filter(|f| *f >= 0)
                .ok_or_else(|| bad("copy before the base"))? as usize;
            let src = base
                .get(from..from.saturating_add(len))
                .filter(|_| len > 0 && len <= end - out.len())
                .ok_or_else(|| bad("copy outside the base"))?;
            out.extend_from_slice(src);
            expect = from + len;
        }
        if at != ops.len() {
            return Err(bad("trailing instructions"));
        }
        Ok(())
    })();
    if r.is_err() {
        out.truncate(start);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::tests::rows;
    use proptest::prelude::*;

    fn round_trip(data: &[u8], base: &[u8]) -> Option<usize> {
        let mut enc = Encoder::default();
        let mut cctx = zstd::zstd_safe::CCtx::create();
        let mut dctx = zstd::zstd_safe::DCtx::create();
        let mut frame = b"x".to_vec();
        if !enc.encode(&mut cctx, data, base, &mut frame).unwrap() {
            assert_eq!(frame, b"x");
            return None;
        }
        let (mut ops, mut back) = (Vec::new(), b"y".to_vec());
        decode(
            &mut dctx,
            &frame[1..],
            base,
            data.len(),
            &mut ops,
            &mut back,
        )
        .unwrap();
        assert!(back[1..] == *data);
        Some(frame.len() - 1)
    }

    #[test]
    fn edits_cost_about_their_size() {
        let base = rows(1, 3000);
        let mut data = base.clone();
        // Same-length edits, an insertion and a deletion.
        data[5000] ^= 1;
        data[20_000..20_004].copy_from_slice(b"abcd");
        data.splice(30_000..30_000, b"a new row\t1\t2\n".iter().copied());
        data.drain(40_000..40_100);
        let n = round_trip(&data, &base).unwrap();
        assert!(n < 200, "{n} bytes for four edits");
        // Identical, empty, unrelated, and a base shorter than a match.
        assert!(round_trip(&base, &base).unwrap() < 32);
        assert!(round_trip(&[], &base).unwrap() < 16);
        let other = rows(2, 3000);
        let _ = round_trip(&other, &base);
        // Nothing to copy: the list would outgrow the chunk, so no delta.
        assert!(round_trip(&base[..100], &base[..10]).is_none());
        assert!(round_trip(&base[..5000], &base[..3000]).unwrap() < 2100);
    }

    #[test]
    fn damage_is_an_error_never_wrong_bytes() {
        let base = rows(1, 2000);
        let mut data = base.clone();
        data[7000] = b'#';
        let mut enc = Encoder::default();
        let mut cctx = zstd::zstd_safe::CCtx::create();
        let mut dctx = zstd::zstd_safe::DCtx::create();
        let mut frame = Vec::new();
        assert!(enc.encode(&mut cctx, &data, &base, &mut frame).unwrap());
        let mut ops = Vec::new();
        for raw_len in [data.len() - 1, data.len() + 1] {
            let mut out = Vec::new();
            assert!(decode(&mut dctx, &frame, &base, raw_len, &mut ops, &mut out).is_err());
            assert!(out.is_empty());
        }
        let mut out = Vec::new();
        assert!(decode(
            &mut dctx,
            &frame,
            &base[..1000],
            data.len(),
            &mut ops,
            &mut out
        )
        .is_err());
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn any_pair_round_trips(base in proptest::collection::vec(0u8..4, 0..3000),
                                data in proptest::collection::vec(0u8..4, 0..3000)) {
            let _ = round_trip(&data, &base);
        }

        #[test]
        fn edited_copies_round_trip(seed in 0u64..1000, cuts in proptest::collection::vec((0usize..20_000, 0usize..50), 0..8)) {
            let base = rows(seed, 800);
            let mut data = base.clone();
            for (at, len) in cuts {
                let at = at % data.len();
                let end = (at + len).min(data.len());
                data.splice(at..end, rows(seed + 1, 2)[..len.min(20)].iter().copied());
            }
            prop_assert!(round_trip(&data, &base).is_some());
        }

        #[test]
        fn garbage_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200),
                                base in proptest::collection::vec(any::<u8>(), 0..300),
                                raw_len in 0usize..500) {
            let mut dctx = zstd::zstd_safe::DCtx::create();
            let (mut ops, mut out) = (Vec::new(), Vec::new());
            if decode(&mut dctx, &frame, &base, raw_len, &mut ops, &mut out).is_ok() {
                prop_assert_eq!(out.len(), raw_len);
            }
        }
    }
}
