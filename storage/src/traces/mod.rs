//! The traces store: spans grouped by trace ID, in the shape Tempo proved.
//!
//! Spans arrive grouped as OTLP groups them (a resource, its instrumentation scopes, their
//! spans), go through the WAL into a per-tenant head that answers at once, and are cut by
//! maintenance into immutable block files: pages of spans sorted by trace ID and compressed
//! column by column, a sorted trace-ID table with a bloom filter that finds a trace without a
//! time range, and per-block and per-page skip data (value dictionaries, bloom filters, time,
//! duration, status and kind bounds) so that searches skip what cannot match.
//!
//! Reading order: this file (the model and the two seams), `records` (the WAL payload and the
//! head's span encoding), `hash` (bloom filters), `index` (skip data), `filter` (conditions on
//! spans), `page` (the columnar page format), `file` (block files), `head`, then
//! [`TracesStore`] in `store`. The rest of Tripod uses the store through [`TracesAppender`] and
//! [`TracesQueryable`]; nothing here knows OTLP's protobuf or Tempo's JSON.

mod assemble;
mod codec;
mod file;
mod filter;
mod hash;
mod head;
mod index;
mod page;
mod records;
mod store;

use std::cmp::Ordering;

pub use crate::logs::NsRange;
pub use codec::TracesCodec;
pub use records::{RecordScratch, SpanHead, SpansRecord, SpansRecordWriter};
pub use store::{TracesClock, TracesMaintenanceOutcome, TracesOptions, TracesStats, TracesStore};

/// The tenant every request belongs to when multi-tenancy is off (Tempo's name for it).
pub const DEFAULT_TENANT: &str = "single-tenant";

/// A 16-byte trace ID.
pub type TraceId = [u8; 16];
/// An 8-byte span ID.
pub type SpanId = [u8; 8];

/// An attribute value, as OTLP's `AnyValue` carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    String(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KvList(Vec<(String, AttrValue)>),
}

/// Key/value pairs. The store returns every attribute list sorted by key (a stable sort, so
/// repeated keys keep their order); OTLP gives the order no meaning.
pub type Attributes = Vec<(String, AttrValue)>;

/// What a span represents (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// Every kind, in OTLP's numbering order.
    pub const ALL: [SpanKind; 6] = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];

    /// OTLP's number for the kind.
    pub fn as_u8(self) -> u8 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// `None` for numbers OTLP does not define.
    pub fn from_u8(value: u8) -> Option<SpanKind> {
        SpanKind::ALL.get(usize::from(value)).copied()
    }

    /// TraceQL's keyword for the kind.
    pub fn keyword(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// A span's status code (OTLP `Status.StatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub const ALL: [StatusCode; 3] = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];

    pub fn as_u8(self) -> u8 {
        match self {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        }
    }

    pub fn from_u8(value: u8) -> Option<StatusCode> {
        StatusCode::ALL.get(usize::from(value)).copied()
    }

    /// TraceQL's keyword for the status.
    pub fn keyword(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

/// A span's status: the code and the message that comes with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpanStatus {
    pub code: StatusCode,
    pub message: String,
}

/// A time-stamped event of a span.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanEvent {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Attributes,
    /// Attributes the client had to drop (OTLP keeps the count).
    pub dropped_attributes_count: u32,
}

/// A link from a span to another span, of this trace or another.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    /// W3C trace flags of the linked span context.
    pub flags: u32,
}

/// One span, with every field OTLP gives it, so a trace can be returned as it came in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// W3C `tracestate`.
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub start_ns: i64,
    pub end_ns: i64,
    pub status: SpanStatus,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    /// W3C trace flags (and OTLP's parent-is-remote bits).
    pub flags: u32,
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
}

impl Span {
    /// `end_ns - start_ns` (saturating; negative when a client sent an end before the start).
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// The entity that produced spans: a service instance, described by its attributes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
}

impl Resource {
    /// The `service.name` attribute, when it is a string.
    pub fn service_name(&self) -> Option<&str> {
        self.attributes.iter().find_map(|(key, value)| match value {
            AttrValue::String(name) if key == SERVICE_NAME => Some(name.as_str()),
            _ => None,
        })
    }
}

/// The resource attribute that names a service.
pub const SERVICE_NAME: &str = "service.name";

/// The instrumentation library that recorded spans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
}

/// Spans of one instrumentation scope.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeSpans {
    pub scope: Scope,
    pub schema_url: String,
    pub spans: Vec<Span>,
}

/// Spans of one resource, by scope: OTLP's `ResourceSpans`, the unit of an append and of a
/// returned trace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSpans {
    pub resource: Resource,
    pub schema_url: String,
    pub scope_spans: Vec<ScopeSpans>,
}

/// Every stored span of one trace, grouped by resource and scope. Groups come in the order of
/// their earliest span, spans in (start time, span ID) order; a span ID appears once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    pub trace_id: TraceId,
    pub resource_spans: Vec<ResourceSpans>,
}

impl Trace {
    /// Every span with its resource and scope group.
    pub fn spans(&self) -> impl Iterator<Item = (&ResourceSpans, &ScopeSpans, &Span)> {
        self.resource_spans.iter().flat_map(|resource| {
            resource
                .scope_spans
                .iter()
                .flat_map(move |scope| scope.spans.iter().map(move |span| (resource, scope, span)))
        })
    }

    pub fn span_count(&self) -> usize {
        self.resource_spans.iter().flat_map(|resource| &resource.scope_spans).map(|scope| scope.spans.len()).sum()
    }
}

/// What happened to the spans of an append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracesAppendCounts {
    /// Spans stored.
    pub appended: u64,
    /// Spans whose (trace ID, span ID) the head already holds, or that came twice in the batch:
    /// accepted, not stored again.
    pub duplicates: u64,
    /// Spans refused, not stored: an all-zero trace or span ID (invalid in OTLP), or attribute
    /// values nested deeper than 64 arrays or lists.
    pub invalid: u64,
    /// Traces the head had not seen before this append.
    pub traces_created: u64,
}

impl TracesAppendCounts {
    pub fn add(&mut self, other: &TracesAppendCounts) {
        self.appended += other.appended;
        self.duplicates += other.duplicates;
        self.invalid += other.invalid;
        self.traces_created += other.traces_created;
    }
}

/// Where an attribute condition looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeScope {
    /// Resource attributes (`resource.x`).
    Resource,
    /// Span attributes (`span.x`).
    Span,
    /// Either (TraceQL's unscoped `.x`): a span matches when its own or its resource's
    /// attribute does.
    Any,
}

/// How an attribute is compared with a condition's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One condition on a span that the store checks itself (and uses to skip blocks and pages).
///
/// Comparison rules: numbers compare numerically whatever their type (an int equals a double of
/// the same value), strings by bytes, booleans only for (in)equality; values of other types
/// never compare. An array attribute satisfies a condition when one of its elements does. `Ne`
/// needs the attribute to be present with a value that is not equal.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanCondition {
    /// The resource attribute `service.name` is this string.
    ServiceName(String),
    /// The span's name is this string.
    Name(String),
    Status(StatusCode),
    Kind(SpanKind),
    /// `end - start` within these inclusive bounds.
    Duration {
        min_ns: Option<i64>,
        max_ns: Option<i64>,
    },
    /// An attribute compared with a value.
    Attribute {
        scope: AttributeScope,
        key: String,
        op: CompareOp,
        value: AttrValue,
    },
    /// An attribute is present, whatever its value.
    Exists {
        scope: AttributeScope,
        key: String,
    },
}

/// What a search pushes down: a trace is a candidate when one of its spans satisfies every
/// condition and overlaps the search range. No conditions: every span satisfies them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanFilter {
    pub conditions: Vec<SpanCondition>,
}

/// One trace a search found, whole (every stored span, from the head and every block), so an
/// engine can evaluate structural operators and anything the store did not check.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchTrace {
    pub trace_id: TraceId,
    /// Name of the root span (the earliest span without a parent); `None` while no root span
    /// is stored.
    pub root_span_name: Option<String>,
    /// `service.name` of the root span's resource.
    pub root_service_name: Option<String>,
    /// Earliest span start and latest span end of the trace.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Span IDs that satisfy the filter (and overlap the range), in the trace's span order.
    pub matched_span_ids: Vec<SpanId>,
    pub trace: Trace,
}

/// Work figures of a search (Tempo reports some of them with every answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Traces whose spans were checked against the filter.
    pub inspected_traces: u64,
    pub inspected_spans: u64,
    /// Uncompressed bytes of the pages and head records read.
    pub inspected_bytes: u64,
    /// Blocks of the tenant overlapping the range, and those of them the skip data ruled out.
    pub blocks_total: u64,
    pub blocks_skipped: u64,
    pub pages_read: u64,
    pub pages_skipped: u64,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResult {
    /// At most the limit, most recent first (by trace start).
    pub traces: Vec<SearchTrace>,
    /// Every matching trace in the range is in `traces` (the limit cut nothing off).
    pub complete: bool,
    pub stats: SearchStats,
}

/// The kinds of tag names (Tempo's scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TagScope {
    Resource,
    Span,
    Event,
    Link,
    /// Attributes of the instrumentation scope.
    Instrumentation,
    /// Names every span has or the model defines (name, status, kind, duration, ...).
    Intrinsic,
}

impl TagScope {
    pub const ALL: [TagScope; 6] = [
        TagScope::Resource,
        TagScope::Span,
        TagScope::Event,
        TagScope::Link,
        TagScope::Instrumentation,
        TagScope::Intrinsic,
    ];

    /// Tempo's name for the scope.
    pub fn name(self) -> &'static str {
        match self {
            TagScope::Resource => "resource",
            TagScope::Span => "span",
            TagScope::Event => "event",
            TagScope::Link => "link",
            TagScope::Instrumentation => "instrumentation",
            TagScope::Intrinsic => "intrinsic",
        }
    }
}

/// The intrinsic tag names the store answers values for, and the ones it lists.
pub mod intrinsics {
    pub const NAME: &str = "name";
    pub const STATUS: &str = "status";
    pub const STATUS_MESSAGE: &str = "statusMessage";
    pub const KIND: &str = "kind";
    pub const DURATION: &str = "duration";
    pub const ROOT_NAME: &str = "rootName";
    pub const ROOT_SERVICE_NAME: &str = "rootServiceName";
    pub const TRACE_DURATION: &str = "traceDuration";
    pub const EVENT_NAME: &str = "event:name";
    pub const LINK_TRACE_ID: &str = "link:traceID";
    pub const LINK_SPAN_ID: &str = "link:spanID";
    pub const INSTRUMENTATION_NAME: &str = "instrumentation:name";
    pub const INSTRUMENTATION_VERSION: &str = "instrumentation:version";
}

/// Tag names of one scope, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedTagNames {
    pub scope: TagScope,
    pub names: Vec<String>,
}

/// A tag whose values are asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagRef {
    /// `None`: unscoped (TraceQL's `.x`), the values of span and resource attributes `x`.
    pub scope: Option<TagScope>,
    pub name: String,
}

/// A tag value with its type, as Tempo answers them.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    String(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// An enum keyword (`error`, `server`, ...) of the `status` and `kind` intrinsics.
    Keyword(String),
}

impl TagValue {
    fn rank(&self) -> u8 {
        match self {
            TagValue::String(_) => 0,
            TagValue::Int(_) => 1,
            TagValue::Double(_) => 2,
            TagValue::Bool(_) => 3,
            TagValue::Keyword(_) => 4,
        }
    }

    /// A total order: by type, then by value (doubles by `f64::total_cmp`).
    pub fn total_cmp(&self, other: &TagValue) -> Ordering {
        match (self, other) {
            (TagValue::String(a), TagValue::String(b)) | (TagValue::Keyword(a), TagValue::Keyword(b)) => a.cmp(b),
            (TagValue::Int(a), TagValue::Int(b)) => a.cmp(b),
            (TagValue::Double(a), TagValue::Double(b)) => a.total_cmp(b),
            (TagValue::Bool(a), TagValue::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("traces store io error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt traces file {file}: {problem}")]
    Corrupt { file: String, problem: String },
    #[error("traces store is not accepting writes: {0}")]
    NotWritable(&'static str),
}

/// Writing spans. Everything an append stores is in the WAL before the call returns, and
/// queryable (by trace ID and by search) at once.
pub trait TracesAppender: Send + Sync {
    /// Appends a batch for `tenant`. Duplicates and spans with invalid IDs are counted, not
    /// errors.
    fn append(&self, tenant: &str, batch: &[ResourceSpans]) -> Result<TracesAppendCounts, TracesError>;

    /// Appends a record built by a [`SpansRecordWriter`] for its tenant, as `append` would
    /// append the same spans.
    fn append_record(&self, record: SpansRecord) -> Result<TracesAppendCounts, TracesError>;
}

/// Reading traces, searching spans, listing tag names and values. Every call is per tenant.
pub trait TracesQueryable: Send + Sync {
    /// Every stored span of the trace, from the head and every block; `None` when none is
    /// stored. Found without a time range: `range_hint` may only make the lookup cheaper, never
    /// change the answer.
    fn trace(
        &self,
        tenant: &str,
        trace_id: &TraceId,
        range_hint: Option<NsRange>,
    ) -> Result<Option<Trace>, TracesError>;

    /// Traces with a span that satisfies `filter` and overlaps `range`, at most `limit`, most
    /// recent first. Never misses a match: every condition is checked exactly, skip data only
    /// rules out what cannot match.
    fn search(
        &self,
        tenant: &str,
        filter: &SpanFilter,
        range: NsRange,
        limit: usize,
    ) -> Result<SearchResult, TracesError>;

    /// Tag names of the spans overlapping `range`, per scope (all scopes when `scope` is
    /// `None`), each list sorted; scopes without names are left out.
    fn tag_names(
        &self,
        tenant: &str,
        scope: Option<TagScope>,
        range: NsRange,
    ) -> Result<Vec<ScopedTagNames>, TracesError>;

    /// Distinct values of `tag` among the spans overlapping `range`, sorted (by type, then
    /// value), at most `limit`. Per block, at most `TracesOptions::max_values_per_key` values
    /// of one key are kept, so a tag with more distinct values is answered in part.
    fn tag_values(
        &self,
        tenant: &str,
        tag: &TagRef,
        range: NsRange,
        limit: usize,
    ) -> Result<Vec<TagValue>, TracesError>;
}
