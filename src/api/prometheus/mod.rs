//! The Prometheus HTTP surface: remote write and Prometheus's OTLP endpoint now; the query API
//! (`/api/v1/query`, ...) joins it with the PromQL engine.

pub mod remote_write;
pub mod targets;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/otlp/v1/metrics", post(super::otlp::metrics::http_export))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/targets/metadata", get(targets::targets_metadata))
        .route("/-/reload", post(targets::reload).put(targets::reload))
}
