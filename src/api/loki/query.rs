//! `/loki/api/v1/query` (instant) and `/loki/api/v1/query_range`, by GET or POST, and the
//! older `/api/prom/query`: LogQL evaluated on the blocking pool under the query limits, and
//! the answers encoded as Loki writes them.
//!
//! Log queries answer `streams`: values `["<ns>","<line>"]` in the query's direction, every
//! label (stream, structured metadata, parsed) in `stream`; or, when the request carries
//! `X-Loki-Response-Encoding-Flags: categorize-labels`, `stream` holds only the indexed
//! labels, each value has a third element `{"structuredMetadata":{..},"parsed":{..}}` and
//! `encodingFlags` says so. Metric queries answer `vector`, `matrix` or `scalar` exactly as
//! Prometheus does. Every answer carries `stats.summary` with what was measured: lines and bytes
//! read from the store, entries returned and the execution time.
//!
//! An instant query of log lines is refused (400), as Loki does; so are a bad limit, a range
//! longer than `limits.max_query_length` and, from the engine, too many series or steps. A
//! query past `limits.query_timeout` gets 504.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use tripod_storage::labels::{Labels, Matcher};
use tripod_storage::logs::{Direction, LogSelection, LogStats, LogsError, LogsQueryable, NsRange, StreamCursor};
use tripod_storage::metrics::Sample;

use super::{duration_param_ns, now_ns, parse_logql, query_tenant, time_param_ns, time_range};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind, LokiError};
use crate::api::prometheus::read::Params;
use crate::query::logql::eval::{self, EvalError, QueryParams, QueryResult, ResultStream};
use crate::query::logql::syntax::Expr;
use crate::query::logql::syntax::ast::LogExpr;
use crate::query::promql::value::{QueryValue, RangeSeries, VectorSample};

/// The header Grafana sets to ask for labels split by kind.
pub const ENCODING_FLAGS_HEADER: &str = "x-loki-response-encoding-flags";
/// The flag, in that header and in the answer's `encodingFlags`.
pub const CATEGORIZE_LABELS: &str = "categorize-labels";

/// Entries a log query returns when it names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// How far back a range query reads when it names no `start`.
pub const DEFAULT_RANGE_NS: i64 = 3600 * 1_000_000_000;

/// What one LogQL query may ask for, under the names of Loki's `limits_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogsQuerySettings {
    /// Most entries a log query may return (its `limit` parameter).
    pub max_entries_limit_per_query: usize,
    /// Most series a metric query may produce.
    pub max_query_series: usize,
    /// How long a query may run before it is stopped.
    pub query_timeout: Duration,
    /// Longest `end - start` a query may span; zero for no limit.
    pub max_query_length: Duration,
}

impl Default for LogsQuerySettings {
    fn default() -> Self {
        LogsQuerySettings {
            max_entries_limit_per_query: 5000,
            max_query_series: 500,
            query_timeout: Duration::from_secs(60),
            max_query_length: Duration::from_secs(721 * 3600),
        }
    }
}

type Request = (State<AppState>, RawQuery, HeaderMap, Bytes);

pub async fn instant((State(state), RawQuery(query), headers, body): Request) -> Result<Response, LokiError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let tenant = query_tenant(&state, &headers)?;
    let expr = parse_logql(&params)?;
    if matches!(expr, Expr::Log(_)) {
        return Err(ApiError::bad_data(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        )
        .into());
    }
    let t_ns = time_param_ns(&params, "time")?.unwrap_or_else(|| now_ns(&state));
    limit_param(&params)?;
    let request = QueryRequest {
        tenant,
        start_ns: t_ns,
        end_ns: t_ns,
        step_ns: 0,
        direction: direction_param(&params),
        limit: DEFAULT_LIMIT,
    };
    let evaluated = run(&state, expr, request).await?;
    Ok(json_response(encode_answer(&evaluated, categorize(&headers), false)))
}

pub async fn range((State(state), RawQuery(query), headers, body): Request) -> Result<Response, LokiError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let tenant = query_tenant(&state, &headers)?;
    let expr = parse_logql(&params)?;
    let request = range_request(&state, &params, tenant, &expr)?;
    let interval_ns = match duration_param_ns(&params, "interval")? {
        Some(interval) if interval < 0 => {
            return Err(ApiError::bad_data("invalid parameter \"interval\": must not be negative").into());
        }
        interval => interval.unwrap_or(0),
    };
    let mut evaluated = run(&state, expr, request).await?;
    if interval_ns > 0
        && let QueryResult::Streams(streams) = &mut evaluated.result
    {
        thin_to_interval(streams, interval_ns);
        evaluated.entries_returned = streams.iter().map(|stream| stream.entries.len() as u64).sum();
    }
    Ok(json_response(encode_answer(&evaluated, categorize(&headers), true)))
}

/// `/api/prom/query`: a log query over a range, answered in the first API's form,
/// `{"streams":[{"labels":"{..}","entries":[{"ts":"<RFC3339>","line":".."}]}]}`.
pub async fn legacy((State(state), RawQuery(query), headers, body): Request) -> Result<Response, LokiError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let tenant = query_tenant(&state, &headers)?;
    let expr = parse_logql(&params)?;
    if !matches!(expr, Expr::Log(_)) {
        return Err(ApiError::bad_data(
            "/api/prom/query answers log queries only; send metric queries to /loki/api/v1/query_range",
        )
        .into());
    }
    let request = range_request(&state, &params, tenant, &expr)?;
    let evaluated = run(&state, expr, request).await?;
    let QueryResult::Streams(streams) = &evaluated.result else {
        return Err(ApiError::internal("a log query answered something other than streams").into());
    };
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"streams\":[");
    for (i, stream) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"labels\":");
        write_json_string(&mut out, &stream.labels.to_string());
        out.extend_from_slice(b",\"entries\":[");
        for (j, entry) in stream.entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"ts\":");
            write_json_string(&mut out, &crate::ingest::logs::rfc3339_ns(entry.t_ns));
            out.extend_from_slice(b",\"line\":");
            write_json_string(&mut out, &entry.line);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"stats\":");
    write_stats(&mut out, &evaluated);
    out.push(b'}');
    Ok(json_response(out))
}

/// What a range query evaluates over, from its parameters and the limits.
struct QueryRequest {
    tenant: String,
    start_ns: i64,
    end_ns: i64,
    step_ns: i64,
    direction: Direction,
    limit: usize,
}

fn range_request(state: &AppState, params: &Params, tenant: String, expr: &Expr) -> Result<QueryRequest, ApiError> {
    let settings = state.logs_query();
    let (start_ns, end_ns) = time_range(params, now_ns(state), DEFAULT_RANGE_NS)?;
    check_query_length(&settings, start_ns, end_ns)?;
    let step_ns = match duration_param_ns(params, "step")? {
        Some(step) if step <= 0 => {
            return Err(ApiError::bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        Some(step) => step,
        None => default_step_ns(start_ns, end_ns),
    };
    let limit = limit_param(params)?;
    if matches!(expr, Expr::Log(_)) && limit > settings.max_entries_limit_per_query {
        return Err(ApiError::bad_data(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})",
            settings.max_entries_limit_per_query
        )));
    }
    Ok(QueryRequest { tenant, start_ns, end_ns, step_ns, direction: direction_param(params), limit })
}

/// Refuses a range longer than `limits.max_query_length`.
pub(crate) fn check_query_length(settings: &LogsQuerySettings, start_ns: i64, end_ns: i64) -> Result<(), ApiError> {
    let limit_ns = i64::try_from(settings.max_query_length.as_nanos()).unwrap_or(i64::MAX);
    let length_ns = end_ns.saturating_sub(start_ns);
    if limit_ns > 0 && length_ns > limit_ns {
        let show = |ns: i64| crate::duration::format_duration(Duration::from_nanos(ns.max(0) as u64));
        return Err(ApiError::bad_data(format!(
            "the query time range exceeds the limit (query length: {}, limit: {}) (limits.max_query_length)",
            show(length_ns),
            show(limit_ns)
        )));
    }
    Ok(())
}

/// Loki's step when none is given: the range over 250 points, whole seconds, at least 1s.
pub fn default_step_ns(start_ns: i64, end_ns: i64) -> i64 {
    let seconds = (end_ns.saturating_sub(start_ns) / 1_000_000_000 / 250).max(1);
    seconds * 1_000_000_000
}

/// `limit`: entries a log query returns, 100 when absent, at least 1.
pub(crate) fn limit_param(params: &Params) -> Result<usize, ApiError> {
    match params.get("limit").map(str::trim) {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<i64>() {
            Ok(limit) if limit > 0 => Ok(usize::try_from(limit).unwrap_or(usize::MAX)),
            Ok(_) => Err(ApiError::bad_data("invalid parameter \"limit\": limit must be a positive value")),
            Err(_) => Err(ApiError::bad_data(format!("invalid parameter \"limit\": {text:?} is not an integer"))),
        },
    }
}

/// `direction`: `forward` reads oldest first; anything else (`backward`, Grafana's `scan`,
/// nothing) newest first.
pub(crate) fn direction_param(params: &Params) -> Direction {
    match params.get("direction") {
        Some(text) if text.trim().eq_ignore_ascii_case("forward") => Direction::Forward,
        _ => Direction::Backward,
    }
}

/// Whether the request asked for labels split into indexed, structured metadata and parsed.
pub(crate) fn categorize(headers: &HeaderMap) -> bool {
    headers
        .get_all(ENCODING_FLAGS_HEADER)
        .iter()
        .any(|value| value.to_str().is_ok_and(|flags| flags.split(',').any(|flag| flag.trim() == CATEGORIZE_LABELS)))
}

/// Keeps, per stream, only entries at least `interval_ns` apart, starting from the first in
/// the query's direction (Loki's `interval`).
fn thin_to_interval(streams: &mut [ResultStream], interval_ns: i64) {
    for stream in streams {
        let mut last_kept: Option<i64> = None;
        stream.entries.retain(|entry| {
            let keep = last_kept.is_none_or(|last| entry.t_ns.abs_diff(last) >= interval_ns.unsigned_abs());
            if keep {
                last_kept = Some(entry.t_ns);
            }
            keep
        });
    }
    // A stream thinned to nothing cannot happen (its first entry is always kept).
}

/// A query's answer and what it cost.
pub(crate) struct Evaluated {
    pub result: QueryResult,
    /// Entries read from the store and their bytes (line, then structured metadata).
    pub lines_read: u64,
    pub line_bytes_read: u64,
    pub metadata_bytes_read: u64,
    /// Entries (log queries) or series (metric queries) in the answer.
    pub entries_returned: u64,
    pub exec_time: Duration,
}

/// Evaluates on the blocking pool under the query timeout and series limit, measuring what is
/// read, and records the duration in the query self-metric.
async fn run(state: &AppState, expr: Expr, request: QueryRequest) -> Result<Evaluated, ApiError> {
    let storage = Arc::clone(state.storage()?);
    let settings = state.logs_query();
    let is_log_query = matches!(expr, Expr::Log(_));
    let started = Instant::now();
    let deadline = started + settings.query_timeout;
    let outcome = tokio::task::spawn_blocking(move || {
        let counting = CountingStore::new(storage.logs());
        let params = QueryParams {
            tenant: &request.tenant,
            start_ns: request.start_ns,
            end_ns: request.end_ns,
            step_ns: request.step_ns,
            direction: request.direction,
            limit: request.limit,
            max_series: settings.max_query_series,
            deadline,
        };
        let result = eval::evaluate(&counting, &expr, &params);
        (result, counting.totals())
    })
    .await
    .map_err(|error| ApiError::internal(format!("query evaluation stopped: {error}")))?;
    let exec_time = started.elapsed();
    state.telemetry().record_logs_query(is_log_query, exec_time);
    let (result, totals) = outcome;
    let result = result.map_err(|error| eval_error(error, settings.query_timeout))?;
    let entries_returned = match &result {
        QueryResult::Streams(streams) => streams.iter().map(|stream| stream.entries.len() as u64).sum(),
        QueryResult::Series { series, .. } => series.len() as u64,
        QueryResult::Scalar { .. } => 1,
    };
    Ok(Evaluated {
        result,
        lines_read: totals.lines,
        line_bytes_read: totals.line_bytes,
        metadata_bytes_read: totals.metadata_bytes,
        entries_returned,
        exec_time,
    })
}

/// The newest `limit` entries of a log query in `[start_ns, end_ns)`, newest first, read on the
/// blocking pool under the query timeout (tail's first answer, the detected-fields sample).
pub(crate) async fn newest_entries(
    state: &AppState,
    tenant: &str,
    log: &LogExpr,
    start_ns: i64,
    end_ns: i64,
    limit: usize,
) -> Result<Vec<ResultStream>, ApiError> {
    let storage = Arc::clone(state.storage()?);
    let settings = state.logs_query();
    let deadline = Instant::now() + settings.query_timeout;
    let (tenant, expr) = (tenant.to_string(), Expr::Log(log.clone()));
    let result = tokio::task::spawn_blocking(move || {
        let params = QueryParams {
            tenant: &tenant,
            start_ns,
            end_ns,
            step_ns: 0,
            direction: Direction::Backward,
            limit,
            max_series: settings.max_query_series,
            deadline,
        };
        eval::evaluate(storage.logs(), &expr, &params)
    })
    .await
    .map_err(|error| ApiError::internal(format!("log query stopped: {error}")))?
    .map_err(|error| eval_error(error, settings.query_timeout))?;
    match result {
        QueryResult::Streams(streams) => Ok(streams),
        _ => Err(ApiError::internal("a log query answered something other than streams")),
    }
}

/// The answer to an engine error: 400 for what the query asked, 504 past the deadline.
pub(crate) fn eval_error(error: EvalError, timeout: Duration) -> ApiError {
    match error {
        EvalError::Invalid(message) => ApiError::bad_data(message),
        EvalError::TooManySeries(_) => {
            ApiError::bad_data(format!("{error} (limits.max_query_series); add label matchers or aggregate"))
        }
        EvalError::Timeout => ApiError::new(
            ErrorKind::Timeout,
            format!(
                "request timed out after {} (limits.query_timeout), decrease the duration of the request or add more label matchers",
                crate::duration::format_duration(timeout)
            ),
        ),
        EvalError::Storage(error) => ApiError::internal(format!("reading logs: {error}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring what a query reads.

/// Totals of what a query read from the store.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadTotals {
    pub lines: u64,
    pub line_bytes: u64,
    pub metadata_bytes: u64,
}

#[derive(Debug, Default)]
struct ReadCounters {
    lines: AtomicU64,
    line_bytes: AtomicU64,
    metadata_bytes: AtomicU64,
}

/// The store seen through a counter of every entry read from its cursors.
pub(crate) struct CountingStore<'a> {
    inner: &'a dyn LogsQueryable,
    counters: Arc<ReadCounters>,
}

impl<'a> CountingStore<'a> {
    pub(crate) fn new(inner: &'a dyn LogsQueryable) -> CountingStore<'a> {
        CountingStore { inner, counters: Arc::default() }
    }

    pub(crate) fn totals(&self) -> ReadTotals {
        ReadTotals {
            lines: self.counters.lines.load(Ordering::Relaxed),
            line_bytes: self.counters.line_bytes.load(Ordering::Relaxed),
            metadata_bytes: self.counters.metadata_bytes.load(Ordering::Relaxed),
        }
    }
}

impl LogsQueryable for CountingStore<'_> {
    fn select(&self, tenant: &str, selection: &LogSelection<'_>) -> Result<Vec<StreamCursor>, LogsError> {
        let cursors = self.inner.select(tenant, selection)?;
        Ok(cursors
            .into_iter()
            .map(|cursor| {
                let counters = Arc::clone(&self.counters);
                let entries = cursor.entries.inspect(move |entry| {
                    if let Ok(entry) = entry {
                        let metadata: usize =
                            entry.metadata.iter().map(|label| label.name.len() + label.value.len()).sum();
                        counters.lines.fetch_add(1, Ordering::Relaxed);
                        counters.line_bytes.fetch_add(entry.line.len() as u64, Ordering::Relaxed);
                        counters.metadata_bytes.fetch_add(metadata as u64, Ordering::Relaxed);
                    }
                });
                StreamCursor { labels: cursor.labels, entries: Box::new(entries) }
            })
            .collect())
    }

    fn series(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<Vec<Labels>, LogsError> {
        self.inner.series(tenant, matchers, range)
    }

    fn label_names(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<Vec<String>, LogsError> {
        self.inner.label_names(tenant, matchers, range)
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        range: NsRange,
    ) -> Result<Vec<String>, LogsError> {
        self.inner.label_values(tenant, name, matchers, range)
    }

    fn stats(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<LogStats, LogsError> {
        self.inner.stats(tenant, matchers, range)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

pub(crate) fn json_response(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON string, escaped as encoding/json escapes it (serde_json's escaping agrees except for
/// the HTML characters, which Loki's encoder also leaves alone).
pub(crate) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// `{"name":"value",...}` from pairs in order.
pub(crate) fn write_json_pairs<'a>(out: &mut Vec<u8>, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(out, name);
        out.push(b':');
        write_json_string(out, value);
    }
    out.push(b'}');
}

/// The `result` array of a streams answer (also a tail frame's `streams`).
pub(crate) fn write_streams(out: &mut Vec<u8>, streams: &[ResultStream], categorized: bool) {
    out.push(b'[');
    for (i, stream) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        let labels = if categorized { &stream.stream_labels } else { &stream.labels };
        write_json_pairs(out, labels.iter().map(|label| (&*label.name, &*label.value)));
        out.extend_from_slice(b",\"values\":[");
        for (j, entry) in stream.entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let _ = write!(out, "[\"{}\",", entry.t_ns);
            write_json_string(out, &entry.line);
            if categorized {
                out.extend_from_slice(b",{");
                let mut first = true;
                for (key, pairs) in [("structuredMetadata", &entry.metadata), ("parsed", &entry.parsed)] {
                    if pairs.is_empty() {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    let _ = write!(out, "\"{key}\":");
                    write_json_pairs(out, pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())));
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
}

/// `{"summary":{...}}`: what was measured, in Loki's field names.
fn write_stats(out: &mut Vec<u8>, evaluated: &Evaluated) {
    let seconds = evaluated.exec_time.as_secs_f64();
    let bytes = evaluated.line_bytes_read + evaluated.metadata_bytes_read;
    let per_second = |count: u64| if seconds > 0.0 { (count as f64 / seconds) as u64 } else { 0 };
    let _ = write!(
        out,
        "{{\"summary\":{{\"bytesProcessedPerSecond\":{},\"linesProcessedPerSecond\":{},\"totalBytesProcessed\":{bytes},\"totalLinesProcessed\":{},\"totalStructuredMetadataBytesProcessed\":{},\"totalEntriesReturned\":{},\"execTime\":{seconds},\"queueTime\":0}}}}",
        per_second(bytes),
        per_second(evaluated.lines_read),
        evaluated.lines_read,
        evaluated.metadata_bytes_read,
        evaluated.entries_returned,
    );
}

/// The whole answer: `{"status":"success","data":{"resultType":..,"result":..,"stats":..}}`.
/// A metric query's data is Prometheus's (`range` says whether it is a matrix or a vector).
fn encode_answer(evaluated: &Evaluated, categorized: bool, range: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":");
    match &evaluated.result {
        QueryResult::Streams(streams) => {
            out.extend_from_slice(b"{\"resultType\":\"streams\",");
            if categorized {
                out.extend_from_slice(b"\"encodingFlags\":[\"categorize-labels\"],");
            }
            out.extend_from_slice(b"\"result\":");
            write_streams(&mut out, streams, categorized);
        }
        metric => {
            let data = metric_value(metric, range).to_json();
            // `to_json` writes one object; the stats go in before its closing brace.
            out.extend_from_slice(data.strip_suffix('}').unwrap_or(&data).as_bytes());
        }
    }
    out.extend_from_slice(b",\"stats\":");
    write_stats(&mut out, evaluated);
    out.extend_from_slice(b"}}");
    out
}

/// A metric result as a Prometheus value: a vector (or scalar) at the one step of an instant
/// query, a matrix over the steps of a range query (steps without a value left out, series
/// without any left out).
fn metric_value(result: &QueryResult, range: bool) -> QueryValue {
    let ms = |t_ns: i64| t_ns.div_euclid(1_000_000);
    match result {
        QueryResult::Streams(_) => QueryValue::Matrix(Vec::new()),
        QueryResult::Scalar { steps, value } if !range => {
            QueryValue::Scalar(Sample { t_ms: steps.last().map_or(0, |t| ms(*t)), value: *value })
        }
        QueryResult::Scalar { steps, value } => QueryValue::Matrix(vec![RangeSeries {
            labels: Labels::empty(),
            samples: steps.iter().map(|t| Sample { t_ms: ms(*t), value: *value }).collect(),
        }]),
        QueryResult::Series { steps, series } if !range => {
            let mut samples = Vec::with_capacity(series.len());
            for one in series {
                if let (Some(t_ns), Some(Some(value))) = (steps.last(), one.values.last()) {
                    samples.push(VectorSample {
                        labels: one.labels.clone(),
                        sample: Sample { t_ms: ms(*t_ns), value: *value },
                    });
                }
            }
            QueryValue::Vector(samples)
        }
        QueryResult::Series { steps, series } => {
            let mut matrix = Vec::with_capacity(series.len());
            for one in series {
                let samples: Vec<Sample> = steps
                    .iter()
                    .zip(&one.values)
                    .filter_map(|(t_ns, value)| value.map(|value| Sample { t_ms: ms(*t_ns), value }))
                    .collect();
                if !samples.is_empty() {
                    matrix.push(RangeSeries { labels: one.labels.clone(), samples });
                }
            }
            QueryValue::Matrix(matrix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::eval::{ResultEntry, StepSeries};

    fn evaluated(result: QueryResult) -> Evaluated {
        Evaluated {
            result,
            lines_read: 10,
            line_bytes_read: 100,
            metadata_bytes_read: 20,
            entries_returned: 1,
            exec_time: Duration::from_millis(500),
        }
    }

    fn data_without_stats(answer: &[u8]) -> serde_json::Value {
        let mut value: serde_json::Value = serde_json::from_slice(answer).unwrap();
        let stats = value["data"].as_object_mut().unwrap().remove("stats").unwrap();
        assert_eq!(stats["summary"]["totalBytesProcessed"], 120);
        assert_eq!(stats["summary"]["totalLinesProcessed"], 10);
        assert_eq!(stats["summary"]["linesProcessedPerSecond"], 20);
        assert_eq!(stats["summary"]["execTime"], 0.5);
        value
    }

    fn stream() -> ResultStream {
        ResultStream {
            labels: Labels::from_pairs([("app", "api"), ("status", "500"), ("trace_id", "abc")]).unwrap(),
            stream_labels: Labels::from_pairs([("app", "api")]).unwrap(),
            entries: vec![
                ResultEntry {
                    t_ns: 1_700_000_000_123_456_789,
                    line: "GET \"/x\" 500".into(),
                    metadata: vec![("trace_id".into(), "abc".into())],
                    parsed: vec![("status".into(), "500".into())],
                },
                ResultEntry { t_ns: 1_700_000_000_000_000_000, line: "plain".into(), metadata: vec![], parsed: vec![] },
            ],
        }
    }

    #[test]
    fn streams_in_both_encodings() {
        let answer = encode_answer(&evaluated(QueryResult::Streams(vec![stream()])), false, true);
        assert_eq!(
            data_without_stats(&answer).to_string(),
            r#"{"data":{"result":[{"stream":{"app":"api","status":"500","trace_id":"abc"},"values":[["1700000000123456789","GET \"/x\" 500"],["1700000000000000000","plain"]]}],"resultType":"streams"},"status":"success"}"#
        );
        let answer = encode_answer(&evaluated(QueryResult::Streams(vec![stream()])), true, true);
        assert_eq!(
            data_without_stats(&answer).to_string(),
            r#"{"data":{"encodingFlags":["categorize-labels"],"result":[{"stream":{"app":"api"},"values":[["1700000000123456789","GET \"/x\" 500",{"parsed":{"status":"500"},"structuredMetadata":{"trace_id":"abc"}}],["1700000000000000000","plain",{}]]}],"resultType":"streams"},"status":"success"}"#
        );
    }

    #[test]
    fn metric_answers_are_prometheus_values() {
        let series = QueryResult::Series {
            steps: vec![1_000_000_000, 2_000_000_000, 3_500_000_000],
            series: vec![
                StepSeries {
                    labels: Labels::from_pairs([("level", "error")]).unwrap(),
                    values: vec![Some(1.0), None, Some(2.5)],
                },
                StepSeries { labels: Labels::from_pairs([("level", "info")]).unwrap(), values: vec![None, None, None] },
            ],
        };
        let answer = encode_answer(&evaluated(series.clone()), false, true);
        assert_eq!(
            data_without_stats(&answer)["data"].to_string(),
            r#"{"result":[{"metric":{"level":"error"},"values":[[1,"1"],[3.5,"2.5"]]}],"resultType":"matrix"}"#
        );
        let answer = encode_answer(&evaluated(series), false, false);
        assert_eq!(
            data_without_stats(&answer)["data"].to_string(),
            r#"{"result":[{"metric":{"level":"error"},"value":[3.5,"2.5"]}],"resultType":"vector"}"#
        );
        let scalar = QueryResult::Scalar { steps: vec![4_000_000_000], value: 2.0 };
        let answer = encode_answer(&evaluated(scalar), false, false);
        assert_eq!(data_without_stats(&answer)["data"].to_string(), r#"{"result":[4,"2"],"resultType":"scalar"}"#);
    }

    #[test]
    fn interval_keeps_entries_at_least_that_far_apart() {
        let mut streams = vec![stream()];
        streams[0].entries = [0, 1, 5, 9, 10, 21]
            .iter()
            .map(|t| ResultEntry { t_ns: *t, line: String::new(), metadata: vec![], parsed: vec![] })
            .collect();
        thin_to_interval(&mut streams, 5);
        let kept: Vec<i64> = streams[0].entries.iter().map(|entry| entry.t_ns).collect();
        assert_eq!(kept, [0, 5, 10, 21]);
    }

    #[test]
    fn default_step_follows_the_range() {
        assert_eq!(default_step_ns(0, 3600 * 1_000_000_000), 14_000_000_000);
        assert_eq!(default_step_ns(0, 60 * 1_000_000_000), 1_000_000_000);
        assert_eq!(default_step_ns(0, 0), 1_000_000_000);
    }
}
