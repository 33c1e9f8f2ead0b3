//! The repository config (JSON) and relic.toml, through the same checks
//! as `Repository::open` and `StackConfig::load`: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = serde_json::from_slice::<relic::repo::Config>(data) {
        if c.check().is_ok() {
            let _ = c.mac_input();
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = relic::stack::StackConfig::parse(text, std::path::Path::new("relic.toml"));
    }
});
