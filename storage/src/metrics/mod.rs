//! The metrics store: a time-series database in the shape Prometheus's TSDB proved.
//!
//! Reading order: [`chunk`] (how samples are compressed), `head` (the in-memory part that takes
//! appends and answers at once), `block` and `index` (immutable on-disk blocks cut from the
//! head), `records` (the WAL payloads), `exemplars`, then [`MetricsStore`] in `store`, which ties
//! them together behind the two seams the rest of Tripod uses: [`MetricsAppender`] to write and
//! [`MetricsQueryable`] to read. [`memory::MemoryMetrics`] implements both without disk, for
//! query-engine tests.

pub mod bits;
mod block;
pub mod chunk;
mod exemplars;
mod head;
mod index;
pub mod memory;
pub(crate) mod postings;
mod records;
mod series;
mod store;

use std::fmt;
use std::sync::Arc;

pub use series::{SampleColumns, SampleIter, Series};
pub use store::{MetricsOptions, MetricsStats, MetricsStore};

use crate::labels::{Labels, Matcher};

/// The value Prometheus writes to mark a series as stale: a NaN with a specific bit pattern,
/// distinct from the NaN that arithmetic produces.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// Whether `value` is the staleness marker (compared by bits: any other NaN is a value).
pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN.to_bits()
}

/// One sample: a millisecond timestamp and a float value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t_ms: i64,
    pub value: f64,
}

/// An inclusive range of millisecond timestamps, `start_ms <= end_ms` by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    start_ms: i64,
    end_ms: i64,
}

impl TimeRange {
    /// `None` if `start_ms > end_ms`.
    pub fn new(start_ms: i64, end_ms: i64) -> Option<TimeRange> {
        (start_ms <= end_ms).then_some(TimeRange { start_ms, end_ms })
    }

    /// All of time.
    pub fn all() -> TimeRange {
        TimeRange { start_ms: i64::MIN, end_ms: i64::MAX }
    }

    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    pub fn contains(&self, t_ms: i64) -> bool {
        self.start_ms <= t_ms && t_ms <= self.end_ms
    }

    /// Whether `[min_ms, max_ms]` overlaps this range.
    pub fn overlaps(&self, min_ms: i64, max_ms: i64) -> bool {
        min_ms <= self.end_ms && max_ms >= self.start_ms
    }
}

/// A stable reference to a series in the head, returned by appends so that later appends can
/// skip the label lookup. Valid until the series is dropped from the head (it received no
/// samples for a whole block range); an append with a stale reference is counted as
/// `unknown_series_ref` and the caller appends by labels again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

/// How an append names its series.
#[derive(Debug, Clone, Copy)]
pub enum SeriesKey<'a> {
    Ref(SeriesRef),
    Labels(&'a Labels),
}

/// An exemplar: a sample of a traced event, with labels such as `trace_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub t_ms: i64,
}

/// Samples and exemplars for one series.
#[derive(Debug, Clone, Copy)]
pub struct SeriesSamples<'a> {
    pub key: SeriesKey<'a>,
    /// In any order; each is judged on its own.
    pub samples: &'a [Sample],
    pub exemplars: &'a [Exemplar],
}

/// What happened to the samples of an append, counted per reason. Rejections are expected
/// outcomes, not errors: the rest of the batch is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendCounts {
    /// Samples stored in time order.
    pub appended: u64,
    /// Samples older than their series' newest sample, stored because they fell inside the
    /// out-of-order window.
    pub appended_out_of_order: u64,
    /// Samples identical (timestamp and value) to one already stored: accepted, nothing stored.
    pub duplicates: u64,
    /// Samples older than their series' newest sample with out-of-order ingestion off.
    pub rejected_out_of_order: u64,
    /// Samples older than the out-of-order window, or older than what was already persisted
    /// with the window off.
    pub rejected_too_old: u64,
    /// Samples with the timestamp of a stored sample but another value.
    pub rejected_duplicate_timestamp: u64,
    /// Series named by a reference the head no longer knows; their samples were not stored.
    pub unknown_series_ref: u64,
    /// Series created by this append.
    pub series_created: u64,
    pub exemplars_appended: u64,
    /// Exemplars for a timestamp already holding one, or out of the window.
    pub exemplars_rejected: u64,
}

impl AppendCounts {
    /// Samples refused for any reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_out_of_order + self.rejected_too_old + self.rejected_duplicate_timestamp
    }

    pub fn add(&mut self, other: &AppendCounts) {
        self.appended += other.appended;
        self.appended_out_of_order += other.appended_out_of_order;
        self.duplicates += other.duplicates;
        self.rejected_out_of_order += other.rejected_out_of_order;
        self.rejected_too_old += other.rejected_too_old;
        self.rejected_duplicate_timestamp += other.rejected_duplicate_timestamp;
        self.unknown_series_ref += other.unknown_series_ref;
        self.series_created += other.series_created;
        self.exemplars_appended += other.exemplars_appended;
        self.exemplars_rejected += other.exemplars_rejected;
    }
}

/// The answer to an append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendResult {
    /// The reference of each series of the batch, in batch order; `None` for a stale reference.
    pub refs: Vec<Option<SeriesRef>>,
    pub counts: AppendCounts,
}

/// The metric types of the Prometheus and OpenMetrics exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    /// The name Prometheus's metadata API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> MetricType {
        match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    fn code(self) -> u8 {
        match self {
            MetricType::Unknown => 0,
            MetricType::Counter => 1,
            MetricType::Gauge => 2,
            MetricType::Histogram => 3,
            MetricType::GaugeHistogram => 4,
            MetricType::Summary => 5,
            MetricType::Info => 6,
            MetricType::StateSet => 7,
        }
    }

    fn from_code(code: u8) -> MetricType {
        match code {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Type, help and unit of a metric name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricMetadata {
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// The exemplars of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    pub series: Labels,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("metrics store io error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt metrics block {block}: {problem}")]
    CorruptBlock { block: String, problem: String },
    #[error("metrics store is not accepting writes: {0}")]
    NotWritable(&'static str),
    #[error("query exceeded the limit of {limit} samples")]
    TooManySamples { limit: u64 },
}

impl MetricsError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> MetricsError {
        let context = context.into();
        move |source| MetricsError::Io { context, source }
    }
}

/// Writing samples, exemplars and metadata. Everything an append stores is in the WAL before the
/// call returns, and queryable at once.
pub trait MetricsAppender: Send + Sync {
    /// Appends a batch; samples that cannot be stored are counted per reason, not errors.
    fn append(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendResult, MetricsError>;

    /// Records the type, help and unit of a metric name.
    fn set_metadata(&self, metric_name: &str, metadata: MetricMetadata) -> Result<(), MetricsError>;
}

/// Reading series, label names and values, exemplars and metadata.
pub trait MetricsQueryable: Send + Sync {
    /// Every series matching all `matchers` that has samples in `range`, sorted by labels, with
    /// its samples in `range`. Matchers follow Prometheus: a matcher that matches the empty string
    /// also selects series without the label; regexes are fully anchored.
    fn select(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Series>, MetricsError>;

    /// Label names of the series that match (all series when `matchers` is empty), sorted.
    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>, MetricsError>;

    /// Values of label `name` among the series that match, sorted.
    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>, MetricsError>;

    /// Exemplars in `range` of the series matching any of the selectors.
    fn exemplars(&self, selectors: &[Vec<Matcher>], range: TimeRange) -> Result<Vec<SeriesExemplars>, MetricsError>;

    /// Metadata per metric name (one name, or all), sorted by name.
    fn metadata(&self, metric_name: Option<&str>) -> Result<Vec<(String, Vec<MetricMetadata>)>, MetricsError>;
}

/// Shared, immutable chunk bytes: from the head (`Arc<[u8]>`, or part of a buffer of many) or a
/// block (a memory map).
#[derive(Clone)]
pub enum ChunkBytes {
    Owned(Arc<[u8]>),
    Shared { bytes: Arc<[u8]>, start: usize, end: usize },
    Mapped { map: Arc<memmap2::Mmap>, start: usize, end: usize },
}

impl ChunkBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Owned(bytes) => bytes,
            ChunkBytes::Shared { bytes, start, end } => bytes.get(*start..*end).unwrap_or_default(),
            ChunkBytes::Mapped { map, start, end } => &map[*start..*end],
        }
    }
}

impl fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkBytes({} bytes)", self.as_slice().len())
    }
}
