//! Tripod's own telemetry: the structured log setup, and the self-metrics served on `/metrics`
//! in the Prometheus text format.
//!
//! Every metric name is declared once, in the [`metrics`] table below; the exposition code
//! refers to the descriptors, never to literal names. Values are read when `/metrics` is
//! scraped, from counters the components keep themselves (the WAL's, the process's).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tripod_storage::Storage;

use crate::config::LogFormat;
use crate::ingest::logs::{DiscardCount, DiscardReason, PushOutcome};
use crate::ingest::otlp_traces::{ExportOutcome, RefusalReason};

/// Installs the global tracing subscriber. `level` is a level or tracing directives, already
/// validated by the config. Safe to call more than once (later calls do nothing), so embedded
/// servers in tests may call it too.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _already_installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Facts about this build, from `build.rs`.
pub mod build {
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    pub const REVISION: &str = env!("TRIPOD_REVISION");
    pub const BRANCH: &str = env!("TRIPOD_BRANCH");
    pub const BUILD_DATE: &str = env!("TRIPOD_BUILD_DATE");
    pub const RUSTC_VERSION: &str = env!("TRIPOD_RUSTC_VERSION");
}

/// The kind of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric family: its name, help text and kind.
#[derive(Debug, Clone, Copy)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
}

/// Every self-metric Tripod exposes. Names follow `<namespace>_<name>_<unit>[_total]`.
pub mod metrics {
    use super::MetricDesc;
    use super::MetricKind::{Counter, Gauge, Histogram};

    macro_rules! declare {
        ($($ident:ident: $kind:ident, $name:literal, $help:literal;)*) => {
            $(pub const $ident: MetricDesc = MetricDesc { name: $name, help: $help, kind: $kind };)*
            /// All declared metrics, in exposition order.
            pub const ALL: &[MetricDesc] = &[$($ident),*];
        };
    }

    declare! {
        BUILD_INFO: Gauge, "tripod_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch and rustc version.";
        UPTIME_SECONDS: Gauge, "tripod_uptime_seconds", "Seconds since the server started.";
        READY: Gauge, "tripod_ready", "1 once storage is open and every signal is ready, else 0.";
        PROCESS_CPU_SECONDS: Counter, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.";
        PROCESS_RESIDENT_MEMORY: Gauge, "process_resident_memory_bytes", "Resident memory size in bytes.";
        PROCESS_VIRTUAL_MEMORY: Gauge, "process_virtual_memory_bytes", "Virtual memory size in bytes.";
        PROCESS_OPEN_FDS: Gauge, "process_open_fds", "Number of open file descriptors.";
        PROCESS_MAX_FDS: Gauge, "process_max_fds", "Maximum number of open file descriptors.";
        PROCESS_START_TIME: Gauge, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.";
        WAL_RECORDS_APPENDED: Counter, "tripod_wal_records_appended_total", "Records appended to the write-ahead log.";
        WAL_BYTES_APPENDED: Counter, "tripod_wal_bytes_appended_total", "Bytes appended to the write-ahead log, framing included.";
        WAL_FSYNCS: Counter, "tripod_wal_fsyncs_total", "fsync calls made by the write-ahead log.";
        WAL_SEGMENTS_CREATED: Counter, "tripod_wal_segments_created_total", "Write-ahead log segments created.";
        WAL_ACTIVE_SEGMENT: Gauge, "tripod_wal_active_segment", "Index of the write-ahead log segment being written.";
        WAL_CHECKPOINTS: Counter, "tripod_wal_checkpoints_total", "Write-ahead log checkpoints written.";
        WAL_REPLAY_RECORDS: Gauge, "tripod_wal_replay_records", "Records replayed from the write-ahead log at startup.";
        WAL_REPLAY_DROPPED_BYTES: Gauge, "tripod_wal_replay_dropped_bytes", "Torn or corrupt bytes dropped by the write-ahead log replay at startup.";
        WAL_REPLAY_DURATION: Gauge, "tripod_wal_replay_duration_seconds", "Duration of the write-ahead log replay at startup.";
        METRICS_HEAD_SERIES: Gauge, "tripod_metrics_head_series", "Series in the metrics head.";
        METRICS_HEAD_MEMORY: Gauge, "tripod_metrics_head_memory_bytes", "Approximate memory used by the metrics head.";
        METRICS_BLOCKS: Gauge, "tripod_metrics_blocks", "Metrics blocks on disk.";
        METRICS_BLOCK_BYTES: Gauge, "tripod_metrics_block_bytes", "Bytes of metrics blocks on disk.";
        METRICS_SAMPLES_APPENDED: Counter, "tripod_metrics_samples_appended_total", "Samples stored, in order or out of order.";
        METRICS_SAMPLES_REJECTED: Counter, "tripod_metrics_samples_rejected_total", "Samples refused, by reason.";
        METRICS_BLOCKS_CUT: Counter, "tripod_metrics_blocks_cut_total", "Blocks cut from the metrics head.";
        METRICS_COMPACTIONS: Counter, "tripod_metrics_compactions_total", "Metrics block compactions.";
        LOGS_RECEIVED_BYTES: Counter, "tripod_logs_received_bytes_total", "Bytes of log lines and structured metadata received by push, stored or refused, by tenant.";
        LOGS_RECEIVED_ENTRIES: Counter, "tripod_logs_received_entries_total", "Log entries received by push, stored or refused, by tenant.";
        LOGS_DISCARDED_ENTRIES: Counter, "tripod_logs_discarded_entries_total", "Log entries refused by push, by tenant and reason.";
        LOGS_DISCARDED_BYTES: Counter, "tripod_logs_discarded_bytes_total", "Bytes of log entries refused by push, by tenant and reason.";
        LOGS_HEAD_STREAMS: Gauge, "tripod_logs_head_streams", "Log streams with entries in memory.";
        LOGS_HEAD_CHUNKS: Gauge, "tripod_logs_head_chunks", "Log chunks in memory, not yet flushed to files.";
        LOKI_BYTES_RECEIVED: Counter, "loki_distributor_bytes_received_total", "Loki's name for tripod_logs_received_bytes_total.";
        LOKI_LINES_RECEIVED: Counter, "loki_distributor_lines_received_total", "Loki's name for tripod_logs_received_entries_total.";
        LOKI_DISCARDED_SAMPLES: Counter, "loki_discarded_samples_total", "Loki's name for tripod_logs_discarded_entries_total.";
        LOKI_DISCARDED_BYTES: Counter, "loki_discarded_bytes_total", "Loki's name for tripod_logs_discarded_bytes_total.";
        LOKI_INGESTER_STREAMS: Gauge, "loki_ingester_streams", "Loki's name for tripod_logs_head_streams.";
        LOKI_INGESTER_MEMORY_CHUNKS: Gauge, "loki_ingester_memory_chunks", "Loki's name for tripod_logs_head_chunks.";
        LOGS_QUERY_DURATION: Histogram, "tripod_logs_query_duration_seconds", "Time LogQL queries took to evaluate, by type (logs or metric).";
        LOKI_QUERY_DURATION: Histogram, "loki_query_duration_seconds", "Loki's name for tripod_logs_query_duration_seconds.";
        TRACES_RECEIVED_SPANS: Counter, "tripod_traces_received_spans_total", "Spans received by OTLP export, stored or refused, by tenant.";
        TRACES_RECEIVED_BYTES: Counter, "tripod_traces_received_bytes_total", "Bytes of OTLP trace exports received (protobuf size), by tenant.";
        TRACES_CREATED: Counter, "tripod_traces_created_total", "Traces the traces head had not seen before, by tenant.";
        TRACES_DISCARDED_SPANS: Counter, "tripod_traces_discarded_spans_total", "Spans refused by OTLP export, by tenant and reason.";
        TRACES_HEAD_SPANS: Gauge, "tripod_traces_head_spans", "Spans in the traces head, not yet cut into blocks.";
        TRACES_HEAD_TRACES: Gauge, "tripod_traces_head_traces", "Traces with spans in the traces head.";
        TRACES_BLOCKS: Gauge, "tripod_traces_blocks", "Traces blocks on disk.";
        TRACES_BLOCK_BYTES: Gauge, "tripod_traces_block_bytes", "Bytes of traces blocks on disk.";
        TEMPO_SPANS_RECEIVED: Counter, "tempo_distributor_spans_received_total", "Tempo's name for tripod_traces_received_spans_total.";
        TEMPO_BYTES_RECEIVED: Counter, "tempo_distributor_bytes_received_total", "Tempo's name for tripod_traces_received_bytes_total.";
        TEMPO_TRACES_CREATED: Counter, "tempo_ingester_traces_created_total", "Tempo's name for tripod_traces_created_total.";
        TEMPO_DISCARDED_SPANS: Counter, "tempo_discarded_spans_total", "Tempo's name for tripod_traces_discarded_spans_total.";
        TEMPO_LIVE_TRACES: Gauge, "tempo_ingester_live_traces", "Tempo's name for tripod_traces_head_traces.";
    }
}

/// The Prometheus text exposition, one family at a time.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, desc: MetricDesc) {
        let kind = match desc.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {} {}\n# TYPE {} {}", desc.name, desc.help, desc.name, kind);
    }

    fn sample(&mut self, desc: MetricDesc, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(desc.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape_label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram series.
    fn histogram(&mut self, desc: MetricDesc, labels: &[(&str, &str)], histogram: &DurationHistogram) {
        let mut cumulative = 0u64;
        for (upper, count) in QUERY_DURATION_BUCKETS.iter().zip(&histogram.buckets) {
            cumulative += count;
            self.series_line(desc.name, "_bucket", labels, Some(&format_value(*upper)), cumulative as f64);
        }
        self.series_line(desc.name, "_bucket", labels, Some("+Inf"), histogram.count as f64);
        self.series_line(desc.name, "_sum", labels, None, histogram.sum_seconds);
        self.series_line(desc.name, "_count", labels, None, histogram.count as f64);
    }

    fn series_line(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], le: Option<&str>, value: f64) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        let mut all: Vec<(&str, &str)> = labels.to_vec();
        if let Some(le) = le {
            all.push(("le", le));
        }
        if !all.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in all.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape_label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    fn single(&mut self, desc: MetricDesc, value: f64) {
        self.family(desc);
        self.sample(desc, &[], value);
    }
}

fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        value.to_string()
    }
}

/// Per-tenant totals of the logs push path, added to once per push.
#[derive(Debug, Clone, Default)]
struct TenantLogsCounters {
    received_bytes: u64,
    received_entries: u64,
    /// Indexed by `DiscardReason`.
    discarded: [DiscardCount; DiscardReason::ALL.len()],
}

/// Per-tenant totals of the OTLP traces export path, added to once per export.
#[derive(Debug, Clone, Default)]
struct TenantTracesCounters {
    received_spans: u64,
    received_bytes: u64,
    traces_created: u64,
    /// Indexed by `RefusalReason`.
    discarded: [u64; RefusalReason::ALL.len()],
}

/// Upper bounds of the query duration buckets, in seconds (Prometheus's defaults, then the
/// default query timeout and beyond).
const QUERY_DURATION_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Observations of one duration histogram series.
#[derive(Debug, Clone, Default)]
struct DurationHistogram {
    /// Per bucket of `QUERY_DURATION_BUCKETS` (not cumulative); slower ones only in `count`.
    buckets: [u64; QUERY_DURATION_BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl DurationHistogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(index) = QUERY_DURATION_BUCKETS.iter().position(|upper| seconds <= *upper) {
            self.buckets[index] += 1;
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// The state the self-metrics read at scrape time that no component keeps itself.
pub struct Telemetry {
    /// When the server started, for the uptime gauge.
    started: Instant,
    /// The same moment as a Unix timestamp, for `process_start_time_seconds`.
    started_unix_seconds: f64,
    /// Logs push totals by tenant (sorted, so the exposition is stable).
    logs_pushes: Mutex<BTreeMap<String, TenantLogsCounters>>,
    /// LogQL query durations: log queries, then metric queries.
    logs_queries: Mutex<[DurationHistogram; 2]>,
    /// OTLP traces export totals by tenant (sorted, so the exposition is stable).
    traces_exports: Mutex<BTreeMap<String, TenantTracesCounters>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let started_unix_seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Telemetry {
            started: Instant::now(),
            started_unix_seconds,
            logs_pushes: Mutex::new(BTreeMap::new()),
            logs_queries: Mutex::new(Default::default()),
            traces_exports: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one LogQL query evaluation and how long it took.
    pub fn record_logs_query(&self, is_log_query: bool, duration: std::time::Duration) {
        let mut queries = self.logs_queries.lock().unwrap_or_else(|poison| poison.into_inner());
        queries[usize::from(!is_log_query)].observe(duration.as_secs_f64());
    }

    fn render_logs_queries(&self, exposition: &mut Exposition) {
        use metrics::*;
        let queries = self.logs_queries.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        for desc in [LOGS_QUERY_DURATION, LOKI_QUERY_DURATION] {
            exposition.family(desc);
            for (query_type, histogram) in ["logs", "metric"].iter().zip(&queries) {
                exposition.histogram(desc, &[("type", query_type)], histogram);
            }
        }
    }

    /// Counts one logs push: what it received and what it refused, per reason.
    pub fn record_logs_push(&self, outcome: &PushOutcome) {
        let mut pushes = self.logs_pushes.lock().unwrap_or_else(|poison| poison.into_inner());
        let counters = match pushes.get_mut(&outcome.tenant) {
            Some(counters) => counters,
            None => pushes.entry(outcome.tenant.clone()).or_default(),
        };
        counters.received_bytes += outcome.received_bytes;
        counters.received_entries += outcome.received_entries;
        for reason in DiscardReason::ALL {
            let discarded = outcome.discarded(reason);
            let total = &mut counters.discarded[reason as usize];
            total.entries += discarded.entries;
            total.bytes += discarded.bytes;
        }
    }

    fn render_logs_pushes(&self, exposition: &mut Exposition) {
        use metrics::*;
        let pushes = self.logs_pushes.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        for (ours, loki) in [(LOGS_RECEIVED_BYTES, LOKI_BYTES_RECEIVED), (LOGS_RECEIVED_ENTRIES, LOKI_LINES_RECEIVED)] {
            for desc in [ours, loki] {
                exposition.family(desc);
                for (tenant, counters) in &pushes {
                    let value = if ours.name == LOGS_RECEIVED_BYTES.name {
                        counters.received_bytes
                    } else {
                        counters.received_entries
                    };
                    exposition.sample(desc, &[("tenant", tenant)], value as f64);
                }
            }
        }
        for (ours, loki) in
            [(LOGS_DISCARDED_ENTRIES, LOKI_DISCARDED_SAMPLES), (LOGS_DISCARDED_BYTES, LOKI_DISCARDED_BYTES)]
        {
            for desc in [ours, loki] {
                exposition.family(desc);
                for (tenant, counters) in &pushes {
                    for reason in DiscardReason::ALL {
                        let count = counters.discarded[reason as usize];
                        if count.entries == 0 {
                            continue;
                        }
                        let value = if ours.name == LOGS_DISCARDED_ENTRIES.name { count.entries } else { count.bytes };
                        exposition.sample(desc, &[("reason", reason.as_str()), ("tenant", tenant)], value as f64);
                    }
                }
            }
        }
    }

    /// Counts one OTLP traces export: what it received, created and refused, per reason.
    pub fn record_traces_export(&self, outcome: &ExportOutcome) {
        let mut exports = self.traces_exports.lock().unwrap_or_else(|poison| poison.into_inner());
        let counters = match exports.get_mut(&outcome.tenant) {
            Some(counters) => counters,
            None => exports.entry(outcome.tenant.clone()).or_default(),
        };
        counters.received_spans += outcome.received_spans;
        counters.received_bytes += outcome.received_bytes;
        counters.traces_created += outcome.stored.traces_created;
        for reason in RefusalReason::ALL {
            counters.discarded[reason as usize] += outcome.refused(reason);
        }
    }

    fn render_traces_exports(&self, exposition: &mut Exposition) {
        use metrics::*;
        let exports = self.traces_exports.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        type Read = fn(&TenantTracesCounters) -> u64;
        let per_tenant: [(MetricDesc, MetricDesc, Read); 3] = [
            (TRACES_RECEIVED_SPANS, TEMPO_SPANS_RECEIVED, |c| c.received_spans),
            (TRACES_RECEIVED_BYTES, TEMPO_BYTES_RECEIVED, |c| c.received_bytes),
            (TRACES_CREATED, TEMPO_TRACES_CREATED, |c| c.traces_created),
        ];
        for (ours, tempo, value) in per_tenant {
            for desc in [ours, tempo] {
                exposition.family(desc);
                for (tenant, counters) in &exports {
                    exposition.sample(desc, &[("tenant", tenant)], value(counters) as f64);
                }
            }
        }
        for desc in [TRACES_DISCARDED_SPANS, TEMPO_DISCARDED_SPANS] {
            exposition.family(desc);
            for (tenant, counters) in &exports {
                for reason in RefusalReason::ALL {
                    let spans = counters.discarded[reason as usize];
                    if spans > 0 {
                        exposition.sample(desc, &[("reason", reason.as_str()), ("tenant", tenant)], spans as f64);
                    }
                }
            }
        }
    }

    /// When the server started, in Unix milliseconds.
    pub fn started_unix_ms(&self) -> i64 {
        (self.started_unix_seconds * 1000.0) as i64
    }

    /// Renders every self-metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self, ready: bool, storage: Option<&Storage>) -> String {
        use metrics::*;
        let mut exposition = Exposition { out: String::with_capacity(4096) };
        exposition.family(BUILD_INFO);
        exposition.sample(
            BUILD_INFO,
            &[
                ("version", build::VERSION),
                ("revision", build::REVISION),
                ("branch", build::BRANCH),
                ("rustc_version", build::RUSTC_VERSION),
            ],
            1.0,
        );
        exposition.single(UPTIME_SECONDS, self.started.elapsed().as_secs_f64());
        exposition.single(READY, if ready { 1.0 } else { 0.0 });

        let process = process_stats();
        if let Some(cpu) = process.cpu_seconds {
            exposition.single(PROCESS_CPU_SECONDS, cpu);
        }
        if let Some(rss) = process.resident_bytes {
            exposition.single(PROCESS_RESIDENT_MEMORY, rss as f64);
        }
        if let Some(virtual_bytes) = process.virtual_bytes {
            exposition.single(PROCESS_VIRTUAL_MEMORY, virtual_bytes as f64);
        }
        if let Some(open) = process.open_fds {
            exposition.single(PROCESS_OPEN_FDS, open as f64);
        }
        if let Some(max) = process.max_fds {
            exposition.single(PROCESS_MAX_FDS, max as f64);
        }
        exposition.single(PROCESS_START_TIME, self.started_unix_seconds.floor());

        if let Some(storage) = storage {
            let wal = storage.wal().stats();
            exposition.single(WAL_RECORDS_APPENDED, wal.records_appended as f64);
            exposition.single(WAL_BYTES_APPENDED, wal.bytes_appended as f64);
            exposition.single(WAL_FSYNCS, wal.fsyncs as f64);
            exposition.single(WAL_SEGMENTS_CREATED, wal.segments_created as f64);
            exposition.single(WAL_ACTIVE_SEGMENT, f64::from(wal.active_segment));
            exposition.single(WAL_CHECKPOINTS, wal.checkpoints as f64);
            let replay = storage.replay_stats();
            exposition.single(WAL_REPLAY_RECORDS, replay.records as f64);
            exposition.single(WAL_REPLAY_DROPPED_BYTES, replay.dropped_bytes as f64);
            exposition.single(WAL_REPLAY_DURATION, replay.duration.as_secs_f64());

            let metrics = storage.metrics().stats();
            exposition.single(METRICS_HEAD_SERIES, metrics.head_series as f64);
            exposition.single(METRICS_HEAD_MEMORY, metrics.head_memory_bytes as f64);
            exposition.single(METRICS_BLOCKS, metrics.blocks as f64);
            exposition.single(METRICS_BLOCK_BYTES, metrics.block_bytes as f64);
            let counts = metrics.appended;
            exposition.single(METRICS_SAMPLES_APPENDED, (counts.appended + counts.appended_out_of_order) as f64);
            exposition.family(METRICS_SAMPLES_REJECTED);
            for (reason, value) in [
                ("out_of_order", counts.rejected_out_of_order),
                ("too_old", counts.rejected_too_old),
                ("duplicate_timestamp", counts.rejected_duplicate_timestamp),
            ] {
                exposition.sample(METRICS_SAMPLES_REJECTED, &[("reason", reason)], value as f64);
            }
            exposition.single(METRICS_BLOCKS_CUT, metrics.blocks_cut as f64);
            exposition.single(METRICS_COMPACTIONS, metrics.compactions as f64);

            let logs = storage.logs().store_stats();
            exposition.single(LOGS_HEAD_STREAMS, logs.streams as f64);
            exposition.single(LOKI_INGESTER_STREAMS, logs.streams as f64);
            exposition.single(LOGS_HEAD_CHUNKS, logs.memory_chunks as f64);
            exposition.single(LOKI_INGESTER_MEMORY_CHUNKS, logs.memory_chunks as f64);

            let traces = storage.traces().store_stats();
            exposition.single(TRACES_HEAD_SPANS, traces.head_spans as f64);
            exposition.single(TRACES_HEAD_TRACES, traces.head_traces as f64);
            exposition.single(TEMPO_LIVE_TRACES, traces.head_traces as f64);
            exposition.single(TRACES_BLOCKS, traces.blocks as f64);
            exposition.single(TRACES_BLOCK_BYTES, traces.block_bytes as f64);
        }
        self.render_logs_pushes(&mut exposition);
        self.render_logs_queries(&mut exposition);
        self.render_traces_exports(&mut exposition);
        exposition.out
    }
}

/// Process figures; each is `None` where the platform does not tell.
#[derive(Debug, Default)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

#[cfg(target_os = "linux")]
fn process_stats() -> ProcessStats {
    let mut stats = ProcessStats::default();
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may contain spaces.
        if let Some(rest) = stat.rfind(')').map(|end| &stat[end + 2..]) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After the name: state is field 3 of proc(5), so utime (14) is index 11 here.
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15))
                && ticks_per_second > 0
            {
                stats.cpu_seconds = Some((user + system) as f64 / ticks_per_second as f64);
            }
            stats.virtual_bytes = field(23);
            if let Some(pages) = field(24)
                && page_size > 0
            {
                stats.resident_bytes = Some(pages * page_size as u64);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle used for listing is itself one of the entries.
        stats.open_fds = Some(entries.count().saturating_sub(1) as u64);
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        stats.max_fds = Some(limit.rlim_cur);
    }
    stats
}

#[cfg(not(target_os = "linux"))]
fn process_stats() -> ProcessStats {
    ProcessStats::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_is_unique_and_well_named() {
        let mut names: Vec<&str> = metrics::ALL.iter().map(|desc| desc.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), metrics::ALL.len(), "duplicate metric name");
        for desc in metrics::ALL {
            assert!(
                desc.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                desc.name
            );
            assert_eq!(desc.kind == MetricKind::Counter, desc.name.ends_with("_total"), "{}", desc.name);
        }
    }

    #[test]
    fn exposition_is_valid_text_format() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), Default::default()).unwrap();
        let text = Telemetry::new().render(true, Some(&storage));
        for desc in metrics::ALL {
            if desc.name.starts_with("process_") && !cfg!(target_os = "linux") {
                continue;
            }
            assert!(text.contains(&format!("# TYPE {} ", desc.name)), "{} missing:\n{text}", desc.name);
        }
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
        assert!(text.contains("tripod_ready 1\n"));
        assert!(text.contains(&format!("tripod_build_info{{version=\"{}\"", build::VERSION)));
        #[cfg(target_os = "linux")]
        {
            let rss = text.lines().find(|l| l.starts_with("process_resident_memory_bytes ")).unwrap();
            assert!(rss.split(' ').nth(1).unwrap().parse::<f64>().unwrap() > 1e6, "{rss}");
        }
        storage.close().unwrap();
    }

    #[test]
    fn query_durations_are_a_histogram() {
        let telemetry = Telemetry::new();
        telemetry.record_logs_query(true, std::time::Duration::from_millis(20));
        telemetry.record_logs_query(true, std::time::Duration::from_secs(120));
        telemetry.record_logs_query(false, std::time::Duration::from_millis(3));
        let text = telemetry.render(true, None);
        for name in ["tripod_logs_query_duration_seconds", "loki_query_duration_seconds"] {
            assert!(text.contains(&format!("# TYPE {name} histogram\n")), "{text}");
            assert!(text.contains(&format!("{name}_bucket{{type=\"logs\",le=\"0.01\"}} 0\n")), "{text}");
            assert!(text.contains(&format!("{name}_bucket{{type=\"logs\",le=\"0.025\"}} 1\n")), "{text}");
            assert!(text.contains(&format!("{name}_bucket{{type=\"logs\",le=\"60\"}} 1\n")), "{text}");
            assert!(text.contains(&format!("{name}_bucket{{type=\"logs\",le=\"+Inf\"}} 2\n")), "{text}");
            assert!(text.contains(&format!("{name}_count{{type=\"logs\"}} 2\n")), "{text}");
            assert!(text.contains(&format!("{name}_sum{{type=\"logs\"}} 120.02\n")), "{text}");
            assert!(text.contains(&format!("{name}_bucket{{type=\"metric\",le=\"0.005\"}} 1\n")), "{text}");
        }
    }

    #[test]
    fn traces_exports_are_counted_under_both_names() {
        let telemetry = Telemetry::new();
        let mut outcome = ExportOutcome {
            tenant: "single-tenant".into(),
            received_spans: 10,
            received_bytes: 1234,
            ..Default::default()
        };
        outcome.stored.traces_created = 2;
        outcome.refused[RefusalReason::InvalidSpanId as usize].spans = 3;
        telemetry.record_traces_export(&outcome);
        telemetry.record_traces_export(&outcome);
        let text = telemetry.render(true, None);
        for line in [
            "tripod_traces_received_spans_total{tenant=\"single-tenant\"} 20\n",
            "tempo_distributor_spans_received_total{tenant=\"single-tenant\"} 20\n",
            "tempo_distributor_bytes_received_total{tenant=\"single-tenant\"} 2468\n",
            "tempo_ingester_traces_created_total{tenant=\"single-tenant\"} 4\n",
            "tempo_discarded_spans_total{reason=\"invalid_span_id\",tenant=\"single-tenant\"} 6\n",
            "tripod_traces_discarded_spans_total{reason=\"invalid_span_id\",tenant=\"single-tenant\"} 6\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("reason=\"invalid_trace_id\""), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(2.5), "2.5");
    }
}
