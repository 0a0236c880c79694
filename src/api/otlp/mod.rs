//! OTLP ingestion: gRPC (`LogsService`, `MetricsService`, `TraceService` on 4317) and HTTP
//! (`/v1/logs`, `/v1/metrics`, `/v1/traces` on 4318 and `/otlp/v1/*` on the main router).
//!
//! Every signal is served; a gRPC service or method OTLP does not define answers
//! `UNIMPLEMENTED`, and an unknown HTTP path 404.

pub mod logs;
pub mod metrics;
pub mod traces;
pub mod traces_wire;

use axum::Router;
use axum::routing::post;
use tonic::service::Routes;

use super::AppState;

/// The OTLP gRPC services served on the gRPC listener.
pub fn grpc_routes(state: AppState) -> Routes {
    // Unknown services and methods answer UNIMPLEMENTED through the fallback of Routes.
    Routes::default()
        .add_service(metrics::grpc_service(state.clone()))
        .add_service(logs::grpc_service(state.clone()))
        .add_service(traces::grpc_service(state))
}

/// The OTLP HTTP routes, merged into the main router.
pub fn http_router() -> Router<AppState> {
    Router::new()
        .route("/v1/metrics", post(metrics::http_export))
        .route("/otlp/v1/metrics", post(metrics::http_export))
        .route("/v1/logs", post(logs::http_export))
        .route("/otlp/v1/logs", post(logs::http_export))
        .route("/v1/traces", post(traces::http_export))
        .route("/otlp/v1/traces", post(traces::http_export))
}
