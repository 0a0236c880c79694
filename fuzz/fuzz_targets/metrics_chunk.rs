//! Metrics chunk decoding (XOR and packed): any bytes decode or are refused, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = tripod_storage::metrics::chunk::decode(data, &mut out);
});
