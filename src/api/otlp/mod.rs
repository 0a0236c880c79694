//! OTLP ingestion: gRPC (`LogsService`, `MetricsService`, `TraceService` on 4317) and HTTP
//! (`/v1/logs`, `/v1/metrics`, `/v1/traces` on 4318 and `/otlp/v1/*` on the main router).
//!
//! Each signal's services are added here as its store lands. Until a signal is served, gRPC
//! calls for it answer `UNIMPLEMENTED` and HTTP requests 404, as an OTLP receiver without that
//! pipeline would.

use axum::Router;
use tonic::service::Routes;

use super::AppState;

/// The OTLP gRPC services served on the gRPC listener.
pub fn grpc_routes(_state: AppState) -> Routes {
    // Unknown services and methods answer UNIMPLEMENTED through the fallback of Routes.
    Routes::default()
}

/// The OTLP HTTP routes, merged into the main router.
pub fn http_router() -> Router<AppState> {
    Router::new()
}
