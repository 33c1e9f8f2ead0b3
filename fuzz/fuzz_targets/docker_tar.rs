//! docker save tars: the splitter passes every byte through unchanged or
//! fails cleanly; the retagger never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relic::chunker::Segmented;
use relic::docker::{Retag, TarSplitter};
use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    let mut sp = TarSplitter::new(data);
    let mut out = Vec::new();
    let whole = loop {
        let mut seg = Vec::new();
        if sp.read_to_end(&mut seg).is_err() {
            break false;
        }
        out.extend_from_slice(&seg);
        match sp.next_segment() {
            Ok(true) => {}
            Ok(false) => break true,
            Err(_) => break false,
        }
    };
    if whole {
        assert_eq!(out, data, "the splitter changed the stream");
        let _ = sp.images();
    }
    let mut sink = Vec::new();
    let mut r = Retag::new(&mut sink, |t: &str| format!("scratch/{t}"));
    for piece in data.chunks(300) {
        if r.write_all(piece).is_err() {
            return;
        }
    }
    let _ = r.flush();
});
