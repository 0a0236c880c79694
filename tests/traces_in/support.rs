//! Shared helpers: an embedded server, requests built with OTLP's types, fetching a trace by ID
//! over HTTP, and one canonical form of spans (a JSON value per span, attributes sorted by key,
//! values tagged with their type) that a request, a protobuf answer, a Tempo JSON answer and the
//! Python client's report all reduce to, so they compare field by field.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;
use serde_json::{Value, json};
use tripod::config::ListenerName;
use tripod::{Config, Server};

pub async fn server() -> Server {
    server_with(Config::embedded()).await
}

pub async fn server_with(config: Config) -> Server {
    let server = Server::start(config).await.expect("server starts");
    server.ready().await.expect("storage opens");
    server
}

pub fn url(server: &Server, listener: ListenerName, path: &str) -> String {
    format!("http://{}{path}", server.address(listener).expect("listener is on"))
}

pub fn grpc_endpoint(server: &Server) -> String {
    format!("http://{}", server.address(ListenerName::OtlpGrpc).expect("grpc listener"))
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Status, content type and body of a request.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| panic!("not json ({error}): {}", self.text()))
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    Answer { status, content_type, body: response.bytes().await.unwrap().to_vec() }
}

/// Posts a body with a content type and extra headers.
pub async fn post(url: &str, content_type: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut request = reqwest::Client::new().post(url).header("content-type", content_type).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// `GET` with headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// Which trace-by-ID endpoint and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    V1Protobuf,
    V1Json,
    V2Protobuf,
    V2Json,
}

impl Fetch {
    pub const ALL: [Fetch; 4] = [Fetch::V1Protobuf, Fetch::V1Json, Fetch::V2Protobuf, Fetch::V2Json];

    pub fn path(self, id: &str) -> String {
        match self {
            Fetch::V1Protobuf | Fetch::V1Json => format!("/api/traces/{id}"),
            Fetch::V2Protobuf | Fetch::V2Json => format!("/api/v2/traces/{id}"),
        }
    }

    pub fn headers(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Fetch::V1Protobuf | Fetch::V2Protobuf => vec![("accept", "application/protobuf")],
            Fetch::V1Json | Fetch::V2Json => vec![],
        }
    }
}

/// `(tenant header, query)` of a fetch.
pub async fn fetch_answer(server: &Server, fetch: Fetch, id: &str, query: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = fetch.headers();
    all.extend_from_slice(headers);
    get(&url(server, ListenerName::Tempo, &format!("{}{query}", fetch.path(id))), &all).await
}

/// The trace's spans in canonical form, fetched one way; panics unless the answer is a 200 in
/// the expected encoding.
pub async fn fetch(server: &Server, fetch: Fetch, id: &str) -> Vec<Value> {
    fetch_with(server, fetch, id, "", &[]).await
}

pub async fn fetch_with(server: &Server, how: Fetch, id: &str, query: &str, headers: &[(&str, &str)]) -> Vec<Value> {
    let answer = fetch_answer(server, how, id, query, headers).await;
    assert_eq!(answer.status, 200, "{how:?} {id}: {}", answer.text());
    decode(how, &answer)
}

/// An answer's spans in canonical form.
pub fn decode(how: Fetch, answer: &Answer) -> Vec<Value> {
    match how {
        Fetch::V1Protobuf => {
            assert_eq!(answer.content_type, "application/protobuf");
            canonical_spans(&TracesData::decode(answer.body.as_slice()).unwrap().resource_spans)
        }
        Fetch::V2Protobuf => {
            assert_eq!(answer.content_type, "application/protobuf");
            let response = tripod::api::tempo::trace::TraceByIdResponse::decode(answer.body.as_slice()).unwrap();
            assert_eq!((response.status, response.message.as_str()), (0, ""));
            canonical_spans(&response.trace.expect("a trace").resource_spans)
        }
        Fetch::V1Json => {
            assert_eq!(answer.content_type, "application/json");
            let json = answer.json();
            assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>(), ["batches"]);
            canonical_json_spans(&json["batches"])
        }
        Fetch::V2Json => {
            assert_eq!(answer.content_type, "application/json");
            let json = answer.json();
            assert_eq!(json["status"], "COMPLETE");
            assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
            canonical_json_spans(&json["trace"]["resourceSpans"])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The canonical form.

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

fn tagged(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => json!({"string": text}),
        Some(any_value::Value::IntValue(i)) => json!({"int": i}),
        Some(any_value::Value::DoubleValue(d)) => json!({"double": d}),
        Some(any_value::Value::BoolValue(b)) => json!({"bool": b}),
        Some(any_value::Value::BytesValue(bytes)) => json!({"bytes": hex(bytes)}),
        Some(any_value::Value::ArrayValue(array)) => {
            json!({"array": array.values.iter().map(tagged).collect::<Vec<_>>()})
        }
        Some(any_value::Value::KvlistValue(list)) => json!({"kvlist": attributes(&list.values)}),
        Some(any_value::Value::StringValueStrindex(_)) | None => json!({"string": ""}),
    }
}

/// `[[key, tagged value], ...]` sorted by key (stable).
fn attributes(attributes: &[KeyValue]) -> Value {
    let mut pairs: Vec<(String, Value)> =
        attributes.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(json!({"string": ""}), tagged))).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(pairs.into_iter().map(|(key, value)| json!([key, value])).collect())
}

/// Every span of `resource_spans` in canonical form, sorted by span ID.
pub fn canonical_spans(resource_spans: &[ResourceSpans]) -> Vec<Value> {
    let mut out = Vec::new();
    for group in resource_spans {
        let resource = group.resource.as_ref().map_or(json!([]), |resource| attributes(&resource.attributes));
        let resource_dropped = group.resource.as_ref().map_or(0, |resource| resource.dropped_attributes_count);
        for scope_spans in &group.scope_spans {
            let scope = scope_spans.scope.clone().unwrap_or_default();
            for span in &scope_spans.spans {
                let status = span.status.clone().unwrap_or_default();
                out.push(json!({
                    "resource": resource,
                    "resourceDroppedAttributesCount": resource_dropped,
                    "resourceSchemaUrl": group.schema_url,
                    "scope": {"name": scope.name, "version": scope.version, "attributes": attributes(&scope.attributes), "droppedAttributesCount": scope.dropped_attributes_count},
                    "scopeSchemaUrl": scope_spans.schema_url,
                    "traceId": hex(&span.trace_id),
                    "spanId": hex(&span.span_id),
                    "parentSpanId": hex(&span.parent_span_id),
                    "traceState": span.trace_state,
                    "flags": span.flags,
                    "name": span.name,
                    "kind": KINDS.get(span.kind as usize).copied().unwrap_or("?"),
                    "startTimeUnixNano": span.start_time_unix_nano,
                    "endTimeUnixNano": span.end_time_unix_nano,
                    "attributes": attributes(&span.attributes),
                    "droppedAttributesCount": span.dropped_attributes_count,
                    "events": span.events.iter().map(|event| json!({
                        "timeUnixNano": event.time_unix_nano,
                        "name": event.name,
                        "attributes": attributes(&event.attributes),
                        "droppedAttributesCount": event.dropped_attributes_count,
                    })).collect::<Vec<_>>(),
                    "droppedEventsCount": span.dropped_events_count,
                    "links": span.links.iter().map(|link| json!({
                        "traceId": hex(&link.trace_id),
                        "spanId": hex(&link.span_id),
                        "traceState": link.trace_state,
                        "attributes": attributes(&link.attributes),
                        "droppedAttributesCount": link.dropped_attributes_count,
                        "flags": link.flags,
                    })).collect::<Vec<_>>(),
                    "droppedLinksCount": span.dropped_links_count,
                    "status": {"code": status.code, "message": status.message},
                }));
            }
        }
    }
    out.sort_by(|a, b| a["spanId"].as_str().cmp(&b["spanId"].as_str()));
    out
}

// Tempo's JSON back to OTLP's types, independently of the server's writer: protobuf's JSON
// mapping read by hand (camelCase, hex IDs, strings for 64-bit integers, enum names, base64).

fn string_of(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

fn u64_of(value: &Value) -> u64 {
    match value {
        Value::Null => 0,
        Value::String(text) => text.parse().unwrap_or_else(|_| panic!("not a uint64 string: {text}")),
        Value::Number(number) => number.as_u64().unwrap(),
        other => panic!("not a uint64: {other}"),
    }
}

fn u32_of(value: &Value) -> u32 {
    match value {
        Value::Null => 0,
        Value::Number(number) => number.as_u64().unwrap() as u32,
        other => panic!("uint32 must be a JSON number: {other}"),
    }
}

fn bytes_of_hex(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or("");
    assert_eq!(text, text.to_ascii_lowercase(), "hex ids are lowercase");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn unbase64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        bits = bits << 6 | ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

fn any_of_json(value: &Value) -> AnyValue {
    let object = value.as_object().expect("AnyValue is an object");
    assert!(object.len() <= 1, "one value field: {value}");
    let inner = object.iter().next().map(|(key, inner)| match key.as_str() {
        "stringValue" => any_value::Value::StringValue(string_of(inner)),
        "boolValue" => any_value::Value::BoolValue(inner.as_bool().unwrap()),
        "intValue" => {
            assert!(inner.is_string(), "int64 is a string: {value}");
            any_value::Value::IntValue(inner.as_str().unwrap().parse().unwrap())
        }
        "doubleValue" => any_value::Value::DoubleValue(match inner {
            Value::String(text) if text == "NaN" => f64::NAN,
            Value::String(text) if text == "Infinity" => f64::INFINITY,
            Value::String(text) if text == "-Infinity" => f64::NEG_INFINITY,
            other => other.as_f64().unwrap(),
        }),
        "bytesValue" => any_value::Value::BytesValue(unbase64(inner.as_str().unwrap())),
        "arrayValue" => any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
            values: inner["values"].as_array().map_or(vec![], |values| values.iter().map(any_of_json).collect()),
        }),
        "kvlistValue" => any_value::Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
            values: key_values_of_json(&inner["values"]),
        }),
        other => panic!("unknown AnyValue field {other}"),
    });
    AnyValue { value: inner }
}

fn key_values_of_json(value: &Value) -> Vec<KeyValue> {
    value
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|pair| KeyValue {
                    key: string_of(&pair["key"]),
                    value: Some(any_of_json(&pair["value"])),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn enum_of(value: &Value, names: &[&str]) -> i32 {
    match value {
        Value::Null => 0,
        Value::String(name) => {
            names.iter().position(|n| n == name).unwrap_or_else(|| panic!("unknown enum {name}")) as i32
        }
        other => panic!("enums are written by name: {other}"),
    }
}

/// Tempo's JSON resource spans (`batches` or `resourceSpans`) in canonical form.
pub fn canonical_json_spans(groups: &Value) -> Vec<Value> {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span, Status, span};
    let mut resource_spans = Vec::new();
    for group in groups.as_array().expect("an array of resource spans") {
        let resource = &group["resource"];
        let mut scope_spans = Vec::new();
        for scope_group in group["scopeSpans"].as_array().cloned().unwrap_or_default() {
            let scope = &scope_group["scope"];
            let mut spans = Vec::new();
            for span in scope_group["spans"].as_array().cloned().unwrap_or_default() {
                assert!(span["startTimeUnixNano"].is_string(), "uint64 times are strings: {span}");
                spans.push(Span {
                    trace_id: bytes_of_hex(&span["traceId"]),
                    span_id: bytes_of_hex(&span["spanId"]),
                    trace_state: string_of(&span["traceState"]),
                    parent_span_id: bytes_of_hex(&span["parentSpanId"]),
                    flags: u32_of(&span["flags"]),
                    name: string_of(&span["name"]),
                    kind: enum_of(&span["kind"], &KINDS),
                    start_time_unix_nano: u64_of(&span["startTimeUnixNano"]),
                    end_time_unix_nano: u64_of(&span["endTimeUnixNano"]),
                    attributes: key_values_of_json(&span["attributes"]),
                    dropped_attributes_count: u32_of(&span["droppedAttributesCount"]),
                    events: span["events"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|event| span::Event {
                            time_unix_nano: u64_of(&event["timeUnixNano"]),
                            name: string_of(&event["name"]),
                            attributes: key_values_of_json(&event["attributes"]),
                            dropped_attributes_count: u32_of(&event["droppedAttributesCount"]),
                        })
                        .collect(),
                    dropped_events_count: u32_of(&span["droppedEventsCount"]),
                    links: span["links"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|link| span::Link {
                            trace_id: bytes_of_hex(&link["traceId"]),
                            span_id: bytes_of_hex(&link["spanId"]),
                            trace_state: string_of(&link["traceState"]),
                            attributes: key_values_of_json(&link["attributes"]),
                            dropped_attributes_count: u32_of(&link["droppedAttributesCount"]),
                            flags: u32_of(&link["flags"]),
                        })
                        .collect(),
                    dropped_links_count: u32_of(&span["droppedLinksCount"]),
                    status: Some(Status {
                        message: string_of(&span["status"]["message"]),
                        code: enum_of(
                            &span["status"]["code"],
                            &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
                        ),
                    }),
                });
            }
            scope_spans.push(ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: string_of(&scope["name"]),
                    version: string_of(&scope["version"]),
                    attributes: key_values_of_json(&scope["attributes"]),
                    dropped_attributes_count: u32_of(&scope["droppedAttributesCount"]),
                }),
                spans,
                schema_url: string_of(&scope_group["schemaUrl"]),
            });
        }
        resource_spans.push(ResourceSpans {
            resource: Some(Resource {
                attributes: key_values_of_json(&resource["attributes"]),
                dropped_attributes_count: u32_of(&resource["droppedAttributesCount"]),
                ..Default::default()
            }),
            scope_spans,
            schema_url: string_of(&group["schemaUrl"]),
        });
    }
    canonical_spans(&resource_spans)
}

/// Checks that `got` holds exactly the spans of `expected`, field by field, naming the first
/// difference.
pub fn assert_same_spans(got: &[Value], expected: &[Value]) {
    let ids =
        |spans: &[Value]| spans.iter().map(|span| span["spanId"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(expected), "span IDs differ");
    for (got, expected) in got.iter().zip(expected) {
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(&got[field], value, "span {} field {field}", expected["spanId"]);
        }
        assert_eq!(got.as_object().unwrap().len(), expected.as_object().unwrap().len());
    }
}

// ---------------------------------------------------------------------------------------------
// Outside clients.

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// The venv's Python with `module` importable, or `None` (skip) outside CI.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidate =
        std::env::var_os("TRIPOD_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".venv/bin/python"));
    let usable = candidate.is_file()
        && Command::new(&candidate)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
    if usable {
        return Some(candidate);
    }
    if ci() {
        panic!(
            "python module {module} is not installed; scripts/test sets up .venv from tests/clients/requirements.txt"
        );
    }
    eprintln!("skipping: no Python with {module} (scripts/test sets it up)");
    None
}
