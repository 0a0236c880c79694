//! Snappy decompression (block or framed, capped) followed by Loki push protobuf decoding, then
//! the write path's checks against a store that keeps nothing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut buffer = Vec::new();
    if tripod::api::loki::push::unsnappy(data, 1 << 20, &mut buffer).is_ok() {
        assert!(buffer.len() <= 1 << 20);
        if let Ok(batch) = tripod::api::loki::model::decode_protobuf(&buffer) {
            let _ = tripod::ingest::logs::LogsIngest::default().push(&Discard, "fake", &batch);
        }
    }
});

/// A store that accepts everything and keeps nothing.
struct Discard;

impl tripod_storage::logs::LogsAppender for Discard {
    fn append(
        &self,
        _tenant: &str,
        batch: &[tripod_storage::logs::StreamEntries<'_>],
    ) -> Result<tripod_storage::logs::LogAppendCounts, tripod_storage::logs::LogsError> {
        let appended = batch.iter().map(|stream| stream.entries.len() as u64).sum();
        Ok(tripod_storage::logs::LogAppendCounts { appended, ..Default::default() })
    }
}
