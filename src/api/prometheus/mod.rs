//! The Prometheus HTTP surface: remote write and Prometheus's OTLP endpoint now; the query API
//! (`/api/v1/query`, ...) joins it with the PromQL engine.

pub mod remote_write;

use axum::Router;
use axum::routing::post;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/otlp/v1/metrics", post(super::otlp::metrics::http_export))
}
