//! Blob bodies, whole and delta (against an arbitrary base): never a panic,
//! and a body that decodes yields exactly the declared length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relic::internals::compress::Decompressor;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // raw length (up to 256 KiB) and the split between base and body.
    let raw_len = u16::from_le_bytes([data[0], data[1]]) as usize * 4;
    let split = (data[2] as usize * data.len()) / 256;
    let (base, body) = data[3..].split_at(split.min(data.len() - 3));
    let mut d = Decompressor::new().unwrap();
    let mut out = b"kept".to_vec();
    let base = if data[3] & 1 == 1 { Some(base) } else { None };
    match d.decode_with(body, base, raw_len, &mut out) {
        Ok(()) => assert_eq!(out.len(), 4 + raw_len),
        Err(_) => assert_eq!(out, b"kept"),
    }
});
