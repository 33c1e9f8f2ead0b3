//! The repository config (JSON) and relic.toml: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = serde_json::from_slice::<relic::repo::Config>(data) {
        let _ = c.chunker.validate();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = toml::from_str::<relic::stack::StackConfig>(text);
    }
});
