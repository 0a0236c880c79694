//! `/api/v1/query` and `/api/v1/query_range`: PromQL evaluation over HTTP, by GET or POST,
//! with Prometheus's parameters, limits and error wording.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;

use super::read::{Params, time_param};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind, PrometheusError};
use crate::query::promql::{self, EvalError, EvalOptions, QuerySettings, QueryValue, Steps};

/// A subquery's step when it names none: Prometheus's default evaluation interval.
const SUBQUERY_STEP_MS: i64 = 60_000;
/// The most steps a range query may have.
const MAX_POINTS: i64 = 11_000;

type Request = (State<AppState>, RawQuery, HeaderMap, Bytes);

pub async fn instant((State(state), RawQuery(query), headers, body): Request) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let expr = parse_query(&params)?;
    let t_ms = time_param(&params, "time")?.unwrap_or_else(crate::duration::unix_now_ms);
    let options = options(&params, state.query_settings())?;
    let storage = Arc::clone(state.storage()?);
    let value = run(move || promql::instant_query(storage.metrics(), &expr, t_ms, options)).await?;
    Ok(success(&value))
}

pub async fn range((State(state), RawQuery(query), headers, body): Request) -> Result<Response, PrometheusError> {
    let params = Params::from_request(query.as_deref(), &headers, &body)?;
    let start = required_time(&params, "start")?;
    let end = required_time(&params, "end")?;
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time").into());
    }
    let step = step_param(&params)?;
    if end.saturating_sub(start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        )
        .into());
    }
    let expr = parse_query(&params)?;
    match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => {}
        other => {
            let name = if other == ValueType::Matrix { "range vector" } else { "string" };
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"query\": invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
            ))
            .into());
        }
    }
    let options = options(&params, state.query_settings())?;
    let storage = Arc::clone(state.storage()?);
    let steps = Steps { start_ms: start, end_ms: end, step_ms: step };
    let value = run(move || promql::range_query(storage.metrics(), &expr, steps, options)).await?;
    Ok(success(&value))
}

pub(super) fn parse_query(params: &Params) -> Result<Expr, ApiError> {
    let text = params.get("query").unwrap_or("");
    promql_parser::parser::parse(text).map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))
}

fn required_time(params: &Params, name: &str) -> Result<i64, ApiError> {
    time_param(params, name)?.ok_or_else(|| {
        ApiError::bad_data(format!("invalid parameter \"{name}\": cannot parse \"\" to a valid timestamp"))
    })
}

/// A duration parameter: float seconds (`15`, `0.5`) or a Prometheus duration (`15s`, `1m30s`).
pub(crate) fn duration_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = params.get(name).filter(|t| !t.is_empty()) else { return Ok(None) };
    let invalid =
        || ApiError::bad_data(format!("invalid parameter \"{name}\": cannot parse {text:?} to a valid duration"));
    if let Ok(seconds) = text.parse::<f64>() {
        let ms = seconds * 1000.0;
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 {
            return Err(invalid());
        }
        return Ok(Some(ms.round() as i64));
    }
    let duration = crate::duration::parse_duration(text).map_err(|_| invalid())?;
    Ok(Some(i64::try_from(duration.as_millis()).map_err(|_| invalid())?))
}

fn step_param(params: &Params) -> Result<i64, ApiError> {
    let step = duration_param(params, "step")?
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration"))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    Ok(step)
}

fn options(params: &Params, settings: QuerySettings) -> Result<EvalOptions, ApiError> {
    let timeout = match duration_param(params, "timeout")? {
        Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(settings.timeout),
        Some(_) => return Err(ApiError::bad_data("invalid parameter \"timeout\": the timeout must be positive")),
        None => settings.timeout,
    };
    let lookback_ms = match duration_param(params, "lookback_delta")? {
        Some(ms) if ms > 0 => ms,
        Some(_) => {
            return Err(ApiError::bad_data("invalid parameter \"lookback_delta\": the lookback must be positive"));
        }
        None => settings.lookback_delta_ms,
    };
    Ok(EvalOptions {
        lookback_ms,
        max_samples: settings.max_samples,
        deadline: Instant::now() + timeout,
        subquery_step_ms: SUBQUERY_STEP_MS,
    })
}

/// Evaluates on the blocking pool, so that a long query never stalls the request threads.
async fn run(
    evaluate: impl FnOnce() -> Result<QueryValue, EvalError> + Send + 'static,
) -> Result<QueryValue, PrometheusError> {
    let result = tokio::task::spawn_blocking(evaluate)
        .await
        .map_err(|e| ApiError::internal(format!("query evaluation stopped: {e}")))?;
    result.map_err(|error| {
        let kind = match error {
            EvalError::Timeout => ErrorKind::Timeout,
            EvalError::Storage(_) => ErrorKind::Internal,
            EvalError::Unsupported(_) | EvalError::Execution(_) | EvalError::TooManySamples => ErrorKind::Execution,
        };
        PrometheusError(ApiError::new(kind, error.to_string()))
    })
}

fn success(value: &QueryValue) -> Response {
    let body = format!("{{\"status\":\"success\",\"data\":{}}}", value.to_json());
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
