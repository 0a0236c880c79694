//! TraceQL: Tempo's query language for traces, over the traces store's [`TracesQueryable`]
//! seam only.
//!
//! Reading order: [`lexer`] (tokens with positions), `ast` (the tree, printed back as canonical
//! TraceQL), `parser` (recursive descent; syntax and type errors name line and column),
//! `eval` (one whole trace at a time: field values, spanset filters, spanset and structural
//! operators, pipeline stages), `pushdown` (the conditions the store can check), `search` (the
//! search loop, tag values filtered by a query, Tempo's legacy tag search).
//!
//! A search asks the store for candidate traces with the pushed-down conditions and evaluates
//! the query over each whole trace; the store's answer is a superset, so everything is checked
//! again here. Spanset filters consider the spans that overlap the search range; structural
//! operators and trace intrinsics (`traceDuration`, `rootName`) see the whole trace.

pub mod lexer;

mod ast;
mod eval;
mod parser;
mod pushdown;
mod search;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

use std::time::Instant;

use tripod_storage::traces::{AttrValue, NsRange, SpanId, TraceId, TracesError};

pub use ast::Query;
pub use lexer::{ParseError, Position};
pub use parser::{MAX_QUERY_BYTES, parse};
pub use search::{query_from_tags, search, tag_values};

/// What a search asks for.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Spans that overlap this range are searched (Tempo's `start` and `end`).
    pub range: NsRange,
    /// At most this many traces are returned (Tempo's `limit`).
    pub limit: usize,
    /// At most this many spans are returned per spanset (Tempo's `spss`); `matched` counts all.
    pub spans_per_spanset: usize,
    /// The search gives up with [`TraceqlError::Timeout`] once this passes.
    pub deadline: Instant,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResponse {
    /// Matching traces, most recent first (by trace start).
    pub traces: Vec<TraceMatch>,
    pub metrics: SearchMetrics,
}

/// Work figures of a search, from the store's [`SearchStats`](tripod_storage::traces::SearchStats)
/// of every request it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchMetrics {
    /// Traces, spans and uncompressed bytes the store read, over every request.
    pub inspected_traces: u64,
    pub inspected_spans: u64,
    pub inspected_bytes: u64,
    /// Blocks overlapping the range, and those the skip data ruled out (the largest figures of
    /// one request).
    pub total_blocks: u64,
    pub skipped_blocks: u64,
}

/// One matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceMatch {
    pub trace_id: TraceId,
    /// `service.name` of the root span's resource; `None` while no root span is stored.
    pub root_service_name: Option<String>,
    /// The root span's name; `None` while no root span is stored.
    pub root_trace_name: Option<String>,
    /// Earliest span start of the trace, and latest end minus it.
    pub start_ns: i64,
    pub duration_ns: i64,
    /// The spansets the query produced for the trace (one, or one per `by()` group).
    pub span_sets: Vec<SpanSetMatch>,
}

/// One spanset of a matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSetMatch {
    /// At most [`SearchRequest::spans_per_spanset`] spans, in time order.
    pub spans: Vec<SpanMatch>,
    /// Spans in the spanset, returned or not.
    pub matched: usize,
    /// What the pipeline gave the spanset, named as Tempo names it: `by(resource.service.name)`.
    pub attributes: Vec<(String, AttrValue)>,
}

/// One span of a spanset.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanMatch {
    pub span_id: SpanId,
    pub name: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    /// The attributes and intrinsics the query's filters referenced or `select()` named, that
    /// this span has, keyed as Tempo keys them: attributes by name without scope (`service.name`),
    /// intrinsics by name (`status`, `kind`); statuses, kinds and durations as strings.
    pub attributes: Vec<(String, AttrValue)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceqlError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Valid TraceQL that this engine does not answer (metrics queries on the search path).
    #[error("{0}")]
    Unsupported(String),
    #[error("query timed out")]
    Timeout,
    #[error(transparent)]
    Store(#[from] TracesError),
}
