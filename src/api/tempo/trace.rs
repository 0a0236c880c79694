//! Trace by ID: `GET /api/traces/{id}` (v1) and `GET /api/v2/traces/{id}` (v2).
//!
//! The ID is hex, any case, at most 32 digits, left-padded with zeros (a 64-bit ID is 16
//! digits). `start` and `end` (Unix seconds) are checked and passed on as a hint; they never
//! change the answer, because the store finds a trace without a time range. An unknown trace
//! is 404 with a plain-text body on both versions, never an empty 200 (Grafana's v1 client
//! fails on a trace without resource spans).
//!
//! Encodings, chosen by `Accept: application/protobuf`:
//! - v1: OTLP `TracesData` in protobuf; else Tempo's v1 JSON, `{"batches":[...]}`;
//! - v2: `TraceByIDResponse` (`trace` = 1, `status` = 3, `message` = 4) in protobuf; else
//!   `{"trace":{"resourceSpans":[...]},"status":"COMPLETE"}`.
//!
//! The JSON is protobuf's JSON mapping as Tempo writes it: camelCase names, hex IDs, 64-bit
//! integers as strings, enums by name, bytes in base64, fields at their default left out.
//! A resource without attributes is given `service.name="unknown_service"`, since Grafana
//! drops resources without attributes from the trace view.

use crate::encoding::{base64, hex};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use tripod_storage::traces::{AttrValue, SERVICE_NAME, Trace, TraceId, TracesQueryable};

use super::{Params, read_tenants, respond, run_query, time_hint};
use crate::api::AppState;
use crate::api::error::ApiError;

/// The service name given to a resource stored without attributes.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// `TraceByIDResponse` of Tempo's API v2 (the trace, whether it is complete, and why not).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    /// Tempo's `Trace`, whose field 1 holds the resource spans exactly as `TracesData` does.
    #[prost(message, optional, tag = "1")]
    pub trace: Option<otlp::TracesData>,
    /// 0 complete, 1 partial.
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(string, tag = "4")]
    pub message: String,
}

/// The longest trace ID, in hex digits.
const TRACE_ID_HEX_DIGITS: usize = 32;

/// A trace ID as written in a URL: hex, any case, up to 32 digits, left-padded with zeros.
pub fn parse_trace_id(text: &str) -> Result<TraceId, ApiError> {
    let invalid = |why: &str| ApiError::bad_data(format!("invalid trace id {text:?}: {why}"));
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.len() > TRACE_ID_HEX_DIGITS {
        return Err(invalid(&format!("{} hex digits, at most {TRACE_ID_HEX_DIGITS}", text.len())));
    }
    let mut digits = [b'0'; TRACE_ID_HEX_DIGITS];
    digits[TRACE_ID_HEX_DIGITS - text.len()..].copy_from_slice(text.as_bytes());
    let mut id = [0u8; 16];
    for (index, pair) in digits.chunks_exact(2).enumerate() {
        let nibble = |digit: u8| (digit as char).to_digit(16).map(|value| value as u8);
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => id[index] = high << 4 | low,
            _ => return Err(invalid("not hexadecimal")),
        }
    }
    Ok(id)
}

/// Whether the client asked for protobuf.
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split(',').any(|range| {
            let media_type = range.split(';').next().unwrap_or("").trim();
            media_type.eq_ignore_ascii_case("application/protobuf")
                || media_type.eq_ignore_ascii_case("application/x-protobuf")
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The store's model to OTLP.

fn any_value(value: AttrValue) -> AnyValue {
    let value = match value {
        AttrValue::String(text) => any_value::Value::StringValue(text),
        AttrValue::Int(i) => any_value::Value::IntValue(i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(d),
        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
        AttrValue::Bytes(bytes) => any_value::Value::BytesValue(bytes),
        AttrValue::Array(values) => {
            any_value::Value::ArrayValue(ArrayValue { values: values.into_iter().map(any_value).collect() })
        }
        AttrValue::KvList(pairs) => any_value::Value::KvlistValue(KeyValueList { values: key_values(pairs) }),
    };
    AnyValue { value: Some(value) }
}

fn key_values(attributes: Vec<(String, AttrValue)>) -> Vec<KeyValue> {
    attributes
        .into_iter()
        .map(|(key, value)| KeyValue { key, value: Some(any_value(value)), ..Default::default() })
        .collect()
}

/// A stored trace as OTLP resource spans.
pub fn to_otlp(trace: Trace) -> Vec<otlp::ResourceSpans> {
    let mut out = Vec::with_capacity(trace.resource_spans.len());
    for resource_spans in trace.resource_spans {
        let mut attributes = key_values(resource_spans.resource.attributes);
        if attributes.is_empty() {
            attributes.push(KeyValue {
                key: SERVICE_NAME.to_string(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(UNKNOWN_SERVICE.to_string())) }),
                ..Default::default()
            });
        }
        let resource = OtlpResource {
            attributes,
            dropped_attributes_count: resource_spans.resource.dropped_attributes_count,
            ..Default::default()
        };
        let mut scope_spans = Vec::with_capacity(resource_spans.scope_spans.len());
        for scope in resource_spans.scope_spans {
            let spans = scope
                .spans
                .into_iter()
                .map(|span| otlp::Span {
                    trace_id: span.trace_id.to_vec(),
                    span_id: span.span_id.to_vec(),
                    trace_state: span.trace_state,
                    parent_span_id: span.parent_span_id.map_or_else(Vec::new, |id| id.to_vec()),
                    flags: span.flags,
                    name: span.name,
                    kind: i32::from(span.kind.as_u8()),
                    start_time_unix_nano: span.start_ns.max(0) as u64,
                    end_time_unix_nano: span.end_ns.max(0) as u64,
                    attributes: key_values(span.attributes),
                    dropped_attributes_count: span.dropped_attributes_count,
                    events: span
                        .events
                        .into_iter()
                        .map(|event| otlp::span::Event {
                            time_unix_nano: event.time_ns.max(0) as u64,
                            name: event.name,
                            attributes: key_values(event.attributes),
                            dropped_attributes_count: event.dropped_attributes_count,
                        })
                        .collect(),
                    dropped_events_count: span.dropped_events_count,
                    links: span
                        .links
                        .into_iter()
                        .map(|link| otlp::span::Link {
                            trace_id: link.trace_id.to_vec(),
                            span_id: link.span_id.to_vec(),
                            trace_state: link.trace_state,
                            attributes: key_values(link.attributes),
                            dropped_attributes_count: link.dropped_attributes_count,
                            flags: link.flags,
                        })
                        .collect(),
                    dropped_links_count: span.dropped_links_count,
                    status: Some(otlp::Status {
                        message: span.status.message,
                        code: i32::from(span.status.code.as_u8()),
                    }),
                })
                .collect();
            scope_spans.push(otlp::ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.scope.name,
                    version: scope.scope.version,
                    attributes: key_values(scope.scope.attributes),
                    dropped_attributes_count: scope.scope.dropped_attributes_count,
                }),
                spans,
                schema_url: scope.schema_url,
            });
        }
        out.push(otlp::ResourceSpans { resource: Some(resource), scope_spans, schema_url: resource_spans.schema_url });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tempo's JSON.

/// Writes protobuf's JSON mapping of OTLP traces the way Tempo does.
struct JsonWriter {
    out: Vec<u8>,
}

impl JsonWriter {
    fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    fn string(&mut self, text: &str) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, text);
    }

    /// `"name":`, preceded by a comma unless it is the object's first member.
    fn key(&mut self, first: &mut bool, name: &str) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
        self.string(name);
        self.out.push(b':');
    }

    fn hex(&mut self, bytes: &[u8]) {
        self.out.push(b'"');
        self.raw(&hex(bytes));
        self.out.push(b'"');
    }

    fn number(&mut self, value: impl std::fmt::Display) {
        self.raw(&value.to_string());
    }

    fn double(&mut self, value: f64) {
        if value.is_nan() {
            self.raw("\"NaN\"");
        } else if value.is_infinite() {
            self.raw(if value > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
        } else {
            // serde_json writes the shortest form that reads back as the same double.
            let _ = serde_json::to_writer(&mut self.out, &value);
        }
    }

    fn any_value(&mut self, value: &AnyValue) {
        self.out.push(b'{');
        match &value.value {
            Some(any_value::Value::StringValue(text)) => {
                self.raw("\"stringValue\":");
                self.string(text);
            }
            Some(any_value::Value::BoolValue(b)) => {
                self.raw(if *b { "\"boolValue\":true" } else { "\"boolValue\":false" })
            }
            Some(any_value::Value::IntValue(i)) => {
                self.raw("\"intValue\":\"");
                self.number(i);
                self.out.push(b'"');
            }
            Some(any_value::Value::DoubleValue(d)) => {
                self.raw("\"doubleValue\":");
                self.double(*d);
            }
            Some(any_value::Value::BytesValue(bytes)) => {
                self.raw("\"bytesValue\":\"");
                self.raw(&base64(bytes));
                self.out.push(b'"');
            }
            Some(any_value::Value::ArrayValue(array)) => {
                self.raw("\"arrayValue\":{");
                if !array.values.is_empty() {
                    self.raw("\"values\":[");
                    for (index, element) in array.values.iter().enumerate() {
                        if index > 0 {
                            self.out.push(b',');
                        }
                        self.any_value(element);
                    }
                    self.out.push(b']');
                }
                self.out.push(b'}');
            }
            Some(any_value::Value::KvlistValue(list)) => {
                self.raw("\"kvlistValue\":{");
                if !list.values.is_empty() {
                    self.raw("\"values\":");
                    self.key_values(&list.values);
                }
                self.out.push(b'}');
            }
            Some(any_value::Value::StringValueStrindex(_)) | None => {}
        }
        self.out.push(b'}');
    }

    fn key_values(&mut self, attributes: &[KeyValue]) {
        self.out.push(b'[');
        for (index, attribute) in attributes.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            self.raw("{\"key\":");
            self.string(&attribute.key);
            if let Some(value) = &attribute.value {
                self.raw(",\"value\":");
                self.any_value(value);
            }
            self.out.push(b'}');
        }
        self.out.push(b']');
    }

    /// `attributes` and `droppedAttributesCount`, each when not empty.
    fn attributes(&mut self, first: &mut bool, attributes: &[KeyValue], dropped: u32) {
        if !attributes.is_empty() {
            self.key(first, "attributes");
            self.key_values(attributes);
        }
        if dropped > 0 {
            self.key(first, "droppedAttributesCount");
            self.number(dropped);
        }
    }

    fn span(&mut self, span: &otlp::Span) {
        self.out.push(b'{');
        let first = &mut true;
        self.key(first, "traceId");
        self.hex(&span.trace_id);
        self.key(first, "spanId");
        self.hex(&span.span_id);
        if !span.trace_state.is_empty() {
            self.key(first, "traceState");
            self.string(&span.trace_state);
        }
        if !span.parent_span_id.is_empty() {
            self.key(first, "parentSpanId");
            self.hex(&span.parent_span_id);
        }
        if span.flags != 0 {
            self.key(first, "flags");
            self.number(span.flags);
        }
        if !span.name.is_empty() {
            self.key(first, "name");
            self.string(&span.name);
        }
        if span.kind != 0 {
            self.key(first, "kind");
            let name =
                otlp::span::SpanKind::try_from(span.kind).map_or("SPAN_KIND_UNSPECIFIED", |kind| kind.as_str_name());
            self.string(name);
        }
        self.key(first, "startTimeUnixNano");
        self.string(&span.start_time_unix_nano.to_string());
        self.key(first, "endTimeUnixNano");
        self.string(&span.end_time_unix_nano.to_string());
        self.attributes(first, &span.attributes, span.dropped_attributes_count);
        if !span.events.is_empty() {
            self.key(first, "events");
            self.out.push(b'[');
            for (index, event) in span.events.iter().enumerate() {
                if index > 0 {
                    self.out.push(b',');
                }
                self.out.push(b'{');
                let first = &mut true;
                self.key(first, "timeUnixNano");
                self.string(&event.time_unix_nano.to_string());
                if !event.name.is_empty() {
                    self.key(first, "name");
                    self.string(&event.name);
                }
                self.attributes(first, &event.attributes, event.dropped_attributes_count);
                self.out.push(b'}');
            }
            self.out.push(b']');
        }
        if span.dropped_events_count > 0 {
            self.key(first, "droppedEventsCount");
            self.number(span.dropped_events_count);
        }
        if !span.links.is_empty() {
            self.key(first, "links");
            self.out.push(b'[');
            for (index, link) in span.links.iter().enumerate() {
                if index > 0 {
                    self.out.push(b',');
                }
                self.out.push(b'{');
                let first = &mut true;
                self.key(first, "traceId");
                self.hex(&link.trace_id);
                self.key(first, "spanId");
                self.hex(&link.span_id);
                if !link.trace_state.is_empty() {
                    self.key(first, "traceState");
                    self.string(&link.trace_state);
                }
                self.attributes(first, &link.attributes, link.dropped_attributes_count);
                if link.flags != 0 {
                    self.key(first, "flags");
                    self.number(link.flags);
                }
                self.out.push(b'}');
            }
            self.out.push(b']');
        }
        if span.dropped_links_count > 0 {
            self.key(first, "droppedLinksCount");
            self.number(span.dropped_links_count);
        }
        // Tempo's spans always carry a status object, empty when unset.
        self.key(first, "status");
        self.out.push(b'{');
        if let Some(status) = &span.status {
            let first = &mut true;
            if !status.message.is_empty() {
                self.key(first, "message");
                self.string(&status.message);
            }
            if status.code != 0 {
                self.key(first, "code");
                let name = otlp::status::StatusCode::try_from(status.code)
                    .map_or("STATUS_CODE_UNSET", |code| code.as_str_name());
                self.string(name);
            }
        }
        self.out.push(b'}');
        self.out.push(b'}');
    }

    fn resource_spans(&mut self, resource_spans: &[otlp::ResourceSpans]) {
        self.out.push(b'[');
        for (index, group) in resource_spans.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            self.out.push(b'{');
            let first = &mut true;
            if let Some(resource) = &group.resource {
                self.key(first, "resource");
                self.out.push(b'{');
                self.attributes(&mut true, &resource.attributes, resource.dropped_attributes_count);
                self.out.push(b'}');
            }
            if !group.scope_spans.is_empty() {
                self.key(first, "scopeSpans");
                self.out.push(b'[');
                for (index, scope_spans) in group.scope_spans.iter().enumerate() {
                    if index > 0 {
                        self.out.push(b',');
                    }
                    self.out.push(b'{');
                    let first = &mut true;
                    if let Some(scope) = &scope_spans.scope {
                        self.key(first, "scope");
                        self.out.push(b'{');
                        let scope_first = &mut true;
                        if !scope.name.is_empty() {
                            self.key(scope_first, "name");
                            self.string(&scope.name);
                        }
                        if !scope.version.is_empty() {
                            self.key(scope_first, "version");
                            self.string(&scope.version);
                        }
                        self.attributes(scope_first, &scope.attributes, scope.dropped_attributes_count);
                        self.out.push(b'}');
                    }
                    if !scope_spans.spans.is_empty() {
                        self.key(first, "spans");
                        self.out.push(b'[');
                        for (index, span) in scope_spans.spans.iter().enumerate() {
                            if index > 0 {
                                self.out.push(b',');
                            }
                            self.span(span);
                        }
                        self.out.push(b']');
                    }
                    if !scope_spans.schema_url.is_empty() {
                        self.key(first, "schemaUrl");
                        self.string(&scope_spans.schema_url);
                    }
                    self.out.push(b'}');
                }
                self.out.push(b']');
            }
            if !group.schema_url.is_empty() {
                self.key(first, "schemaUrl");
                self.string(&group.schema_url);
            }
            self.out.push(b'}');
        }
        self.out.push(b']');
    }
}

/// Tempo's v1 JSON: `{"batches":[...]}`.
pub fn v1_json(resource_spans: &[otlp::ResourceSpans]) -> Vec<u8> {
    let mut writer = JsonWriter { out: Vec::with_capacity(4096) };
    writer.raw("{\"batches\":");
    writer.resource_spans(resource_spans);
    writer.out.push(b'}');
    writer.out
}

/// Tempo's v2 JSON: `{"trace":{"resourceSpans":[...]},"status":"COMPLETE"}`.
pub fn v2_json(resource_spans: &[otlp::ResourceSpans]) -> Vec<u8> {
    let mut writer = JsonWriter { out: Vec::with_capacity(4096) };
    writer.raw("{\"trace\":{\"resourceSpans\":");
    writer.resource_spans(resource_spans);
    writer.raw("},\"status\":\"COMPLETE\"}");
    writer.out
}

// ---------------------------------------------------------------------------------------------
// Handlers.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Looks the trace up in every tenant the request covers; the resource spans of all of them.
async fn find(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    query: Option<&str>,
) -> Result<Option<Vec<otlp::ResourceSpans>>, ApiError> {
    let trace_id = parse_trace_id(id)?;
    let params = Params::parse(query)?;
    let hint = time_hint(&params)?;
    let tenants = read_tenants(state, headers)?;
    let storage = state.storage()?.clone();
    run_query(state, "trace lookup", move || {
        let mut found: Option<Vec<otlp::ResourceSpans>> = None;
        for tenant in &tenants {
            let trace = storage
                .traces()
                .trace(tenant, &trace_id, hint)
                .map_err(|error| ApiError::internal(format!("reading trace {}: {error}", hex_id(&trace_id))))?;
            if let Some(trace) = trace {
                found.get_or_insert_with(Vec::new).extend(to_otlp(trace));
            }
        }
        Ok(found)
    })
    .await
}

fn hex_id(id: &TraceId) -> String {
    hex(id)
}

fn with_content_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn trace_by_id(
    state: AppState,
    headers: HeaderMap,
    id: String,
    query: Option<String>,
    version: Version,
) -> Response {
    respond(
        async {
            let Some(resource_spans) = find(&state, &headers, &id, query.as_deref()).await? else {
                return Err(ApiError::not_found(format!("trace not found: {}", id.to_ascii_lowercase())));
            };
            let protobuf = wants_protobuf(&headers);
            Ok(match (version, protobuf) {
                (Version::V1, true) => {
                    with_content_type(otlp::TracesData { resource_spans }.encode_to_vec(), "application/protobuf")
                }
                (Version::V1, false) => with_content_type(v1_json(&resource_spans), "application/json"),
                (Version::V2, true) => {
                    let response = TraceByIdResponse {
                        trace: Some(otlp::TracesData { resource_spans }),
                        status: 0,
                        message: String::new(),
                    };
                    with_content_type(response.encode_to_vec(), "application/protobuf")
                }
                (Version::V2, false) => with_content_type(v2_json(&resource_spans), "application/json"),
            })
        }
        .await,
    )
}

/// `GET /api/traces/{id}`.
pub async fn trace_v1(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    trace_by_id(state, headers, id, query, Version::V1).await
}

/// `GET /api/v2/traces/{id}`.
pub async fn trace_v2(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    trace_by_id(state, headers, id, query, Version::V2).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tripod_storage::traces::{
        Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanEvent, SpanKind, SpanLink, SpanStatus, StatusCode,
    };

    #[test]
    fn trace_ids_are_hex_left_padded() {
        let mut expected = [0u8; 16];
        expected[8..].copy_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
        assert_eq!(parse_trace_id("123456789ABCDEF0").unwrap(), expected);
        assert_eq!(parse_trace_id("123456789abcdef0").unwrap(), expected);
        let long = parse_trace_id("00000000000000000123456789aBcDeF0").unwrap_err();
        assert!(long.message().contains("33 hex digits"), "{}", long.message());
        let mut one = [0u8; 16];
        one[15] = 0x0f;
        assert_eq!(parse_trace_id("f").unwrap(), one);
        for bad in ["", "xyz", "12 4", "é1", "0x12"] {
            let error = parse_trace_id(bad).unwrap_err();
            assert!(error.message().starts_with("invalid trace id"), "{bad}: {}", error.message());
        }
    }

    #[test]
    fn accept_headers_choose_protobuf() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, value.parse().unwrap());
            headers
        };
        assert!(wants_protobuf(&headers("application/protobuf")));
        assert!(wants_protobuf(&headers("application/json, application/protobuf;q=0.9")));
        assert!(!wants_protobuf(&headers("application/json")));
        assert!(!wants_protobuf(&HeaderMap::new()));
    }

    fn sample_trace() -> Trace {
        let span = Span {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent_span_id: Some([2; 8]),
            trace_state: "k=v".into(),
            name: "GET \"/\"".into(),
            kind: SpanKind::Client,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_500_000_000,
            status: SpanStatus { code: StatusCode::Error, message: "boom".into() },
            attributes: vec![
                ("a".into(), AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Double(f64::INFINITY)])),
                ("b".into(), AttrValue::Bool(false)),
                ("d".into(), AttrValue::Double(0.25)),
                ("i".into(), AttrValue::Int(-9_007_199_254_740_993)),
                ("m".into(), AttrValue::KvList(vec![("x".into(), AttrValue::String(String::new()))])),
                ("y".into(), AttrValue::Bytes(b"hi!".to_vec())),
            ],
            events: vec![SpanEvent {
                time_ns: 1_700_000_000_100_000_000,
                name: "e".into(),
                attributes: vec![],
                dropped_attributes_count: 2,
            }],
            links: vec![SpanLink { trace_id: [3; 16], span_id: [4; 8], flags: 1, ..Default::default() }],
            flags: 257,
            dropped_attributes_count: 0,
            dropped_events_count: 3,
            dropped_links_count: 0,
        };
        Trace {
            trace_id: [0xab; 16],
            resource_spans: vec![ResourceSpans {
                resource: Resource::default(),
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans {
                    scope: Scope { name: "lib".into(), ..Default::default() },
                    schema_url: "s".into(),
                    spans: vec![span],
                }],
            }],
        }
    }

    #[test]
    fn json_is_tempos_protobuf_mapping() {
        let resource_spans = to_otlp(sample_trace());
        let json = String::from_utf8(v1_json(&resource_spans)).unwrap();
        let expected = concat!(
            r#"{"batches":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"unknown_service"}}]},"#,
            r#""scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"abababababababababababababababab","#,
            r#""spanId":"0101010101010101","traceState":"k=v","parentSpanId":"0202020202020202","flags":257,"#,
            r#""name":"GET \"/\"","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1700000000000000000","#,
            r#""endTimeUnixNano":"1700000000500000000","attributes":[{"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"doubleValue":"Infinity"}]}}},"#,
            r#"{"key":"b","value":{"boolValue":false}},{"key":"d","value":{"doubleValue":0.25}},"#,
            r#"{"key":"i","value":{"intValue":"-9007199254740993"}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"x","value":{"stringValue":""}}]}}},"#,
            r#"{"key":"y","value":{"bytesValue":"aGkh"}}],"events":[{"timeUnixNano":"1700000000100000000","name":"e","droppedAttributesCount":2}],"#,
            r#""droppedEventsCount":3,"links":[{"traceId":"03030303030303030303030303030303","spanId":"0404040404040404","flags":1}],"#,
            r#""status":{"message":"boom","code":"STATUS_CODE_ERROR"}}],"schemaUrl":"s"}]}]}"#
        );
        assert_eq!(json, expected);
        let v2 = String::from_utf8(v2_json(&resource_spans)).unwrap();
        assert!(v2.starts_with(r#"{"trace":{"resourceSpans":[{"resource":"#), "{v2}");
        assert!(v2.ends_with(r#"}]},"status":"COMPLETE"}"#), "{v2}");
        let parsed: serde_json::Value = serde_json::from_str(&v2).unwrap();
        assert_eq!(parsed["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"], "GET \"/\"");
    }

    #[test]
    fn protobuf_round_trips_through_tempos_v2_wrapper() {
        let resource_spans = to_otlp(sample_trace());
        let response = TraceByIdResponse {
            trace: Some(otlp::TracesData { resource_spans: resource_spans.clone() }),
            status: 0,
            message: String::new(),
        };
        let decoded = TraceByIdResponse::decode(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.trace.unwrap().resource_spans, resource_spans);
        // Tempo's `Trace` and OTLP's `TracesData` are the same bytes.
        let v1 = otlp::TracesData { resource_spans: resource_spans.clone() }.encode_to_vec();
        assert_eq!(otlp::TracesData::decode(v1.as_slice()).unwrap().resource_spans, resource_spans);
        let span = &resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 3);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
    }
}
