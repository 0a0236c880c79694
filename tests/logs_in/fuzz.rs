//! Seeded mutation fuzzing of the logs decoders: thousands of damaged variants of valid Loki
//! protobuf and JSON pushes, snappy bodies, stream selectors and OTLP logs requests must each
//! decode or be refused with an error, never panic, and decompression stays within its cap.
//! Deterministic, so it runs in every test run.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use tripod::api::loki::model::{decode_json, decode_protobuf};
use tripod::api::loki::push::unsnappy;
use tripod::ingest::logs::parse_stream_selector;
use tripod::ingest::otlp_logs::translate;

use crate::support::{ProtoStream, protobuf_push, snappy};

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
                bytes[at] = [0x00, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}'][rng.below(8)];
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

fn protobuf_seed() -> Vec<u8> {
    protobuf_push(&[
        ProtoStream {
            labels: r#"{app="api", env="prod", note="a \"quoted\" \u00e9 value"}"#,
            entries: vec![
                (1_700_000_000_000_000_001, "GET /orders 200", vec![("trace_id", "abc")]),
                (1_700_000_000_000_000_002, "second", vec![]),
            ],
        },
        ProtoStream { labels: r#"{app="web"}"#, entries: vec![(5, "x", vec![("a", "b"), ("c", "d")])] },
    ])
}

const JSON_SEED: &str = r#"{"streams":[{"stream":{"app":"api","env":"prod"},"values":[["1700000000000000001","plain"],["1700000000000000002","with \"escapes\" \u00e9",{"trace_id":"abc"}]]},{"labels":"{app=\"old\"}","entries":[{"ts":"2023-11-14T22:13:20.5Z","line":"legacy"}]}]}"#;

#[test]
fn damaged_loki_pushes_never_panic_the_decoders() {
    let protobuf = protobuf_seed();
    let mut rng = Rng(0x10c5_5eed_0001_beef);
    for _ in 0..20_000 {
        let _ = decode_protobuf(&mutate(&protobuf, &mut rng));
        let _ = decode_json(&mutate(JSON_SEED.as_bytes(), &mut rng));
    }
}

#[test]
fn damaged_snappy_never_panics_or_overallocates() {
    let compressed = snappy(&protobuf_seed());
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut framed, &protobuf_seed()).unwrap();
    let framed = framed.into_inner().unwrap();
    let mut rng = Rng(77);
    let mut buffer = Vec::new();
    for _ in 0..20_000 {
        for seed in [&compressed, &framed] {
            if unsnappy(&mutate(seed, &mut rng), 4096, &mut buffer).is_ok() {
                assert!(buffer.len() <= 4096);
                let _ = decode_protobuf(&buffer);
            }
        }
    }
}

#[test]
fn damaged_selectors_never_panic_the_parser() {
    let seed = r#"{app="api", b=`raw`, c="esc \" \\ \n \x41 \101 \u00e9 \U0001F600",}"#;
    let mut rng = Rng(0xabcdef);
    for _ in 0..50_000 {
        let damaged = mutate(seed.as_bytes(), &mut rng);
        if let Ok(text) = std::str::from_utf8(&damaged) {
            let _ = parse_stream_selector(text);
        }
    }
}

#[test]
fn damaged_otlp_logs_never_panic_the_translation() {
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"3"}}]}}}]},"scopeLogs":[{"scope":{"name":"s"},"logRecords":[{"timeUnixNano":"1700000000000000000","body":{"arrayValue":{"values":[{"doubleValue":1.5},{"bytesValue":"aGk="}]}},"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}]}]}]}"#;
    let request: ExportLogsServiceRequest = serde_json::from_str(json).unwrap();
    let protobuf = request.encode_to_vec();
    let mut rng = Rng(99);
    for _ in 0..20_000 {
        if let Ok(request) = ExportLogsServiceRequest::decode(mutate(&protobuf, &mut rng).as_slice()) {
            let _ = translate(&request, 0);
        }
        if let Ok(request) = serde_json::from_slice::<ExportLogsServiceRequest>(&mutate(json.as_bytes(), &mut rng)) {
            let _ = translate(&request, 0);
        }
    }
}
