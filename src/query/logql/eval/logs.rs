//! Log queries: the selected streams' cursors merged by time in the query's direction, each
//! entry run through the pipeline and filed under its resulting label set, until `limit`
//! entries are kept. Entries are read lazily, so a query stops reading once its limit is met.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use tripod_storage::labels::Labels;
use tripod_storage::logs::{Direction, LogEntry, LogSelection, LogsQueryable, NsRange, StreamCursor};

use super::{EvalError, QueryParams, ResultEntry, ResultStream, check_deadline};
use crate::query::logql::pipeline::labels::Category;
use crate::query::logql::pipeline::{Outcome, Pipeline, PipelineState};
use crate::query::logql::syntax::ast::LogExpr;

/// The next entry of one cursor, ordered for the heap by time in the query's direction, then by
/// the cursor's place (streams come sorted by labels), so equal timestamps come out stably.
struct Head {
    entry: LogEntry,
    cursor: usize,
    direction: Direction,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    /// The heap pops the greatest: the oldest entry going forward, the newest going backward.
    fn cmp(&self, other: &Self) -> Ordering {
        let by_time = match self.direction {
            Direction::Forward => other.entry.t_ns.cmp(&self.entry.t_ns),
            Direction::Backward => self.entry.t_ns.cmp(&other.entry.t_ns),
        };
        by_time.then_with(|| other.cursor.cmp(&self.cursor))
    }
}

/// The time range a log query reads: `[start, end)`, as Loki reads it.
pub(crate) fn log_range(params: &QueryParams<'_>) -> Result<NsRange, EvalError> {
    let end = if params.end_ns > params.start_ns { params.end_ns - 1 } else { params.end_ns };
    NsRange::new(params.start_ns, end)
        .ok_or_else(|| EvalError::Invalid("end timestamp must not be before start time".into()))
}

/// Opens the cursors of a log expression over `range`, with the pipeline's leading substring
/// filters pushed down to the store.
pub(crate) fn open(
    store: &dyn LogsQueryable,
    log: &LogExpr,
    pipeline: &Pipeline,
    tenant: &str,
    range: NsRange,
    direction: Direction,
) -> Result<Vec<StreamCursor>, EvalError> {
    let filters = pipeline.store_filters();
    let selection = LogSelection { matchers: &log.matchers, range, direction, filters: &filters };
    Ok(store.select(tenant, &selection)?)
}

/// Pops entries from several cursors in time order.
pub(crate) struct Merge {
    cursors: Vec<StreamCursor>,
    heap: BinaryHeap<Head>,
    direction: Direction,
}

impl Merge {
    pub(crate) fn new(mut cursors: Vec<StreamCursor>, direction: Direction) -> Result<Merge, EvalError> {
        let mut heap = BinaryHeap::with_capacity(cursors.len());
        for (index, cursor) in cursors.iter_mut().enumerate() {
            if let Some(entry) = cursor.entries.next() {
                heap.push(Head { entry: entry?, cursor: index, direction });
            }
        }
        Ok(Merge { cursors, heap, direction })
    }

    /// The next entry and the index of its cursor.
    pub(crate) fn next_entry(&mut self) -> Result<Option<(LogEntry, usize)>, EvalError> {
        let Some(head) = self.heap.pop() else { return Ok(None) };
        if let Some(next) = self.cursors[head.cursor].entries.next() {
            self.heap.push(Head { entry: next?, cursor: head.cursor, direction: self.direction });
        }
        Ok(Some((head.entry, head.cursor)))
    }

    pub(crate) fn labels(&self, cursor: usize) -> &Labels {
        &self.cursors[cursor].labels
    }
}

/// Evaluates a log query.
pub fn select(
    store: &dyn LogsQueryable,
    log: &LogExpr,
    params: &QueryParams<'_>,
) -> Result<Vec<ResultStream>, EvalError> {
    let pipeline = Pipeline::new(&log.stages, false)?;
    let range = log_range(params)?;
    let cursors = open(store, log, &pipeline, params.tenant, range, params.direction)?;
    let mut merge = Merge::new(cursors, params.direction)?;
    let mut state = PipelineState::default();
    let mut streams: Vec<ResultStream> = Vec::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut kept = 0usize;
    let mut counter = 0u32;
    while kept < params.limit {
        check_deadline(params, &mut counter)?;
        let Some((entry, cursor)) = merge.next_entry()? else { break };
        let stream_labels = merge.labels(cursor);
        if pipeline.process(entry.t_ns, &entry.line, stream_labels, &entry.metadata, &mut state) == Outcome::Dropped {
            continue;
        }
        let labels = if state.labels.has_non_stream() || !pipeline.only_line_filters() {
            state.labels.labels()
        } else {
            stream_labels.clone()
        };
        let pairs = |category| -> Vec<(String, String)> {
            state.labels.category(category).into_iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        let result = ResultEntry {
            t_ns: entry.t_ns,
            line: state.line(&entry.line).to_string(),
            metadata: pairs(Category::Metadata),
            parsed: pairs(Category::Parsed),
        };
        let index = match by_labels.get(&labels) {
            Some(&index) => index,
            None => {
                let stream_only: Vec<(&str, &str)> = state.labels.category(Category::Stream);
                let stream_labels = Labels::from_pairs(stream_only).unwrap_or_else(|_| stream_labels.clone());
                streams.push(ResultStream { labels: labels.clone(), stream_labels, entries: Vec::new() });
                by_labels.insert(labels, streams.len() - 1);
                streams.len() - 1
            }
        };
        streams[index].entries.push(result);
        kept += 1;
    }
    streams.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(streams)
}
