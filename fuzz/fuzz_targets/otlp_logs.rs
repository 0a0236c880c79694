//! OTLP logs: protobuf and JSON decoding, then the mapping to Loki streams.
#![no_main]
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ExportLogsServiceRequest::decode(data) {
        let _ = tripod::ingest::otlp_logs::translate(&request, 0);
    }
    if let Ok(request) = serde_json::from_slice::<ExportLogsServiceRequest>(data) {
        let _ = tripod::ingest::otlp_logs::translate(&request, 0);
    }
});
