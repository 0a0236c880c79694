//! Snappy decompression (capped) followed by remote write 1.0 decoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut buffer = Vec::new();
    if tripod::api::prometheus::remote_write::decompress_into(data, 1 << 20, &mut buffer).is_ok() {
        assert!(buffer.len() <= 1 << 20);
        let _ = tripod::api::prometheus::remote_write::decode_v1(&buffer);
    }
});
