//! Content-defined chunking with FastCDC (v2020, normalization level 1).
//!
//! The gear table is XORed with a per-repository seed so chunk boundaries are
//! keyed. [`Chunker::next_len`] is the one cut routine; [`StreamChunker`]
//! drives it over any `Read` with a bounded buffer, and [`Chunker::split`]
//! over a slice already in memory. Both give identical boundaries.

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, Normalization};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{self, Read};

/// Chunk size bounds, recorded in the repository config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 16 KiB / 64 KiB / 256 KiB. With deltas on, 64 KiB gives smaller
    /// repositories and faster restores than 32 KiB on every measured
    /// series (docs/design.md).
    fn default() -> Self {
        ChunkerParams::with_avg(64 * 1024)
    }
}

impl ChunkerParams {
    /// min = avg/4, max = avg*4, the usual FastCDC spread.
    pub fn with_avg(avg: u32) -> Self {
        ChunkerParams {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg * 4,
        }
    }

    /// Checks the bounds FastCDC accepts and that the average is a power of two.
    pub fn validate(&self) -> Result<(), String> {
        let ChunkerParams {
            min_size,
            avg_size,
            max_size,
        } = *self;
        if !avg_size.is_power_of_two() {
            return Err(format!(
                "average chunk size {avg_size} is not a power of two"
            ));
        }
        if !(64..=1 << 26).contains(&min_size)
            || !(256..=1 << 28).contains(&avg_size)
            || !(1024..=1 << 30).contains(&max_size)
            || min_size > avg_size
            || avg_size > max_size
        {
            return Err(format!(
                "chunk sizes {min_size}/{avg_size}/{max_size} are out of FastCDC's range"
            ));
        }
        Ok(())
    }
}

/// FastCDC with a keyed gear table.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        let (mask_s, mask_l) = select_masks(params.avg_size as usize, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Chunker {
            params,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the chunk starting at `data[0]`. Unless `data` is the end of
    /// the stream it must hold at least `max_size` bytes, or the cut could
    /// differ from the one a longer buffer gives.
    pub fn next_len(&self, data: &[u8]) -> usize {
        if data.len() <= self.params.min_size as usize {
            return data.len();
        }
        let (_, len) = cut_gear(
            data,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        len
    }

    /// Splits a complete in-memory stream; yields chunk lengths in order.
    pub fn split<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = data;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let n = self.next_len(rest);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            Some(chunk)
        })
    }
}

/// A stream made of segments that are chunked independently: a cut is
/// forced at the end of every segment, so a segment's chunks do not depend on
/// what precedes it (a layer inside an image tar dedups wherever it sits).
/// `read` returns 0 at the end of each segment.
pub trait Segmented: Read {
    /// Moves on after `read` returned 0: true if another segment follows.
    fn next_segment(&mut self) -> io::Result<bool>;
}

impl<S: Segmented + ?Sized> Segmented for &mut S {
    fn next_segment(&mut self) -> io::Result<bool> {
        (**self).next_segment()
    }
}

/// Any reader as a single segment.
pub struct Whole<R>(pub R);

impl<R: Read> Read for Whole<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Segmented for Whole<R> {
    fn next_segment(&mut self) -> io::Result<bool> {
        Ok(false)
    }
}

/// Reads a stream and hands out its chunks, holding at most a few MiB.
pub struct StreamChunker<R> {
    reader: R,
    chunker: Chunker,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> StreamChunker<R> {
    pub fn new(reader: R, chunker: Chunker) -> Self {
        let cap = (chunker.params.max_size as usize * 2).max(4 << 20);
        StreamChunker {
            reader,
            chunker,
            buf: vec![0; cap],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next chunk, or `None` at the end of the stream. The slice is valid
    /// until the next call.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        let max = self.chunker.params.max_size as usize;
        if self.end - self.start < max && !self.eof {
            self.fill()?;
        }
        if self.start == self.end {
            return Ok(None);
        }
        let n = self.chunker.next_len(&self.buf[self.start..self.end]);
        let chunk = &self.buf[self.start..self.start + n];
        self.start += n;
        Ok(Some(chunk))
    }

    /// After `next_chunk` returned `None`: starts on the next segment, if any.
    pub fn next_segment(&mut self) -> io::Result<bool>
    where
        R: Segmented,
    {
        debug_assert_eq!(self.start, self.end);
        if self.reader.next_segment()? {
            self.eof = false;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Moves the unread tail to the front and reads until the buffer is full
    /// or the stream ends.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let want = self.buf.len() - self.end;
        let n = read_full(&mut self.reader, &mut self.buf[self.end..])?;
        self.end += n;
        self.eof = n < want;
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    }

    /// A reader that returns short reads, to exercise buffer refills.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn stream_lengths(data: &[u8], chunker: Chunker, step: usize) -> Vec<usize> {
        let mut sc = StreamChunker::new(Trickle(data, step), chunker);
        let mut out = vec![];
        while let Some(c) = sc.next_chunk().unwrap() {
            out.push(c.len());
        }
        out
    }

    #[test]
    fn stream_and_slice_agree() {
        let data = random_bytes(9 << 20, 1);
        let chunker = Chunker::new(ChunkerParams::default(), 42);
        let slice: Vec<usize> = chunker.split(&data).map(|c| c.len()).collect();
        assert_eq!(slice.iter().sum::<usize>(), data.len());
        assert_eq!(stream_lengths(&data, chunker.clone(), 1 << 20), slice);
        assert_eq!(stream_lengths(&data, chunker, 7777), slice);
    }

    #[test]
    fn bounds_hold() {
        let data = random_bytes(4 << 20, 2);
        let p = ChunkerParams::default();
        let chunker = Chunker::new(p, 0);
        let lens: Vec<usize> = chunker.split(&data).map(|c| c.len()).collect();
        for (i, &l) in lens.iter().enumerate() {
            assert!(l <= p.max_size as usize);
            if i + 1 < lens.len() {
                assert!(l >= p.min_size as usize);
            }
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = random_bytes(2 << 20, 3);
        let a: Vec<usize> = Chunker::new(ChunkerParams::default(), 1)
            .split(&data)
            .map(|c| c.len())
            .collect();
        let b: Vec<usize> = Chunker::new(ChunkerParams::default(), 2)
            .split(&data)
            .map(|c| c.len())
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn empty_and_tiny_streams() {
        let chunker = Chunker::new(ChunkerParams::default(), 0);
        assert!(stream_lengths(&[], chunker.clone(), 10).is_empty());
        assert_eq!(stream_lengths(b"hello", chunker, 10), vec![5]);
    }

    #[test]
    fn params_validation() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams {
            min_size: 100,
            avg_size: 1000,
            max_size: 4000
        }
        .validate()
        .is_err());
    }

    /// Golden test: these cut points are part of the repository format. If
    /// this fails, existing repositories would stop deduplicating against
    /// new backups: bump the format version instead of changing the values.
    #[test]
    fn golden_cut_points() {
        let data = random_bytes(2 << 20, 0x5eed);
        // Explicit parameters: a repository keeps the ones it was made with
        // (its config), whatever the default becomes.
        let chunker = Chunker::new(ChunkerParams::with_avg(32 * 1024), 0x0123_4567_89ab_cdef);
        let got: Vec<(usize, String)> = chunker
            .split(&data)
            .map(|c| (c.len(), blake3::hash(c).to_hex()[..16].to_string()))
            .collect();
        let expected: &[(usize, &str)] = GOLDEN;
        let expected: Vec<(usize, String)> =
            expected.iter().map(|(l, h)| (*l, h.to_string())).collect();
        if std::env::var_os("RELIC_PRINT_GOLDEN").is_some() {
            for (l, h) in &got {
                println!("    ({l}, \"{h}\"),");
            }
        }
        assert_eq!(got, expected, "FastCDC cut points changed");
    }

    /// (length, first 16 hex digits of the plain BLAKE3) of each chunk of
    /// 2 MiB of seeded random bytes, 32 KiB parameters, gear seed
    /// 0x0123456789abcdef.
    const GOLDEN: &[(usize, &str)] = &[
        (42370, "61554d260042c37f"),
        (10100, "b53a8f2d783fae5c"),
        (39742, "a54f3aaf022e68fb"),
        (10905, "acf58f869cd1faae"),
        (31005, "66e42ca1e3b9c91b"),
        (38674, "9730054343848e1f"),
        (37257, "08e2b7534e67894b"),
        (85701, "8fde76140c1a7cec"),
        (18664, "46decfd0cd790809"),
        (27066, "8d5c16d1fd1f0f20"),
        (28719, "b1de781a7bb17253"),
        (33249, "a02dd92da530e66c"),
        (53366, "38a71b2059f41da2"),
        (10890, "f722418fd23fc565"),
        (41701, "6110a67a6597dfe4"),
        (36549, "8a5eead4088921c3"),
        (35360, "0e5a52be7c241620"),
        (35821, "70f4a86d5089faae"),
        (45570, "2fedebb94482a41e"),
        (41647, "33010ce44aae0b31"),
        (41840, "5ea54b59ef3e019c"),
        (72021, "5d63043ca8e2412b"),
        (22424, "bcdb93c2ee3db92e"),
        (47910, "9d96c61c0aa3c3f9"),
        (23082, "28b7f5de416f4f62"),
        (19632, "bc558d6973e37019"),
        (74934, "517c2b27960a498c"),
        (43174, "3d12e169ba865f37"),
        (45615, "a3f0b228c0323d57"),
        (38699, "da606c33edd92d8a"),
        (37022, "e5500e88418519ff"),
        (30239, "d306982aa390b2c6"),
        (27043, "48a7d0fa161c2ef8"),
        (17933, "98c67916274e43be"),
        (36747, "3b080b97061bf5ac"),
        (46833, "e0c81e1a79ba81f4"),
        (28381, "2a1bde25e59be7b9"),
        (46707, "ec90ac8c6da72512"),
        (35157, "e56ae5a60cae3bca"),
        (48031, "76505052159833db"),
        (42397, "98d66b01ecffc39e"),
        (35439, "b7520f0e60aa46f4"),
        (11741, "c709cee0ba126bad"),
        (40991, "498f6d8ae73b84fc"),
        (35965, "3bf5e9e65d057d4d"),
        (33085, "b9b57d221a3caa99"),
        (18181, "6baebceb6db5a6a6"),
        (55524, "cc9a5e1481a9079c"),
        (52691, "ac994c3c89ffc133"),
        (57921, "ed2338edf816ca46"),
        (50853, "8a4dc3c6c1bdd261"),
        (12939, "6f35b9c4c82cff31"),
        (52339, "c427dea89421037b"),
        (55436, "915871d451da2ac8"),
        (37265, "8e604b396c68f4e4"),
        (16605, "12b8f680be385a9f"),
    ];
}
