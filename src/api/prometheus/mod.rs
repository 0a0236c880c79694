//! The Prometheus HTTP surface: remote write, Prometheus's OTLP endpoint, the read endpoints
//! that answer from storage (labels, values, series, metadata, exemplars), targets and reload.
//! `/api/v1/query` and `/api/v1/query_range` join them with the PromQL engine.

pub mod federate;
pub mod read;
pub mod remote_write;
pub mod status;
pub mod targets;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/otlp/v1/metrics", post(super::otlp::metrics::http_export))
        .route("/api/v1/labels", get(read::labels).post(read::labels))
        .route("/api/v1/label/{name}/values", get(read::label_values).post(read::label_values))
        .route("/api/v1/series", get(read::series).post(read::series))
        .route("/api/v1/metadata", get(read::metadata).post(read::metadata))
        .route("/api/v1/query_exemplars", get(read::query_exemplars).post(read::query_exemplars))
        .route("/api/v1/format_query", get(status::format_query).post(status::format_query))
        .route("/api/v1/status/config", get(status::config).post(status::config))
        .route("/api/v1/status/flags", get(status::flags).post(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtime_info).post(status::runtime_info))
        .route("/api/v1/status/tsdb", get(status::tsdb).post(status::tsdb))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/targets/metadata", get(targets::targets_metadata))
        .route("/federate", get(federate::federate))
        .route("/-/reload", post(targets::reload).put(targets::reload))
}

/// A sample value as Prometheus writes it in JSON: `NaN`, `+Inf`, `-Inf`, or the shortest
/// decimal that reads back to the same float, without an exponent.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}
