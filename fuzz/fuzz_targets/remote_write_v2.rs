//! Remote write 2.0 decoding: any input decodes or is refused, never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tripod::api::prometheus::remote_write::decode_v2(data);
});
