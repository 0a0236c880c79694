//! The logs store: streams of log entries in compressed chunks, indexed by labels only, in the
//! shape Loki proved.
//!
//! A stream is a tenant and a label set. Its entries (a nanosecond timestamp, a line and
//! structured metadata) are appended through the WAL and answer queries at once from the head;
//! the head packs them into blocks (compressed by maintenance, off the append path), and full or
//! old chunks are flushed to immutable files. Only labels are indexed; each block carries time
//! bounds and each chunk an n-gram bloom filter, so that line filters and trace-ID lookups skip
//! most of the data.
//!
//! The rest of Tripod uses the store through two seams: [`LogsAppender`] to write and
//! [`LogsQueryable`] to read.

mod block;
mod bloom;
mod catalog;
mod cursor;
mod file;
mod head;
mod records;
mod store;

use std::fmt;

pub use block::LogsCodec;
pub use store::{LogsClock, LogsMaintenanceOutcome, LogsOptions, LogsStats, LogsStore, StreamRetention};

use crate::labels::{Labels, Matcher};

/// The tenant every request belongs to when multi-tenancy is off (Loki's name for it).
pub const DEFAULT_TENANT: &str = "fake";

/// An inclusive range of nanosecond timestamps, `start_ns <= end_ns` by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsRange {
    start_ns: i64,
    end_ns: i64,
}

impl NsRange {
    /// `None` if `start_ns > end_ns`.
    pub fn new(start_ns: i64, end_ns: i64) -> Option<NsRange> {
        (start_ns <= end_ns).then_some(NsRange { start_ns, end_ns })
    }

    /// All of time.
    pub fn all() -> NsRange {
        NsRange { start_ns: i64::MIN, end_ns: i64::MAX }
    }

    pub fn start_ns(&self) -> i64 {
        self.start_ns
    }

    pub fn end_ns(&self) -> i64 {
        self.end_ns
    }

    pub fn contains(&self, t_ns: i64) -> bool {
        self.start_ns <= t_ns && t_ns <= self.end_ns
    }

    /// Whether `[min_ns, max_ns]` overlaps this range.
    pub fn overlaps(&self, min_ns: i64, max_ns: i64) -> bool {
        min_ns <= self.end_ns && max_ns >= self.start_ns
    }
}

/// One log entry of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Nanoseconds since the Unix epoch.
    pub t_ns: i64,
    /// The log line, as pushed.
    pub line: String,
    /// Structured metadata: key/value pairs stored with the entry but not indexed.
    pub metadata: Labels,
}

/// Entries for one stream, in any order; each is judged on its own.
#[derive(Debug, Clone, Copy)]
pub struct StreamEntries<'a> {
    pub labels: &'a Labels,
    pub entries: &'a [LogEntry],
}

/// What happened to the entries of an append, counted per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogAppendCounts {
    /// Entries stored.
    pub appended: u64,
    /// Of those, entries older than their stream's newest entry (accepted, as Loki 2.4+ does).
    pub appended_out_of_order: u64,
    /// Entries with the stream, timestamp and line of one already stored: accepted, not stored
    /// again.
    pub duplicates: u64,
    /// Bytes of the lines stored.
    pub line_bytes: u64,
    /// Streams created by this append.
    pub streams_created: u64,
}

impl LogAppendCounts {
    pub fn add(&mut self, other: &LogAppendCounts) {
        self.appended += other.appended;
        self.appended_out_of_order += other.appended_out_of_order;
        self.duplicates += other.duplicates;
        self.line_bytes += other.line_bytes;
        self.streams_created += other.streams_created;
    }
}

/// The order entries are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    #[default]
    Backward,
}

/// A line filter the store may use to skip blocks (by their token blooms). The store's answer
/// is exact: entries that do not pass are never returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFilter {
    /// The line contains these bytes (case-sensitive).
    Contains(String),
    /// The line does not contain these bytes.
    NotContains(String),
}

impl LineFilter {
    pub fn matches(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(needle) => line.contains(needle.as_str()),
            LineFilter::NotContains(needle) => !line.contains(needle.as_str()),
        }
    }
}

/// What a select reads.
#[derive(Debug, Clone, Copy)]
pub struct LogSelection<'a> {
    /// Streams matching all of these (Prometheus matcher semantics; at least one is expected).
    pub matchers: &'a [Matcher],
    pub range: NsRange,
    pub direction: Direction,
    /// Every filter must pass.
    pub filters: &'a [LineFilter],
}

/// The entries of one selected stream, read lazily in the selection's direction: entries with
/// equal timestamps come in the order of their lines. Blocks are decompressed as the cursor
/// reaches them, so a caller that stops early reads no more than it consumed.
pub struct StreamCursor {
    pub labels: Labels,
    pub entries: Box<dyn Iterator<Item = Result<LogEntry, LogsError>> + Send>,
}

impl fmt::Debug for StreamCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCursor").field("labels", &self.labels).finish_non_exhaustive()
    }
}

/// Size figures for the streams that match a selector over a time range (Loki's index stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    /// Bytes of the lines, uncompressed.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("logs store io error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt logs file {file}: {problem}")]
    Corrupt { file: String, problem: String },
    #[error("logs store is not accepting writes: {0}")]
    NotWritable(&'static str),
}

/// Writing log entries. Everything an append stores is in the WAL before the call returns, and
/// queryable at once.
pub trait LogsAppender: Send + Sync {
    /// Appends a batch for `tenant`. Duplicates are counted, not errors.
    fn append(&self, tenant: &str, batch: &[StreamEntries<'_>]) -> Result<LogAppendCounts, LogsError>;
}

/// Reading streams, entries, label names and values, and stats. Every call is per tenant.
pub trait LogsQueryable: Send + Sync {
    /// A cursor per stream that matches and has entries in the range passing the filters, in
    /// label order. Reading the cursors is what costs; opening them is cheap.
    fn select(&self, tenant: &str, selection: &LogSelection<'_>) -> Result<Vec<StreamCursor>, LogsError>;

    /// The label sets of the streams that match (all streams when `matchers` is empty) and have
    /// entries in `range`, sorted.
    fn series(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<Vec<Labels>, LogsError>;

    /// Label names of those streams, sorted.
    fn label_names(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<Vec<String>, LogsError>;

    /// Values of label `name` among those streams, sorted.
    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        range: NsRange,
    ) -> Result<Vec<String>, LogsError>;

    /// Streams, chunks, entries and bytes of those streams within `range`.
    fn stats(&self, tenant: &str, matchers: &[Matcher], range: NsRange) -> Result<LogStats, LogsError>;
}
