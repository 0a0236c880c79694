//! Searching with TraceQL: candidates from the store, evaluated exactly, until the limit is
//! met; tag values among the spans a query matches; Tempo's legacy tag search as a query.
//!
//! The store answers a search with at most `limit` candidate traces that have a span
//! satisfying the pushed-down conditions, and says whether that was all of them. The scan asks
//! for the limit first (a selective query ends there), then for [`MAX_TRACES_PER_REQUEST`];
//! while a range holds more candidates than that, it is halved (from the earliest candidate
//! seen to its end) and the newer half is searched first. A range is evaluated only once all
//! its candidates are in hand, and the scan stops after the range in which the limit was
//! reached, so the answer holds the most recent matches whatever order the store found them
//! in. Candidates already evaluated are skipped, and the deadline is checked before every
//! request and every few traces.

use std::collections::HashSet;
use std::time::Instant;

use tripod_storage::traces::{
    AttrValue, NsRange, SearchTrace, SpanFilter, TagRef, TagScope, TagValue, TraceId, TracesQueryable,
};

use super::ast::{AttrScope, CompareOp, Field, FieldExpr, Filter, Intrinsic, Query, SpansetExpr, Stage, Static};
use super::eval::{SpanSet, TraceView, Value, evaluate};
use super::lexer::{ParseError, Position, error, parse_duration_ns};
use super::pushdown::span_filter;
use super::{SearchMetrics, SearchRequest, SearchResponse, SpanMatch, SpanSetMatch, TraceMatch, TraceqlError};

/// The most candidate traces one store request may return (each comes whole). Unit tests use
/// a small number so that a few hundred traces make the scan split ranges.
#[cfg(not(test))]
const MAX_TRACES_PER_REQUEST: usize = 500;
#[cfg(test)]
const MAX_TRACES_PER_REQUEST: usize = 64;

/// The most matching traces a filtered tag-values request inspects.
const TAG_VALUES_MAX_TRACES: usize = 5000;

/// Traces evaluated between two deadline checks.
const DEADLINE_CHECK_EVERY: usize = 32;

/// Searches for traces matching `query`.
pub fn search(
    store: &dyn TracesQueryable,
    tenant: &str,
    query: &Query,
    request: &SearchRequest,
) -> Result<SearchResponse, TraceqlError> {
    refuse_metrics(query)?;
    let mut response = SearchResponse::default();
    if request.limit == 0 {
        return Ok(response);
    }
    let fields = output_fields(query);
    let mut scan = Scan::new(store, tenant, span_filter(query), request.deadline, request.limit, request.limit);
    let mut matches = Vec::new();
    scan.run(request.range, 0, None, &mut |trace| {
        let view = TraceView::new(trace, request.range);
        let sets = evaluate(&view, &query.root);
        if sets.is_empty() {
            return Visit::Skipped;
        }
        matches.push(trace_match(&view, &sets, request.spans_per_spanset, &fields));
        Visit::Matched
    })?;
    matches.sort_by(|a, b| b.start_ns.cmp(&a.start_ns).then(a.trace_id.cmp(&b.trace_id)));
    matches.truncate(request.limit);
    response.traces = matches;
    response.metrics = scan.metrics;
    Ok(response)
}

/// Distinct values of `tag` among the spans that `filter` matches (in the spansets it
/// produces), sorted by type then value, at most `limit`. Without a filter, or with `{}`, the
/// store's value index answers directly.
pub fn tag_values(
    store: &dyn TracesQueryable,
    tenant: &str,
    tag: &TagRef,
    filter: Option<&Query>,
    range: NsRange,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<TagValue>, TraceqlError> {
    let query = match filter {
        Some(query) if !query.matches_everything() => query,
        _ => return Ok(store.tag_values(tenant, tag, range, limit)?),
    };
    refuse_metrics(query)?;
    let Some(field) = tag_field(tag) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut values: Vec<TagValue> = Vec::new();
    let mut distinct = 0;
    let mut scan =
        Scan::new(store, tenant, span_filter(query), deadline, TAG_VALUES_MAX_TRACES, MAX_TRACES_PER_REQUEST);
    scan.run(range, 0, None, &mut |trace| {
        let view = TraceView::new(trace, range);
        let sets = evaluate(&view, &query.root);
        if sets.is_empty() {
            return Visit::Skipped;
        }
        let before = values.len();
        for set in &sets {
            for &index in &set.spans {
                push_tag_values(&view.field(&field, index), &mut values);
            }
        }
        if values.len() > before {
            sort_dedup(&mut values);
            distinct = values.len();
        }
        if distinct >= limit { Visit::Stop } else { Visit::Matched }
    })?;
    sort_dedup(&mut values);
    values.truncate(limit);
    Ok(values)
}

fn sort_dedup(values: &mut Vec<TagValue>) {
    values.sort_by(|a, b| a.total_cmp(b));
    values.dedup_by(|a, b| a.total_cmp(b).is_eq());
}

fn push_tag_values(value: &Value<'_>, out: &mut Vec<TagValue>) {
    match value {
        Value::Str(text) => out.push(TagValue::String(text.to_string())),
        Value::Int(n) => out.push(TagValue::Int(*n)),
        Value::Float(n) => out.push(TagValue::Double(*n)),
        Value::Bool(b) => out.push(TagValue::Bool(*b)),
        Value::Status(code) => out.push(TagValue::Keyword(code.keyword().to_string())),
        Value::Kind(kind) => out.push(TagValue::Keyword(kind.keyword().to_string())),
        Value::List(elements) => {
            for element in elements {
                push_tag_values(element, out);
            }
        }
        // Tag values have no duration type; nil and opaque values have no value to list.
        Value::Duration(_) | Value::Nil | Value::Opaque => {}
    }
}

/// The field a tag of the tag-values API names; `None` for an unknown intrinsic.
fn tag_field(tag: &TagRef) -> Option<Field> {
    let attribute = |scope| Some(Field::Attribute { scope, name: tag.name.clone() });
    match tag.scope {
        None => attribute(AttrScope::Unscoped),
        Some(TagScope::Resource) => attribute(AttrScope::Resource),
        Some(TagScope::Span) => attribute(AttrScope::Span),
        Some(TagScope::Event) => attribute(AttrScope::Event),
        Some(TagScope::Link) => attribute(AttrScope::Link),
        Some(TagScope::Instrumentation) => attribute(AttrScope::Instrumentation),
        Some(TagScope::Intrinsic) => {
            let intrinsic = match tag.name.split_once(':') {
                Some((scope, name)) => Intrinsic::from_scoped(scope, name),
                None => Intrinsic::from_word(&tag.name),
            };
            intrinsic.map(Field::Intrinsic)
        }
    }
}

fn refuse_metrics(query: &Query) -> Result<(), TraceqlError> {
    match query.metrics_function() {
        Some(name) => Err(TraceqlError::Unsupported(format!(
            "traceql metrics queries are not supported here: {name}() needs the metrics query API"
        ))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// The scan

/// How a range's scan ended.
enum Flow {
    /// Nothing more is needed.
    Stop,
    /// Every candidate of the range was visited; this many (counting each range's once).
    Done { candidates: usize },
}

/// What a visitor made of a candidate trace.
enum Visit {
    /// The trace matched; it counts towards the wanted number.
    Matched,
    Skipped,
    /// Nothing more is needed.
    Stop,
}

struct Scan<'s> {
    store: &'s dyn TracesQueryable,
    tenant: &'s str,
    filter: SpanFilter,
    deadline: Instant,
    /// Matches after which the scan stops.
    wanted: usize,
    /// The first request's limit: the limit of a search (a selective query ends there).
    first_ask: usize,
    /// The most traces one request asks for.
    cap: usize,
    matched: usize,
    evaluated: usize,
    seen: HashSet<TraceId>,
    metrics: SearchMetrics,
}

impl<'s> Scan<'s> {
    fn new(
        store: &'s dyn TracesQueryable,
        tenant: &'s str,
        filter: SpanFilter,
        deadline: Instant,
        wanted: usize,
        first_ask: usize,
    ) -> Scan<'s> {
        let cap = MAX_TRACES_PER_REQUEST.max(first_ask);
        Scan {
            store,
            tenant,
            filter,
            deadline,
            wanted,
            first_ask: first_ask.clamp(1, cap),
            cap,
            matched: 0,
            evaluated: 0,
            seen: HashSet::new(),
            metrics: SearchMetrics::default(),
        }
    }

    fn check_deadline(&self) -> Result<(), TraceqlError> {
        if Instant::now() >= self.deadline { Err(TraceqlError::Timeout) } else { Ok(()) }
    }

    /// Visits the candidates of `range` not seen yet, newest part of the range first.
    /// `known_large` says the range is known to hold more candidates than one request may
    /// return, with the starts of some of them.
    fn run(
        &mut self,
        range: NsRange,
        depth: u32,
        known_large: Option<Vec<i64>>,
        visit: &mut dyn FnMut(&SearchTrace) -> Visit,
    ) -> Result<Flow, TraceqlError> {
        let cap = self.cap;
        let (start, end) = (range.start_ns(), range.end_ns());
        let starts = match known_large {
            Some(starts) if start < end => starts,
            _ => {
                let mut ask = if depth == 0 { self.first_ask } else { cap };
                loop {
                    self.check_deadline()?;
                    let result = self.store.search(self.tenant, &self.filter, range, ask)?;
                    let stats = result.stats;
                    self.metrics.inspected_traces += stats.inspected_traces;
                    self.metrics.inspected_spans += stats.inspected_spans;
                    self.metrics.inspected_bytes += stats.inspected_bytes;
                    self.metrics.total_blocks = self.metrics.total_blocks.max(stats.blocks_total);
                    self.metrics.skipped_blocks = self.metrics.skipped_blocks.max(stats.blocks_skipped);
                    // Candidates of an incomplete answer are the store's pick, not the newest:
                    // they are visited only when the range cannot be split any further.
                    if result.complete || (ask >= cap && start >= end) {
                        for trace in &result.traces {
                            if self.visit(trace, visit)? {
                                return Ok(Flow::Stop);
                            }
                        }
                        if self.matched >= self.wanted {
                            return Ok(Flow::Stop);
                        }
                        return Ok(Flow::Done { candidates: result.traces.len() });
                    }
                    if ask >= cap {
                        break result.traces.iter().map(|trace| trace.start_ns).collect::<Vec<i64>>();
                    }
                    ask = cap;
                }
            }
        };
        // Too many candidates for one request: halve the range, newer half first. The earliest
        // candidate seen makes a better lower end than the range's (an open range starts at the
        // dawn of time); either way both parts are smaller than the range, and every candidate
        // is in one of them.
        let low = starts.iter().min().map_or(start, |&earliest| earliest.max(start));
        let low = if low < end { low } else { start };
        let split = ((i128::from(low) + i128::from(end)) / 2 + 1) as i64;
        let mut candidates = 0;
        if let Some(newer) = NsRange::new(split, end) {
            match self.run(newer, depth + 1, None, visit)? {
                Flow::Stop => return Ok(Flow::Stop),
                Flow::Done { candidates: found } => candidates = found,
            }
        }
        let Some(older) = NsRange::new(start, split - 1) else {
            return Ok(Flow::Done { candidates });
        };
        // With nothing in the newer half, the older one holds every candidate: no need to ask.
        let older_large = (candidates == 0).then(|| starts.into_iter().filter(|&at| at < split).collect());
        match self.run(older, depth + 1, older_large, visit)? {
            Flow::Stop => Ok(Flow::Stop),
            Flow::Done { candidates: found } => Ok(Flow::Done { candidates: candidates + found }),
        }
    }

    /// Visits one candidate unless seen; `true` once the scan should stop.
    fn visit(
        &mut self,
        trace: &SearchTrace,
        visit: &mut dyn FnMut(&SearchTrace) -> Visit,
    ) -> Result<bool, TraceqlError> {
        if !self.seen.insert(trace.trace_id) {
            return Ok(false);
        }
        self.evaluated += 1;
        if self.evaluated.is_multiple_of(DEADLINE_CHECK_EVERY) {
            self.check_deadline()?;
        }
        Ok(match visit(trace) {
            Visit::Matched => {
                self.matched += 1;
                false
            }
            Visit::Skipped => false,
            Visit::Stop => true,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Intrinsics an answer carries elsewhere (span name and duration, trace fields), so they are
/// not repeated among a span's attributes.
fn shown_elsewhere(field: &Field) -> bool {
    matches!(
        field,
        Field::Intrinsic(
            Intrinsic::Name
                | Intrinsic::Duration
                | Intrinsic::TraceDuration
                | Intrinsic::RootName
                | Intrinsic::RootServiceName
                | Intrinsic::TraceId
        )
    )
}

/// The fields the query's filters reference and its `select()` stages name, once each, in
/// query order.
fn output_fields(query: &Query) -> Vec<Field> {
    let mut fields = Vec::new();
    collect_spanset_fields(&query.root, &mut fields);
    fields.retain(|field| !shown_elsewhere(field));
    fields
}

fn collect_spanset_fields(expr: &SpansetExpr, out: &mut Vec<Field>) {
    match expr {
        SpansetExpr::Filter(filter) => collect_filter_fields(filter, out),
        SpansetExpr::Binary { left, right, .. } => {
            collect_spanset_fields(left, out);
            collect_spanset_fields(right, out);
        }
        SpansetExpr::Pipeline { source, stages } => {
            collect_spanset_fields(source, out);
            for stage in stages {
                match stage {
                    Stage::Filter(filter) => collect_filter_fields(filter, out),
                    Stage::Select(fields) => {
                        for field in fields {
                            collect_field_expr(field, out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn collect_filter_fields(filter: &Filter, out: &mut Vec<Field>) {
    if let Some(expr) = &filter.expr {
        collect_field_expr(expr, out);
    }
}

fn collect_field_expr(expr: &FieldExpr, out: &mut Vec<Field>) {
    match expr {
        FieldExpr::Literal(_) => {}
        FieldExpr::Field(field) => {
            if !out.contains(field) {
                out.push(field.clone());
            }
        }
        FieldExpr::Compare { left, right, .. }
        | FieldExpr::Arithmetic { left, right, .. }
        | FieldExpr::And(left, right)
        | FieldExpr::Or(left, right) => {
            collect_field_expr(left, out);
            collect_field_expr(right, out);
        }
        FieldExpr::Regex { left, .. } => collect_field_expr(left, out),
        FieldExpr::Not(inner) | FieldExpr::Negate(inner) => collect_field_expr(inner, out),
    }
}

/// A field's value for a span in an answer: attributes as stored (any type), intrinsics as
/// Tempo renders them.
fn output_value(view: &TraceView<'_>, field: &Field, index: usize) -> Option<AttrValue> {
    let span = view.spans[index];
    let find = |attributes: &[(String, AttrValue)], key: &str| {
        attributes.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone())
    };
    match field {
        Field::Attribute { scope: AttrScope::Unscoped, name } => {
            find(&span.span.attributes, name).or_else(|| find(&span.resource.resource.attributes, name))
        }
        Field::Attribute { scope: AttrScope::Span, name } => find(&span.span.attributes, name),
        Field::Attribute { scope: AttrScope::Resource, name } => find(&span.resource.resource.attributes, name),
        Field::Attribute { scope: AttrScope::Instrumentation, name } => find(&span.scope.scope.attributes, name),
        // A span without a status message has none to show.
        Field::Intrinsic(Intrinsic::StatusMessage) if span.span.status.message.is_empty() => None,
        _ => view.field(field, index).to_attr(),
    }
}

fn output_key(field: &Field) -> String {
    match field {
        Field::Attribute { name, .. } => name.clone(),
        Field::Intrinsic(intrinsic) => intrinsic.name().to_string(),
    }
}

fn trace_match(view: &TraceView<'_>, sets: &[SpanSet], spans_per_spanset: usize, fields: &[Field]) -> TraceMatch {
    let trace = view.trace;
    let span_sets = sets
        .iter()
        .map(|set| SpanSetMatch {
            spans: set
                .spans
                .iter()
                .take(spans_per_spanset)
                .map(|&index| {
                    let span = view.spans[index].span;
                    SpanMatch {
                        span_id: span.span_id,
                        name: span.name.clone(),
                        start_ns: span.start_ns,
                        duration_ns: span.duration_ns(),
                        attributes: fields
                            .iter()
                            .filter_map(|field| {
                                output_value(view, field, index).map(|value| (output_key(field), value))
                            })
                            .collect(),
                    }
                })
                .collect(),
            matched: set.spans.len(),
            attributes: set.attributes.clone(),
        })
        .collect();
    TraceMatch {
        trace_id: trace.trace_id,
        root_service_name: trace.root_service_name.clone(),
        root_trace_name: trace.root_span_name.clone(),
        start_ns: trace.start_ns,
        duration_ns: trace.end_ns.saturating_sub(trace.start_ns),
        span_sets,
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy tag search

/// Tempo's legacy search (`tags=service.name="a" http.status_code=500`, `minDuration`,
/// `maxDuration`) as a TraceQL query: one spanset filter in which every tag must hold on the
/// same span (`status.code` and `error` name the status, `name` the span name, `root.name` and
/// `root.service.name` the trace's root; any other key is an attribute of the span or its
/// resource, equal to the value as a string or as the number or boolean it spells), and the
/// trace's duration within the bounds (Go durations).
pub fn query_from_tags(
    tags_logfmt: &str,
    min_duration: Option<&str>,
    max_duration: Option<&str>,
) -> Result<Query, ParseError> {
    let mut conditions = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, value, at) in logfmt(tags_logfmt)? {
        // A tag given twice cannot hold both values on one span: refused, as Tempo does.
        if !seen.insert(key.clone()) {
            return Err(error(at, format!("invalid tags: tag {key} has been set twice")));
        }
        conditions.push(tag_condition(&key, &value).map_err(|message| error(at, message))?);
    }
    for (parameter, text, op) in
        [("minDuration", min_duration, CompareOp::Ge), ("maxDuration", max_duration, CompareOp::Le)]
    {
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else { continue };
        let Some(ns) = parse_duration_ns(text) else {
            return Err(error(
                Position { line: 1, column: 1 },
                format!("invalid {parameter} {text:?}: expected a duration such as 100ms, 1.5s or 1h"),
            ));
        };
        conditions.push(compare(Field::Intrinsic(Intrinsic::TraceDuration), op, Static::Duration(ns)));
    }
    let expr = conditions.into_iter().reduce(|left, right| FieldExpr::And(Box::new(left), Box::new(right)));
    Ok(Query { root: SpansetExpr::Filter(Filter { expr }), hints: Vec::new() })
}

fn compare(field: Field, op: CompareOp, value: Static) -> FieldExpr {
    FieldExpr::Compare { op, left: Box::new(FieldExpr::Field(field)), right: Box::new(FieldExpr::Literal(value)) }
}

fn tag_condition(key: &str, value: &str) -> Result<FieldExpr, String> {
    use tripod_storage::traces::StatusCode;
    let status = |code| Ok(compare(Field::Intrinsic(Intrinsic::Status), CompareOp::Eq, Static::Status(code)));
    match key {
        "status.code" => match value {
            "unset" | "0" => status(StatusCode::Unset),
            "ok" | "1" => status(StatusCode::Ok),
            "error" | "2" => status(StatusCode::Error),
            other => Err(format!("invalid status.code {other:?}, expected unset, ok or error")),
        },
        "error" => match value {
            "true" => status(StatusCode::Error),
            "false" => {
                Ok(compare(Field::Intrinsic(Intrinsic::Status), CompareOp::Ne, Static::Status(StatusCode::Error)))
            }
            other => Err(format!("invalid error tag {other:?}, expected true or false")),
        },
        "name" => Ok(compare(Field::Intrinsic(Intrinsic::Name), CompareOp::Eq, Static::String(value.into()))),
        "root.name" => Ok(compare(Field::Intrinsic(Intrinsic::RootName), CompareOp::Eq, Static::String(value.into()))),
        "root.service.name" => {
            Ok(compare(Field::Intrinsic(Intrinsic::RootServiceName), CompareOp::Eq, Static::String(value.into())))
        }
        _ => {
            let field = Field::Attribute { scope: AttrScope::Unscoped, name: key.to_string() };
            let as_string = compare(field.clone(), CompareOp::Eq, Static::String(value.into()));
            let typed = if let Ok(n) = value.parse::<i64>() {
                Some(Static::Int(n))
            } else if let Ok(b) = value.parse::<bool>() {
                Some(Static::Bool(b))
            } else {
                value.parse::<f64>().ok().filter(|n| n.is_finite()).map(Static::Float)
            };
            Ok(match typed {
                Some(typed) => FieldExpr::Or(Box::new(as_string), Box::new(compare(field, CompareOp::Eq, typed))),
                None => as_string,
            })
        }
    }
}

/// `key=value key="quoted value"` pairs with where each key starts.
fn logfmt(text: &str) -> Result<Vec<(String, String, Position)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut pairs = Vec::new();
    let mut at = 0;
    let position = |at: usize| Position { line: 1, column: at + 1 };
    while at < chars.len() {
        if chars[at].is_whitespace() {
            at += 1;
            continue;
        }
        let key_at = at;
        let mut key = String::new();
        while at < chars.len() && chars[at] != '=' && !chars[at].is_whitespace() {
            key.push(chars[at]);
            at += 1;
        }
        if at >= chars.len() || chars[at] != '=' {
            return Err(error(position(key_at), format!("tag {key:?} has no value, expected key=value")));
        }
        if key.is_empty() {
            return Err(error(position(key_at), "expected a tag name before ="));
        }
        at += 1;
        let mut value = String::new();
        if at < chars.len() && chars[at] == '"' {
            let quote_at = at;
            at += 1;
            loop {
                let Some(&c) = chars.get(at) else {
                    return Err(error(position(quote_at), "unterminated quoted tag value"));
                };
                at += 1;
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(&escaped) = chars.get(at) else {
                            return Err(error(position(quote_at), "unterminated quoted tag value"));
                        };
                        at += 1;
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                    }
                    c => value.push(c),
                }
            }
        } else {
            while at < chars.len() && !chars[at].is_whitespace() {
                value.push(chars[at]);
                at += 1;
            }
        }
        pairs.push((key, value, position(key_at)));
    }
    Ok(pairs)
}
