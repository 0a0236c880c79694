//! OTLP traces in: every field of a rich request round-trips over HTTP protobuf, HTTP JSON
//! (gzip, on the main router) and gRPC; partial success per span; every refusal names its
//! problem (400 / 413 / 415 over HTTP, INVALID_ARGUMENT and the rest over gRPC); tenancy; the
//! self-metrics under Tempo's names.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use tripod::Config;
use tripod::api::otlp::metrics::RpcStatus;
use tripod::config::ListenerName;

use crate::support::{
    Fetch, assert_same_spans, canonical_spans, fetch, fetch_answer, fetch_with, get, grpc_endpoint, gzip, hex, now_ns,
    post, server, server_with, url,
};

pub fn value(value: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

pub fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.into(), value, ..Default::default() }
}

pub fn string(key: &str, text: &str) -> KeyValue {
    kv(key, value(any_value::Value::StringValue(text.into())))
}

pub fn int(key: &str, i: i64) -> KeyValue {
    kv(key, value(any_value::Value::IntValue(i)))
}

/// A trace ID made from a number, so tests can tell their traces apart.
pub fn trace_id(n: u64) -> Vec<u8> {
    let mut id = vec![0x5e; 8];
    id.extend_from_slice(&n.to_be_bytes());
    id
}

pub fn span_id(trace: u64, n: u8) -> Vec<u8> {
    let mut id = (trace as u32).to_be_bytes().to_vec();
    id.extend_from_slice(&[0xa0, 0, 0, n]);
    id
}

/// A request with every field OTLP has, set: two resources, three scopes, spans of every kind
/// with attributes of every value type, events, links, statuses, flags, trace state, dropped
/// counts and schema URLs.
pub fn rich_request(trace: u64) -> ExportTraceServiceRequest {
    let id = trace_id(trace);
    let t0 = now_ns() - 60_000_000_000;
    let every_type = vec![
        string("http.method", "POST"),
        int("http.status_code", 201),
        int("big.negative", -9_007_199_254_740_993),
        kv("ratio", value(any_value::Value::DoubleValue(0.125))),
        kv("whole.double", value(any_value::Value::DoubleValue(3.0))),
        kv("cache.hit", value(any_value::Value::BoolValue(false))),
        kv("payload", value(any_value::Value::BytesValue(vec![0, 1, 2, 253, 254, 255]))),
        kv(
            "tags",
            value(any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    value(any_value::Value::StringValue("a".into())).unwrap(),
                    value(any_value::Value::IntValue(2)).unwrap(),
                    value(any_value::Value::ArrayValue(ArrayValue { values: vec![] })).unwrap(),
                ],
            })),
        ),
        kv(
            "user",
            value(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    string("id", "u-17"),
                    kv("vip", value(any_value::Value::BoolValue(true))),
                    kv(
                        "roles",
                        value(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![value(any_value::Value::StringValue("admin".into())).unwrap()],
                        })),
                    ),
                ],
            })),
        ),
        string("unicode", "caf\u{e9} \u{1f600} \"quoted\" \\ back"),
        string("empty", ""),
    ];
    let root = Span {
        trace_id: id.clone(),
        span_id: span_id(trace, 1),
        trace_state: "tp2devops=t61rcWkgMzE,other=1".into(),
        parent_span_id: vec![],
        flags: 0x301,
        name: "POST /api/todos".into(),
        kind: 2,
        start_time_unix_nano: t0,
        end_time_unix_nano: t0 + 15_000_000,
        attributes: every_type,
        dropped_attributes_count: 2,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
        status: Some(Status { message: String::new(), code: 1 }),
    };
    let client = Span {
        trace_id: id.clone(),
        span_id: span_id(trace, 2),
        parent_span_id: span_id(trace, 1),
        flags: 0x100,
        name: "SELECT todos".into(),
        kind: 3,
        start_time_unix_nano: t0 + 2_000_000,
        end_time_unix_nano: t0 + 10_000_000,
        attributes: vec![
            string("db.system", "postgresql"),
            string("db.statement", "SELECT * FROM todos WHERE id = $1"),
        ],
        status: None,
        ..Default::default()
    };
    let failing = Span {
        trace_id: id.clone(),
        span_id: span_id(trace, 3),
        parent_span_id: span_id(trace, 1),
        name: "metrics_update".into(),
        kind: 1,
        start_time_unix_nano: t0 + 11_000_000,
        end_time_unix_nano: t0 + 13_000_000,
        attributes: vec![string("metric", "tp2devops_todos_active")],
        events: vec![
            span::Event {
                time_unix_nano: t0 + 12_000_000,
                name: "exception".into(),
                attributes: vec![
                    string("exception.type", "TimeoutError"),
                    string("exception.message", "push gateway timed out"),
                    kv("exception.escaped", value(any_value::Value::BoolValue(false))),
                ],
                dropped_attributes_count: 1,
            },
            span::Event {
                time_unix_nano: t0 + 12_500_000,
                name: "retry".into(),
                attributes: vec![],
                dropped_attributes_count: 0,
            },
        ],
        dropped_events_count: 4,
        links: vec![
            span::Link {
                trace_id: trace_id(trace + 1_000),
                span_id: span_id(trace + 1_000, 9),
                trace_state: "vendor=x".into(),
                attributes: vec![string("link.kind", "follows_from"), int("link.index", 0)],
                dropped_attributes_count: 3,
                flags: 0x301,
            },
            span::Link { trace_id: id.clone(), span_id: span_id(trace, 2), ..Default::default() },
        ],
        dropped_links_count: 5,
        status: Some(Status { message: "push gateway timed out".into(), code: 2 }),
        ..Default::default()
    };
    let producer = Span {
        trace_id: id.clone(),
        span_id: span_id(trace, 4),
        parent_span_id: span_id(trace, 1),
        name: "todo.created publish".into(),
        kind: 4,
        start_time_unix_nano: t0 + 13_000_000,
        end_time_unix_nano: t0 + 14_000_000,
        ..Default::default()
    };
    let consumer = Span {
        trace_id: id.clone(),
        span_id: span_id(trace, 5),
        parent_span_id: span_id(trace, 4),
        name: "todo.created process".into(),
        kind: 5,
        start_time_unix_nano: t0 + 20_000_000,
        end_time_unix_nano: t0 + 25_000_000,
        attributes: vec![string("messaging.system", "kafka")],
        ..Default::default()
    };
    let unspecified = Span {
        trace_id: id,
        span_id: span_id(trace, 6),
        parent_span_id: span_id(trace, 5),
        name: "".into(),
        kind: 0,
        start_time_unix_nano: t0 + 21_000_000,
        end_time_unix_nano: t0 + 21_000_000,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        string("service.name", "tp2devops-backend"),
                        string("service.namespace", "tp2devops"),
                        string("deployment.environment", "test"),
                        int("process.pid", 4242),
                    ],
                    dropped_attributes_count: 1,
                    ..Default::default()
                }),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "tp2devops.http".into(),
                            version: "1.2.0".into(),
                            attributes: vec![string("scope.kind", "http")],
                            dropped_attributes_count: 6,
                        }),
                        spans: vec![root, client],
                        schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                    },
                    ScopeSpans {
                        scope: Some(InstrumentationScope { name: "tp2devops.todos".into(), ..Default::default() }),
                        spans: vec![failing, producer],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            },
            ResourceSpans {
                resource: Some(Resource { attributes: vec![string("service.name", "notifier")], ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "kafka.consumer".into(),
                        version: "0.9".into(),
                        ..Default::default()
                    }),
                    spans: vec![consumer, unspecified],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    }
}

pub fn http_url(server: &tripod::Server) -> String {
    url(server, ListenerName::OtlpHttp, "/v1/traces")
}

/// Exports over HTTP protobuf; the decoded response.
pub async fn export_http(server: &tripod::Server, request: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
    let answer = post(&http_url(server), "application/x-protobuf", &[], request.encode_to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.content_type, "application/x-protobuf");
    ExportTraceServiceResponse::decode(answer.body.as_slice()).unwrap()
}

#[tokio::test]
async fn every_field_round_trips_over_http_protobuf_json_and_grpc() {
    let server = server().await;

    // HTTP protobuf on the OTLP port.
    let by_protobuf = rich_request(1);
    assert_eq!(export_http(&server, &by_protobuf).await.partial_success, None);

    // HTTP JSON, gzip, on the Tempo port's /otlp/v1/traces.
    let by_json = rich_request(2);
    let body = gzip(&serde_json::to_vec(&by_json).unwrap());
    let json_url = url(&server, ListenerName::Tempo, "/otlp/v1/traces");
    let answer = post(&json_url, "application/json", &[("content-encoding", "gzip")], body).await;
    assert_eq!((answer.status, answer.text().as_str(), answer.content_type.as_str()), (200, "{}", "application/json"));

    // gRPC, gzip-compressed.
    let by_grpc = rich_request(3);
    let mut client = TraceServiceClient::connect(grpc_endpoint(&server))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    assert_eq!(client.export(by_grpc.clone()).await.unwrap().into_inner().partial_success, None);

    for request in [&by_protobuf, &by_json, &by_grpc] {
        let id = hex(&request.resource_spans[0].scope_spans[0].spans[0].trace_id);
        let expected = canonical_spans(&request.resource_spans);
        assert_eq!(expected.len(), 6);
        for how in Fetch::ALL {
            assert_same_spans(&fetch(&server, how, &id).await, &expected);
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn partial_success_counts_the_spans_refused() {
    let server = server().await;
    let mut request = rich_request(10);
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    let mut zero_trace = spans[0].clone();
    zero_trace.trace_id = vec![0; 16];
    let mut short_span = spans[0].clone();
    short_span.span_id = vec![1, 2, 3, 4];
    let mut bad_parent = spans[0].clone();
    bad_parent.span_id = span_id(10, 7);
    bad_parent.parent_span_id = vec![1, 2, 3];
    let mut odd_trace = spans[0].clone();
    odd_trace.trace_id = vec![7; 17];
    spans.extend([zero_trace, short_span, bad_parent, odd_trace]);
    // A link that cannot be kept is dropped and counted, its span stored.
    request.resource_spans[1].scope_spans[0].spans[0].links.push(span::Link {
        trace_id: vec![1; 4],
        span_id: vec![2; 8],
        ..Default::default()
    });

    let answer = export_http(&server, &request).await;
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 4);
    let message = partial.error_message;
    assert!(message.starts_with("4 of 10 spans refused: 2 invalid_trace_id, e.g. trace id is all zeros"), "{message}");
    for part in [
        "1 invalid_span_id, e.g. span id is 4 bytes, expected 8",
        "1 invalid_parent_span_id, e.g. parent span id is 3 bytes, expected 8 or none",
        "1 links dropped: a link's trace id \"01010101\"",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }

    // The six good spans are stored; the consumer's link count says one more was dropped.
    let stored = fetch(&server, Fetch::V1Protobuf, &hex(&trace_id(10))).await;
    assert_eq!(stored.len(), 6);
    let consumer = stored.iter().find(|span| span["name"] == "todo.created process").unwrap();
    assert_eq!(consumer["droppedLinksCount"], 1);
    assert_eq!(consumer["links"], serde_json::json!([]));

    // The same in JSON: int64 counts as strings.
    let mut json_request = rich_request(11);
    json_request.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let answer = post(&http_url(&server), "application/json", &[], serde_json::to_vec(&json_request).unwrap()).await;
    assert_eq!(answer.status, 200);
    let json = answer.json();
    assert_eq!(json["partialSuccess"]["rejectedSpans"], "1");
    assert!(
        json["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("1 invalid_span_id, e.g. span id is all zeros")
    );

    // And over gRPC.
    let mut grpc_request = rich_request(12);
    grpc_request.resource_spans[1].scope_spans[0].spans[1].trace_id = vec![];
    let mut client = TraceServiceClient::connect(grpc_endpoint(&server)).await.unwrap();
    let partial = client.export(grpc_request).await.unwrap().into_inner().partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace id is 0 bytes, expected 16"), "{}", partial.error_message);
    assert_eq!(fetch(&server, Fetch::V2Json, &hex(&trace_id(12))).await.len(), 5);

    // Sending the same spans again stores nothing twice and refuses nothing.
    assert_eq!(export_http(&server, &rich_request(12)).await.partial_success, None);
    assert_eq!(fetch(&server, Fetch::V2Json, &hex(&trace_id(12))).await.len(), 6);
    server.shutdown().await.unwrap();
}

fn rpc_status(answer: &crate::support::Answer) -> RpcStatus {
    match answer.content_type.as_str() {
        "application/x-protobuf" => RpcStatus::decode(answer.body.as_slice()).unwrap(),
        "application/json" => {
            let json = answer.json();
            RpcStatus { code: json["code"].as_i64().unwrap() as i32, message: json["message"].as_str().unwrap().into() }
        }
        other => panic!("unexpected content type {other}"),
    }
}

#[tokio::test]
async fn every_refusal_names_its_problem() {
    let mut config = Config::embedded();
    config.max_request_body_bytes = 64 << 10;
    config.max_decompressed_bytes = 256 << 10;
    let server = server_with(config).await;
    let url = http_url(&server);
    let json_with_ids = |trace: &str, span: &str| {
        serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": trace, "spanId": span, "name": "x"}]}]}]})
            .to_string()
            .into_bytes()
    };
    let zeros = vec![0u8; 1 << 20];
    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<u8>, u16, &str)> = vec![
        (
            "application/x-protobuf",
            vec![],
            vec![0x0a, 0xff, 0xff, 0x01],
            400,
            "body is not an OTLP traces protobuf message",
        ),
        (
            "application/x-protobuf",
            vec![],
            b"\x0a\x05hello".to_vec(),
            400,
            "body is not an OTLP traces protobuf message",
        ),
        ("application/json", vec![], b"{\"resourceSpans\": 5}".to_vec(), 400, "body is not OTLP traces JSON"),
        ("application/json", vec![], b"{\"resourceSpans\": [".to_vec(), 400, "body is not OTLP traces JSON"),
        (
            "application/json",
            vec![],
            json_with_ids("zz5e5e5e5e5e5e5e0000000000000001", "0102030405060708"),
            400,
            "body is not OTLP traces JSON",
        ),
        ("application/json", vec![], json_with_ids("5e5", "0102030405060708"), 400, "body is not OTLP traces JSON"),
        (
            "application/json",
            vec![],
            json_with_ids("5e5e5e5e5e5e5e5e0000000000000001", "01-2"),
            400,
            "body is not OTLP traces JSON",
        ),
        ("text/plain", vec![], b"spans".to_vec(), 415, "unsupported content type \"text/plain\""),
        (
            "application/x-protobuf",
            vec![("content-encoding", "br")],
            vec![1],
            415,
            "unsupported content encoding \"br\"",
        ),
        (
            "application/x-protobuf",
            vec![("content-encoding", "gzip")],
            b"not gzip".to_vec(),
            400,
            "body is not valid gzip",
        ),
        (
            "application/x-protobuf",
            vec![("content-encoding", "gzip")],
            gzip(&zeros),
            413,
            "decompressed body is over the limit of 262144 bytes",
        ),
        ("application/x-protobuf", vec![], vec![0; 100 << 10], 413, "request body is over the limit of 65536 bytes"),
    ];
    for (content_type, headers, body, status, message) in cases {
        let answer = post(&url, content_type, &headers, body).await;
        assert_eq!(answer.status, status, "{content_type} {headers:?}: {}", answer.text());
        let rpc = rpc_status(&answer);
        assert!(rpc.message.starts_with(message), "{content_type} {headers:?}: {}", rpc.message);
        let expected_code = if status == 413 { tonic::Code::ResourceExhausted } else { tonic::Code::InvalidArgument };
        assert_eq!(rpc.code, expected_code as i32, "{}", rpc.message);
    }

    // Over the body cap without a Content-Length (chunked), as streaming clients send.
    let big = vec![0u8; 100 << 10];
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.chunks(8 << 10).map(|chunk| Ok(chunk.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.message, "request body is over the limit of 65536 bytes");

    // A small chunked body is read whole.
    let request = rich_request(20).encode_to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = request.chunks(100).map(|chunk| Ok(chunk.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(fetch(&server, Fetch::V1Protobuf, &hex(&trace_id(20))).await.len(), 6);

    // Nothing refused was stored, and the server answers on.
    let storage = server.storage().unwrap();
    assert_eq!(storage.traces().store_stats().appended.appended, 6);
    server.shutdown().await.unwrap();
}

/// A gRPC client codec that sends raw bytes as the request message.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct ResponseDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buffer: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buffer, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, buffer: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(buffer).map(Some).map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

async fn raw_grpc(
    endpoint: &str,
    path: &'static str,
    body: Vec<u8>,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|response| response.into_inner())
}

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[tokio::test]
async fn grpc_refusals_are_invalid_argument() {
    let mut config = Config::embedded();
    config.max_decompressed_bytes = 64 << 10;
    let server = server_with(config).await;
    let endpoint = grpc_endpoint(&server);

    let error = raw_grpc(&endpoint, EXPORT, vec![0x0a, 0xff, 0xff, 0x01]).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().starts_with("body is not an OTLP traces protobuf message"), "{}", error.message());

    // A well-formed request through the same raw path is stored.
    let answer = raw_grpc(&endpoint, EXPORT, rich_request(30).encode_to_vec()).await.unwrap();
    assert_eq!(answer.partial_success, None);
    assert_eq!(fetch(&server, Fetch::V1Json, &hex(&trace_id(30))).await.len(), 6);

    // Over the message cap: refused by the transport before it is read (tonic's code for it).
    let error = raw_grpc(&endpoint, EXPORT, vec![0; 100 << 10]).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::OutOfRange, "{}", error.message());
    assert!(error.message().contains("found 102400 bytes, the limit is: 65536 bytes"), "{}", error.message());

    let error =
        raw_grpc(&endpoint, "/opentelemetry.proto.collector.trace.v1.TraceService/Other", vec![]).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unimplemented);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tenants_are_kept_apart() {
    let mut config = Config::embedded();
    config.logs_ingest.auth_enabled = true;
    let server = server_with(config).await;
    let id = hex(&trace_id(40));

    // Without a tenant, writes and reads are refused.
    let answer = post(&http_url(&server), "application/x-protobuf", &[], rich_request(40).encode_to_vec()).await;
    assert_eq!((answer.status, rpc_status(&answer).message.as_str()), (401, "no org id"));
    let mut client = TraceServiceClient::connect(grpc_endpoint(&server)).await.unwrap();
    let error = client.export(rich_request(40)).await.unwrap_err();
    assert_eq!((error.code(), error.message()), (tonic::Code::Unauthenticated, "no org id"));
    let answer = fetch_answer(&server, Fetch::V1Json, &id, "", &[]).await;
    assert_eq!((answer.status, answer.text().as_str()), (401, "no org id\n"));

    // Team A's resource over HTTP, team B's over gRPC, the same trace ID.
    let whole = rich_request(40);
    let mut request = whole.clone();
    let b_part = request.resource_spans.pop().unwrap();
    let answer =
        post(&http_url(&server), "application/x-protobuf", &[("x-scope-orgid", "team-a")], request.encode_to_vec())
            .await;
    assert_eq!(answer.status, 200);
    let mut for_b = tonic::Request::new(ExportTraceServiceRequest { resource_spans: vec![b_part] });
    for_b.metadata_mut().insert("x-scope-orgid", "team-b".parse().unwrap());
    client.export(for_b).await.unwrap();

    let a = fetch_with(&server, Fetch::V1Protobuf, &id, "", &[("x-scope-orgid", "team-a")]).await;
    let b = fetch_with(&server, Fetch::V1Protobuf, &id, "", &[("x-scope-orgid", "team-b")]).await;
    let both = fetch_with(&server, Fetch::V2Json, &id, "", &[("x-scope-orgid", "team-a|team-b")]).await;
    assert_eq!((a.len(), b.len(), both.len()), (4, 2, 6));
    assert_same_spans(&both, &canonical_spans(&whole.resource_spans));
    let answer = fetch_answer(&server, Fetch::V1Json, &id, "", &[("x-scope-orgid", "team-c")]).await;
    assert_eq!(answer.status, 404);
    let answer = fetch_answer(&server, Fetch::V1Json, &id, "", &[("x-scope-orgid", "team/a")]).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn exports_are_counted_under_tempos_names() {
    let server = server().await;
    let mut request = rich_request(50);
    request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    let bytes = request.encoded_len();
    export_http(&server, &request).await;
    let second_request = rich_request(51);
    let second = second_request.encoded_len();
    export_http(&server, &second_request).await;
    let metrics = get(&url(&server, ListenerName::Prometheus, "/metrics"), &[]).await.text();
    for line in [
        "tempo_distributor_spans_received_total{tenant=\"single-tenant\"} 12".to_string(),
        "tripod_traces_received_spans_total{tenant=\"single-tenant\"} 12".to_string(),
        format!("tempo_distributor_bytes_received_total{{tenant=\"single-tenant\"}} {}", bytes + second),
        "tempo_ingester_traces_created_total{tenant=\"single-tenant\"} 2".to_string(),
        "tempo_discarded_spans_total{reason=\"invalid_span_id\",tenant=\"single-tenant\"} 1".to_string(),
        "tripod_traces_discarded_spans_total{reason=\"invalid_span_id\",tenant=\"single-tenant\"} 1".to_string(),
        "tripod_traces_head_spans 11".to_string(),
        "tempo_ingester_live_traces 2".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    server.shutdown().await.unwrap();
}
