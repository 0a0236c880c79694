//! The `tripod` command: parse flags, load the config, set up logging, run the server until
//! SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tripod::config::{Config, FsyncMode, ListenerName, LogFormat, Overrides};
use tripod::{Server, telemetry};

/// Ingest decodes many small strings per entry and span; mimalloc's per-thread free lists make
/// those allocations and frees a fraction of what the system allocator costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One process that serves the Loki, Prometheus and Tempo APIs. With no arguments it keeps its
/// data in ./data and listens on 3100, 9090, 3200, 4317 and 4318.
#[derive(Debug, Parser)]
#[command(name = "tripod", version)]
struct Cli {
    /// YAML config file (see tripod.example.yaml); without one, the built-in defaults apply.
    #[arg(long, env = "TRIPOD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long = "data-dir", env = "TRIPOD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep data in a temporary directory that is deleted on exit.
    #[arg(long, env = "TRIPOD_EPHEMERAL")]
    ephemeral: bool,
    /// Log level (error, warn, info, debug, trace) or tracing directives.
    #[arg(long = "log.level", env = "TRIPOD_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long = "log.format", env = "TRIPOD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// When the write-ahead log is forced to disk.
    #[arg(long = "wal.fsync", env = "TRIPOD_WAL_FSYNC", value_enum)]
    wal_fsync: Option<FsyncMode>,
    /// Loki listener: host:port, :port, or off.
    #[arg(long = "listen.loki", env = "TRIPOD_LISTEN_LOKI", value_name = "ADDRESS")]
    listen_loki: Option<String>,
    /// Prometheus listener: host:port, :port, or off.
    #[arg(long = "listen.prometheus", env = "TRIPOD_LISTEN_PROMETHEUS", value_name = "ADDRESS")]
    listen_prometheus: Option<String>,
    /// Tempo listener: host:port, :port, or off.
    #[arg(long = "listen.tempo", env = "TRIPOD_LISTEN_TEMPO", value_name = "ADDRESS")]
    listen_tempo: Option<String>,
    /// OTLP HTTP listener: host:port, :port, or off.
    #[arg(long = "listen.otlp-http", env = "TRIPOD_LISTEN_OTLP_HTTP", value_name = "ADDRESS")]
    listen_otlp_http: Option<String>,
    /// OTLP gRPC listener: host:port, :port, or off.
    #[arg(long = "listen.otlp-grpc", env = "TRIPOD_LISTEN_OTLP_GRPC", value_name = "ADDRESS")]
    listen_otlp_grpc: Option<String>,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let listen = [
            (ListenerName::Loki, &self.listen_loki),
            (ListenerName::Prometheus, &self.listen_prometheus),
            (ListenerName::Tempo, &self.listen_tempo),
            (ListenerName::OtlpHttp, &self.listen_otlp_http),
            (ListenerName::OtlpGrpc, &self.listen_otlp_grpc),
        ]
        .into_iter()
        .filter_map(|(name, address)| address.clone().map(|address| (name, address)))
        .collect();
        Overrides {
            data_dir: self.data_dir.clone(),
            ephemeral: self.ephemeral,
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            fsync: self.wal_fsync,
            listen,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init_logging(&config.log_level, config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(error = %error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        // SIGHUP reloads the configuration. The handler is registered here, before serving, so
        // that an early SIGHUP cannot hit the default action (which ends the process).
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hangup) => {
                let reloader = server.reloader();
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(signal = "SIGHUP", "received signal");
                        if let Err(error) = reloader.reload() {
                            tracing::error!(error = %error, "reload failed, keeping the running configuration");
                        }
                    }
                });
            }
            Err(error) => tracing::warn!(error = %error, "cannot listen for SIGHUP, reload with POST /-/reload"),
        }
        match server.run_until(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = %error, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!(signal = "SIGINT", "received signal"),
                    _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "received signal"),
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM, stopping on SIGINT only");
                let _ = interrupt.await;
                tracing::info!(signal = "SIGINT", "received signal");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
