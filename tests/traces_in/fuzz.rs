//! Seeded mutation fuzzing of the traces decoders: thousands of damaged variants of a rich
//! OTLP traces request, as protobuf and as JSON, must each decode or be refused with an error,
//! never panic; whatever decodes is translated, and what the translation keeps is written back
//! as Tempo's JSON and protobuf, which must parse. The direct protobuf decoder must agree with
//! a protobuf library followed by the translation on every variant. Trace IDs from URLs get the
//! same treatment. Deterministic, so it runs in every test run.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use tripod::api::otlp::metrics::Encoding;
use tripod::api::otlp::traces::decode_request;
use tripod::api::otlp::traces_wire::{decode_export, encode_export};
use tripod::api::tempo::trace::{parse_trace_id, to_otlp, v1_json, v2_json};
use tripod::ingest::otlp_traces::translate;
use tripod::load::traces::Generator;
use tripod_storage::traces::SpansRecord;
use tripod_storage::traces::Trace;

use crate::otlp::rich_request;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() + 1)),
            2 => {
                let at = rng.below(bytes.len() + 1);
                let insert: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, insert);
            }
            3 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = [0x00, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}', b'0', b'f'][rng.below(10)];
            }
            _ => {
                let from = rng.below(bytes.len() + 1);
                let to = rng.below(bytes.len() + 1);
                let (lo, hi) = (from.min(to), from.max(to));
                let copy = bytes[lo..hi].to_vec();
                bytes.extend_from_slice(&copy);
            }
        }
    }
    bytes
}

/// Translates what decoded and writes what it kept back out; both encodings must read back.
fn translate_and_answer(bytes: &[u8], encoding: Encoding) -> bool {
    let Ok(decoded) = decode_request(bytes, encoding) else { return false };
    let translation = decoded.translation;
    let kept: usize = translation.batch.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    assert_eq!(kept as u64 + translation.refused_spans(), translation.received_spans);
    let trace = Trace { trace_id: [1; 16], resource_spans: translation.batch };
    let resource_spans = to_otlp(trace);
    let encoded = TracesData { resource_spans: resource_spans.clone() }.encode_to_vec();
    TracesData::decode(encoded.as_slice()).expect("the protobuf answer decodes");
    for json in [v1_json(&resource_spans), v2_json(&resource_spans)] {
        if let Err(error) = serde_json::from_slice::<serde_json::Value>(&json) {
            panic!("the JSON answer does not parse ({error}): {}", String::from_utf8_lossy(&json));
        }
    }
    true
}

#[test]
fn damaged_protobuf_exports_never_panic_the_decoder_or_the_translation() {
    let protobuf = rich_request(1).encode_to_vec();
    let mut rng = Rng(0x7ace_5eed_0001_beef);
    let mut decoded = 0;
    for _ in 0..8_000 {
        decoded += usize::from(translate_and_answer(&mutate(&protobuf, &mut rng), Encoding::Protobuf));
    }
    // Enough variants decode for the translation to be exercised.
    assert!(decoded > 500, "{decoded}");
}

#[test]
fn the_direct_decoder_agrees_with_a_protobuf_library() {
    let protobuf = rich_request(3).encode_to_vec();
    let mut rng = Rng(0xd1ff_5eed_0003);
    let (mut both, mut neither) = (0, 0);
    for _ in 0..8_000 {
        let damaged = mutate(&protobuf, &mut rng);
        let direct = decode_export(&damaged).map(|translation| format!("{translation:?}"));
        let through_library =
            ExportTraceServiceRequest::decode(damaged.as_slice()).map(|request| format!("{:?}", translate(request)));
        match (direct, through_library) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                both += 1;
            }
            (Err(_), Err(_)) => neither += 1,
            // Groups (wire types 3 and 4) in unknown fields: skipped by the library, refused by
            // the direct decoder; OTLP never sends them.
            (Err(error), Ok(_)) if error.problem.starts_with("unsupported wire type") => {}
            (direct, library) => panic!("the decoders disagree: {direct:?} vs {library:?}"),
        }
    }
    assert!(both > 500 && neither > 500, "{both} {neither}");
}

/// Whether `bytes` went straight into a record; when it did, the record holds exactly what the
/// judged decoding keeps (nothing refused, nothing dropped), in the store's own encoding.
fn straight_into_a_record(bytes: &[u8]) -> bool {
    let Some(record) = encode_export(bytes, "tenant-1") else { return false };
    let translation = decode_export(bytes).expect("a request encoded straight into a record decodes");
    assert_eq!(translation.refused_spans(), 0);
    assert_eq!(translation.dropped_links, 0);
    assert_eq!(translation.received_spans, record.spans() as u64);
    let judged = SpansRecord::from_batch("tenant-1", &translation.batch).expect("the store keeps every span");
    assert_eq!(record.tenant(), "tenant-1");
    assert_eq!(record.body(), judged.body(), "the record differs from the judged decoding's");
    true
}

#[test]
fn requests_go_straight_into_records_exactly_as_judged() {
    // What clients send: every request of the load tool goes straight into a record.
    let mut generator = Generator::new(7, 1_700_000_000_000_000_000, 1_000_000);
    for traces in [1, 5, 50] {
        let (request, _, _) = generator.request(traces);
        assert!(straight_into_a_record(&request.encode_to_vec()), "{traces} traces");
    }
    assert!(!straight_into_a_record(&[]), "an empty request has nothing to store");
    // Damaged variants: either left to the judged decoding, or identical to it.
    for (seed, request) in [(0xfa57_0001, rich_request(1)), (0xfa57_0002, rich_request(3))] {
        let protobuf = request.encode_to_vec();
        let mut rng = Rng(seed);
        let mut straight = 0;
        for _ in 0..6_000 {
            straight += usize::from(straight_into_a_record(&mutate(&protobuf, &mut rng)));
        }
        assert!(straight > 0, "no damaged variant of a clean request went straight into a record");
    }
}

#[test]
fn damaged_json_exports_never_panic_the_decoder_or_the_translation() {
    let json = serde_json::to_vec(&rich_request(2)).unwrap();
    let mut rng = Rng(0x5eed_7ace_0002);
    let mut decoded = 0;
    for _ in 0..6_000 {
        decoded += usize::from(translate_and_answer(&mutate(&json, &mut rng), Encoding::Json));
    }
    assert!(decoded > 100, "{decoded}");
}

#[test]
fn damaged_trace_ids_never_panic_the_parser() {
    let seed = b"4bf92f3577b34da6A3CE929D0E0E4736";
    let mut rng = Rng(0x1d);
    for _ in 0..50_000 {
        let damaged = mutate(seed, &mut rng);
        if let Ok(text) = std::str::from_utf8(&damaged)
            && let Ok(id) = parse_trace_id(text)
        {
            assert!(text.len() <= 32 && text.bytes().all(|b| b.is_ascii_hexdigit()), "{text:?} -> {id:?}");
        }
    }
}
