//! The Loki read endpoints besides queries, each by GET or POST (URL and form parameters
//! merged):
//!
//! - from the label index: `/loki/api/v1/labels`, `/label/{name}/values`, `/series`,
//!   `/index/stats` (unwrapped `{"streams","chunks","entries","bytes"}`), `/index/volume` and
//!   `/index/volume_range` (bytes by the query's label names, by `targetLabels`, or per label
//!   with `aggregateBy=labels`, largest first, as a Prometheus vector or matrix), and
//!   `/detected_labels` (stream labels and how many values each has);
//! - from a sample of the newest entries of a log query (`line_limit`, 1000 by default):
//!   `/detected_fields` (structured metadata and the fields a `json` or `logfmt` parser finds in
//!   the lines, with their type, cardinality and parsers) and `/detected_field/{name}/values`;
//! - from the parser alone: `/format_query` (the query printed canonically);
//! - `/patterns`: the newest entries of a log query (up to `limits.max_entries_limit_per_query`)
//!   clustered into line patterns, `<_>` standing where lines differ, with counts per step.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tripod_storage::labels::{Labels, MatchOp, Matcher};
use tripod_storage::logs::{LogStats, LogsError, LogsQueryable, NsRange};

use super::query::{
    DEFAULT_RANGE_NS, check_query_length, default_step_ns, json_response, newest_entries, write_json_pairs,
    write_json_string,
};
use super::{duration_param_ns, log_selectors, now_ns, parse_logql, query_tenant, time_range};
use crate::api::AppState;
use crate::api::error::{ApiError, LokiError};
use crate::api::prometheus::format_value;
use crate::api::prometheus::read::Params;
use crate::query::logql::pipeline::labels::{Category, LabelsBuilder};
use crate::query::logql::pipeline::parsers;
use crate::query::logql::syntax::{self, Expr};

/// How far back the label and series endpoints look when no `start` is given.
const LABELS_DEFAULT_RANGE_NS: i64 = 6 * 3600 * 1_000_000_000;
/// Series the volume endpoints answer when no `limit` is given.
const VOLUME_DEFAULT_LIMIT: usize = 100;
/// Entries sampled for detected fields when no `line_limit` is given.
const DETECTED_DEFAULT_LINE_LIMIT: usize = 1000;
/// Fields (or values) answered when no `limit` is given.
const DETECTED_DEFAULT_LIMIT: usize = 1000;
/// Most steps a volume range answers per series, as for metric queries.
const MAX_VOLUME_STEPS: i64 = 11_000;

type Request = (State<AppState>, RawQuery, HeaderMap, Bytes);
type NamedRequest = (State<AppState>, Path<String>, RawQuery, HeaderMap, Bytes);

/// Runs storage reads on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn LogsQueryable) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let storage = Arc::clone(state.storage()?);
    tokio::task::spawn_blocking(move || work(storage.logs()))
        .await
        .map_err(|error| ApiError::internal(format!("logs read stopped: {error}")))?
}

fn storage_error(error: LogsError) -> ApiError {
    ApiError::internal(format!("reading logs: {error}"))
}

fn success(data: Value) -> Response {
    axum::Json(json!({ "status": "success", "data": data })).into_response()
}

fn ns_range(start_ns: i64, end_ns: i64) -> Result<NsRange, ApiError> {
    NsRange::new(start_ns, end_ns)
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"))
}

/// The matchers of a selector parameter: a stream selector alone, or any LogQL query (the
/// selectors it reads). Absent or empty: one empty set, every stream.
fn selector_param(params: &Params, name: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let text = params.get(name).map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    selectors_of(text, name)
}

fn selectors_of(text: &str, name: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    match syntax::parse_selector(text) {
        Ok(matchers) => Ok(vec![matchers]),
        Err(selector_error) => match syntax::parse(text) {
            Ok(expr) => {
                let sets: Vec<Vec<Matcher>> = log_selectors(&expr).iter().map(|log| log.matchers.clone()).collect();
                if sets.is_empty() {
                    return Err(ApiError::bad_data(format!("invalid parameter {name:?}: {text:?} reads no streams")));
                }
                Ok(sets)
            }
            Err(_) => Err(ApiError::bad_data(format!("invalid parameter {name:?}: {selector_error}"))),
        },
    }
}

/// A selector parameter that must be given.
fn required_selector(params: &Params, name: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    match params.get(name).map(str::trim) {
        None | Some("") => {
            Err(ApiError::bad_data(format!("invalid parameter {name:?}: a stream selector is required")))
        }
        Some(text) => selectors_of(text, name),
    }
}

fn positive_param(params: &Params, name: &str, default: usize) -> Result<usize, ApiError> {
    match params.get(name).map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(value) if value > 0 => Ok(usize::try_from(value).unwrap_or(usize::MAX)),
            _ => Err(ApiError::bad_data(format!("invalid parameter {name:?}: {text:?} is not a positive integer"))),
        },
    }
}

struct Common {
    state: AppState,
    params: Params,
    tenant: String,
}

fn common((State(state), RawQuery(query), headers, body): Request) -> Result<Common, ApiError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let tenant = query_tenant(&state, &headers)?;
    Ok(Common { state, params, tenant })
}

fn named((State(state), Path(name), RawQuery(query), headers, body): NamedRequest) -> (String, Request) {
    (name, (State(state), RawQuery(query), headers, body))
}

// ---------------------------------------------------------------------------------------------
// Labels and series.

pub async fn labels(request: Request) -> Result<Response, LokiError> {
    let Common { state, params, tenant } = common(request)?;
    let sets = selector_param(&params, "query")?;
    let (start, end) = time_range(&params, now_ns(&state), LABELS_DEFAULT_RANGE_NS)?;
    let range = ns_range(start, end)?;
    let names = blocking(&state, move |logs| {
        let mut names = BTreeSet::new();
        for matchers in &sets {
            names.extend(logs.label_names(&tenant, matchers, range).map_err(storage_error)?);
        }
        Ok(names)
    })
    .await?;
    Ok(success(json!(names)))
}

pub async fn label_values(request: NamedRequest) -> Result<Response, LokiError> {
    let (name, request) = named(request);
    let Common { state, params, tenant } = common(request)?;
    let sets = selector_param(&params, "query")?;
    let (start, end) = time_range(&params, now_ns(&state), LABELS_DEFAULT_RANGE_NS)?;
    let range = ns_range(start, end)?;
    let values = blocking(&state, move |logs| {
        let mut values = BTreeSet::new();
        for matchers in &sets {
            values.extend(logs.label_values(&tenant, &name, matchers, range).map_err(storage_error)?);
        }
        Ok(values)
    })
    .await?;
    Ok(success(json!(values)))
}

/// The label sets of the streams matching any `match[]` (or `query`) selector.
pub async fn series(request: Request) -> Result<Response, LokiError> {
    let Common { state, params, tenant } = common(request)?;
    let mut sets = Vec::new();
    for text in params.all("match[]").into_iter().chain(params.all("match")) {
        sets.extend(selectors_of(text, "match[]")?);
    }
    if sets.is_empty() {
        if params.get("query").is_some_and(|text| !text.trim().is_empty()) {
            sets = selector_param(&params, "query")?;
        } else {
            return Err(
                ApiError::bad_data("invalid parameter \"match[]\": at least one stream selector is required").into()
            );
        }
    }
    let (start, end) = time_range(&params, now_ns(&state), LABELS_DEFAULT_RANGE_NS)?;
    let range = ns_range(start, end)?;
    let found = blocking(&state, move |logs| {
        let mut found = BTreeSet::new();
        for matchers in &sets {
            found.extend(logs.series(&tenant, matchers, range).map_err(storage_error)?);
        }
        Ok(found)
    })
    .await?;
    let data: Vec<Value> = found
        .iter()
        .map(|labels| {
            Value::Object(labels.iter().map(|l| (l.name.to_string(), Value::String(l.value.to_string()))).collect())
        })
        .collect();
    Ok(success(Value::Array(data)))
}

/// Stream labels with how many values each has among the matching streams.
pub async fn detected_labels(request: Request) -> Result<Response, LokiError> {
    let Common { state, params, tenant } = common(request)?;
    let sets = selector_param(&params, "query")?;
    let (start, end) = time_range(&params, now_ns(&state), DEFAULT_RANGE_NS)?;
    let range = ns_range(start, end)?;
    let streams = blocking(&state, move |logs| {
        let mut found = BTreeSet::new();
        for matchers in &sets {
            found.extend(logs.series(&tenant, matchers, range).map_err(storage_error)?);
        }
        Ok(found)
    })
    .await?;
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for labels in &streams {
        for label in labels.iter() {
            values.entry(label.name.to_string()).or_default().insert(label.value.to_string());
        }
    }
    let detected: Vec<Value> = values
        .iter()
        .filter(|(name, _)| !HIDDEN_LABELS.contains(&name.as_str()))
        .map(|(name, values)| json!({"label": name, "cardinality": values.len()}))
        .collect();
    Ok(axum::Json(json!({ "detectedLabels": detected })).into_response())
}

/// Labels that are about how data is kept, not about the data (Grafana hides them too).
const HIDDEN_LABELS: [&str; 3] = ["__aggregated_metric__", "__tenant_id__", "__stream_shard__"];

// ---------------------------------------------------------------------------------------------
// Index statistics and volume.

fn add_stats(total: &mut LogStats, more: LogStats) {
    total.streams += more.streams;
    total.chunks += more.chunks;
    total.entries += more.entries;
    total.bytes += more.bytes;
}

pub async fn index_stats(request: Request) -> Result<Response, LokiError> {
    let Common { state, params, tenant } = common(request)?;
    let sets = selector_param(&params, "query")?;
    let (start, end) = time_range(&params, now_ns(&state), DEFAULT_RANGE_NS)?;
    let range = ns_range(start, end)?;
    let stats = blocking(&state, move |logs| {
        let mut total = LogStats::default();
        for matchers in &sets {
            add_stats(&mut total, logs.stats(&tenant, matchers, range).map_err(storage_error)?);
        }
        Ok(total)
    })
    .await?;
    Ok(axum::Json(json!({
        "streams": stats.streams,
        "chunks": stats.chunks,
        "entries": stats.entries,
        "bytes": stats.bytes,
    }))
    .into_response())
}

/// How volume is grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VolumeGrouping {
    /// By the values of these labels (a stream without one groups under its absence).
    Series(Vec<String>),
    /// One series per label name, for streams that have it; `None` means every name found.
    Labels(Option<Vec<String>>),
}

/// One group of streams and the matchers that select exactly it (added to the query's).
struct VolumeGroup {
    /// The answer's labels; a value is empty for `aggregateBy=labels`.
    pairs: Vec<(String, String)>,
    matchers: Vec<Matcher>,
}

struct VolumeRequest {
    state: AppState,
    tenant: String,
    sets: Vec<Vec<Matcher>>,
    grouping: VolumeGrouping,
    limit: usize,
    start_ns: i64,
    end_ns: i64,
    params: Params,
}

fn volume_request(request: Request) -> Result<VolumeRequest, ApiError> {
    let Common { state, params, tenant } = common(request)?;
    let sets = required_selector(&params, "query")?;
    let (start_ns, end_ns) = time_range(&params, now_ns(&state), DEFAULT_RANGE_NS)?;
    check_query_length(&state.logs_query(), start_ns, end_ns)?;
    let limit = positive_param(&params, "limit", VOLUME_DEFAULT_LIMIT)?;
    let targets: Option<Vec<String>> = params
        .get("targetLabels")
        .map(|text| text.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect());
    let targets = targets.filter(|names| !names.is_empty());
    let grouping = match params.get("aggregateBy").map(str::trim).unwrap_or("") {
        "" | "series" => {
            let names = targets.unwrap_or_else(|| {
                let mut names: Vec<String> = Vec::new();
                for matcher in sets.iter().flatten() {
                    if !names.iter().any(|name| name == matcher.name()) {
                        names.push(matcher.name().to_string());
                    }
                }
                names
            });
            VolumeGrouping::Series(names)
        }
        "labels" => VolumeGrouping::Labels(targets),
        other => {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"aggregateBy\": {other:?} is not series or labels"
            )));
        }
    };
    Ok(VolumeRequest { state, tenant, sets, grouping, limit, start_ns, end_ns, params })
}

/// The groups the matching streams fall into.
fn volume_groups(
    logs: &dyn LogsQueryable,
    request: &VolumeRequest,
    range: NsRange,
) -> Result<Vec<VolumeGroup>, ApiError> {
    let mut streams = BTreeSet::new();
    for matchers in &request.sets {
        streams.extend(logs.series(&request.tenant, matchers, range).map_err(storage_error)?);
    }
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<Matcher>> = BTreeMap::new();
    match &request.grouping {
        VolumeGrouping::Series(names) => {
            for labels in &streams {
                let mut pairs = Vec::new();
                let mut matchers = Vec::new();
                for name in names {
                    let value = labels.get(name).unwrap_or("");
                    // `name=""` selects streams without the label, as in Prometheus.
                    matchers.push(Matcher::equal(name.clone(), value));
                    if !value.is_empty() {
                        pairs.push((name.clone(), value.to_string()));
                    }
                }
                groups.entry(pairs).or_insert(matchers);
            }
        }
        VolumeGrouping::Labels(only) => {
            for labels in &streams {
                for label in labels.iter() {
                    if only.as_ref().is_some_and(|names| !names.iter().any(|name| *name == *label.name)) {
                        continue;
                    }
                    let matcher = Matcher::new(MatchOp::NotEqual, label.name.to_string(), "")
                        .map_err(|error| ApiError::internal(error.to_string()))?;
                    groups.entry(vec![(label.name.to_string(), String::new())]).or_insert(vec![matcher]);
                }
            }
        }
    }
    Ok(groups.into_iter().map(|(pairs, matchers)| VolumeGroup { pairs, matchers }).collect())
}

/// Bytes of one group's streams over `range`, summed over the query's selectors.
fn group_bytes(
    logs: &dyn LogsQueryable,
    request: &VolumeRequest,
    group: &VolumeGroup,
    range: NsRange,
) -> Result<u64, ApiError> {
    let mut bytes = 0;
    for matchers in &request.sets {
        let mut all = matchers.clone();
        all.extend(group.matchers.iter().cloned());
        bytes += logs.stats(&request.tenant, &all, range).map_err(storage_error)?.bytes;
    }
    Ok(bytes)
}

/// The groups with their total bytes, largest first, cut to the limit.
fn largest_groups(
    logs: &dyn LogsQueryable,
    request: &VolumeRequest,
    range: NsRange,
) -> Result<Vec<(VolumeGroup, u64)>, ApiError> {
    let mut totals = Vec::new();
    for group in volume_groups(logs, request, range)? {
        let bytes = group_bytes(logs, request, &group, range)?;
        if bytes > 0 {
            totals.push((group, bytes));
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.pairs.cmp(&b.0.pairs)));
    totals.truncate(request.limit);
    Ok(totals)
}

/// Unix seconds with millisecond precision, as Prometheus writes sample times.
fn write_seconds(out: &mut Vec<u8>, t_ns: i64) {
    let ms = t_ns.div_euclid(1_000_000);
    let sign = if ms < 0 { "-" } else { "" };
    let magnitude = ms.unsigned_abs();
    let _ = std::io::Write::write_fmt(out, format_args!("{sign}{}", magnitude / 1000));
    if !magnitude.is_multiple_of(1000) {
        let _ = std::io::Write::write_fmt(out, format_args!(".{:03}", magnitude % 1000));
    }
}

fn write_point(out: &mut Vec<u8>, t_ns: i64, bytes: u64) {
    out.push(b'[');
    write_seconds(out, t_ns);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(format_value(bytes as f64).as_bytes());
    out.extend_from_slice(b"\"]");
}

fn write_metric(out: &mut Vec<u8>, pairs: &[(String, String)]) {
    write_json_pairs(out, pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())));
}

/// Bytes per group over the whole range, at its end: a Prometheus vector.
pub async fn volume(request: Request) -> Result<Response, LokiError> {
    let request = volume_request(request)?;
    let state = request.state.clone();
    let range = ns_range(request.start_ns, request.end_ns)?;
    let end_ns = request.end_ns;
    let totals = blocking(&state, move |logs| largest_groups(logs, &request, range)).await?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[");
    for (i, (group, bytes)) in totals.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metric\":");
        write_metric(&mut out, &group.pairs);
        out.extend_from_slice(b",\"value\":");
        write_point(&mut out, end_ns, *bytes);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}}");
    Ok(json_response(out))
}

/// Bytes per group in each step's window `(t - step, t]`: a Prometheus matrix.
pub async fn volume_range(request: Request) -> Result<Response, LokiError> {
    let request = volume_request(request)?;
    let state = request.state.clone();
    let step_ns = match duration_param_ns(&request.params, "step")? {
        Some(step) if step <= 0 => {
            return Err(ApiError::bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
            .into());
        }
        Some(step) => step,
        None => default_step_ns(request.start_ns, request.end_ns),
    };
    if (request.end_ns - request.start_ns) / step_ns >= MAX_VOLUME_STEPS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try increasing the value of the step parameter",
        )
        .into());
    }
    let range = ns_range(request.start_ns, request.end_ns)?;
    let series = blocking(&state, move |logs| {
        let mut series = Vec::new();
        for (group, _) in largest_groups(logs, &request, range)? {
            let mut points = Vec::new();
            let mut t_ns = request.start_ns;
            while t_ns <= request.end_ns {
                let window = ns_range(t_ns.saturating_sub(step_ns).saturating_add(1), t_ns)?;
                let bytes = group_bytes(logs, &request, &group, window)?;
                if bytes > 0 {
                    points.push((t_ns, bytes));
                }
                t_ns = t_ns.saturating_add(step_ns);
            }
            series.push((group.pairs, points));
        }
        Ok(series)
    })
    .await?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
    for (i, (pairs, points)) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metric\":");
        write_metric(&mut out, pairs);
        out.extend_from_slice(b",\"values\":[");
        for (j, (t_ns, bytes)) in points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_point(&mut out, *t_ns, *bytes);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}}");
    Ok(json_response(out))
}

// ---------------------------------------------------------------------------------------------
// Detected fields.

/// The type of a field's values, named as Loki names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Int,
    Float,
    Boolean,
    Duration,
    Bytes,
    String,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Duration => "duration",
            FieldType::Bytes => "bytes",
            FieldType::String => "string",
        }
    }

    /// The type of one value, tried in Loki's order: integer, float, boolean, duration, bytes.
    pub fn of(value: &str) -> FieldType {
        if value.parse::<i64>().is_ok() {
            FieldType::Int
        } else if value.parse::<f64>().is_ok() {
            FieldType::Float
        } else if matches!(value, "true" | "false" | "TRUE" | "FALSE" | "True" | "False" | "t" | "f" | "T" | "F") {
            FieldType::Boolean
        } else if is_go_duration(value) {
            FieldType::Duration
        } else if is_byte_size(value) {
            FieldType::Bytes
        } else {
            FieldType::String
        }
    }

    /// The type fitting both: equal stays, integers widen to floats, anything else is text.
    fn join(self, other: FieldType) -> FieldType {
        match (self, other) {
            (a, b) if a == b => a,
            (FieldType::Int, FieldType::Float) | (FieldType::Float, FieldType::Int) => FieldType::Float,
            _ => FieldType::String,
        }
    }
}

/// A leading number with an optional fraction; returns the rest.
fn strip_decimal(text: &str) -> Option<&str> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let mut rest = &text[digits..];
    let mut fraction = 0;
    if let Some(after) = rest.strip_prefix('.') {
        fraction = after.bytes().take_while(u8::is_ascii_digit).count();
        rest = &after[fraction..];
    }
    (digits + fraction > 0).then_some(rest)
}

/// A duration as Go writes and parses them: `1.5s`, `300ms`, `2h45m`, `-1µs`.
fn is_go_duration(text: &str) -> bool {
    const UNITS: [&str; 8] = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"];
    let mut rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(after_number) = strip_decimal(rest) else { return false };
        // Longest unit first, so `ms` is not read as `m` followed by `s`.
        let Some(unit) = UNITS.iter().filter(|unit| after_number.starts_with(**unit)).max_by_key(|unit| unit.len())
        else {
            return false;
        };
        rest = &after_number[unit.len()..];
    }
    true
}

/// A size with a unit: `10 MB`, `1.5GiB`, `42b`, `3k`.
fn is_byte_size(text: &str) -> bool {
    const UNITS: [&str; 21] = [
        "b", "kb", "mb", "gb", "tb", "pb", "eb", "kib", "mib", "gib", "tib", "pib", "eib", "k", "m", "g", "t", "p",
        "e", "ki", "mi",
    ];
    let Some(rest) = strip_decimal(text) else { return false };
    let unit = rest.trim_start_matches(' ').to_ascii_lowercase();
    !unit.is_empty() && UNITS.contains(&unit.as_str())
}

/// What was seen of one field in the sample.
#[derive(Debug, Default)]
struct FieldSeen {
    field_type: Option<FieldType>,
    values: BTreeSet<String>,
    parsers: BTreeSet<&'static str>,
    /// The keys leading to the field in JSON lines (`["user","id"]` for `user_id`), so a client
    /// can extract it with `| json user_id="user.id"`.
    json_path: Option<Vec<String>>,
}

/// Most distinct values remembered per field (cardinality is counted up to this).
const MAX_VALUES_PER_FIELD: usize = 10_000;

impl FieldSeen {
    fn see(&mut self, value: &str, parser: Option<&'static str>) {
        let value_type = FieldType::of(value);
        self.field_type = Some(self.field_type.map_or(value_type, |seen| seen.join(value_type)));
        if self.values.len() < MAX_VALUES_PER_FIELD {
            self.values.insert(value.to_string());
        }
        if let Some(parser) = parser {
            self.parsers.insert(parser);
        }
    }
}

struct DetectRequest {
    state: AppState,
    tenant: String,
    expr: Expr,
    start_ns: i64,
    end_ns: i64,
    line_limit: usize,
    limit: usize,
}

fn detect_request(request: Request) -> Result<DetectRequest, ApiError> {
    let Common { state, params, tenant } = common(request)?;
    let expr = parse_logql(&params)?;
    let expr = match expr {
        Expr::Log(_) => expr,
        // A metric query's fields are those of the lines it reads.
        Expr::Metric(_) => match log_selectors(&expr).first() {
            Some(log) => Expr::Log((*log).clone()),
            None => return Err(ApiError::bad_data("invalid parameter \"query\": the query reads no log lines")),
        },
    };
    let (start_ns, end_ns) = time_range(&params, now_ns(&state), DEFAULT_RANGE_NS)?;
    check_query_length(&state.logs_query(), start_ns, end_ns)?;
    let max_entries = state.logs_query().max_entries_limit_per_query.max(DETECTED_DEFAULT_LINE_LIMIT);
    let line_limit = positive_param(&params, "line_limit", DETECTED_DEFAULT_LINE_LIMIT)?.min(max_entries);
    let limit = positive_param(&params, "limit", DETECTED_DEFAULT_LIMIT)?;
    let limit = positive_param(&params, "field_limit", limit)?;
    Ok(DetectRequest { state, tenant, expr, start_ns, end_ns, line_limit, limit })
}

/// Reads the newest `line_limit` entries of the query and collects their fields: structured
/// metadata, labels the query's own parsers set, and what `json` (for lines that are a JSON
/// object) or `logfmt` (for the others) finds in each line.
async fn detect_fields(request: &DetectRequest) -> Result<BTreeMap<String, FieldSeen>, ApiError> {
    let Expr::Log(log) = &request.expr else {
        return Err(ApiError::internal("detected fields sample a log query"));
    };
    let streams =
        newest_entries(&request.state, &request.tenant, log, request.start_ns, request.end_ns, request.line_limit)
            .await?;
    let mut fields: BTreeMap<String, FieldSeen> = BTreeMap::new();
    let mut builder = LabelsBuilder::default();
    for stream in &streams {
        for entry in &stream.entries {
            for (name, value) in &entry.metadata {
                fields.entry(name.clone()).or_default().see(value, None);
            }
            let mut found_by_line: HashSet<String> = HashSet::new();
            builder.reset(&stream.stream_labels, &Labels::empty());
            let parser = if entry.line.trim_start().starts_with('{') {
                parsers::json_all(&entry.line, &mut builder);
                "json"
            } else {
                parsers::logfmt(&entry.line, false, false, None, &mut builder);
                "logfmt"
            };
            if builder.error().is_none() {
                for (name, value) in builder.category(Category::Parsed) {
                    if value.is_empty() {
                        continue;
                    }
                    found_by_line.insert(name.to_string());
                    fields.entry(name.to_string()).or_default().see(value, Some(parser));
                }
                if parser == "json" {
                    record_json_paths(&entry.line, &mut fields);
                }
            }
            for (name, value) in &entry.parsed {
                if name.starts_with("__") || found_by_line.contains(name) || value.is_empty() {
                    continue;
                }
                // Set by the query's own stages (regexp, pattern, label_format, ...).
                fields.entry(name.clone()).or_default().see(value, None);
            }
        }
    }
    Ok(fields)
}

/// Notes, for each field already seen that a `json` parser takes from `line`, the keys that
/// lead to it (the first path seen wins). Field names are built as the parser builds them: keys sanitized, joined
/// with `_`, arrays left out.
fn record_json_paths(line: &str, fields: &mut BTreeMap<String, FieldSeen>) {
    fn walk(
        object: &serde_json::Map<String, Value>,
        name: &mut String,
        path: &mut Vec<String>,
        fields: &mut BTreeMap<String, FieldSeen>,
    ) {
        for (key, value) in object {
            let length = name.len();
            if !name.is_empty() {
                name.push('_');
            }
            name.push_str(&parsers::sanitize_label_name(key));
            path.push(key.clone());
            match value {
                Value::Object(inner) => walk(inner, name, path, fields),
                Value::Array(_) => {}
                _ => {
                    if let Some(seen) = fields.get_mut(name.as_str())
                        && seen.json_path.is_none()
                    {
                        seen.json_path = Some(path.clone());
                    }
                }
            }
            path.pop();
            name.truncate(length);
        }
    }
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) {
        walk(&object, &mut String::new(), &mut Vec::new(), fields);
    }
}

pub async fn detected_fields(request: Request) -> Result<Response, LokiError> {
    let request = detect_request(request)?;
    let fields = detect_fields(&request).await?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"fields\":[");
    for (i, (name, seen)) in fields.iter().take(request.limit).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"label\":");
        write_json_string(&mut out, name);
        let field_type = seen.field_type.unwrap_or(FieldType::String).name();
        let _ = std::io::Write::write_fmt(
            &mut out,
            format_args!(",\"type\":\"{field_type}\",\"cardinality\":{},\"parsers\":", seen.values.len()),
        );
        if seen.parsers.is_empty() {
            // Structured metadata needs no parser; Loki writes its empty list as null.
            out.extend_from_slice(b"null");
        } else {
            let mut list = String::from("[");
            for (j, parser) in seen.parsers.iter().enumerate() {
                let _ = write!(list, "{}\"{parser}\"", if j > 0 { "," } else { "" });
            }
            list.push(']');
            out.extend_from_slice(list.as_bytes());
        }
        if let Some(path) = &seen.json_path {
            out.extend_from_slice(b",\"jsonPath\":");
            // Writing strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, path);
        }
        out.push(b'}');
    }
    let _ = std::io::Write::write_fmt(&mut out, format_args!("],\"limit\":{}}}", request.limit));
    Ok(json_response(out))
}

pub async fn detected_field_values(request: NamedRequest) -> Result<Response, LokiError> {
    let (name, request) = named(request);
    let request = detect_request(request)?;
    let fields = detect_fields(&request).await?;
    let values: Vec<&String> =
        fields.get(&name).map(|seen| seen.values.iter().take(request.limit).collect()).unwrap_or_default();
    Ok(axum::Json(json!({ "values": values, "limit": request.limit })).into_response())
}

// ---------------------------------------------------------------------------------------------
// Patterns and formatting.

/// What stands for a variable part of a line in a pattern (Loki's and LogQL's `pattern`
/// placeholder).
const PATTERN_PLACEHOLDER: &str = "<_>";
/// The step patterns are counted in when none is given, at least.
const PATTERN_MIN_DEFAULT_STEP_NS: i64 = 10 * 1_000_000_000;
/// Most patterns kept; lines like none of them once this many exist are not counted.
const MAX_PATTERNS: usize = 300;

/// One cluster of similar lines: its pattern tokens and its line counts per step.
struct LineCluster {
    tokens: Vec<String>,
    counts: BTreeMap<i64, u64>,
    total: u64,
}

/// A line cut into tokens, each keeping what follows it (a run of whitespace, or the comma
/// after a JSON member), so that joining the tokens gives the line back.
fn tokenize(line: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let ends_here = if c.is_whitespace() {
            chars.peek().is_none_or(|(_, next)| !next.is_whitespace())
        } else {
            c == ',' && chars.peek().is_none_or(|(_, next)| !next.is_whitespace())
        };
        if ends_here {
            let end = at + c.len_utf8();
            tokens.push(&line[start..end]);
            start = end;
        }
    }
    if start < line.len() {
        tokens.push(&line[start..]);
    }
    tokens
}

/// A token's text and what closes it: whitespace, commas and closing brackets.
fn split_separator(token: &str) -> (&str, &str) {
    let text = token.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ',' | '}' | ']'));
    (text, &token[text.len()..])
}

/// `key=` or `key:` (`"key":` in JSON) and the value after it, for a key without digits.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let at = text.find(['=', ':'])?;
    let key = &text[..at];
    (!key.is_empty() && !key.bytes().any(|b| b.is_ascii_digit())).then(|| (&text[..=at], &text[at + 1..]))
}

/// A line token with the variable parts of values put out of the way: `key=value` keeps its
/// key, and a value (or a whole token) holding a digit becomes the placeholder.
fn pattern_token(token: &str) -> String {
    let (text, separator) = split_separator(token);
    let variable = |text: &str| text.bytes().any(|b| b.is_ascii_digit());
    let text = match split_key(text) {
        Some((key, value)) if variable(value) => format!("{key}{PATTERN_PLACEHOLDER}"),
        Some(_) => text.to_string(),
        None if variable(text) => PATTERN_PLACEHOLDER.to_string(),
        None => text.to_string(),
    };
    text + separator
}

/// Whether a pattern token stands for a line token: the same text, a placeholder, or
/// `key=<_>` for any value of that key (separators aside).
fn covers(pattern: &str, token: &str) -> bool {
    let (pattern, token) = (split_separator(pattern).0, split_separator(token).0);
    pattern == token
        || pattern == PATTERN_PLACEHOLDER
        || pattern.strip_suffix(PATTERN_PLACEHOLDER).is_some_and(|key| {
            split_key(pattern).is_some_and(|(pattern_key, _)| pattern_key == key)
                && split_key(token).is_some_and(|(token_key, _)| token_key == key)
        })
}

/// How alike a line is to a cluster's pattern: the share of positions where the pattern has
/// the line's token, or its key with a placeholder value. A bare placeholder stands for the
/// token but says nothing of likeness.
fn similarity(pattern: &[String], tokens: &[String]) -> f64 {
    let same = pattern
        .iter()
        .zip(tokens)
        .filter(|(a, b)| a == b || (split_separator(a).0 != PATTERN_PLACEHOLDER && covers(a, b)))
        .count();
    same as f64 / tokens.len().max(1) as f64
}

/// Merges a line into a pattern: where they differ the pattern gets a placeholder (keeping a
/// key both share, and the pattern's separators).
fn merge_pattern(pattern: &mut [String], tokens: &[String]) {
    for (kept, token) in pattern.iter_mut().zip(tokens) {
        if covers(kept, token) {
            continue;
        }
        let (text, separator) = split_separator(kept);
        let shared_key = match (split_key(text), split_key(split_separator(token).0)) {
            (Some((a, _)), Some((b, _))) if a == b => a,
            _ => "",
        };
        *kept = format!("{shared_key}{PATTERN_PLACEHOLDER}{separator}");
    }
}

/// Clusters lines (oldest first) into patterns: a line joins the most alike pattern of the same
/// token count when at least half of its tokens are alike, otherwise it starts a pattern of
/// its own.
fn detect_patterns(lines: &[(i64, &str)], step_ns: i64) -> Vec<LineCluster> {
    let mut clusters: Vec<LineCluster> = Vec::new();
    for (t_ns, line) in lines {
        let tokens: Vec<String> = tokenize(line.trim()).into_iter().map(pattern_token).collect();
        if tokens.is_empty() {
            continue;
        }
        let best = clusters
            .iter()
            .enumerate()
            .filter(|(_, cluster)| cluster.tokens.len() == tokens.len())
            .map(|(index, cluster)| (index, similarity(&cluster.tokens, &tokens)))
            .filter(|(_, score)| *score >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let index = match best {
            Some((index, _)) => {
                merge_pattern(&mut clusters[index].tokens, &tokens);
                index
            }
            None if clusters.len() < MAX_PATTERNS => {
                clusters.push(LineCluster { tokens, counts: BTreeMap::new(), total: 0 });
                clusters.len() - 1
            }
            None => continue,
        };
        let bucket = t_ns - t_ns.rem_euclid(step_ns);
        *clusters[index].counts.entry(bucket).or_default() += 1;
        clusters[index].total += 1;
    }
    clusters.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.tokens.cmp(&b.tokens)));
    clusters
}

/// Patterns of the newest entries of a log query, each with its count per step:
/// `{"status":"success","data":[{"pattern":"..","samples":[[<seconds>,<count>],..]}]}`.
pub async fn patterns(request: Request) -> Result<Response, LokiError> {
    let Common { state, params, tenant } = common(request)?;
    let Expr::Log(log) = parse_logql(&params)? else {
        return Err(ApiError::bad_data("invalid parameter \"query\": patterns need a log query").into());
    };
    let (start_ns, end_ns) = time_range(&params, now_ns(&state), DEFAULT_RANGE_NS)?;
    check_query_length(&state.logs_query(), start_ns, end_ns)?;
    let step_ns = match duration_param_ns(&params, "step")? {
        Some(step) if step <= 0 => {
            return Err(ApiError::bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
            .into());
        }
        Some(step) => step,
        // Counts finer than 10s say little about a pattern.
        None => default_step_ns(start_ns, end_ns).max(PATTERN_MIN_DEFAULT_STEP_NS),
    };
    let limit = state.logs_query().max_entries_limit_per_query;
    let streams = newest_entries(&state, &tenant, &log, start_ns, end_ns, limit).await?;
    let mut lines: Vec<(i64, &str)> = Vec::new();
    for stream in &streams {
        lines.extend(stream.entries.iter().map(|entry| (entry.t_ns, entry.line.as_str())));
    }
    lines.sort_by_key(|(t_ns, _)| *t_ns);
    let clusters = detect_patterns(&lines, step_ns);
    let data: Vec<Value> = clusters
        .iter()
        .map(|cluster| {
            let samples: Vec<Value> =
                cluster.counts.iter().map(|(t_ns, count)| json!([t_ns.div_euclid(1_000_000_000), count])).collect();
            json!({ "pattern": cluster.tokens.concat(), "samples": samples })
        })
        .collect();
    Ok(success(Value::Array(data)))
}

pub async fn format_query(request: Request) -> Result<Response, LokiError> {
    let Common { params, .. } = common(request)?;
    let expr = parse_logql(&params)?;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":");
    write_json_string(&mut out, &expr.to_string());
    out.push(b'}');
    Ok(json_response(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cluster_into_patterns() {
        let lines = [
            (0, "level=info msg=started took=12ms"),
            (1, "level=info msg=started took=3ms"),
            (1, "level=info msg=stopped took=3ms"),
            (2, "GET /users/1 200"),
            (12, "GET /users/2 404"),
            (13, "level=error msg=failed took=1s"),
            (14, "connection reset"),
        ];
        type Found = (String, u64, Vec<(i64, u64)>);
        let patterns: Vec<Found> = detect_patterns(&lines, 10)
            .into_iter()
            .map(|c| (c.tokens.concat(), c.total, c.counts.into_iter().collect()))
            .collect();
        assert_eq!(
            patterns,
            [
                ("level=<_> msg=<_> took=<_>".to_string(), 4, vec![(0, 3), (10, 1)]),
                ("GET <_> <_>".to_string(), 2, vec![(0, 1), (10, 1)]),
                ("connection reset".to_string(), 1, vec![(10, 1)]),
            ]
        );
        assert_eq!(pattern_token("ts=2024-03-30T23:03:40 "), "ts=<_> ");
        assert_eq!(pattern_token("caller=grpc_logging.go:66"), "caller=<_>");
        assert_eq!(pattern_token("method=/cortex.Ingester/Push"), "method=/cortex.Ingester/Push");
        assert_eq!(pattern_token("12:00"), "<_>");
        assert_eq!(pattern_token("\"status\":200,"), "\"status\":<_>,");
        // JSON lines split at their members and keep their separators.
        let json = [
            (0, r#"{"msg":"ok","status":200,"user":{"id":7}}"#),
            (1, r#"{"msg":"ok","status":500,"user":{"id":8}}"#),
            (2, r#"{"msg":"slow","status":200, "took":"1s"}"#),
        ];
        let patterns: Vec<String> = detect_patterns(&json, 10).into_iter().map(|c| c.tokens.concat()).collect();
        assert_eq!(
            patterns,
            [r#"{"msg":"ok","status":<_>,"user":<_>}}"#, r#"{"msg":"slow","status":<_>, "took":<_>}"#]
        );
    }

    #[test]
    fn value_types_in_loki_order() {
        let cases = [
            ("200", FieldType::Int),
            ("-3", FieldType::Int),
            ("0.25", FieldType::Float),
            ("1e3", FieldType::Float),
            ("true", FieldType::Boolean),
            ("F", FieldType::Boolean),
            ("1.5s", FieldType::Duration),
            ("300ms", FieldType::Duration),
            ("2h45m10.5s", FieldType::Duration),
            ("12µs", FieldType::Duration),
            ("10 MB", FieldType::Bytes),
            ("1.5GiB", FieldType::Bytes),
            ("42b", FieldType::Bytes),
            ("GET", FieldType::String),
            ("5 apples", FieldType::String),
            ("s", FieldType::String),
            ("", FieldType::String),
        ];
        for (value, expected) in cases {
            assert_eq!(FieldType::of(value), expected, "{value:?}");
        }
        assert_eq!(FieldType::Int.join(FieldType::Float), FieldType::Float);
        assert_eq!(FieldType::Int.join(FieldType::Duration), FieldType::String);
    }
}
