//! Test helpers shared by the docker unit tests: hand-built tars and a
//! reader of every segment.

use super::tar::BLOCK;
use crate::chunker::Segmented;
use std::io;

/// A tar built by hand: (name, data) regular entries, ustar headers.
pub(super) fn tar(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// Reads every segment; returns them.
pub(super) fn segments(mut s: impl Segmented) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let mut seg = Vec::new();
        s.read_to_end(&mut seg)?;
        out.push(seg);
        if !s.next_segment()? {
            return Ok(out);
        }
    }
}

pub(super) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
