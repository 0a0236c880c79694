//! Shared helpers: an embedded server; traces described as plain spans, sent over OTLP HTTP
//! (grouped by service into resource spans, as an SDK groups them); requests to the Tempo
//! listener built as Grafana builds them (`encodeURIComponent`); and the answers' JSON decoded
//! into strict types that mirror the Go types Grafana's Tempo backend decodes into (strings
//! where Go has strings, numbers where it has numbers), refusing any field Tempo does not send.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span};
use prost::Message;
use serde::Deserialize;
use serde::de::DeserializeOwned;
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

pub fn tempo_url(server: &Server, path_and_query: &str) -> String {
    format!("http://{}{path_and_query}", server.address(ListenerName::Tempo).expect("tempo listener"))
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub const MS: u64 = 1_000_000;
pub const SECOND: u64 = 1_000_000_000;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// JavaScript's `encodeURIComponent`, with which Grafana's frontend writes every parameter.
pub fn encode_uri_component(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `name=value&...`, each part encoded as Grafana encodes it.
pub fn query_string(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{}={}", encode_uri_component(name), encode_uri_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------------
// Traces as plain data.

pub fn string(key: &str, text: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(text.into())) }),
        ..Default::default()
    }
}

pub fn int(key: &str, n: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(n)) }),
        ..Default::default()
    }
}

pub fn double(key: &str, n: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(n)) }),
        ..Default::default()
    }
}

pub fn boolean(key: &str, b: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(b)) }),
        ..Default::default()
    }
}

/// OTLP status codes.
pub const UNSET: i32 = 0;
pub const OK: i32 = 1;
pub const ERROR: i32 = 2;

/// One span, with the service whose resource it belongs to.
#[derive(Debug, Clone)]
pub struct TestSpan {
    pub service: String,
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: i32,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<span::Event>,
    pub links: Vec<span::Link>,
}

impl TestSpan {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

#[derive(Debug, Clone)]
pub struct TestTrace {
    pub id: [u8; 16],
    pub spans: Vec<TestSpan>,
}

impl TestTrace {
    pub fn hex_id(&self) -> String {
        hex(&self.id)
    }

    pub fn root(&self) -> Option<&TestSpan> {
        self.spans.iter().filter(|span| span.parent.is_none()).min_by_key(|span| span.start_ns)
    }

    pub fn start_ns(&self) -> u64 {
        self.spans.iter().map(|span| span.start_ns).min().unwrap()
    }

    pub fn end_ns(&self) -> u64 {
        self.spans.iter().map(|span| span.end_ns).max().unwrap()
    }
}

/// A trace ID made from a number, so that tests can tell their traces apart.
pub fn trace_id(n: u64) -> [u8; 16] {
    let mut id = [0x7a; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

pub fn span_id(trace: u64, n: u8) -> [u8; 8] {
    let mut id = [0u8; 8];
    id[..4].copy_from_slice(&(trace as u32).to_be_bytes());
    id[4] = 0xb0;
    id[7] = n;
    id
}

/// Extra resource attributes every service's resource carries.
pub fn resource_attributes(service: &str) -> Vec<KeyValue> {
    vec![string("service.name", service), string("deployment.environment", "test")]
}

/// The traces as one export request: per trace, one resource per service (in the order the
/// services first appear), all spans of a service under one scope.
pub fn export_request(traces: &[TestTrace]) -> ExportTraceServiceRequest {
    let mut resource_spans = Vec::new();
    for trace in traces {
        let mut by_service: Vec<(String, Vec<&TestSpan>)> = Vec::new();
        for span in &trace.spans {
            match by_service.iter_mut().find(|(service, _)| *service == span.service) {
                Some((_, spans)) => spans.push(span),
                None => by_service.push((span.service.clone(), vec![span])),
            }
        }
        for (service, spans) in by_service {
            resource_spans.push(ResourceSpans {
                resource: Some(Resource { attributes: resource_attributes(&service), ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "tripod-tests".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: spans
                        .into_iter()
                        .map(|span| opentelemetry_proto::tonic::trace::v1::Span {
                            trace_id: trace.id.to_vec(),
                            span_id: span.span_id.to_vec(),
                            parent_span_id: span.parent.map_or_else(Vec::new, |id| id.to_vec()),
                            name: span.name.clone(),
                            kind: span.kind,
                            start_time_unix_nano: span.start_ns,
                            end_time_unix_nano: span.end_ns,
                            attributes: span.attributes.clone(),
                            events: span.events.clone(),
                            links: span.links.clone(),
                            status: Some(Status { message: String::new(), code: span.status }),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
    }
    ExportTraceServiceRequest { resource_spans }
}

/// Exports over OTLP HTTP protobuf as `tenant` (if any); insists on 200.
pub async fn export_as(server: &Server, tenant: Option<&str>, traces: &[TestTrace]) {
    let url = format!("http://{}/v1/traces", server.address(ListenerName::OtlpHttp).expect("otlp listener"));
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(export_request(traces).encode_to_vec());
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 200, "export refused: {}", response.text().await.unwrap());
}

pub async fn export(server: &Server, traces: &[TestTrace]) {
    export_as(server, None, traces).await;
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// Status, content type and body of an answer.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded into `T`, which refuses wrong types and unknown fields.
    pub fn strict<T: DeserializeOwned>(&self) -> T {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.content_type, "application/json", "{}", self.text());
        serde_json::from_slice(&self.body).unwrap_or_else(|error| panic!("{error}: {}", self.text()))
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    Answer { status, content_type, body: response.bytes().await.unwrap().to_vec() }
}

/// `GET` a path with its query, with headers.
pub async fn get(server: &Server, path_and_query: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = reqwest::Client::new().get(tempo_url(server, path_and_query));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// `GET` as Grafana's frontend sends it through the datasource proxy: the parameters encoded
/// with `encodeURIComponent`.
pub async fn grafana_get(server: &Server, path: &str, params: &[(&str, &str)]) -> Answer {
    let query = query_string(params);
    let path_and_query = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    get(server, &path_and_query, &[("X-Grafana-Org-Id", "1"), ("User-Agent", "Grafana/12.0.0")]).await
}

// ---------------------------------------------------------------------------------------------
// Answers as Grafana decodes them (Tempo's `tempopb` types in protobuf's JSON mapping).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchResponse {
    pub traces: Vec<TraceSearchMetadata>,
    pub metrics: SearchMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraceSearchMetadata {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub root_service_name: String,
    #[serde(default)]
    pub root_trace_name: String,
    pub start_time_unix_nano: String,
    #[serde(default)]
    pub duration_ms: u32,
    pub span_sets: Vec<SpanSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanSet {
    pub spans: Vec<SearchSpan>,
    pub matched: u32,
    #[serde(default)]
    pub attributes: Vec<KeyValueJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchSpan {
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(default)]
    pub name: String,
    pub start_time_unix_nano: String,
    pub duration_nanos: String,
    #[serde(default)]
    pub attributes: Vec<KeyValueJson>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyValueJson {
    pub key: String,
    pub value: AnyValueJson,
}

/// OTLP's `AnyValue` as Grafana's backend decodes it: exactly one field, with its JSON type.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::enum_variant_names)] // the names of protobuf's JSON mapping
pub enum AnyValueJson {
    StringValue(String),
    /// int64 is a string in protobuf's JSON mapping.
    IntValue(String),
    DoubleValue(f64),
    BoolValue(bool),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SearchMetrics {
    pub inspected_traces: Option<u32>,
    pub inspected_bytes: Option<String>,
    pub inspected_spans: Option<String>,
    pub total_blocks: Option<u32>,
}

/// Tempo's `MetadataMetrics`: what a tag answer may carry.
#[derive(Debug, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataMetrics {
    pub inspected_bytes: Option<String>,
    pub total_jobs: Option<u32>,
    pub completed_jobs: Option<u32>,
    pub total_blocks: Option<u32>,
    pub total_block_bytes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagNamesV1 {
    pub tag_names: Vec<String>,
    pub metrics: MetadataMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagNamesV2 {
    pub scopes: Vec<TagScopeJson>,
    pub metrics: MetadataMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagScopeJson {
    pub name: String,
    pub tags: Vec<String>,
}

impl TagNamesV2 {
    /// Scope name to tags, refusing a scope named twice.
    pub fn by_scope(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for scope in &self.scopes {
            assert!(out.insert(scope.name.clone(), scope.tags.clone()).is_none(), "scope {} twice", scope.name);
        }
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagValuesV1 {
    pub tag_values: Vec<String>,
    pub metrics: MetadataMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagValuesV2 {
    pub tag_values: Vec<TypedValue>,
    pub metrics: MetadataMetrics,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(deny_unknown_fields)]
pub struct TypedValue {
    #[serde(rename = "type")]
    pub value_type: String,
    pub value: String,
}

pub fn typed(value_type: &str, value: &str) -> TypedValue {
    TypedValue { value_type: value_type.into(), value: value.into() }
}

/// Checks an error answer: its status, plain text, and that the message starts with `prefix`.
pub fn assert_refused(answer: &Answer, status: u16, prefix: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.content_type, "text/plain; charset=utf-8", "{}", answer.text());
    assert!(answer.text().starts_with(prefix), "expected {prefix:?}, got {:?}", answer.text());
}
