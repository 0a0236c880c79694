//! Health, readiness, self-metrics and build information, in the forms Loki, Prometheus and
//! their clients expect:
//!
//! - `GET /ready` (Loki, Tempo): `ready` with 200 once storage is open, 503 before and while
//!   stopping;
//! - `GET /-/ready` (Prometheus): the same readiness; `GET /-/healthy`: 200 while the process
//!   runs, as Prometheus's liveness check does;
//! - `GET /metrics`: Tripod's self-metrics in the Prometheus text format;
//! - `GET|POST /api/v1/status/buildinfo` (Prometheus envelope, no `features` object, so Grafana
//!   sees plain Prometheus) and `GET /loki/api/v1/status/buildinfo` (unwrapped, as Loki answers).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::{AppState, Readiness};
use crate::telemetry::build;

/// The Prometheus version whose API and semantics Tripod answers with. Grafana reads it to
/// decide which API features to use.
pub const PROMETHEUS_COMPATIBLE_VERSION: &str = "3.0.0";

/// The Loki version whose API Tripod answers with.
pub const LOKI_COMPATIBLE_VERSION: &str = "3.4.0";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ready", get(ready))
        .route("/-/ready", get(prometheus_ready))
        .route("/-/healthy", get(prometheus_healthy))
        .route("/metrics", get(metrics))
        .route("/api/v1/status/buildinfo", get(prometheus_buildinfo).post(prometheus_buildinfo))
        .route("/loki/api/v1/status/buildinfo", get(loki_buildinfo))
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Why the server is not ready, or `None` when it is.
fn not_ready_reason(readiness: &Readiness) -> Option<String> {
    match readiness {
        Readiness::Ready => None,
        Readiness::Starting => Some("storage is opening: the write-ahead log is being replayed".to_string()),
        Readiness::Failed(error) => Some(format!("storage failed to open: {error}")),
        Readiness::Stopping => Some("shutting down".to_string()),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    match not_ready_reason(&state.readiness()) {
        None => text(StatusCode::OK, "ready\n".to_string()),
        Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn prometheus_ready(State(state): State<AppState>) -> Response {
    match not_ready_reason(&state.readiness()) {
        None => text(StatusCode::OK, "Tripod is Ready.\n".to_string()),
        Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("Service Unavailable: {reason}\n")),
    }
}

async fn prometheus_healthy() -> Response {
    text(StatusCode::OK, "Tripod is Healthy.\n".to_string())
}

async fn metrics(State(state): State<AppState>) -> Response {
    let ready = state.readiness() == Readiness::Ready;
    let body = state.telemetry().render(ready, state.storage_if_open().map(|s| s.as_ref()));
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Build information in the field names Prometheus and Loki use.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: String,
    /// Tripod's own version; `version` is the compatible version of the system emulated.
    tripod_version: &'static str,
}

fn build_info(compatible_version: &'static str) -> BuildInfo {
    BuildInfo {
        version: compatible_version,
        revision: build::REVISION,
        branch: build::BRANCH,
        build_user: "tripod",
        build_date: build::BUILD_DATE,
        go_version: format!("rustc {}", build::RUSTC_VERSION),
        tripod_version: build::VERSION,
    }
}

async fn prometheus_buildinfo() -> Response {
    #[derive(Serialize)]
    struct Envelope {
        status: &'static str,
        data: BuildInfo,
    }
    axum::Json(Envelope { status: "success", data: build_info(PROMETHEUS_COMPATIBLE_VERSION) }).into_response()
}

async fn loki_buildinfo() -> Response {
    axum::Json(build_info(LOKI_COMPATIBLE_VERSION)).into_response()
}
