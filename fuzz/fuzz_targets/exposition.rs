//! The Prometheus text and OpenMetrics parsers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tripod::scrape::exposition::parse_prometheus_text(text);
        let _ = tripod::scrape::exposition::parse_openmetrics(text);
    }
});
