//! Values of the index's `chunks` column family.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relic::internals::index::ChunkEntry;

fuzz_target!(|data: &[u8]| {
    if let Some(e) = ChunkEntry::decode(data) {
        assert_eq!(&e.encode()[..], data);
    }
});
