//! TraceQL: any text is parsed (and type-checked) or refused with a positioned error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = tripod::query::traceql::parse(query);
    }
});
