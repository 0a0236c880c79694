//! The Loki HTTP surface: push ([`push`], wire types in [`model`]), LogQL queries
//! ([`query`]: `query`, `query_range`, the older `/api/prom/query`), the read endpoints that
//! answer from the index or a sample of entries ([`read`]: labels, series, index stats and
//! volume, detected fields and labels, patterns, format_query) and live tailing over a
//! WebSocket ([`tail`]).
//!
//! Every read endpoint takes its parameters from the URL and, for POST, from a form body too;
//! times are Unix nanoseconds, float seconds or RFC 3339; errors are plain text, as Loki
//! answers them, and the tenant comes from `X-Scope-OrgID` when multi-tenancy is on.

pub mod model;
pub mod push;
pub mod query;
pub mod read;
pub mod tail;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};

use super::AppState;
use super::error::ApiError;
use super::prometheus::read::Params;
use crate::query::logql::syntax::ast::{LogExpr, MetricExpr};
use crate::query::logql::syntax::{self, Expr};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/loki/api/v1/push", post(push::push))
        .route("/api/prom/push", post(push::push))
        .route("/loki/api/v1/query", get(query::instant).post(query::instant))
        .route("/loki/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/prom/query", get(query::legacy).post(query::legacy))
        .route("/loki/api/v1/labels", get(read::labels).post(read::labels))
        .route("/loki/api/v1/label", get(read::labels).post(read::labels))
        .route("/loki/api/v1/label/{name}/values", get(read::label_values).post(read::label_values))
        .route("/loki/api/v1/series", get(read::series).post(read::series))
        .route("/loki/api/v1/index/stats", get(read::index_stats).post(read::index_stats))
        .route("/loki/api/v1/index/volume", get(read::volume).post(read::volume))
        .route("/loki/api/v1/index/volume_range", get(read::volume_range).post(read::volume_range))
        .route("/loki/api/v1/detected_fields", get(read::detected_fields).post(read::detected_fields))
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(read::detected_field_values).post(read::detected_field_values),
        )
        .route("/loki/api/v1/detected_labels", get(read::detected_labels).post(read::detected_labels))
        .route("/loki/api/v1/patterns", get(read::patterns).post(read::patterns))
        .route("/loki/api/v1/format_query", get(read::format_query).post(read::format_query))
        .route("/loki/api/v1/tail", get(tail::tail))
}

/// The tenant a query reads: `X-Scope-OrgID` under the tenancy setting. A query names one
/// tenant; Loki's `a|b` form (several tenants at once) is refused.
pub(crate) fn query_tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let several = headers
        .get(push::ORG_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|org_id| org_id.contains('|'));
    if several && state.logs_ingest().settings().auth_enabled {
        return Err(ApiError::bad_data("X-Scope-OrgID names several tenants; a query reads exactly one tenant here"));
    }
    push::tenant_of(state, headers)
}

/// Now, in Unix nanoseconds, from the clock the write path uses.
pub(crate) fn now_ns(state: &AppState) -> i64 {
    state.logs_ingest().clock().now_ns()
}

/// A time as Loki's API takes it: an integer is Unix nanoseconds, a number with a fraction or
/// an exponent is Unix seconds, anything else RFC 3339 (fraction up to nanoseconds).
pub fn parse_time_ns(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ns) = text.parse::<i64>() {
        return Some(ns);
    }
    if let Some(ns) = decimal_seconds_ns(text) {
        return Some(ns);
    }
    if text.contains(['e', 'E'])
        && let Ok(seconds) = text.parse::<f64>()
    {
        let ns = seconds * 1e9;
        return (ns.is_finite() && ns.abs() < i64::MAX as f64).then_some(ns.round() as i64);
    }
    model::parse_rfc3339_ns(text)
}

/// `1700000000.123456789` exactly (no float rounding): seconds, a dot, up to nine digits.
fn decimal_seconds_ns(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.')?;
    let negative = whole.starts_with('-');
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    if digits.is_empty() && fraction.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let mut nanos = 0i64;
    for (position, digit) in fraction.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10i64.pow(8 - position as u32);
    }
    let magnitude = seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A time parameter in nanoseconds, `None` when absent or empty.
pub(crate) fn time_param_ns(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match params.get(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => parse_time_ns(text).map(Some).ok_or_else(|| {
            ApiError::bad_data(format!("invalid parameter {name:?}: cannot parse {text:?} to a valid timestamp"))
        }),
    }
}

/// A duration parameter (float seconds or `15s`, `1m30s`) in nanoseconds.
pub(crate) fn duration_param_ns(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    Ok(super::prometheus::query::duration_param(params, name)?.map(|ms| ms.saturating_mul(1_000_000)))
}

/// `start` and `end` with Loki's defaults: `end` is now, `start` is `since` (or
/// `default_length_ns`) before `end`. Refuses an `end` before `start`.
pub(crate) fn time_range(params: &Params, now_ns: i64, default_length_ns: i64) -> Result<(i64, i64), ApiError> {
    let end = time_param_ns(params, "end")?.unwrap_or(now_ns);
    let start = match time_param_ns(params, "start")? {
        Some(start) => start,
        None => {
            let since = duration_param_ns(params, "since")?.unwrap_or(default_length_ns);
            end.min(now_ns).saturating_sub(since)
        }
    };
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    Ok((start, end))
}

/// Parses a LogQL query; a parse error is a 400 carrying the parser's message.
pub(crate) fn parse_logql(params: &Params) -> Result<Expr, ApiError> {
    let text = params.get("query").unwrap_or("");
    syntax::parse(text).map_err(|error| ApiError::bad_data(error.to_string()))
}

/// The stream selectors a query reads, left to right.
pub(crate) fn log_selectors(expr: &Expr) -> Vec<&LogExpr> {
    fn walk<'a>(expr: &'a MetricExpr, out: &mut Vec<&'a LogExpr>) {
        match expr {
            MetricExpr::Range { range, .. } => out.push(&range.log),
            MetricExpr::Vector { expr, .. } | MetricExpr::LabelReplace { expr, .. } => walk(expr, out),
            MetricExpr::Binary { left, right, .. } => {
                walk(left, out);
                walk(right, out);
            }
            MetricExpr::Literal(_) | MetricExpr::Vector1(_) => {}
        }
    }
    let mut out = Vec::new();
    match expr {
        Expr::Log(log) => out.push(log),
        Expr::Metric(metric) => walk(metric, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_loki_takes() {
        let cases = [
            ("4000000000", Some(4_000_000_000)),
            ("1700000000123456789", Some(1_700_000_000_123_456_789)),
            ("1700000000.5", Some(1_700_000_000_500_000_000)),
            ("1700000000.123456789123", Some(1_700_000_000_123_456_789)),
            ("-1.5", Some(-1_500_000_000)),
            ("1.7e9", Some(1_700_000_000_000_000_000)),
            ("2023-11-14T22:13:20.5Z", Some(1_700_000_000_500_000_000)),
            ("2023-11-14T23:13:20+01:00", Some(1_700_000_000_000_000_000)),
            ("now", None),
            ("1.2.3", None),
            ("1e400", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_time_ns(text), expected, "{text}");
        }
    }

    #[test]
    fn selectors_of_metric_queries() {
        let expr = syntax::parse(r#"sum(rate({a="1"}[1m])) / count_over_time({b="2"} |= "x" [5m])"#).unwrap();
        let selectors: Vec<String> = log_selectors(&expr).iter().map(|log| log.to_string()).collect();
        assert_eq!(selectors, [r#"{a="1"}"#, r#"{b="2"} |= "x""#]);
        assert!(log_selectors(&syntax::parse("vector(1) + 1").unwrap()).is_empty());
    }
}
