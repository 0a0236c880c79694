//! The running server: binds the listeners, serves the HTTP router and the gRPC services, opens
//! storage in the background, runs the periodic tasks, and shuts everything down in order.
//!
//! This is the only module that spawns long-lived tasks. Each one watches the shutdown token
//! and is awaited by [`Server::shutdown`], which runs the steps in this order:
//!
//! 1. readiness becomes `Stopping` (health checks answer 503, load balancers drain);
//! 2. listeners stop accepting and in-flight requests finish, up to `shutdown_timeout`;
//! 3. the storage task stops (waiting for a WAL replay in progress to end);
//! 4. storage is synced and closed, its directory lock released;
//! 5. an ephemeral data directory is deleted.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tripod_storage::wal::SyncPolicy;
use tripod_storage::{Storage, StorageOptions};

use crate::api::{self, AppState, Readiness, WeakAppState};
use crate::config::{Config, DataDir, ListenerName};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{option}: cannot listen on {address}: {source}")]
    Bind {
        /// The option(s) that named the address, e.g. `listen.prometheus`.
        option: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a temporary data directory: {0}")]
    TempDir(#[source] std::io::Error),
}

/// Why a running server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("storage failed to open: {0}")]
    StorageOpen(String),
    #[error("storage failed to close cleanly: {0}")]
    StorageClose(String),
}

/// A running Tripod server. Start it with [`Server::start`]; stop it with [`Server::shutdown`] or
/// [`Server::run_until`].
pub struct Server {
    /// Bound address of every listener that is switched on.
    addresses: Vec<(ListenerName, SocketAddr)>,
    /// Handler state; holds the storage once it is open.
    state: AppState,
    /// Cancelled to begin shutdown; every task watches it.
    shutdown: CancellationToken,
    /// One task per bound listener, finished when its connections have drained.
    listener_tasks: Vec<JoinHandle<()>>,
    /// Opens storage, then runs the periodic WAL sync until shutdown.
    storage_task: JoinHandle<()>,
    /// How long in-flight requests get once shutdown begins.
    shutdown_timeout: Duration,
    /// The data directory in use.
    data_dir: PathBuf,
    /// Deleted when the server stops, for `--ephemeral` and embedded servers.
    ephemeral_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Binds every listener and starts serving. Returns once the listeners are bound; storage
    /// opens in the background and `/ready` answers 503 until it has (see [`Server::ready`]).
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let started = Instant::now();
        let (data_dir, ephemeral_dir) = match &config.data_dir {
            DataDir::Path(path) => (path.clone(), None),
            DataDir::Ephemeral => {
                let temp = tempfile::Builder::new().prefix("tripod-").tempdir().map_err(StartError::TempDir)?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };

        let state = AppState::with_settings(
            api::Limits {
                max_request_body_bytes: config.max_request_body_bytes,
                max_decompressed_bytes: config.max_decompressed_bytes,
            },
            config.otlp_translation,
            config.query,
        );
        state.set_flags(flags_of(&config, &data_dir));
        state.set_logs_ingest(crate::ingest::logs::LogsIngest::new(
            config.logs_ingest.clone(),
            Arc::new(crate::ingest::logs::SystemClock),
        ));
        state.set_logs_query(config.logs_query);
        let shutdown = CancellationToken::new();
        let bound = bind_listeners(&config).await?;

        let router = api::router(state.clone(), config.max_request_body_bytes);
        let mut addresses = Vec::new();
        let mut listener_tasks = Vec::new();
        for (names, listener) in bound {
            let address = listener.local_addr().map_err(|source| StartError::Bind {
                option: option_names(&names),
                address: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            addresses.extend(names.iter().map(|name| (*name, address)));
            let task = if names.iter().any(|name| name.is_grpc()) {
                serve_grpc(listener, api::otlp::grpc_routes(state.clone()), shutdown.clone())
            } else {
                serve_http(listener, router.clone(), shutdown.clone())
            };
            listener_tasks.push(task);
        }
        for (name, address) in &addresses {
            tracing::info!(listener = %name, address = %address, "listening");
        }

        // Tripod scrapes its own /metrics through one of its HTTP listeners.
        let self_address = [ListenerName::Prometheus, ListenerName::Loki, ListenerName::Tempo, ListenerName::OtlpHttp]
            .iter()
            .find_map(|name| addresses.iter().find(|(n, _)| n == name).map(|(_, a)| *a))
            .map(|address| {
                let host =
                    if address.ip().is_unspecified() { "127.0.0.1".to_string() } else { address.ip().to_string() };
                format!("{host}:{}", address.port())
            });
        let scrape = ScrapeSetup {
            settings: config.scrape.clone(),
            self_address,
            config_path: config.config_path.clone(),
            max_body_bytes: config.max_decompressed_bytes,
        };
        let storage_task = tokio::spawn(run_storage(
            data_dir.clone(),
            config.storage.clone(),
            StorageTimers { fsync_interval: config.fsync_interval, maintenance_interval: config.maintenance_interval },
            scrape,
            state.clone(),
            shutdown.clone(),
        ));
        tracing::info!(
            data_dir = %data_dir.display(),
            ephemeral = ephemeral_dir.is_some(),
            startup_ms = started.elapsed().as_millis() as u64,
            "server started"
        );
        Ok(Server {
            addresses,
            state,
            shutdown,
            listener_tasks,
            storage_task,
            shutdown_timeout: config.shutdown_timeout,
            data_dir,
            ephemeral_dir,
        })
    }

    /// The bound address of a listener, `None` if it is switched off.
    pub fn address(&self, name: ListenerName) -> Option<SocketAddr> {
        self.addresses.iter().find(|(n, _)| *n == name).map(|(_, address)| *address)
    }

    /// Every bound listener and its address.
    pub fn addresses(&self) -> &[(ListenerName, SocketAddr)] {
        &self.addresses
    }

    /// The data directory in use (a temporary one for ephemeral servers).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The storage, once open: for tests and embedders that check what was stored.
    pub fn storage(&self) -> Option<Arc<Storage>> {
        self.state.storage_if_open().cloned()
    }

    /// A handle that reloads this server's configuration, for a signal handler.
    pub fn reloader(&self) -> Reloader {
        Reloader { state: self.state.downgrade() }
    }

    /// Re-reads the scrape configuration (what SIGHUP and `POST /-/reload` do).
    pub fn reload(&self) -> Result<(), String> {
        match self.state.scrape() {
            Some(handle) => handle.reload(),
            None => Err("storage is not open yet".to_string()),
        }
    }

    /// Current readiness.
    pub fn readiness(&self) -> Readiness {
        self.state.readiness()
    }

    /// Waits until storage is open and every signal is ready. Fails if storage cannot open.
    pub async fn ready(&self) -> Result<(), ServerError> {
        let mut watch = self.state.watch_readiness();
        loop {
            match &*watch.borrow_and_update() {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(error) => return Err(ServerError::StorageOpen(error.clone())),
                Readiness::Starting | Readiness::Stopping => {}
            }
            if watch.changed().await.is_err() {
                return Err(ServerError::StorageOpen("the server stopped".to_string()));
            }
        }
    }

    /// Serves until `signal` completes (then shuts down in order) or storage fails to open.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        let mut watch = self.state.watch_readiness();
        let failed = async move {
            loop {
                if let Readiness::Failed(error) = &*watch.borrow_and_update() {
                    return error.clone();
                }
                if watch.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = signal => self.shutdown().await,
            error = failed => {
                // Stop what is running, but report the failure that caused the stop.
                let _ = self.shutdown().await;
                Err(ServerError::StorageOpen(error))
            }
        }
    }

    /// Stops the server in order: stop accepting, drain, close storage, remove ephemeral data.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let Server { state, shutdown, listener_tasks, storage_task, shutdown_timeout, ephemeral_dir, .. } = self;
        let started = Instant::now();
        if !matches!(state.readiness(), Readiness::Failed(_)) {
            state.set_readiness(Readiness::Stopping);
        }
        tracing::info!("shutting down: no new connections, draining requests in flight");
        shutdown.cancel();

        let deadline = tokio::time::Instant::now() + shutdown_timeout;
        for mut task in listener_tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(timeout = ?shutdown_timeout, "requests still in flight at the shutdown timeout, cutting them off");
                task.abort();
            }
        }
        // The storage task finishes a replay in progress before it returns.
        let _ = storage_task.await;

        let mut result = Ok(());
        if let Some(storage) = state.storage_if_open().cloned() {
            let closed = tokio::task::spawn_blocking(move || storage.close()).await;
            match closed {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(ServerError::StorageClose(error.to_string())),
                Err(join) => result = Err(ServerError::StorageClose(join.to_string())),
            }
        }
        // Dropping the state releases the storage and its directory lock; only then may an
        // ephemeral directory be removed, or another server open the directory. Tasks told to
        // stop (a scrape loop finishing its last append) may hold the storage a moment longer:
        // they are waited for, up to the shutdown timeout.
        let held = state.storage_if_open().map(Arc::downgrade);
        drop(state);
        while held.as_ref().is_some_and(|storage| storage.strong_count() > 0) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "storage still in use at the shutdown timeout: its directory stays locked until released"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(dir) = ephemeral_dir {
            let path = dir.path().to_path_buf();
            if let Err(error) = dir.close() {
                tracing::warn!(path = %path.display(), error = %error, "cannot remove ephemeral data directory");
            }
        }
        match &result {
            Ok(()) => tracing::info!(duration_ms = started.elapsed().as_millis() as u64, "shutdown complete"),
            Err(error) => tracing::error!(error = %error, "shutdown finished with an error"),
        }
        result
    }
}

/// Reloads a running server's configuration.
#[derive(Clone)]
pub struct Reloader {
    state: WeakAppState,
}

impl Reloader {
    pub fn reload(&self) -> Result<(), String> {
        let state = self.state.upgrade().ok_or_else(|| "the server has stopped".to_string())?;
        match state.scrape() {
            Some(handle) => handle.reload(),
            None => Err("storage is not open yet".to_string()),
        }
    }
}

/// Tripod's settings under the names of the Prometheus flags they stand for.
fn flags_of(config: &Config, data_dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    use crate::duration::format_duration;
    let metrics = &config.storage.metrics;
    let ms = |ms: i64| format_duration(Duration::from_millis(ms.max(0) as u64));
    let mut flags = std::collections::BTreeMap::new();
    flags.insert("storage.tsdb.path".into(), data_dir.join("metrics").display().to_string());
    flags.insert("storage.tsdb.retention.time".into(), metrics.retention_ms.map_or("0s".into(), ms));
    flags
        .insert("storage.tsdb.retention.size".into(), metrics.retention_bytes.map_or("0B".into(), |b| format!("{b}B")));
    flags.insert("storage.tsdb.min-block-duration".into(), ms(metrics.block_range_ms));
    flags.insert("storage.tsdb.out-of-order-time-window".into(), ms(metrics.out_of_order_window_ms));
    flags.insert("storage.exemplars.exemplars-limit".into(), metrics.max_exemplars.to_string());
    flags.insert("query.timeout".into(), format_duration(config.query.timeout));
    flags.insert("query.max-samples".into(), config.query.max_samples.to_string());
    flags.insert("query.lookback-delta".into(), ms(config.query.lookback_delta_ms));
    flags.insert(
        "web.listen-address".into(),
        config.listen_address(ListenerName::Prometheus).map(|a| a.to_string()).unwrap_or_default(),
    );
    flags.insert("web.enable-remote-write-receiver".into(), "true".into());
    flags.insert("web.enable-lifecycle".into(), "true".into());
    flags
        .insert("config.file".into(), config.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
    flags
}

fn option_names(names: &[ListenerName]) -> String {
    names.iter().map(|name| name.to_string()).collect::<Vec<_>>().join(" and ")
}

/// Binds every listener that is switched on. HTTP listeners that name the same address are
/// bound once, since they serve the same router.
async fn bind_listeners(config: &Config) -> Result<Vec<(Vec<ListenerName>, TcpListener)>, StartError> {
    let mut groups: Vec<(Vec<ListenerName>, SocketAddr)> = Vec::new();
    for (name, address) in &config.listen {
        let Some(address) = *address else { continue };
        let shared = groups.iter_mut().find(|(names, existing)| {
            address.port() != 0 && *existing == address && !names[0].is_grpc() && !name.is_grpc()
        });
        match shared {
            Some((names, _)) => names.push(*name),
            None => groups.push((vec![*name], address)),
        }
    }
    let mut bound = Vec::with_capacity(groups.len());
    for (names, address) in groups {
        match TcpListener::bind(address).await {
            Ok(listener) => bound.push((names, listener)),
            Err(source) => {
                return Err(StartError::Bind { option: option_names(&names), address, source });
            }
        }
    }
    Ok(bound)
}

fn serve_http(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) -> JoinHandle<()> {
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let service = router.map_request(api::normalize_path);
    tokio::spawn(async move {
        let served = axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(service))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "http listener failed");
        }
    })
}

fn serve_grpc(listener: TcpListener, routes: tonic::service::Routes, shutdown: CancellationToken) -> JoinHandle<()> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "grpc listener failed");
        }
    })
}

/// What the scrape manager starts with once storage is open.
struct ScrapeSetup {
    settings: crate::scrape::manager::ScrapeSettings,
    self_address: Option<String>,
    config_path: Option<PathBuf>,
    max_body_bytes: usize,
}

/// How often the storage task syncs the WAL and runs maintenance.
struct StorageTimers {
    fsync_interval: Duration,
    maintenance_interval: Duration,
}

/// Opens storage off the async runtime, marks the server ready, then syncs the WAL on its
/// interval (under `fsync: interval`) and runs storage maintenance (block cuts, compaction,
/// retention, WAL checkpoints) on its own, until shutdown.
async fn run_storage(
    data_dir: PathBuf,
    options: StorageOptions,
    timers: StorageTimers,
    scrape: ScrapeSetup,
    state: AppState,
    shutdown: CancellationToken,
) {
    let sync_policy = options.wal.sync;
    let opened = tokio::task::spawn_blocking(move || Storage::open(&data_dir, options)).await;
    let storage = match opened {
        Ok(Ok(storage)) => Arc::new(storage),
        Ok(Err(error)) => {
            tracing::error!(error = %error, "storage failed to open");
            state.set_readiness(Readiness::Failed(error.to_string()));
            return;
        }
        Err(join) => {
            tracing::error!(error = %join, "storage failed to open");
            state.set_readiness(Readiness::Failed(join.to_string()));
            return;
        }
    };
    state.set_storage(storage.clone());
    // Scraping starts before the server reports ready, so that ready means every part runs.
    let manager =
        Arc::new(crate::scrape::manager::ScrapeManager::new(storage.clone(), scrape.settings, scrape.self_address));
    manager.start(&shutdown);
    state.set_scrape(crate::api::ScrapeHandle {
        manager,
        config_path: scrape.config_path,
        max_body_bytes: scrape.max_body_bytes,
        shutdown: shutdown.clone(),
    });
    if !state.mark_ready() {
        return;
    }
    tracing::info!("ready");

    let mut sync_ticker = tokio::time::interval(timers.fsync_interval);
    sync_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maintenance_ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + timers.maintenance_interval,
        timers.maintenance_interval,
    );
    maintenance_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let syncing = matches!(sync_policy, SyncPolicy::Interval(_));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = sync_ticker.tick(), if syncing => {
                let storage = storage.clone();
                match tokio::task::spawn_blocking(move || storage.wal().sync()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(error = %error, "wal sync failed"),
                    Err(join) => tracing::error!(error = %join, "wal sync failed"),
                }
            }
            _ = maintenance_ticker.tick() => {
                let storage = storage.clone();
                match tokio::task::spawn_blocking(move || storage.maintenance()).await {
                    Ok(Ok(report)) if report != Default::default() => {
                        tracing::info!(
                            blocks_cut = report.metrics_blocks_cut,
                            compactions = report.metrics_compactions,
                            blocks_deleted = report.metrics_blocks_deleted,
                            traces_blocks_cut = report.traces_blocks_cut,
                            traces_compactions = report.traces_compactions,
                            traces_blocks_deleted = report.traces_blocks_deleted,
                            wal_segments_removed = report.wal_segments_removed,
                            "storage maintenance done"
                        );
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::error!(error = %error, "storage maintenance failed"),
                    Err(join) => tracing::error!(error = %join, "storage maintenance failed"),
                }
            }
        }
    }
}
