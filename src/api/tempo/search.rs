//! Tempo's search: `GET /api/search` (also `POST`, with the parameters in the URL or a form
//! body), as Grafana's Tempo datasource sends it from the TraceQL and Search tabs.
//!
//! Parameters, as Tempo reads them: `q` (TraceQL) or the legacy `tags` (logfmt, every tag on
//! one span) with `minDuration` and `maxDuration` (Go durations, the trace's duration), never
//! `q` and `tags` together; `limit` (traces, default 20, more than 0, at most 262144); `spss`
//! (spans returned per spanset, default 3, 0 meaning the default, at most 100); `start` and
//! `end` (Unix seconds, `start` before `end`). Without `start` and `end` (or with either at 0)
//! Tempo searches only the recent traces its ingesters still hold; Tripod searches the spans of
//! the last hour ([`RECENT_WINDOW_NS`]). `minDuration` and `maxDuration` are checked always and
//! apply to the legacy search only, as in Tempo. Other parameters are ignored.
//!
//! The answer is Tempo's `SearchResponse` in protobuf's JSON mapping, which Grafana 12's backend
//! decodes into strict Go types: 64-bit integers (`startTimeUnixNano`, `durationNanos`,
//! `intValue`, `inspectedBytes`) are strings, 32-bit ones (`durationMs`, `matched`,
//! `inspectedTraces`, `totalBlocks`) numbers; spansets only under `spanSets`; a trace whose
//! root span has not arrived is named `<root span not yet received>`, as Tempo names it; zero
//! figures are left out, so an empty answer is `{"traces":[],"metrics":{}}`.
//!
//! Errors: a bad parameter or query is 400 naming it (TraceQL errors with line and column), a
//! TraceQL metrics query is 400 (it belongs to the metrics API), and a search past the query
//! timeout is 504, as Tempo answers a deadline. With several tenants in `X-Scope-OrgID`, each
//! is searched and the most recent traces of all of them are kept.
//!
//! The parameter, time-range and answer helpers here are shared with the tag endpoints.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use tripod_storage::traces::{AttrValue, NsRange};

use super::{Params, parse_seconds, query_timeout, read_tenants, run_query, seconds_to_ns};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind};
use crate::encoding::{base64, hex};
use crate::query::traceql::lexer::parse_duration_ns;
use crate::query::traceql::{self, Query, SearchMetrics, SearchRequest, TraceMatch, TraceqlError};

/// How far back a search without `start` and `end` looks: about what Tempo's ingesters hold at
/// their defaults (a head block of up to 30 minutes, kept 15 to 20 minutes once complete).
pub const RECENT_WINDOW_NS: i64 = 3600 * 1_000_000_000;

/// Traces a search returns unless `limit` says otherwise (Tempo's default).
pub const DEFAULT_LIMIT: usize = 20;

/// The largest `limit` accepted (Tempo's default `max_result_limit`).
pub const MAX_LIMIT: u64 = 256 * 1024;

/// Spans returned per spanset unless `spss` says otherwise (Tempo's default).
pub const DEFAULT_SPANS_PER_SPANSET: usize = 3;

/// The largest `spss` accepted (Tempo's default `max_spans_per_span_set`).
pub const MAX_SPANS_PER_SPANSET: u64 = 100;

/// The root service name Tempo shows for a trace whose root span is not stored.
pub const ROOT_SPAN_NOT_YET_RECEIVED: &str = "<root span not yet received>";

// ---------------------------------------------------------------------------------------------
// Shared by the search and tag endpoints.

/// The request's parameters: the URL query, then a form body (`POST` with
/// `application/x-www-form-urlencoded`), first value of each name winning.
pub(super) fn request_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
    let mut params = Params::parse(query)?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if is_form && !body.is_empty() {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_data("form body is not valid UTF-8"))?;
        let form: Vec<(String, String)> = serde_urlencoded::from_str(text)
            .map_err(|error| ApiError::bad_data(format!("invalid form body: {error}")))?;
        params.0.extend(form);
    }
    Ok(params)
}

pub(super) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos().min(i64::MAX as u128) as i64)
}

/// The time range of a search or tag request, by Tempo's rules: `start` and `end` in Unix
/// seconds, `start` before `end`, the whole last second included; with neither (or either at 0,
/// which Tempo sends to its ingesters only) the spans of the last [`RECENT_WINDOW_NS`].
pub(super) fn request_range(params: &Params, now_ns: i64) -> Result<NsRange, ApiError> {
    let start = params.get("start").map(|text| parse_seconds("start", text)).transpose()?.unwrap_or(0);
    let end = params.get("end").map(|text| parse_seconds("end", text)).transpose()?.unwrap_or(0);
    if (start != 0 || end != 0) && end <= start {
        return Err(ApiError::bad_data(format!("invalid start {start} and end {end}: start must be before end")));
    }
    if start == 0 || end == 0 {
        return NsRange::new(now_ns.saturating_sub(RECENT_WINDOW_NS).max(0), i64::MAX)
            .ok_or_else(|| ApiError::internal("the recent search window is empty"));
    }
    let end_ns = seconds_to_ns(end).saturating_add(999_999_999);
    NsRange::new(seconds_to_ns(start), end_ns)
        .ok_or_else(|| ApiError::bad_data(format!("invalid start {start} and end {end}: start must be before end")))
}

/// A whole number parameter of at most `max`; `None` when absent.
pub(super) fn parse_count(params: &Params, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
    let Some(text) = params.get(name) else { return Ok(None) };
    let value = text
        .trim()
        .parse::<u64>()
        .map_err(|_| ApiError::bad_data(format!("invalid {name} {text:?}: expected a whole number of at least 0")))?;
    if value > max {
        return Err(ApiError::bad_data(format!("invalid {name} {value}: at most {max}")));
    }
    Ok(Some(value))
}

/// An engine error as the API reports it.
pub(super) fn traceql_error(error: TraceqlError) -> ApiError {
    match error {
        TraceqlError::Parse(error) => ApiError::bad_data(format!("invalid traceql query: {error}")),
        TraceqlError::Unsupported(message) => ApiError::bad_data(message),
        TraceqlError::Timeout => ApiError::new(
            ErrorKind::Timeout,
            "the query did not finish within the query timeout (limits.query_timeout)",
        ),
        TraceqlError::Store(error) => ApiError::internal(format!("reading traces: {error}")),
    }
}

/// The deadline of a query started now.
pub(super) fn deadline(state: &AppState) -> Instant {
    Instant::now() + query_timeout(state)
}

/// Turns a handler's result into Tempo's answer: the response, or the error as plain text (a
/// query past its deadline as 504, as Tempo answers an exceeded deadline).
pub(super) fn answer(result: Result<Response, ApiError>) -> Response {
    super::respond(result)
}

pub(super) fn json(value: &impl Serialize) -> Response {
    axum::Json(value).into_response()
}

/// An attribute value in protobuf's JSON mapping of OTLP's `AnyValue`.
pub(super) struct AnyValueJson<'a>(pub &'a AttrValue);

impl Serialize for AnyValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            AttrValue::String(text) => map.serialize_entry("stringValue", text)?,
            AttrValue::Int(n) => map.serialize_entry("intValue", &n.to_string())?,
            AttrValue::Double(n) if n.is_nan() => map.serialize_entry("doubleValue", "NaN")?,
            AttrValue::Double(n) if n.is_infinite() => {
                map.serialize_entry("doubleValue", if *n > 0.0 { "Infinity" } else { "-Infinity" })?
            }
            AttrValue::Double(n) => map.serialize_entry("doubleValue", n)?,
            AttrValue::Bool(b) => map.serialize_entry("boolValue", b)?,
            AttrValue::Bytes(bytes) => map.serialize_entry("bytesValue", &base64(bytes))?,
            AttrValue::Array(values) => map.serialize_entry("arrayValue", &ArrayJson(values))?,
            AttrValue::KvList(pairs) => map.serialize_entry("kvlistValue", &KvListJson(pairs))?,
        }
        map.end()
    }
}

struct ArrayJson<'a>(&'a [AttrValue]);

impl Serialize for ArrayJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.0.is_empty() {
            let values: Vec<AnyValueJson<'_>> = self.0.iter().map(AnyValueJson).collect();
            map.serialize_entry("values", &values)?;
        }
        map.end()
    }
}

struct KvListJson<'a>(&'a [(String, AttrValue)]);

impl Serialize for KvListJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.0.is_empty() {
            map.serialize_entry("values", &KeyValuesJson(self.0))?;
        }
        map.end()
    }
}

/// `[{"key":...,"value":{...}}, ...]`
pub(super) struct KeyValuesJson<'a>(pub &'a [(String, AttrValue)]);

impl Serialize for KeyValuesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (key, value) in self.0 {
            seq.serialize_element(&KeyValueJson { key, value: AnyValueJson(value) })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct KeyValueJson<'a> {
    key: &'a str,
    value: AnyValueJson<'a>,
}

// ---------------------------------------------------------------------------------------------
// The search request.

/// A search as the parameters ask for it.
#[derive(Debug)]
struct SearchParams {
    query: Query,
    range: NsRange,
    limit: usize,
    spans_per_spanset: usize,
}

/// A `minDuration` or `maxDuration` in nanoseconds.
fn parse_trace_duration(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = params.get(name) else { return Ok(None) };
    parse_duration_ns(text.trim()).map(Some).ok_or_else(|| {
        ApiError::bad_data(format!("invalid {name} {text:?}: expected a duration such as 100ms, 1.5s or 1h"))
    })
}

fn parse_search(params: &Params, now_ns: i64) -> Result<SearchParams, ApiError> {
    let range = request_range(params, now_ns)?;
    let min_ns = parse_trace_duration(params, "minDuration")?;
    let max_ns = parse_trace_duration(params, "maxDuration")?;
    if let (Some(min_ns), Some(max_ns)) = (min_ns, max_ns)
        && min_ns > max_ns
    {
        return Err(ApiError::bad_data("invalid maxDuration: must be greater than minDuration"));
    }
    let limit = match parse_count(params, "limit", MAX_LIMIT)? {
        Some(0) => return Err(ApiError::bad_data("invalid limit 0: must be a positive number")),
        Some(limit) => limit as usize,
        None => DEFAULT_LIMIT,
    };
    let spans_per_spanset = match parse_count(params, "spss", MAX_SPANS_PER_SPANSET)? {
        Some(0) | None => DEFAULT_SPANS_PER_SPANSET,
        Some(spss) => spss as usize,
    };
    let query = match (params.get("q"), params.get("tags")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_data("invalid request: q and tags cannot be used in the same search"));
        }
        (Some(q), None) => traceql::parse(q).map_err(|error| traceql_error(error.into()))?,
        (None, tags) => traceql::query_from_tags(
            tags.unwrap_or(""),
            params.get("minDuration").map(str::trim),
            params.get("maxDuration").map(str::trim),
        )
        .map_err(|error| ApiError::bad_data(format!("invalid tags: {error}")))?,
    };
    if query.is_metrics() {
        return Err(ApiError::bad_data(
            "traceql metrics queries are answered by /api/metrics/query_range, not by /api/search",
        ));
    }
    Ok(SearchParams { query, range, limit, spans_per_spanset })
}

// ---------------------------------------------------------------------------------------------
// The answer.

#[derive(Serialize)]
struct SearchJson<'a> {
    traces: Vec<TraceJson<'a>>,
    metrics: MetricsJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceJson<'a> {
    #[serde(rename = "traceID")]
    trace_id: String,
    root_service_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    root_trace_name: &'a str,
    start_time_unix_nano: String,
    /// Whole milliseconds, left out below one (protobuf's JSON leaves zero out).
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u32>,
    span_sets: Vec<SpanSetJson<'a>>,
}

#[derive(Serialize)]
struct SpanSetJson<'a> {
    spans: Vec<SpanJson<'a>>,
    matched: u32,
    #[serde(skip_serializing_if = "is_empty_key_values")]
    attributes: KeyValuesJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson<'a> {
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    start_time_unix_nano: String,
    duration_nanos: String,
    #[serde(skip_serializing_if = "is_empty_key_values")]
    attributes: KeyValuesJson<'a>,
}

fn is_empty_key_values(values: &KeyValuesJson<'_>) -> bool {
    values.0.is_empty()
}

/// Tempo's `SearchMetrics`, zero figures left out.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct MetricsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    inspected_traces: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inspected_bytes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inspected_spans: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_blocks: Option<u32>,
}

fn non_zero_u32(value: u64) -> Option<u32> {
    (value > 0).then(|| value.min(u64::from(u32::MAX)) as u32)
}

fn non_zero_string(value: u64) -> Option<String> {
    (value > 0).then(|| value.to_string())
}

fn metrics_json(metrics: &SearchMetrics) -> MetricsJson {
    MetricsJson {
        inspected_traces: non_zero_u32(metrics.inspected_traces),
        inspected_bytes: non_zero_string(metrics.inspected_bytes),
        inspected_spans: non_zero_string(metrics.inspected_spans),
        total_blocks: non_zero_u32(metrics.total_blocks),
    }
}

fn unsigned_ns(ns: i64) -> String {
    ns.max(0).to_string()
}

fn trace_json(trace: &TraceMatch) -> TraceJson<'_> {
    let duration_ms = trace.duration_ns.max(0) / 1_000_000;
    TraceJson {
        trace_id: hex(&trace.trace_id),
        root_service_name: trace.root_service_name.as_deref().unwrap_or(ROOT_SPAN_NOT_YET_RECEIVED),
        root_trace_name: trace.root_trace_name.as_deref().unwrap_or(""),
        start_time_unix_nano: unsigned_ns(trace.start_ns),
        duration_ms: (duration_ms > 0).then(|| duration_ms.min(i64::from(u32::MAX)) as u32),
        span_sets: trace
            .span_sets
            .iter()
            .map(|set| SpanSetJson {
                spans: set
                    .spans
                    .iter()
                    .map(|span| SpanJson {
                        span_id: hex(&span.span_id),
                        name: &span.name,
                        start_time_unix_nano: unsigned_ns(span.start_ns),
                        duration_nanos: unsigned_ns(span.duration_ns),
                        attributes: KeyValuesJson(&span.attributes),
                    })
                    .collect(),
                matched: set.matched.min(u32::MAX as usize) as u32,
                attributes: KeyValuesJson(&set.attributes),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The handler.

/// Every tenant's matches merged: the most recent `limit` traces; figures summed.
fn merge(results: Vec<traceql::SearchResponse>, limit: usize) -> (Vec<TraceMatch>, SearchMetrics) {
    let mut traces = Vec::new();
    let mut metrics = SearchMetrics::default();
    for result in results {
        traces.extend(result.traces);
        metrics.inspected_traces += result.metrics.inspected_traces;
        metrics.inspected_spans += result.metrics.inspected_spans;
        metrics.inspected_bytes += result.metrics.inspected_bytes;
        metrics.total_blocks += result.metrics.total_blocks;
        metrics.skipped_blocks += result.metrics.skipped_blocks;
    }
    traces.sort_by(|a, b| b.start_ns.cmp(&a.start_ns).then(a.trace_id.cmp(&b.trace_id)));
    traces.truncate(limit);
    (traces, metrics)
}

async fn run_search(
    state: AppState,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = request_params(query.as_deref(), &headers, &body)?;
    let search = parse_search(&params, now_ns())?;
    let tenants = read_tenants(&state, &headers)?;
    let storage = state.storage()?.clone();
    let request = SearchRequest {
        range: search.range,
        limit: search.limit,
        spans_per_spanset: search.spans_per_spanset,
        deadline: deadline(&state),
    };
    let (traces, metrics) = run_query(&state, "search", move || {
        let mut results = Vec::with_capacity(tenants.len());
        for tenant in &tenants {
            results.push(traceql::search(storage.traces(), tenant, &search.query, &request).map_err(traceql_error)?);
        }
        Ok(merge(results, request.limit))
    })
    .await?;
    Ok(json(&SearchJson { traces: traces.iter().map(trace_json).collect(), metrics: metrics_json(&metrics) }))
}

/// `GET /api/search` and `POST /api/search`.
pub async fn search(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_search(state, headers, query, body).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::traceql::{SpanMatch, SpanSetMatch};

    const NOW_NS: i64 = 1_700_000_000_123_456_789;

    fn params(query: &str) -> Params {
        Params::parse(Some(query)).unwrap()
    }

    fn refused(query: &str) -> String {
        let error = parse_search(&params(query), NOW_NS).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadData, "{query}");
        error.message().to_string()
    }

    #[test]
    fn defaults_are_tempos() {
        let search = parse_search(&params(""), NOW_NS).unwrap();
        assert!(search.query.matches_everything());
        assert_eq!((search.limit, search.spans_per_spanset), (20, 3));
        assert_eq!(search.range, NsRange::new(NOW_NS - RECENT_WINDOW_NS, i64::MAX).unwrap());
        let search = parse_search(&params("q=%7B%7D&limit=5&spss=0&start=10&end=20&unknown=x"), NOW_NS).unwrap();
        assert_eq!((search.limit, search.spans_per_spanset), (5, 3));
        assert_eq!(search.range, NsRange::new(10_000_000_000, 20_999_999_999).unwrap());
        // Either time at 0 is Tempo's recent search.
        for query in ["end=20", "start=0&end=20"] {
            let search = parse_search(&params(query), NOW_NS).unwrap();
            assert_eq!(search.range.start_ns(), NOW_NS - RECENT_WINDOW_NS, "{query}");
        }
        let search = parse_search(&params("spss=100&limit=262144"), NOW_NS).unwrap();
        assert_eq!((search.limit, search.spans_per_spanset), (262_144, 100));
    }

    #[test]
    fn legacy_searches_become_traceql() {
        let search =
            parse_search(&params("tags=service.name%3Dshop+http.status_code%3D500&minDuration=100ms"), NOW_NS).unwrap();
        assert!(!search.query.matches_everything());
        let search = parse_search(&params("minDuration=1.5s&maxDuration=2s"), NOW_NS).unwrap();
        assert!(!search.query.matches_everything());
        // With q, the durations are checked but not applied.
        let search = parse_search(&params("q=%7B%7D&minDuration=1s"), NOW_NS).unwrap();
        assert!(search.query.matches_everything());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, message) in [
            ("q=%7B%7D&tags=a%3Db", "invalid request: q and tags cannot be used in the same search"),
            ("limit=0", "invalid limit 0: must be a positive number"),
            ("limit=-1", "invalid limit \"-1\": expected a whole number"),
            ("limit=abc", "invalid limit \"abc\": expected a whole number"),
            ("limit=262145", "invalid limit 262145: at most 262144"),
            ("spss=101", "invalid spss 101: at most 100"),
            ("spss=x", "invalid spss \"x\""),
            ("start=abc&end=10", "invalid start \"abc\": expected unix seconds"),
            ("start=10&end=1.5", "invalid end \"1.5\": expected unix seconds"),
            ("start=20&end=10", "invalid start 20 and end 10: start must be before end"),
            ("start=20&end=20", "invalid start 20 and end 20: start must be before end"),
            ("start=20", "invalid start 20 and end 0: start must be before end"),
            ("minDuration=fast", "invalid minDuration \"fast\": expected a duration"),
            ("maxDuration=1x", "invalid maxDuration \"1x\": expected a duration"),
            ("minDuration=2s&maxDuration=1s", "invalid maxDuration: must be greater than minDuration"),
            ("q=%7B+.a+%3D+%7D", "invalid traceql query: parse error at line 1, col 8:"),
            ("q=%7B+status+%3D+error+%7D+%7C+rate()", "traceql metrics queries are answered by /api/metrics"),
            ("tags=a", "invalid tags: parse error at line 1, col 1:"),
        ] {
            let message_got = refused(query);
            assert!(message_got.starts_with(message), "{query}: {message_got}");
        }
    }

    #[test]
    fn answers_use_protobufs_json_types() {
        let trace = TraceMatch {
            trace_id: [0xab; 16],
            root_service_name: None,
            root_trace_name: None,
            start_ns: 1_700_000_000_000_000_000,
            duration_ns: 999_999,
            span_sets: vec![SpanSetMatch {
                spans: vec![SpanMatch {
                    span_id: [1; 8],
                    name: "db".into(),
                    start_ns: 1_700_000_000_000_000_001,
                    duration_ns: 5,
                    attributes: vec![
                        ("code".into(), AttrValue::Int(500)),
                        ("ratio".into(), AttrValue::Double(0.5)),
                        ("nan".into(), AttrValue::Double(f64::NAN)),
                        ("ok".into(), AttrValue::Bool(true)),
                        ("status".into(), AttrValue::String("error".into())),
                        ("raw".into(), AttrValue::Bytes(b"hi!".to_vec())),
                        (
                            "list".into(),
                            AttrValue::Array(vec![
                                AttrValue::Int(1),
                                AttrValue::KvList(vec![("k".into(), AttrValue::Array(vec![]))]),
                            ]),
                        ),
                    ],
                }],
                matched: 7,
                attributes: vec![("by(resource.service.name)".into(), AttrValue::String("shop".into()))],
            }],
        };
        let body = serde_json::to_string(&SearchJson {
            traces: vec![trace_json(&trace)],
            metrics: metrics_json(&SearchMetrics { inspected_traces: 3, inspected_bytes: 1024, ..Default::default() }),
        })
        .unwrap();
        let expected = concat!(
            r#"{"traces":[{"traceID":"abababababababababababababababab","rootServiceName":"<root span not yet received>","#,
            r#""startTimeUnixNano":"1700000000000000000","spanSets":[{"spans":[{"spanID":"0101010101010101","name":"db","#,
            r#""startTimeUnixNano":"1700000000000000001","durationNanos":"5","attributes":["#,
            r#"{"key":"code","value":{"intValue":"500"}},{"key":"ratio","value":{"doubleValue":0.5}},"#,
            r#"{"key":"nan","value":{"doubleValue":"NaN"}},{"key":"ok","value":{"boolValue":true}},"#,
            r#"{"key":"status","value":{"stringValue":"error"}},{"key":"raw","value":{"bytesValue":"aGkh"}},"#,
            r#"{"key":"list","value":{"arrayValue":{"values":[{"intValue":"1"},{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{}}}]}}]}}}]}],"#,
            r#""matched":7,"attributes":[{"key":"by(resource.service.name)","value":{"stringValue":"shop"}}]}]}],"#,
            r#""metrics":{"inspectedTraces":3,"inspectedBytes":"1024"}}"#
        );
        assert_eq!(body, expected);
        let empty = serde_json::to_string(&SearchJson { traces: vec![], metrics: MetricsJson::default() }).unwrap();
        assert_eq!(empty, r#"{"traces":[],"metrics":{}}"#);
    }
}
