//! Near-duplicate chunks: resemblance sketches and zstd deltas.
//!
//! A chunk with no exact match may still be almost the same as a stored
//! one: a page of a dump where a few rows changed, a layer file edited by a
//! line. Such a chunk is stored as a zstd frame compressed with the similar
//! stored chunk (its *base*) as a raw-content dictionary, typically a few
//! hundred bytes instead of kilobytes.
//!
//! Similar chunks are found by their sketch, in the style of Odess (FAST
//! '21): a Gear rolling hash runs over the chunk; at content-defined sample
//! positions (one in 64) each of [`FEATURES`] linear transforms of the hash
//! keeps its maximum; [`SUPER_FEATURES`] super-features each hash
//! [`FEATURES`]` / `[`SUPER_FEATURES`] features. Two chunks sharing any super-feature very likely share most
//! of their content. The index maps every super-feature to the newest chunk
//! that has it (see `index/`).
//!
//! Deltas chain: a delta's base may itself be a delta. The chain depth is
//! bounded ([`MAX_DEPTH`]): a chunk whose best base is already that deep is
//! stored whole (re-based), so restore decodes at most `MAX_DEPTH + 1`
//! blobs per chunk. docs/design.md has the measurements behind the numbers.

use std::io;

pub mod copy;

/// Sub-blocks per chunk, each giving one feature.
pub const FEATURES: usize = 12;
/// Super-features per chunk (groups of consecutive features).
pub const SUPER_FEATURES: usize = 3;
/// Chunks shorter than this get no sketch and are never deltas.
pub const MIN_LEN: usize = 1024;
/// Longest delta chain: a delta's depth is its base's depth + 1, a whole
/// chunk has depth 0.
pub const MAX_DEPTH: u8 = 4;
/// zstd level for deltas. Against a base, the fast levels (1 to 4) miss
/// most matches (deltas 3.6x larger on a pgbench series than at 10); 5 to
/// 10 cost the same time here and 10 finds the most; 11 and up cost 3x
/// the time (docs/design.md).
pub const LEVEL: i32 = 10;

/// A chunk's super-features.
pub type Sketch = [u64; SUPER_FEATURES];

/// Gear table: 256 fixed pseudo-random words (SplitMix64 of the byte).
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut z = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// A position is sampled when its Gear hash has these bits clear (one in
/// 64): features then cost about one multiply per 5 bytes.
const SAMPLE_MASK: u64 = 0x3f << 58;

/// Odd multipliers and offsets of the feature transforms.
const TRANSFORMS: [(u64, u64); FEATURES] = {
    let mut t = [(0u64, 0u64); FEATURES];
    let mut i = 0;
    while i < FEATURES {
        t[i] = (GEAR[2 * i + 1] | 1, GEAR[2 * i + 2]);
        i += 1;
    }
    t
};

/// The sketch of a chunk, or None when it is too short to have one.
///
/// Feature i is the largest `m_i * h + a_i` over the sampled positions'
/// Gear hashes h (the Odess scheme, FAST '21): it depends on content only,
/// not on where in the chunk the content sits, so a chunk cut at other
/// boundaries, or with rows inserted and removed, keeps most features.
pub fn sketch(data: &[u8]) -> Option<Sketch> {
    if data.len() < MIN_LEN {
        return None;
    }
    Some(super_features(&features(data)))
}

/// Bytes a Gear hash depends on: each step shifts the hash left by one, so
/// a byte's contribution is gone 64 bytes later.
const WINDOW: usize = 64;

/// Keeps the transforms' maxima at a sampled hash.
#[inline(never)]
fn sample(features: &mut [u64; FEATURES], h: u64) {
    for (f, (m, a)) in features.iter_mut().zip(TRANSFORMS) {
        *f = (*f).max(h.wrapping_mul(m).wrapping_add(a));
    }
}

/// One step of the Gear hash.
#[inline(always)]
fn gear(h: u64, b: u8) -> u64 {
    (h << 1).wrapping_add(GEAR[b as usize])
}

/// Runs the Gear hash over `data` and calls `hit(h, end)` at every
/// position whose hash has the `mask` bits clear (`end`: just past the
/// byte that made it). The hash at a position depends only on the
/// [`WINDOW`] bytes before it, so the data is cut in four stretches hashed
/// side by side (each warmed up on the window before it): four independent
/// dependency chains instead of one, the same hashes at the same positions
/// as one pass from the start (only the order of the calls differs).
#[inline(always)]
fn gear_hits(data: &[u8], mask: u64, mut hit: impl FnMut(u64, usize)) {
    let step = data.len() / 4;
    let (mut last, mut done) = (0u64, 0);
    if step > WINDOW {
        let lane = |j: usize| &data[j * step..(j + 1) * step];
        let warm = |j: usize| {
            data[j * step - WINDOW..j * step]
                .iter()
                .fold(0, |h, &b| gear(h, b))
        };
        let (mut h0, mut h1, mut h2, mut h3) = (0, warm(1), warm(2), warm(3));
        for (i, (((&a, &b), &c), &d)) in lane(0)
            .iter()
            .zip(lane(1))
            .zip(lane(2))
            .zip(lane(3))
            .enumerate()
        {
            h0 = gear(h0, a);
            h1 = gear(h1, b);
            h2 = gear(h2, c);
            h3 = gear(h3, d);
            if (h0 & mask == 0) | (h1 & mask == 0) | (h2 & mask == 0) | (h3 & mask == 0) {
                for (j, h) in [h0, h1, h2, h3].into_iter().enumerate() {
                    if h & mask == 0 {
                        hit(h, j * step + i + 1);
                    }
                }
            }
        }
        // The last lane runs on to the end.
        (last, done) = (h3, 4 * step);
    }
    for (at, &b) in data.iter().enumerate().skip(done) {
        last = gear(last, b);
        if last & mask == 0 {
            hit(last, at + 1);
        }
    }
}

/// The features of `data`: the maxima do not depend on the order in which
/// [`gear_hits`] finds the sampled positions.
fn features(data: &[u8]) -> [u64; FEATURES] {
    let mut features = [0u64; FEATURES];
    gear_hits(data, SAMPLE_MASK, |h, _| sample(&mut features, h));
    features
}

fn super_features(features: &[u64; FEATURES]) -> Sketch {
    let per = FEATURES / SUPER_FEATURES;
    let mut sk = [0u64; SUPER_FEATURES];
    for (s, out) in sk.iter_mut().enumerate() {
        let mut x = blake3::Hasher::new();
        x.update(&[s as u8]);
        for f in &features[s * per..(s + 1) * per] {
            x.update(&f.to_le_bytes());
        }
        *out = u64::from_le_bytes(x.finalize().as_bytes()[..8].try_into().expect("8"));
    }
    sk
}

/// True when `base` can serve as a raw-content dictionary: zstd would read
/// a buffer that starts with its dictionary magic as a structured one.
pub fn usable_base(base: &[u8]) -> bool {
    base.len() >= MIN_LEN && base[..4] != [0x37, 0xA4, 0x30, 0xEC]
}

/// Compresses `data` against `base`, appending the frame to `out`;
/// returns its length.
pub fn encode(
    cctx: &mut zstd::zstd_safe::CCtx<'static>,
    data: &[u8],
    base: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let start = out.len();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let mut tail = io::Cursor::new(&mut *out);
    tail.set_position(start as u64);
    cctx.compress_using_dict(&mut tail, data, base, LEVEL)
        .map_err(zstd_error)
}

/// Decodes a delta frame against `base`, appending exactly `raw_len`
/// bytes to `out` or failing (and then appending nothing).
pub fn decode(
    dctx: &mut zstd::zstd_safe::DCtx<'static>,
    frame: &[u8],
    base: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let start = out.len();
    out.reserve(raw_len);
    let mut tail = io::Cursor::new(&mut *out);
    tail.set_position(start as u64);
    let got = dctx
        .decompress_using_dict(&mut tail, frame, base)
        .map_err(zstd_error)?;
    if got != raw_len || out.len() != start + raw_len {
        out.truncate(start);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("delta decodes to {got} bytes, expected {raw_len}"),
        ));
    }
    Ok(())
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn rows(seed: u64, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x = seed;
        for i in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(
                format!("{i}\t{}\t{}\tsome filler text\n", x >> 40, x % 977).as_bytes(),
            );
        }
        out
    }

    #[test]
    fn similar_chunks_share_a_super_feature_and_delta_small() {
        let a = rows(1, 1500);
        let mut b = a.clone();
        // Change a few scattered bytes.
        for at in [100, 9000, 20000, 31000] {
            b[at] = b'#';
        }
        let (sa, sb) = (sketch(&a).unwrap(), sketch(&b).unwrap());
        assert!(sa.iter().zip(&sb).any(|(x, y)| x == y), "{sa:?} {sb:?}");
        let other = sketch(&rows(2, 1500)).unwrap();
        assert!(sa.iter().zip(&other).all(|(x, y)| x != y));

        let mut cctx = zstd::zstd_safe::CCtx::create();
        let mut dctx = zstd::zstd_safe::DCtx::create();
        let mut frame = b"hdr".to_vec();
        let n = encode(&mut cctx, &b, &a, &mut frame).unwrap();
        assert_eq!(frame.len(), 3 + n);
        assert!(n < b.len() / 50, "delta of {n} bytes for {}", b.len());
        let mut back = b"x".to_vec();
        decode(&mut dctx, &frame[3..], &a, b.len(), &mut back).unwrap();
        assert_eq!(&back[1..], &b[..]);
        // The wrong base or length is an error, never wrong bytes.
        let mut bad = Vec::new();
        assert!(decode(&mut dctx, &frame[3..], &a, b.len() - 1, &mut bad).is_err());
        assert!(bad.is_empty());
        let wrong = rows(3, 1500);
        match decode(&mut dctx, &frame[3..], &wrong, b.len(), &mut bad) {
            Ok(()) => assert_ne!(bad, b),
            Err(_) => assert!(bad.is_empty()),
        }
    }

    /// One pass from the start, the definition [`features`] must match.
    fn features_one_pass(data: &[u8]) -> [u64; FEATURES] {
        let mut features = [0u64; FEATURES];
        let mut h = 0u64;
        for &b in data {
            h = (h << 1).wrapping_add(GEAR[b as usize]);
            if h & SAMPLE_MASK == 0 {
                sample(&mut features, h);
            }
        }
        features
    }

    #[test]
    fn lanes_give_the_one_pass_features() {
        for n in [MIN_LEN, 1027, 4 * WINDOW + 3, 65_536, 200_001] {
            for seed in 0..4 {
                let d = &rows(seed, n)[..n];
                assert_eq!(features(d), features_one_pass(d), "n {n} seed {seed}");
            }
        }
        // Frozen: sketches are stored in packs and looked up across
        // backups, so they must never change.
        let d = &rows(1, 65_536)[..65_536];
        assert_eq!(
            sketch(d).unwrap(),
            [
                0x0e4a_4007_04ec_326e,
                0x5b40_9c96_fc75_9ee5,
                0x1fc9_3619_8971_6ffc
            ]
        );
    }

    #[test]
    fn short_chunks_have_no_sketch_and_magic_bases_are_refused() {
        assert!(sketch(&[7u8; MIN_LEN - 1]).is_none());
        assert!(sketch(&[7u8; MIN_LEN]).is_some());
        let mut m = vec![0u8; MIN_LEN];
        m[..4].copy_from_slice(&[0x37, 0xA4, 0x30, 0xEC]);
        assert!(!usable_base(&m));
        assert!(usable_base(&vec![0u8; MIN_LEN]));
    }

    proptest! {
        #[test]
        fn round_trip(base in proptest::collection::vec(any::<u8>(), MIN_LEN..4000),
                      data in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let mut cctx = zstd::zstd_safe::CCtx::create();
            let mut dctx = zstd::zstd_safe::DCtx::create();
            let mut frame = Vec::new();
            encode(&mut cctx, &data, &base, &mut frame).unwrap();
            let mut back = Vec::new();
            decode(&mut dctx, &frame, &base, data.len(), &mut back).unwrap();
            prop_assert_eq!(back, data);
        }

        #[test]
        fn lanes_match_one_pass(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            prop_assert_eq!(features(&data), features_one_pass(&data));
        }
    }
}
