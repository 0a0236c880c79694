//! The Prometheus read endpoints that answer from storage without evaluating PromQL:
//! `/api/v1/labels`, `/api/v1/label/{name}/values`, `/api/v1/series`, `/api/v1/metadata` and
//! `/api/v1/query_exemplars`, each by GET or POST (URL and form parameters merged, as
//! Prometheus's `r.FormValue` does), with Prometheus's parameter forms and error wording.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use promql_parser::parser::Expr;
use serde_json::{Map, Value, json};
use tripod_storage::labels::{Labels, Matcher};
use tripod_storage::metrics::{MetricsQueryable, TimeRange};

use crate::api::AppState;
use crate::api::error::{ApiError, PrometheusError};
use crate::query::promql::selector::selector_matchers;

/// Request parameters: the URL query, then a form body, in order.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn from_request(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = match query {
            Some(query) => serde_urlencoded::from_str(query)
                .map_err(|e| ApiError::bad_data(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_data("form body is not valid UTF-8"))?;
            let form: Vec<(String, String)> =
                serde_urlencoded::from_str(text).map_err(|e| ApiError::bad_data(format!("invalid form body: {e}")))?;
            pairs.extend(form);
        }
        Ok(Params { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A time parameter: Unix seconds with a fraction, or RFC3339. Returns milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return None;
        }
        return Some((seconds * 1000.0).round() as i64);
    }
    parse_rfc3339(text)
}

/// `2023-11-14T22:13:20Z`, `2023-11-14T22:13:20.123+01:00`.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 60 + rest[4..6].parse::<i64>().ok()?)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

pub(super) fn time_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match params.get(name) {
        None | Some("") => Ok(None),
        Some(text) => parse_time(text).map(Some).ok_or_else(|| {
            ApiError::bad_data(format!("invalid parameter \"{name}\": cannot parse {text:?} to a valid timestamp"))
        }),
    }
}

/// The `start`/`end` range; absent ends are open.
fn range_param(params: &Params) -> Result<TimeRange, ApiError> {
    let start = time_param(params, "start")?.unwrap_or(i64::MIN);
    let end = time_param(params, "end")?.unwrap_or(i64::MAX);
    TimeRange::new(start, end)
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"))
}

fn limit_param(params: &Params) -> Result<Option<usize>, ApiError> {
    match params.get("limit") {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(0) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n as usize)),
            _ => {
                Err(ApiError::bad_data(format!("invalid parameter \"limit\": {text:?} is not a non-negative integer")))
            }
        },
    }
}

/// Parses a `match[]` value: a series selector such as `up{job="api"}`.
pub fn parse_match(text: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let expr = promql_parser::parser::parse(text)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?;
    match expr {
        Expr::VectorSelector(selector) => selector_matchers(&selector).map_err(ApiError::bad_data),
        _ => Err(ApiError::bad_data(format!("invalid parameter \"match[]\": {text:?} is not a series selector"))),
    }
}

pub(super) fn match_params(params: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for text in params.all("match[]") {
        sets.extend(parse_match(text)?);
    }
    Ok(sets)
}

pub(super) fn storage_error(error: tripod_storage::metrics::MetricsError) -> ApiError {
    ApiError::internal(format!("reading metrics: {error}"))
}

pub(super) fn success(data: Value) -> Response {
    Json(json!({ "status": "success", "data": data })).into_response()
}

/// Label names, or values of one label, over the union of the `match[]` sets (all series
/// without any).
fn collect_labels(state: &AppState, params: &Params, value_of: Option<&str>) -> Result<Vec<String>, ApiError> {
    let range = range_param(params)?;
    let limit = limit_param(params)?;
    let sets = match_params(params)?;
    let storage = state.storage()?;
    let metrics = storage.metrics();
    let sets = if sets.is_empty() { vec![Vec::new()] } else { sets };
    let mut out = std::collections::BTreeSet::new();
    for matchers in &sets {
        let found = match value_of {
            Some(name) => metrics.label_values(name, matchers, range),
            None => metrics.label_names(matchers, range),
        }
        .map_err(storage_error)?;
        out.extend(found);
    }
    let mut out: Vec<String> = out.into_iter().collect();
    if let Some(limit) = limit {
        out.truncate(limit);
    }
    Ok(out)
}

type Request = (State<AppState>, RawQuery, HeaderMap, Bytes);

pub async fn labels((State(state), RawQuery(query), headers, body): Request) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    Ok(success(json!(collect_labels(&state, &params, None)?)))
}

/// Decodes a label name in Prometheus's `U__` escaped form (`U__a_2e_b` is `a.b`).
pub fn unescape_label_name(name: &str) -> Result<String, ApiError> {
    let Some(escaped) = name.strip_prefix("U__") else { return Ok(name.to_string()) };
    let mut out = String::new();
    let mut rest = escaped;
    while let Some(position) = rest.find('_') {
        out.push_str(&rest[..position]);
        rest = &rest[position + 1..];
        if let Some(after) = rest.strip_prefix('_') {
            out.push('_');
            rest = after;
            continue;
        }
        let end = rest.find('_').ok_or_else(|| ApiError::bad_data(format!("invalid escaped label name {name:?}")))?;
        let code = u32::from_str_radix(&rest[..end], 16).ok().and_then(char::from_u32);
        out.push(code.ok_or_else(|| ApiError::bad_data(format!("invalid escaped label name {name:?}")))?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let name = unescape_label_name(&name)?;
    if name.is_empty() {
        return Err(ApiError::bad_data("invalid label name: \"\"").into());
    }
    Ok(success(json!(collect_labels(&state, &params, Some(&name))?)))
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels.iter().map(|l| (l.name.to_string(), Value::String(l.value.to_string()))).collect::<Map<_, _>>(),
    )
}

pub async fn series((State(state), RawQuery(query), headers, body): Request) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let sets = match_params(&params)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided").into());
    }
    let range = range_param(&params)?;
    let limit = limit_param(&params)?;
    let storage = state.storage()?;
    let mut found = std::collections::BTreeSet::new();
    for matchers in &sets {
        for series in storage.metrics().select(matchers, range).map_err(storage_error)? {
            found.insert(series.labels);
        }
    }
    let mut out: Vec<Value> = found.iter().map(labels_json).collect();
    if let Some(limit) = limit {
        out.truncate(limit);
    }
    Ok(success(Value::Array(out)))
}

pub async fn metadata((State(state), RawQuery(query), headers, body): Request) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let limit = limit_param(&params)?;
    let per_metric = match params.get("limit_per_metric") {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| ApiError::bad_data(format!("invalid parameter \"limit_per_metric\": {text:?}")))?,
        ),
    };
    let storage = state.storage()?;
    let all = storage.metrics().metadata(params.get("metric").filter(|m| !m.is_empty())).map_err(storage_error)?;
    let mut out = Map::new();
    for (name, entries) in all {
        if limit.is_some_and(|limit| out.len() >= limit) {
            break;
        }
        let entries: Vec<Value> = entries
            .iter()
            .take(per_metric.unwrap_or(usize::MAX).max(1))
            .map(|m| json!({ "type": m.metric_type.as_str(), "help": m.help, "unit": m.unit }))
            .collect();
        out.insert(name, Value::Array(entries));
    }
    Ok(success(Value::Object(out)))
}

/// Every vector selector in an expression.
fn selectors(expr: &Expr, out: &mut Vec<promql_parser::parser::VectorSelector>) {
    match expr {
        Expr::VectorSelector(selector) => out.push(selector.clone()),
        Expr::MatrixSelector(matrix) => out.push(matrix.vs.clone()),
        Expr::Aggregate(aggregate) => {
            selectors(&aggregate.expr, out);
            if let Some(param) = &aggregate.param {
                selectors(param, out);
            }
        }
        Expr::Unary(unary) => selectors(&unary.expr, out),
        Expr::Binary(binary) => {
            selectors(&binary.lhs, out);
            selectors(&binary.rhs, out);
        }
        Expr::Paren(paren) => selectors(&paren.expr, out),
        Expr::Subquery(subquery) => selectors(&subquery.expr, out),
        Expr::Call(call) => {
            for argument in &call.args.args {
                selectors(argument, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

pub async fn query_exemplars(
    (State(state), RawQuery(query), headers, body): Request,
) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let text = params
        .get("query")
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": empty query"))?;
    let expr = promql_parser::parser::parse(text)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let range = range_param(&params)?;
    let mut found = Vec::new();
    selectors(&expr, &mut found);
    let mut sets = Vec::new();
    for selector in &found {
        sets.extend(selector_matchers(selector).map_err(ApiError::bad_data)?);
    }
    let storage = state.storage()?;
    let exemplars =
        if sets.is_empty() { Vec::new() } else { storage.metrics().exemplars(&sets, range).map_err(storage_error)? };
    let data: Vec<Value> = exemplars
        .iter()
        .map(|series| {
            let exemplars: Vec<Value> = series
                .exemplars
                .iter()
                .map(|e| {
                    json!({
                        "labels": labels_json(&e.labels),
                        "value": crate::api::prometheus::format_value(e.value),
                        "timestamp": e.t_ms as f64 / 1000.0,
                    })
                })
                .collect();
            json!({ "seriesLabels": labels_json(&series.series), "exemplars": exemplars })
        })
        .collect();
    Ok(success(Value::Array(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20.5+01:00"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in ["", "abc", "2023-13-01T00:00:00Z", "NaN", "Inf", "2023-11-14 22:13"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn escaped_label_names_decode() {
        assert_eq!(unescape_label_name("job").unwrap(), "job");
        assert_eq!(unescape_label_name("U__http_2e_method").unwrap(), "http.method");
        assert_eq!(unescape_label_name("U__a__b").unwrap(), "a_b");
        assert!(unescape_label_name("U__bad_zz_").is_err());
    }

    #[test]
    fn match_selectors_parse() {
        let sets = parse_match(r#"up{job="api", instance=~"a.*"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].len(), 3);
        assert!(parse_match("rate(up[5m])").is_err());
        assert!(parse_match("{").is_err());
    }
}
