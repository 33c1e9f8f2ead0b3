//! Snapshot objects, items and chunk lists: never a panic; what decodes
//! encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relic::crypto::Cipher;
use relic::snapshot::{decode_item, decode_list, encode_item, encode_list, Snapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode("fuzz", data, None) {
        let again = Snapshot::decode("fuzz", &s.encode(None), None).expect("re-decodes");
        assert_eq!(again, s);
    }
    let _ = Snapshot::decode("fuzz", data, Some(&Cipher::new(&[3; 32])));
    if let Ok(Some((item, used))) = decode_item(data) {
        let mut out = Vec::new();
        encode_item(&item, &mut out);
        assert_eq!(decode_item(&out).unwrap().unwrap().0, item);
        assert!(used <= data.len());
    }
    if let Some(ids) = decode_list(data) {
        assert_eq!(encode_list(&ids), data);
    }
});
