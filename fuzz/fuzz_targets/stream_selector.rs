//! The strict parser of a Loki stream's labels (`{name="value", ...}` with Go escapes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tripod::ingest::logs::parse_stream_selector(text);
    }
});
