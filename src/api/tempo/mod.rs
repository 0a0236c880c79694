//! The Tempo HTTP API, as Grafana's Tempo datasource uses it (see the Grafana contract, §3):
//! trace by ID in `trace`, the health check (`GET /api/echo`) and build information here.
//!
//! Shared by every Tempo handler: the tenants a read covers ([`read_tenants`]), the query
//! parameters ([`Params`]), Unix-second times ([`parse_seconds`], [`time_hint`]), and running
//! a store call off the async runtime under the query deadline ([`run_query`]). Errors are
//! answered as Tempo answers them: plain text, through [`TempoError`].

pub mod search;
pub mod tags;
pub mod trace;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tripod_storage::traces::{DEFAULT_TENANT, NsRange};

use super::AppState;
use crate::api::error::{ApiError, ErrorKind, TempoError};
use crate::api::loki::push::ORG_ID_HEADER;
use crate::ingest::logs::{TenantError, resolve_tenant};
use crate::telemetry::build;

/// The Tempo version reported by `/api/status/buildinfo`. Grafana turns on gRPC streaming for
/// Tempo 2.2.0 and later; Tripod serves search over HTTP only, so it reports the version
/// before.
pub const TEMPO_COMPATIBLE_VERSION: &str = "2.1.0";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/echo", get(echo))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/traces/{id}", get(trace::trace_v1))
        .route("/api/v2/traces/{id}", get(trace::trace_v2))
        .route("/api/search", get(search::search).post(search::search))
        .route("/api/search/tags", get(tags::tag_names_v1).post(tags::tag_names_v1))
        .route("/api/v2/search/tags", get(tags::tag_names_v2).post(tags::tag_names_v2))
        .route("/api/search/tag/{tag}/values", get(tags::tag_values_v1).post(tags::tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tags::tag_values_v2).post(tags::tag_values_v2))
}

/// `GET /api/echo`: Grafana's health check for the datasource.
async fn echo() -> Response {
    let mut response = (StatusCode::OK, "echo").into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Build information in Tempo's unwrapped form.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: String,
    /// Tripod's own version; `version` is the Tempo version whose API is answered.
    tripod_version: &'static str,
}

/// `GET /api/status/buildinfo`.
async fn buildinfo() -> Response {
    axum::Json(BuildInfo {
        version: TEMPO_COMPATIBLE_VERSION,
        revision: build::REVISION,
        branch: build::BRANCH,
        build_user: "tripod",
        build_date: build::BUILD_DATE,
        go_version: format!("rustc {}", build::RUSTC_VERSION),
        tripod_version: build::VERSION,
    })
    .into_response()
}

/// The tenants a read covers: Tempo's single tenant when multi-tenancy is off; else those
/// named by `X-Scope-OrgID`, several separated by `|` (a query across tenants, as Tempo allows).
pub fn read_tenants(state: &AppState, headers: &HeaderMap) -> Result<Vec<String>, ApiError> {
    if !state.logs_ingest().settings().auth_enabled {
        return Ok(vec![DEFAULT_TENANT.to_string()]);
    }
    let org_id = match headers.get(ORG_ID_HEADER) {
        Some(value) => value.to_str().map_err(|_| ApiError::bad_data("X-Scope-OrgID is not visible ASCII"))?,
        None => "",
    };
    let mut tenants: Vec<String> = Vec::new();
    for part in org_id.split('|') {
        let tenant = resolve_tenant(Some(part), true).map_err(|error| match error {
            TenantError::Missing => ApiError::new(ErrorKind::Unauthorized, error.to_string()),
            TenantError::Invalid(message) => ApiError::bad_data(message),
        })?;
        if !tenants.contains(&tenant) {
            tenants.push(tenant);
        }
    }
    Ok(tenants)
}

/// Query parameters as sent, first value of each name kept (as Go's `Query().Get` does); names
/// the handler does not read are ignored, as Tempo ignores them.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let Some(query) = query else { return Ok(Params::default()) };
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(Params)
            .map_err(|error| ApiError::bad_data(format!("invalid query string: {error}")))
    }

    /// The first value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).filter(|value| !value.is_empty())
    }
}

/// A parameter of Unix seconds, as Tempo's `start` and `end` are written.
pub fn parse_seconds(name: &str, text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|seconds| *seconds >= 0)
        .ok_or_else(|| ApiError::bad_data(format!("invalid {name} {text:?}: expected unix seconds, a whole number")))
}

/// Seconds to nanoseconds, saturating.
pub fn seconds_to_ns(seconds: i64) -> i64 {
    seconds.saturating_mul(1_000_000_000)
}

/// `start` and `end` (Unix seconds) as a time range, when either is given: a missing start is
/// the epoch, a missing end the end of time. Malformed values, or a start after the end, are
/// refused.
pub fn time_hint(params: &Params) -> Result<Option<NsRange>, ApiError> {
    let start = params.get("start").map(|text| parse_seconds("start", text)).transpose()?;
    let end = params.get("end").map(|text| parse_seconds("end", text)).transpose()?;
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    let start_ns = start.map_or(0, seconds_to_ns);
    // The whole last second is in the range.
    let end_ns = end.map_or(i64::MAX, |seconds| seconds_to_ns(seconds).saturating_add(999_999_999));
    NsRange::new(start_ns, end_ns).map(Some).ok_or_else(|| {
        ApiError::bad_data(format!(
            "invalid start {} and end {}: start must not be after end",
            start.unwrap_or(0),
            end.unwrap_or(0)
        ))
    })
}

/// How long a Tempo query may run: the query timeout of the limits (`limits.query_timeout`).
pub fn query_timeout(state: &AppState) -> Duration {
    state.logs_query().query_timeout
}

/// Runs a store call on the blocking pool, giving up (with a timeout error) at the deadline.
pub async fn run_query<T: Send + 'static>(
    state: &AppState,
    what: &'static str,
    call: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let timeout = query_timeout(state);
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(call)).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => Err(ApiError::internal(format!("{what} task failed: {error}"))),
        Err(_) => Err(ApiError::new(
            ErrorKind::Timeout,
            format!("{what} did not finish within the query timeout of {}", crate::duration::format_duration(timeout)),
        )),
    }
}

/// Turns a handler's result into Tempo's answer: the response, or the error as plain text.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|error| TempoError(error).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_take_the_first_value_and_skip_empty_ones() {
        let params = Params::parse(Some("start=10&start=20&end=&q=%7B%7D")).unwrap();
        assert_eq!(params.get("start"), Some("10"));
        assert_eq!(params.get("end"), None);
        assert_eq!(params.get("q"), Some("{}"));
        assert_eq!(params.get("other"), None);
        assert!(Params::parse(None).unwrap().get("start").is_none());
    }

    #[test]
    fn time_hints_are_unix_seconds() {
        let hint = |query: &str| time_hint(&Params::parse(Some(query)).unwrap());
        assert_eq!(hint("").unwrap(), None);
        assert_eq!(hint("start=10&end=20").unwrap(), NsRange::new(10_000_000_000, 20_999_999_999));
        assert_eq!(hint("start=10").unwrap(), NsRange::new(10_000_000_000, i64::MAX));
        assert_eq!(hint("end=20").unwrap(), NsRange::new(0, 20_999_999_999));
        for (query, message) in [
            ("start=abc", "invalid start \"abc\": expected unix seconds"),
            ("end=1.5", "invalid end \"1.5\": expected unix seconds"),
            ("start=-3", "invalid start \"-3\""),
            ("start=20&end=10", "invalid start 20 and end 10: start must not be after end"),
        ] {
            let error = hint(query).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::BadData);
            assert!(error.message().starts_with(message), "{query}: {}", error.message());
        }
    }
}
