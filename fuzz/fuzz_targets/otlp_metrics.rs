//! OTLP metrics: protobuf and JSON decoding, then translation to Prometheus series.
#![no_main]
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ingest = tripod::ingest::otlp_metrics::OtlpMetricsIngest::default();
    if let Ok(request) = ExportMetricsServiceRequest::decode(data) {
        let _ = ingest.translate(&request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportMetricsServiceRequest>(data) {
        let _ = ingest.translate(&request);
    }
});
