//! Configuration: the YAML file as written ([`RawConfig`], unknown keys refused), command-line and
//! environment overrides ([`Overrides`]), and the validated [`Config`] the server runs with.
//!
//! Precedence, highest first: command-line flag, environment variable, config file, built-in
//! default. `tripod.example.yaml` at the repository root documents every option; a test checks
//! that it parses to the defaults.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tripod_storage::StorageOptions;
use tripod_storage::metrics::MetricsOptions;
use tripod_storage::wal::{SyncPolicy, WalOptions};

use crate::duration::ConfigDuration;

/// The five listeners and their classic ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerName {
    Loki,
    Prometheus,
    Tempo,
    OtlpHttp,
    OtlpGrpc,
}

impl ListenerName {
    pub const ALL: [ListenerName; 5] = [
        ListenerName::Loki,
        ListenerName::Prometheus,
        ListenerName::Tempo,
        ListenerName::OtlpHttp,
        ListenerName::OtlpGrpc,
    ];

    /// The config key under `listen:`.
    pub fn key(self) -> &'static str {
        match self {
            ListenerName::Loki => "loki",
            ListenerName::Prometheus => "prometheus",
            ListenerName::Tempo => "tempo",
            ListenerName::OtlpHttp => "otlp_http",
            ListenerName::OtlpGrpc => "otlp_grpc",
        }
    }

    /// The port the system Tripod stands in for listens on.
    pub fn default_port(self) -> u16 {
        match self {
            ListenerName::Loki => 3100,
            ListenerName::Prometheus => 9090,
            ListenerName::Tempo => 3200,
            ListenerName::OtlpHttp => 4318,
            ListenerName::OtlpGrpc => 4317,
        }
    }

    /// Whether the listener speaks gRPC rather than HTTP/1.1 + h2c.
    pub fn is_grpc(self) -> bool {
        self == ListenerName::OtlpGrpc
    }
}

impl fmt::Display for ListenerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listen.{}", self.key())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `wal.fsync` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

// ---------------------------------------------------------------------------------------------
// The file as written.

/// The config file as written. Every field is optional; absent fields take their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    wal: RawWal,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    traces: RawTraces,
    #[serde(default)]
    scrape: crate::scrape::manager::RawScrapeSection,
    #[serde(default)]
    otlp: RawOtlp,
    #[serde(default)]
    query: RawQuery,
    shutdown_timeout: Option<ConfigDuration>,
    /// Multi-tenancy: `X-Scope-OrgID` selects the tenant (Loki's `auth_enabled`).
    auth_enabled: Option<bool>,
    /// The file this was read from, if any (not a key of the file).
    #[serde(skip)]
    path: Option<PathBuf>,
    /// The directory relative paths in the file are resolved from.
    #[serde(skip)]
    base_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    translation_strategy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    timeout: Option<ConfigDuration>,
    max_samples: Option<usize>,
    lookback_delta: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    metrics: Option<ConfigDuration>,
    logs: Option<ConfigDuration>,
    /// Per-tenant log retention, overriding `logs`.
    logs_per_tenant: Option<std::collections::BTreeMap<String, ConfigDuration>>,
    /// Per-stream log retention rules, overriding both.
    logs_streams: Option<Vec<RawStreamRetention>>,
    traces: Option<ConfigDuration>,
    /// Per-tenant trace retention, overriding `traces`.
    traces_per_tenant: Option<std::collections::BTreeMap<String, ConfigDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStreamRetention {
    /// A stream selector such as `{app="debug"}`.
    selector: String,
    period: ConfigDuration,
    /// Only this tenant's streams; every tenant's when absent.
    tenant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    /// `zstd` (the default) or `none`.
    codec: Option<String>,
    block_target_bytes: Option<usize>,
    chunk_target_bytes: Option<u64>,
    max_chunk_age: Option<ConfigDuration>,
    chunk_idle_period: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraces {
    /// `zstd` (the default) or `none`.
    codec: Option<String>,
    block_target_bytes: Option<u64>,
    max_head_age: Option<ConfigDuration>,
    page_target_bytes: Option<usize>,
    max_values_per_key: Option<usize>,
    compaction_window: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    out_of_order_window: Option<ConfigDuration>,
    retention_size_bytes: Option<u64>,
    max_exemplars: Option<usize>,
    block_range: Option<ConfigDuration>,
    maintenance_interval: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    loki: Option<RawAddress>,
    prometheus: Option<RawAddress>,
    tempo: Option<RawAddress>,
    otlp_http: Option<RawAddress>,
    otlp_grpc: Option<RawAddress>,
}

/// A listen address (`host:port`, `:port`, or a bare port), or `false` / `off` to switch the
/// listener off.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawAddress {
    Enabled(bool),
    Port(u16),
    Address(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWal {
    fsync: Option<FsyncMode>,
    fsync_interval: Option<ConfigDuration>,
    segment_size_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_request_body_bytes: Option<usize>,
    max_decompressed_bytes: Option<usize>,
    // Logs push limits, under the names of Loki's limits_config.
    ingestion_rate_mb: Option<f64>,
    ingestion_burst_size_mb: Option<f64>,
    max_label_names_per_series: Option<usize>,
    max_label_name_length: Option<usize>,
    max_label_value_length: Option<usize>,
    max_line_size_bytes: Option<usize>,
    max_line_size_truncate: Option<bool>,
    reject_old_samples: Option<bool>,
    reject_old_samples_max_age: Option<ConfigDuration>,
    creation_grace_period: Option<ConfigDuration>,
    // LogQL query limits, under the names of Loki's limits_config.
    max_entries_limit_per_query: Option<usize>,
    max_query_series: Option<usize>,
    query_timeout: Option<ConfigDuration>,
    max_query_length: Option<ConfigDuration>,
}

impl RawConfig {
    /// Reads and parses a config file. Errors name the file, the key and the position.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::new(format!("cannot read config file {}: {error}", path.display())))?;
        let mut raw = RawConfig::from_yaml(&text, &path.display().to_string())?;
        raw.path = Some(path.to_path_buf());
        raw.base_dir =
            path.parent().map(|dir| if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir.to_path_buf() });
        Ok(raw)
    }

    /// Parses config text; `origin` names where it came from in error messages.
    pub fn from_yaml(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        serde_yaml_ng::from_str(text).map_err(|error| ConfigError::new(format!("config file {origin}: {error}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Overrides from the command line and the environment.

/// Values given on the command line or in `TRIPOD_*` environment variables; each one that is set
/// replaces the config file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub ephemeral: bool,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub fsync: Option<FsyncMode>,
    /// `(listener, address or "off")`.
    pub listen: Vec<(ListenerName, String)>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// Where data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// A directory that outlives the process.
    Path(PathBuf),
    /// A fresh temporary directory, deleted when the server stops.
    Ephemeral,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where data lives.
    pub data_dir: DataDir,
    /// Listen address of each listener; `None` when switched off.
    pub listen: Vec<(ListenerName, Option<SocketAddr>)>,
    /// A tracing filter: a level (`info`) or directives (`info,tripod=debug`).
    pub log_level: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Storage options, WAL included.
    pub storage: StorageOptions,
    /// How often the WAL is synced under `fsync: interval`.
    pub fsync_interval: Duration,
    /// Largest request body accepted, compressed size; larger bodies get 413.
    pub max_request_body_bytes: usize,
    /// Largest size a request body may decompress to; larger gets 413.
    pub max_decompressed_bytes: usize,
    /// How long shutdown waits for in-flight requests before cutting them off.
    pub shutdown_timeout: Duration,
    /// How often block cuts, compaction, retention and WAL checkpoints run.
    pub maintenance_interval: Duration,
    /// What to scrape.
    pub scrape: crate::scrape::manager::ScrapeSettings,
    /// The config file, re-read on reload (SIGHUP, `POST /-/reload`).
    pub config_path: Option<PathBuf>,
    /// How OTLP metric names become Prometheus names.
    pub otlp_translation: crate::ingest::otlp_metrics::TranslationStrategy,
    /// PromQL limits: timeout, samples, lookback.
    pub query: crate::query::promql::QuerySettings,
    /// The logs write path: tenancy and push limits.
    pub logs_ingest: crate::ingest::logs::LogsIngestSettings,
    /// LogQL limits: entries per query, series, timeout, time range.
    pub logs_query: crate::api::loki::query::LogsQuerySettings,
}

pub const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 128 << 20;
const MIN_SEGMENT_SIZE_BYTES: u64 = 64 << 10;
const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 64 << 20;
const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 << 20;
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_METRICS_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);
const DEFAULT_LOGS_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
const DEFAULT_TRACES_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
const DEFAULT_OUT_OF_ORDER_WINDOW: Duration = Duration::from_secs(3600);
const DEFAULT_BLOCK_RANGE: Duration = Duration::from_secs(2 * 3600);
const DEFAULT_MAX_EXEMPLARS: usize = 100_000;
const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// A configuration problem, with a message that names the option or file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> ConfigError {
        ConfigError { message: message.into() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default(), &Overrides::default()).expect("the built-in defaults are valid") // Checked by the `defaults_are_valid` test.
    }
}

impl Config {
    /// The configuration for running inside a test or CI job: a temporary data directory, every
    /// listener on 127.0.0.1 with a port picked by the OS, quiet logs.
    pub fn embedded() -> Config {
        let loopback = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        Config {
            data_dir: DataDir::Ephemeral,
            listen: ListenerName::ALL.iter().map(|name| (*name, Some(loopback))).collect(),
            log_level: "warn".to_string(),
            shutdown_timeout: Duration::from_secs(5),
            ..Config::default()
        }
    }

    /// Validates a raw config with overrides applied.
    pub fn from_raw(raw: RawConfig, overrides: &Overrides) -> Result<Config, ConfigError> {
        let logs_ingest = logs_ingest_settings(&raw)?;
        let logs_query = logs_query_settings(&raw.limits)?;
        let logs = logs_options(&raw)?;
        let traces = traces_options(&raw)?;
        let data_dir = if overrides.ephemeral {
            DataDir::Ephemeral
        } else {
            let path = overrides.data_dir.clone().or(raw.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            if path.as_os_str().is_empty() {
                return Err(ConfigError::new("data_dir: must not be empty"));
            }
            DataDir::Path(path)
        };

        let mut listen = Vec::new();
        for name in ListenerName::ALL {
            let from_file = match name {
                ListenerName::Loki => raw.listen.loki.clone(),
                ListenerName::Prometheus => raw.listen.prometheus.clone(),
                ListenerName::Tempo => raw.listen.tempo.clone(),
                ListenerName::OtlpHttp => raw.listen.otlp_http.clone(),
                ListenerName::OtlpGrpc => raw.listen.otlp_grpc.clone(),
            };
            let overridden = overrides.listen.iter().rev().find(|(n, _)| *n == name);
            let address = match (overridden, from_file) {
                (Some((_, text)), _) => parse_listen_address(text, name)?,
                (None, Some(RawAddress::Address(text))) => parse_listen_address(&text, name)?,
                (None, Some(RawAddress::Port(port))) => parse_listen_address(&format!(":{port}"), name)?,
                (None, Some(RawAddress::Enabled(false))) => None,
                (None, Some(RawAddress::Enabled(true)) | None) => Some(default_address(name)),
            };
            listen.push((name, address));
        }
        check_listener_clashes(&listen)?;

        let log_level = overrides.log_level.clone().or(raw.log.level).unwrap_or_else(|| "info".to_string());
        if !is_valid_log_filter(&log_level) {
            return Err(ConfigError::new(format!(
                "log.level: invalid level {log_level:?}, expected error, warn, info, debug, trace or tracing directives"
            )));
        }
        let log_format = overrides.log_format.or(raw.log.format).unwrap_or(LogFormat::Text);

        let fsync_interval = raw.wal.fsync_interval.map_or(DEFAULT_FSYNC_INTERVAL, |d| d.0);
        let sync = match overrides.fsync.or(raw.wal.fsync).unwrap_or(FsyncMode::Interval) {
            FsyncMode::Always => SyncPolicy::Always,
            FsyncMode::Never => SyncPolicy::Never,
            FsyncMode::Interval => {
                if fsync_interval.is_zero() {
                    return Err(ConfigError::new(
                        "wal.fsync_interval: must be greater than 0s (use wal.fsync: always instead)",
                    ));
                }
                SyncPolicy::Interval(fsync_interval)
            }
        };
        let segment_size_bytes = raw.wal.segment_size_bytes.unwrap_or(DEFAULT_SEGMENT_SIZE_BYTES);
        if segment_size_bytes < MIN_SEGMENT_SIZE_BYTES {
            return Err(ConfigError::new(format!(
                "wal.segment_size_bytes: {segment_size_bytes} is below the minimum of {MIN_SEGMENT_SIZE_BYTES}"
            )));
        }

        let max_request_body_bytes = raw.limits.max_request_body_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BODY_BYTES);
        if max_request_body_bytes == 0 {
            return Err(ConfigError::new("limits.max_request_body_bytes: must be greater than 0"));
        }
        let max_decompressed_bytes = raw.limits.max_decompressed_bytes.unwrap_or(DEFAULT_MAX_DECOMPRESSED_BYTES);
        if max_decompressed_bytes == 0 {
            return Err(ConfigError::new("limits.max_decompressed_bytes: must be greater than 0"));
        }

        let block_range = raw.metrics.block_range.map_or(DEFAULT_BLOCK_RANGE, |d| d.0);
        if block_range < Duration::from_secs(60) {
            return Err(ConfigError::new("metrics.block_range: must be at least 1m"));
        }
        let retention = raw.retention.metrics.map_or(DEFAULT_METRICS_RETENTION, |d| d.0);
        let metrics = MetricsOptions {
            out_of_order_window_ms: millis(
                raw.metrics.out_of_order_window.map_or(DEFAULT_OUT_OF_ORDER_WINDOW, |d| d.0),
            ),
            block_range_ms: millis(block_range),
            // 0s keeps data forever.
            retention_ms: (!retention.is_zero()).then(|| millis(retention)),
            retention_bytes: raw.metrics.retention_size_bytes.filter(|bytes| *bytes > 0),
            max_exemplars: raw.metrics.max_exemplars.unwrap_or(DEFAULT_MAX_EXEMPLARS),
        };
        let maintenance_interval = raw.metrics.maintenance_interval.map_or(DEFAULT_MAINTENANCE_INTERVAL, |d| d.0);
        if maintenance_interval.is_zero() {
            return Err(ConfigError::new("metrics.maintenance_interval: must be greater than 0s"));
        }

        let base_dir = raw.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let scrape = crate::scrape::manager::load_settings(&raw.scrape, &base_dir, max_decompressed_bytes)
            .map_err(|error| ConfigError::new(format!("scrape: {error}")))?;

        let otlp_translation = match raw.otlp.translation_strategy.as_deref() {
            None => crate::ingest::otlp_metrics::TranslationStrategy::default(),
            Some(text) => crate::ingest::otlp_metrics::TranslationStrategy::parse(text).ok_or_else(|| {
                ConfigError::new(format!(
                    "otlp.translation_strategy: {text:?} is not UnderscoreEscapingWithSuffixes, NoUTF8EscapingWithSuffixes or NoTranslation"
                ))
            })?,
        };

        let defaults = crate::query::promql::QuerySettings::default();
        let query = crate::query::promql::QuerySettings {
            timeout: raw.query.timeout.map_or(defaults.timeout, |d| d.0),
            max_samples: raw.query.max_samples.unwrap_or(defaults.max_samples),
            lookback_delta_ms: raw
                .query
                .lookback_delta
                .map_or(defaults.lookback_delta_ms, |d| i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX)),
        };
        if query.timeout.is_zero() {
            return Err(ConfigError::new("query.timeout: must be greater than 0s"));
        }
        if query.max_samples == 0 {
            return Err(ConfigError::new("query.max_samples: must be greater than 0"));
        }
        if query.lookback_delta_ms <= 0 {
            return Err(ConfigError::new("query.lookback_delta: must be at least 1ms"));
        }

        Ok(Config {
            logs_ingest,
            logs_query,
            query,
            maintenance_interval,
            otlp_translation,
            scrape,
            config_path: raw.path.clone(),
            data_dir,
            listen,
            log_level,
            log_format,
            // Stores without settings in the file take their defaults.
            #[allow(clippy::needless_update)]
            storage: StorageOptions {
                wal: WalOptions { segment_size_bytes, sync },
                metrics,
                logs,
                traces,
                ..StorageOptions::default()
            },
            fsync_interval,
            max_request_body_bytes,
            max_decompressed_bytes,
            shutdown_timeout: raw.shutdown_timeout.map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0),
        })
    }

    /// Loads the config file at `path` (if any) and applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        Config::from_raw(raw, overrides)
    }

    /// The listen address of `name`, if switched on.
    pub fn listen_address(&self, name: ListenerName) -> Option<SocketAddr> {
        self.listen.iter().find(|(n, _)| *n == name).and_then(|(_, address)| *address)
    }

    /// Sets (or switches off) one listener.
    pub fn set_listen_address(&mut self, name: ListenerName, address: Option<SocketAddr>) {
        for entry in &mut self.listen {
            if entry.0 == name {
                entry.1 = address;
            }
        }
    }
}

/// The logs push limits and tenancy, Loki's defaults where the file says nothing.
fn logs_ingest_settings(raw: &RawConfig) -> Result<crate::ingest::logs::LogsIngestSettings, ConfigError> {
    let defaults = crate::ingest::logs::LogsLimits::default();
    let limits = &raw.limits;
    let settings = crate::ingest::logs::LogsIngestSettings {
        auth_enabled: raw.auth_enabled.unwrap_or(false),
        limits: crate::ingest::logs::LogsLimits {
            ingestion_rate_mb: limits.ingestion_rate_mb.unwrap_or(defaults.ingestion_rate_mb),
            ingestion_burst_size_mb: limits.ingestion_burst_size_mb.unwrap_or(defaults.ingestion_burst_size_mb),
            max_label_names_per_series: limits
                .max_label_names_per_series
                .unwrap_or(defaults.max_label_names_per_series),
            max_label_name_length: limits.max_label_name_length.unwrap_or(defaults.max_label_name_length),
            max_label_value_length: limits.max_label_value_length.unwrap_or(defaults.max_label_value_length),
            max_line_size_bytes: limits.max_line_size_bytes.unwrap_or(defaults.max_line_size_bytes),
            max_line_size_truncate: limits.max_line_size_truncate.unwrap_or(defaults.max_line_size_truncate),
            reject_old_samples: limits.reject_old_samples.unwrap_or(defaults.reject_old_samples),
            reject_old_samples_max_age: limits
                .reject_old_samples_max_age
                .map_or(defaults.reject_old_samples_max_age, |d| d.0),
            creation_grace_period: limits.creation_grace_period.map_or(defaults.creation_grace_period, |d| d.0),
        },
    };
    let limits = &settings.limits;
    for (name, value) in
        [("ingestion_rate_mb", limits.ingestion_rate_mb), ("ingestion_burst_size_mb", limits.ingestion_burst_size_mb)]
    {
        if !(value.is_finite() && value > 0.0) {
            return Err(ConfigError::new(format!("limits.{name}: must be a number greater than 0, not {value}")));
        }
    }
    for (name, value) in [
        ("max_label_names_per_series", limits.max_label_names_per_series),
        ("max_label_name_length", limits.max_label_name_length),
        ("max_label_value_length", limits.max_label_value_length),
    ] {
        if value == 0 {
            return Err(ConfigError::new(format!("limits.{name}: must be greater than 0")));
        }
    }
    if limits.max_line_size_truncate && limits.max_line_size_bytes == 0 {
        return Err(ConfigError::new(
            "limits.max_line_size_truncate: needs limits.max_line_size_bytes above 0 (0 means no limit)",
        ));
    }
    Ok(settings)
}

/// The LogQL limits, Loki's defaults where the file says nothing.
fn logs_query_settings(limits: &RawLimits) -> Result<crate::api::loki::query::LogsQuerySettings, ConfigError> {
    let defaults = crate::api::loki::query::LogsQuerySettings::default();
    let settings = crate::api::loki::query::LogsQuerySettings {
        max_entries_limit_per_query: limits.max_entries_limit_per_query.unwrap_or(defaults.max_entries_limit_per_query),
        max_query_series: limits.max_query_series.unwrap_or(defaults.max_query_series),
        query_timeout: limits.query_timeout.map_or(defaults.query_timeout, |d| d.0),
        max_query_length: limits.max_query_length.map_or(defaults.max_query_length, |d| d.0),
    };
    if settings.max_entries_limit_per_query == 0 {
        return Err(ConfigError::new("limits.max_entries_limit_per_query: must be greater than 0"));
    }
    if settings.max_query_series == 0 {
        return Err(ConfigError::new("limits.max_query_series: must be greater than 0"));
    }
    if settings.query_timeout.is_zero() {
        return Err(ConfigError::new("limits.query_timeout: must be greater than 0s"));
    }
    Ok(settings)
}

/// A level (`info`) or comma-separated directives (`info,tripod_storage=debug`).
fn is_valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |text: &str| LEVELS.iter().any(|level| level.eq_ignore_ascii_case(text));
    !filter.trim().is_empty()
        && filter.split(',').all(|directive| match directive.trim().rsplit_once('=') {
            Some((target, level)) => {
                !target.is_empty()
                    && target.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
                    && is_level(level)
            }
            None => is_level(directive.trim()),
        })
        && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// The logs store's settings: retention (default, per tenant, per stream selector), codec and
/// chunk sizes.
fn logs_options(raw: &RawConfig) -> Result<tripod_storage::logs::LogsOptions, ConfigError> {
    use tripod_storage::logs::{LogsCodec, LogsOptions, StreamRetention};
    let defaults = LogsOptions::default();
    let positive = |value: Option<ConfigDuration>, key: &str, default: i64| -> Result<i64, ConfigError> {
        match value {
            None => Ok(default),
            Some(d) if d.0.is_zero() => Err(ConfigError::new(format!("logs.{key}: must be greater than 0s"))),
            Some(d) => Ok(nanos(d.0)),
        }
    };
    let retention = raw.retention.logs.map_or(DEFAULT_LOGS_RETENTION, |d| d.0);
    let mut tenant_retention_ns = std::collections::HashMap::new();
    for (tenant, period) in raw.retention.logs_per_tenant.iter().flatten() {
        // 0s keeps that tenant's logs forever.
        tenant_retention_ns.insert(tenant.clone(), if period.0.is_zero() { i64::MAX } else { nanos(period.0) });
    }
    let mut stream_retention = Vec::new();
    for (index, rule) in raw.retention.logs_streams.iter().flatten().enumerate() {
        let matchers = crate::query::logql::syntax::parse_selector(&rule.selector).map_err(|error| {
            ConfigError::new(format!("retention.logs_streams[{index}].selector: {:?}: {error}", rule.selector))
        })?;
        stream_retention.push(StreamRetention {
            tenant: rule.tenant.clone(),
            matchers,
            period_ns: if rule.period.0.is_zero() { i64::MAX } else { nanos(rule.period.0) },
        });
    }
    let codec = match raw.logs.codec.as_deref() {
        None | Some("zstd") => defaults.codec,
        Some("none") => LogsCodec::None,
        Some(other) => {
            return Err(ConfigError::new(format!("logs.codec: unknown codec {other:?}, expected zstd or none")));
        }
    };
    let block_target_bytes = raw.logs.block_target_bytes.unwrap_or(defaults.block_target_bytes);
    if block_target_bytes < 1024 {
        return Err(ConfigError::new("logs.block_target_bytes: must be at least 1024"));
    }
    let chunk_target_bytes = raw.logs.chunk_target_bytes.unwrap_or(defaults.chunk_target_bytes);
    if chunk_target_bytes < block_target_bytes as u64 {
        return Err(ConfigError::new("logs.chunk_target_bytes: must be at least logs.block_target_bytes"));
    }
    Ok(LogsOptions {
        codec,
        block_target_bytes,
        chunk_target_bytes,
        max_chunk_age_ns: positive(raw.logs.max_chunk_age, "max_chunk_age", defaults.max_chunk_age_ns)?,
        chunk_idle_period_ns: positive(raw.logs.chunk_idle_period, "chunk_idle_period", defaults.chunk_idle_period_ns)?,
        // 0s keeps logs forever.
        retention_ns: (!retention.is_zero()).then(|| nanos(retention)),
        tenant_retention_ns,
        stream_retention,
        ..defaults
    })
}

/// The traces store's settings: retention (default and per tenant), codec, block and page
/// sizes, how long spans stay in the head, and the compaction window.
fn traces_options(raw: &RawConfig) -> Result<tripod_storage::traces::TracesOptions, ConfigError> {
    use tripod_storage::traces::{TracesCodec, TracesOptions};
    let defaults = TracesOptions::default();
    let positive = |value: Option<ConfigDuration>, key: &str, default: i64| -> Result<i64, ConfigError> {
        match value {
            None => Ok(default),
            Some(d) if d.0.is_zero() => Err(ConfigError::new(format!("traces.{key}: must be greater than 0s"))),
            Some(d) => Ok(nanos(d.0)),
        }
    };
    let retention = raw.retention.traces.map_or(DEFAULT_TRACES_RETENTION, |d| d.0);
    let mut tenant_retention_ns = std::collections::HashMap::new();
    for (tenant, period) in raw.retention.traces_per_tenant.iter().flatten() {
        // 0s keeps that tenant's traces forever.
        tenant_retention_ns.insert(tenant.clone(), if period.0.is_zero() { i64::MAX } else { nanos(period.0) });
    }
    let codec = match raw.traces.codec.as_deref() {
        None | Some("zstd") => defaults.codec,
        Some("none") => TracesCodec::None,
        Some(other) => {
            return Err(ConfigError::new(format!("traces.codec: unknown codec {other:?}, expected zstd or none")));
        }
    };
    let page_target_bytes = raw.traces.page_target_bytes.unwrap_or(defaults.page_target_bytes);
    if page_target_bytes < 4096 {
        return Err(ConfigError::new("traces.page_target_bytes: must be at least 4096"));
    }
    let block_target_bytes = raw.traces.block_target_bytes.unwrap_or(defaults.block_target_bytes);
    if block_target_bytes < page_target_bytes as u64 {
        return Err(ConfigError::new("traces.block_target_bytes: must be at least traces.page_target_bytes"));
    }
    let max_values_per_key = raw.traces.max_values_per_key.unwrap_or(defaults.max_values_per_key);
    if max_values_per_key == 0 {
        return Err(ConfigError::new("traces.max_values_per_key: must be greater than 0"));
    }
    Ok(TracesOptions {
        codec,
        page_target_bytes,
        block_target_bytes,
        max_values_per_key,
        max_head_age_ns: positive(raw.traces.max_head_age, "max_head_age", defaults.max_head_age_ns)?,
        compaction_window_ns: positive(
            raw.traces.compaction_window,
            "compaction_window",
            defaults.compaction_window_ns,
        )?,
        // 0s keeps traces forever.
        retention_ns: (!retention.is_zero()).then(|| nanos(retention)),
        tenant_retention_ns,
        ..defaults
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn default_address(name: ListenerName) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, name.default_port()))
}

/// Parses `host:port`, `:port` (every interface), `localhost:port`, or `off`.
fn parse_listen_address(text: &str, name: ListenerName) -> Result<Option<SocketAddr>, ConfigError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("false") {
        return Ok(None);
    }
    let expanded = if let Some(port) = text.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = text.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        text.to_string()
    };
    expanded.parse::<SocketAddr>().map(Some).map_err(|_| {
        ConfigError::new(format!(
            "{name}: invalid listen address {text:?}, expected host:port (e.g. 0.0.0.0:{}), :port, or off",
            name.default_port()
        ))
    })
}

/// HTTP listeners may share an address (they serve the same router, so it is bound once); the
/// gRPC listener may not share one with an HTTP listener.
fn check_listener_clashes(listen: &[(ListenerName, Option<SocketAddr>)]) -> Result<(), ConfigError> {
    let grpc = listen.iter().find(|(name, _)| name.is_grpc()).and_then(|(_, address)| *address);
    let Some(grpc) = grpc else { return Ok(()) };
    if grpc.port() == 0 {
        return Ok(());
    }
    for (name, address) in listen {
        if !name.is_grpc() && *address == Some(grpc) {
            return Err(ConfigError::new(format!(
                "{name} and {}: both use {grpc}, but one serves HTTP and the other gRPC",
                ListenerName::OtlpGrpc
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_raw(RawConfig::from_yaml(yaml, "test.yaml")?, &Overrides::default())
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse("").unwrap();
        assert_eq!(config.data_dir, DataDir::Path(DEFAULT_DATA_DIR.into()));
        for name in ListenerName::ALL {
            assert_eq!(config.listen_address(name), Some(default_address(name)));
        }
        assert_eq!(config.storage.wal.sync, SyncPolicy::Interval(Duration::from_secs(1)));
    }

    #[test]
    fn example_config_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tripod.example.yaml");
        let mut example = Config::load(Some(&path), &Overrides::default()).unwrap();
        example.config_path = None;
        let defaults = Config::default();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let error = parse("listen:\n  lokii: 0.0.0.0:3100\n").unwrap_err().to_string();
        assert!(error.starts_with("config file test.yaml: listen: unknown field `lokii`"), "{error}");
        let error = parse("retention_typo: 1d\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `retention_typo`"), "{error}");
    }

    #[test]
    fn listeners_can_be_moved_or_switched_off() {
        let config =
            parse("listen:\n  loki: 127.0.0.1:13100\n  tempo: off\n  otlp_grpc: false\n  prometheus: ':19090'\n")
                .unwrap();
        assert_eq!(config.listen_address(ListenerName::Loki), Some("127.0.0.1:13100".parse().unwrap()));
        assert_eq!(config.listen_address(ListenerName::Prometheus), Some("0.0.0.0:19090".parse().unwrap()));
        assert_eq!(config.listen_address(ListenerName::Tempo), None);
        assert_eq!(config.listen_address(ListenerName::OtlpGrpc), None);
    }

    #[test]
    fn bad_values_name_the_option() {
        let cases = [
            ("listen:\n  loki: nowhere\n", "listen.loki: invalid listen address \"nowhere\""),
            ("wal:\n  fsync: sometimes\n", "wal.fsync: unknown variant `sometimes`"),
            ("wal:\n  fsync_interval: 1 second\n", "invalid duration \"1 second\""),
            ("wal:\n  fsync_interval: 0s\n", "wal.fsync_interval: must be greater than 0s"),
            ("wal:\n  segment_size_bytes: 10\n", "wal.segment_size_bytes: 10 is below the minimum"),
            ("log:\n  level: loud!\n", "log.level: invalid level"),
            ("limits:\n  max_request_body_bytes: 0\n", "limits.max_request_body_bytes: must be greater than 0"),
            ("listen:\n  loki: 0.0.0.0:4317\n", "listen.loki and listen.otlp_grpc: both use 0.0.0.0:4317"),
            ("query:\n  timeout: 0s\n", "query.timeout: must be greater than 0s"),
            ("limits:\n  query_timeout: 0s\n", "limits.query_timeout: must be greater than 0s"),
            (
                "limits:\n  max_entries_limit_per_query: 0\n",
                "limits.max_entries_limit_per_query: must be greater than 0",
            ),
            ("limits:\n  max_query_series: 0\n", "limits.max_query_series: must be greater than 0"),
            ("query:\n  max_samples: 0\n", "query.max_samples: must be greater than 0"),
            ("query:\n  lookback_delta: 0s\n", "query.lookback_delta: must be at least 1ms"),
            ("query:\n  max_sample: 10\n", "unknown field `max_sample`"),
            ("limits:\n  ingestion_rate_mb: 0\n", "limits.ingestion_rate_mb: must be a number greater than 0"),
            (
                "limits:\n  ingestion_burst_size_mb: -1\n",
                "limits.ingestion_burst_size_mb: must be a number greater than 0",
            ),
            ("limits:\n  max_label_names_per_series: 0\n", "limits.max_label_names_per_series: must be greater than 0"),
            (
                "limits:\n  max_line_size_bytes: 0\n  max_line_size_truncate: true\n",
                "limits.max_line_size_truncate: needs limits.max_line_size_bytes above 0",
            ),
            ("limits:\n  reject_old_samples_max_age: 1 week\n", "invalid duration \"1 week\""),
            ("auth_enabled: maybe\n", "auth_enabled: invalid type"),
        ];
        for (yaml, expected) in cases {
            let error = parse(yaml).unwrap_err().to_string();
            assert!(error.contains(expected), "{yaml:?}: {error}");
        }
    }

    #[test]
    fn overrides_beat_the_file() {
        let raw =
            RawConfig::from_yaml("data_dir: /from/file\nlisten:\n  loki: 127.0.0.1:1\nlog:\n  level: debug\n", "t")
                .unwrap();
        let overrides = Overrides {
            data_dir: Some("/from/flag".into()),
            log_level: Some("warn".into()),
            listen: vec![(ListenerName::Loki, "off".into())],
            fsync: Some(FsyncMode::Always),
            ..Overrides::default()
        };
        let config = Config::from_raw(raw, &overrides).unwrap();
        assert_eq!(config.data_dir, DataDir::Path("/from/flag".into()));
        assert_eq!(config.log_level, "warn");
        assert_eq!(config.listen_address(ListenerName::Loki), None);
        assert_eq!(config.storage.wal.sync, SyncPolicy::Always);
        let ephemeral =
            Config::from_raw(RawConfig::default(), &Overrides { ephemeral: true, ..Overrides::default() }).unwrap();
        assert_eq!(ephemeral.data_dir, DataDir::Ephemeral);
    }

    #[test]
    fn logs_retention_and_store_settings() {
        let config = parse(
            "retention:\n  logs: 7d\n  logs_per_tenant: {team-a: 30d, keep: 0s}\n  logs_streams:\n    - selector: '{app=\"debug\", env=~\"dev|test\"}'\n      period: 24h\n      tenant: team-a\nlogs:\n  codec: none\n  max_chunk_age: 1h\n",
        )
        .unwrap();
        let logs = &config.storage.logs;
        let day_ns = 24 * 3600 * 1_000_000_000i64;
        assert_eq!(logs.retention_ns, Some(7 * day_ns));
        assert_eq!(logs.tenant_retention_ns.get("team-a"), Some(&(30 * day_ns)));
        assert_eq!(logs.tenant_retention_ns.get("keep"), Some(&i64::MAX));
        assert_eq!(logs.stream_retention.len(), 1);
        assert_eq!(logs.stream_retention[0].matchers.len(), 2);
        assert_eq!(logs.stream_retention[0].tenant.as_deref(), Some("team-a"));
        assert_eq!(logs.stream_retention[0].period_ns, day_ns);
        assert_eq!(logs.codec, tripod_storage::logs::LogsCodec::None);
        assert_eq!(logs.max_chunk_age_ns, 3600 * 1_000_000_000);
        assert_eq!(parse("retention:\n  logs: 0s\n").unwrap().storage.logs.retention_ns, None);

        let error = parse("retention:\n  logs_streams:\n    - selector: '{app=}'\n      period: 1d\n").unwrap_err();
        assert!(error.to_string().contains("retention.logs_streams[0].selector"), "{error}");
        let error = parse("logs:\n  codec: lz4\n").unwrap_err();
        assert!(error.to_string().contains("logs.codec: unknown codec \"lz4\""), "{error}");
        let error = parse("logs:\n  chunk_idle_period: 0s\n").unwrap_err();
        assert!(error.to_string().contains("logs.chunk_idle_period: must be greater than 0s"), "{error}");
    }

    #[test]
    fn traces_retention_and_store_settings() {
        let config = parse(
            "retention:\n  traces: 30d\n  traces_per_tenant: {team-a: 7d, keep: 0s}\ntraces:\n  codec: none\n  block_target_bytes: 1048576\n  page_target_bytes: 65536\n  max_head_age: 5m\n  max_values_per_key: 50\n  compaction_window: 2h\n",
        )
        .unwrap();
        let traces = &config.storage.traces;
        let day_ns = 24 * 3600 * 1_000_000_000i64;
        assert_eq!(traces.retention_ns, Some(30 * day_ns));
        assert_eq!(traces.tenant_retention_ns.get("team-a"), Some(&(7 * day_ns)));
        assert_eq!(traces.tenant_retention_ns.get("keep"), Some(&i64::MAX));
        assert_eq!(traces.codec, tripod_storage::traces::TracesCodec::None);
        assert_eq!(traces.block_target_bytes, 1 << 20);
        assert_eq!(traces.page_target_bytes, 64 << 10);
        assert_eq!(traces.max_head_age_ns, 5 * 60 * 1_000_000_000);
        assert_eq!(traces.max_values_per_key, 50);
        assert_eq!(traces.compaction_window_ns, 2 * 3600 * 1_000_000_000);
        let defaults = parse("").unwrap().storage.traces;
        assert_eq!(defaults.retention_ns, Some(14 * day_ns));
        assert_eq!(defaults.codec, tripod_storage::traces::TracesCodec::Zstd { level: 3 });
        assert_eq!(parse("retention:\n  traces: 0s\n").unwrap().storage.traces.retention_ns, None);

        for (yaml, expected) in [
            ("traces:\n  codec: lz4\n", "traces.codec: unknown codec \"lz4\""),
            ("traces:\n  max_head_age: 0s\n", "traces.max_head_age: must be greater than 0s"),
            ("traces:\n  compaction_window: 0s\n", "traces.compaction_window: must be greater than 0s"),
            ("traces:\n  page_target_bytes: 10\n", "traces.page_target_bytes: must be at least 4096"),
            (
                "traces:\n  block_target_bytes: 8192\n  page_target_bytes: 65536\n",
                "traces.block_target_bytes: must be at least traces.page_target_bytes",
            ),
            ("traces:\n  max_values_per_key: 0\n", "traces.max_values_per_key: must be greater than 0"),
            ("traces:\n  block_size: 1\n", "unknown field `block_size`"),
            ("retention:\n  traces: forever\n", "invalid duration \"forever\""),
        ] {
            let error = parse(yaml).unwrap_err().to_string();
            assert!(error.contains(expected), "{yaml:?}: {error}");
        }
    }
}
