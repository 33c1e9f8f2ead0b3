//! Pack trailers, plain and sealed: never a panic, every entry in bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relic::crypto::Cipher;
use relic::internals::pack::decode_trailer;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let body_end = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 32);
    let bytes = &data[8..];
    if let Ok(entries) = decode_trailer("fuzz", bytes, body_end) {
        for e in entries {
            assert!(u64::from(e.offset) + u64::from(e.length) <= body_end);
        }
    }
    let mut sealed = bytes.to_vec();
    if Cipher::new(&[7; 32]).open(b"relic pack trailer", &mut sealed).is_ok() {
        let _ = decode_trailer("fuzz", &sealed, body_end);
    }
});
