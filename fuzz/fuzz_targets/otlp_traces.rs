//! OTLP traces: the direct protobuf decoder against prost's decoding and the same translation
//! (both give the same batch, or both refuse); a request encoded straight into a record against
//! the record of what the judged decoding keeps; and JSON decoding through OTLP's types.
#![no_main]
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tripod::api::otlp::metrics::Encoding;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let direct = tripod::api::otlp::traces_wire::decode_export(data);
    let through_prost = ExportTraceServiceRequest::decode(data).map(tripod::ingest::otlp_traces::translate);
    match (&direct, &through_prost) {
        (Ok(direct), Ok(through_prost)) => {
            assert_eq!(format!("{direct:?}"), format!("{through_prost:?}"), "the decoders translate differently")
        }
        (Err(_), Err(_)) => {}
        _ => panic!("one decoder refuses what the other takes: {direct:?} vs {through_prost:?}"),
    }
    if let Some(record) = tripod::api::otlp::traces_wire::encode_export(data, "fuzz") {
        let translation = direct.as_ref().expect("a request encoded straight into a record decodes");
        assert_eq!((translation.refused_spans(), translation.dropped_links), (0, 0));
        let judged = tripod_storage::traces::SpansRecord::from_batch("fuzz", &translation.batch)
            .expect("the store keeps every span");
        assert_eq!(record.body(), judged.body(), "the direct record differs from the judged decoding's");
    }
    let _ = tripod::api::otlp::traces::decode_request(data, Encoding::Json);
});
