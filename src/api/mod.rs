//! The HTTP and gRPC surfaces: the only code that knows a wire format.
//!
//! One axum router serves every HTTP API on every HTTP listener (3100, 9090, 3200 and 4318 by
//! default); paths do not collide, so Grafana can point all three datasources at any of them.
//! Each protocol surface is a module with a `router()`; handlers decode, call, encode, and map
//! errors through [`error`].

pub mod error;
pub mod loki;
pub mod otlp;
pub mod prometheus;
pub mod status;
pub mod tempo;
pub mod wire;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::sync::watch;
use tripod_storage::Storage;

use crate::ingest::logs::LogsIngest;
use crate::ingest::metrics::MetricsIngest;
use crate::ingest::otlp_metrics::OtlpMetricsIngest;
use crate::telemetry::Telemetry;

/// Limits every handler applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, as sent.
    pub max_request_body_bytes: usize,
    /// Largest body a decompression may produce.
    pub max_decompressed_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_body_bytes: 64 << 20, max_decompressed_bytes: 256 << 20 }
    }
}

/// Where the server is in its life, as `/ready` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Listening, storage still opening (the WAL is being replayed).
    Starting,
    /// Storage is open and every signal accepts reads and writes.
    Ready,
    /// Storage could not be opened; the server is stopping.
    Failed(String),
    /// Shutting down: in-flight requests are finishing.
    Stopping,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

/// An [`AppState`] that does not keep the server's parts alive (a SIGHUP handler outliving a
/// shutdown must not hold the storage and its directory lock).
#[derive(Clone)]
pub struct WeakAppState {
    shared: std::sync::Weak<Shared>,
}

impl WeakAppState {
    /// The state, while the server still has it.
    pub fn upgrade(&self) -> Option<AppState> {
        self.shared.upgrade().map(|shared| AppState { shared })
    }
}

struct Shared {
    /// Current readiness; `server.rs` moves it forward, handlers and `Server::ready` watch it.
    readiness: watch::Sender<Readiness>,
    /// Set once storage has opened.
    storage: OnceLock<Arc<Storage>>,
    /// Self-metrics state.
    telemetry: Telemetry,
    /// Body and decompression limits.
    limits: Limits,
    /// The metrics write path's series reference cache.
    metrics_ingest: MetricsIngest,
    /// OTLP metrics translation state (running totals of delta series).
    otlp_metrics: OtlpMetricsIngest,
    /// The scrape manager, once storage is open.
    scrape: OnceLock<ScrapeHandle>,
    /// Settings under the names of the Prometheus flags they stand for, for `status/flags`.
    flags: OnceLock<std::collections::BTreeMap<String, String>>,
    /// PromQL limits.
    query: crate::query::promql::QuerySettings,
    /// The logs write path (limits, rate buckets, tenancy); set by the server from the config,
    /// Loki's defaults until then.
    logs_ingest: OnceLock<LogsIngest>,
    /// LogQL limits (entries, series, timeout, range); set by the server from the config,
    /// Loki's defaults until then.
    logs_query: OnceLock<loki::query::LogsQuerySettings>,
}

/// The running scrape manager and what a reload needs.
pub struct ScrapeHandle {
    pub manager: Arc<crate::scrape::manager::ScrapeManager>,
    /// The config file to re-read; without one, a reload keeps the settings.
    pub config_path: Option<std::path::PathBuf>,
    pub max_body_bytes: usize,
    /// The server's shutdown token, parent of every scrape loop.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl ScrapeHandle {
    /// Re-reads the scrape configuration and restarts the loops with it. On an error the running
    /// configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else { return Ok(()) };
        let config =
            crate::config::Config::load(Some(path), &crate::config::Overrides::default()).map_err(|e| e.to_string())?;
        self.manager.reload(config.scrape, &self.shutdown);
        tracing::info!(config = %path.display(), "scrape configuration reloaded");
        Ok(())
    }
}

impl AppState {
    /// A handle that does not keep the state alive.
    pub fn downgrade(&self) -> WeakAppState {
        WeakAppState { shared: Arc::downgrade(&self.shared) }
    }

    pub fn new() -> AppState {
        AppState::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> AppState {
        AppState::with_settings(
            limits,
            crate::ingest::otlp_metrics::TranslationStrategy::default(),
            crate::query::promql::QuerySettings::default(),
        )
    }

    pub fn with_settings(
        limits: Limits,
        otlp_translation: crate::ingest::otlp_metrics::TranslationStrategy,
        query: crate::query::promql::QuerySettings,
    ) -> AppState {
        let (readiness, _) = watch::channel(Readiness::Starting);
        AppState {
            shared: Arc::new(Shared {
                readiness,
                storage: OnceLock::new(),
                telemetry: Telemetry::new(),
                limits,
                metrics_ingest: MetricsIngest::default(),
                otlp_metrics: OtlpMetricsIngest::new(otlp_translation),
                scrape: OnceLock::new(),
                flags: OnceLock::new(),
                query,
                logs_ingest: OnceLock::new(),
                logs_query: OnceLock::new(),
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    pub fn query_settings(&self) -> crate::query::promql::QuerySettings {
        self.shared.query
    }

    pub fn metrics_ingest(&self) -> &MetricsIngest {
        &self.shared.metrics_ingest
    }

    pub fn otlp_metrics(&self) -> &OtlpMetricsIngest {
        &self.shared.otlp_metrics
    }

    /// Installs the logs write path built from the config. Called once, by the server, before
    /// it serves; a later call is ignored.
    pub fn set_logs_ingest(&self, ingest: LogsIngest) {
        let _ = self.shared.logs_ingest.set(ingest);
    }

    /// The logs write path.
    pub fn logs_ingest(&self) -> &LogsIngest {
        self.shared.logs_ingest.get_or_init(LogsIngest::default)
    }

    /// Installs the LogQL limits from the config. Called once, by the server, before it
    /// serves; a later call is ignored.
    pub fn set_logs_query(&self, settings: loki::query::LogsQuerySettings) {
        let _ = self.shared.logs_query.set(settings);
    }

    /// The LogQL limits.
    pub fn logs_query(&self) -> loki::query::LogsQuerySettings {
        *self.shared.logs_query.get_or_init(loki::query::LogsQuerySettings::default)
    }

    pub(crate) fn set_scrape(&self, handle: ScrapeHandle) {
        let _ = self.shared.scrape.set(handle);
    }

    /// The scrape manager, once storage is open.
    pub fn scrape(&self) -> Option<&ScrapeHandle> {
        self.shared.scrape.get()
    }

    pub(crate) fn set_flags(&self, flags: std::collections::BTreeMap<String, String>) {
        let _ = self.shared.flags.set(flags);
    }

    /// Settings under Prometheus flag names.
    pub fn flags(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
        self.shared.flags.get().unwrap_or(&EMPTY)
    }

    /// Whether the last configuration reload succeeded, and when one was last applied (ms).
    pub fn last_reload(&self) -> (bool, i64) {
        self.scrape().map_or((true, self.telemetry().started_unix_ms()), |handle| handle.manager.last_reload())
    }

    pub fn readiness(&self) -> Readiness {
        self.shared.readiness.borrow().clone()
    }

    pub fn watch_readiness(&self) -> watch::Receiver<Readiness> {
        self.shared.readiness.subscribe()
    }

    pub(crate) fn set_readiness(&self, readiness: Readiness) {
        self.shared.readiness.send_replace(readiness);
    }

    /// Moves from `Starting` to `Ready`; does nothing if shutdown has already begun.
    pub(crate) fn mark_ready(&self) -> bool {
        self.shared.readiness.send_if_modified(|readiness| {
            if *readiness == Readiness::Starting {
                *readiness = Readiness::Ready;
                true
            } else {
                false
            }
        })
    }

    /// Installs the opened storage. Called once, by the server.
    pub(crate) fn set_storage(&self, storage: Arc<Storage>) {
        // A second call would be a bug in server.rs; keeping the first storage is the safe answer.
        let _ = self.shared.storage.set(storage);
    }

    /// The storage, or an `unavailable` error while it is still opening.
    pub fn storage(&self) -> Result<&Arc<Storage>, error::ApiError> {
        self.shared.storage.get().ok_or_else(|| {
            error::ApiError::unavailable("storage is not ready yet: the write-ahead log is being replayed")
        })
    }

    /// The storage if it has opened.
    pub fn storage_if_open(&self) -> Option<&Arc<Storage>> {
        self.shared.storage.get()
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }
}

impl Default for AppState {
    fn default() -> Self {
        AppState::new()
    }
}

/// The router every HTTP listener serves.
pub fn router(state: AppState, max_request_body_bytes: usize) -> Router {
    Router::new()
        .merge(status::router())
        .merge(prometheus::router())
        .merge(loki::router())
        .merge(otlp::http_router())
        .merge(tempo::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_request_body_bytes))
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Collapses repeated slashes in the request path before routing, so a datasource URL that
/// ends in `/` (Grafana's Tempo datasource then asks for `//api/traces/...`) still routes.
pub fn normalize_path(mut request: Request) -> Request {
    let path = request.uri().path();
    if !path.contains("//") {
        return request;
    }
    let mut collapsed = String::with_capacity(path.len());
    for character in path.chars() {
        if !(character == '/' && collapsed.ends_with('/')) {
            collapsed.push(character);
        }
    }
    if let Some(query) = request.uri().query() {
        collapsed.push('?');
        collapsed.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = collapsed.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_slashes_are_collapsed() {
        let cases = [
            ("//api/traces/abc", "/api/traces/abc"),
            ("/api//v2///traces/abc?start=1&x=a//b", "/api/v2/traces/abc?start=1&x=a//b"),
            ("/ready", "/ready"),
        ];
        for (input, expected) in cases {
            let request = Request::builder().uri(input).body(axum::body::Body::empty()).unwrap();
            assert_eq!(normalize_path(request).uri().to_string(), expected);
        }
    }
}
