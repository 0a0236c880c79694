//! Loki push JSON decoding, in both the current and the older form.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tripod::api::loki::model::decode_json(data);
});
