//! The traces store through its seams: traces found by ID from the head, from blocks, after
//! restarts (WAL replay with and without blocks) and after compaction; a trace split across
//! blocks and the head comes back whole, duplicates once; searches checked against a
//! brute-force filter over the same spans (they never miss, and skip blocks); tag names and
//! values per scope; retention per tenant; damaged block files reported, unfinished ones
//! removed, and the WAL shrinking once cut spans are checkpointed away.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tripod_storage::traces::{
    AttrValue, AttributeScope, CompareOp, NsRange, Resource, ResourceSpans, Scope, ScopeSpans, ScopedTagNames,
    SearchResult, Span, SpanCondition, SpanEvent, SpanFilter, SpanKind, SpanLink, SpanStatus, SpansRecord, StatusCode,
    TagRef, TagScope, TagValue, Trace, TraceId, TracesAppendCounts, TracesAppender, TracesClock, TracesCodec,
    TracesError, TracesOptions, TracesQueryable,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

const SECOND: i64 = 1_000_000_000;
const MILLI: i64 = 1_000_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;
/// The injected clock starts here (2024-01-01T00:00:00Z).
const START: i64 = 1_704_067_200 * SECOND;
const TENANT: &str = "single-tenant";

/// A clock the test moves by hand.
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(START)))
    }

    fn advance(&self, by_ns: i64) {
        self.0.fetch_add(by_ns, Ordering::SeqCst);
    }

    fn traces_clock(&self) -> TracesClock {
        let now = self.0.clone();
        TracesClock::from_fn(move || now.load(Ordering::SeqCst))
    }
}

/// Small pages, segments and dictionaries so that tests cross many of them; nothing expires.
fn small(clock: &Clock) -> TracesOptions {
    TracesOptions {
        head_segment_bytes: 8 << 10,
        page_target_bytes: 4 << 10,
        // Several groups of traces a page.
        group_target_bytes: 1 << 10,
        max_values_per_key: 5,
        codec: TracesCodec::Zstd { level: 3 },
        retention_ns: None,
        checkpoint_after_cut_bytes: 1,
        compaction_min_files: 3,
        clock: clock.traces_clock(),
        ..TracesOptions::default()
    }
}

fn open(dir: &Path, traces: TracesOptions) -> Storage {
    let options = StorageOptions {
        wal: WalOptions { segment_size_bytes: 64 << 10, sync: SyncPolicy::Never },
        traces,
        ..StorageOptions::default()
    };
    Storage::open(dir, options).expect("storage opens")
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn id<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for byte in &mut out {
            *byte = (self.next() >> 24) as u8;
        }
        out[0] |= 1;
        out
    }
}

const SERVICES: [&str; 4] = ["api", "db", "cache", "web"];
const NAMES: [&str; 6] = ["GET /items", "POST /items", "SELECT", "cache.get", "render", "create_todo"];
const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

fn string(text: &str) -> AttrValue {
    AttrValue::String(text.to_string())
}

/// Attributes sorted by key, as the store returns them.
fn sorted(mut attributes: Vec<(String, AttrValue)>) -> Vec<(String, AttrValue)> {
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    attributes
}

fn resource(service: &str, host: u64) -> Resource {
    Resource {
        attributes: sorted(vec![
            ("service.name".into(), string(service)),
            ("host.name".into(), AttrValue::String(format!("host-{host}"))),
            ("deployment.environment".into(), string(if host.is_multiple_of(2) { "prod" } else { "staging" })),
        ]),
        dropped_attributes_count: 0,
    }
}

fn scope() -> Scope {
    Scope {
        name: "io.opentelemetry.http".into(),
        version: "1.2.3".into(),
        attributes: vec![("otel.library".into(), string("rust"))],
        dropped_attributes_count: 0,
    }
}

/// One trace: a root span and children, spread over services (one `ResourceSpans` each).
fn generate_trace(rng: &mut Rng, start_ns: i64) -> Vec<ResourceSpans> {
    let trace_id: TraceId = rng.id();
    let span_count = 1 + rng.below(10) as usize;
    let mut by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    let mut ids: Vec<[u8; 8]> = Vec::new();
    for index in 0..span_count {
        let span_id: [u8; 8] = rng.id();
        let parent = if index == 0 { None } else { Some(ids[rng.below(ids.len() as u64) as usize]) };
        ids.push(span_id);
        let service = if index == 0 { "api" } else { rng.pick(&SERVICES) };
        let begin = start_ns + index as i64 * MILLI + rng.below(1000) as i64;
        let duration = (1 + rng.below(300)) as i64 * MILLI;
        let code = [200, 200, 200, 404, 500][rng.below(5) as usize];
        let mut attributes = vec![
            ("http.method".to_string(), string(rng.pick(&METHODS))),
            ("http.status_code".to_string(), AttrValue::Int(code)),
            ("user.id".to_string(), AttrValue::String(format!("user-{}", rng.below(50)))),
            ("sampled".to_string(), AttrValue::Bool(rng.below(2) == 0)),
            ("ratio".to_string(), AttrValue::Double(rng.below(4) as f64 / 4.0)),
        ];
        if rng.below(4) == 0 {
            attributes.push(("tags".into(), AttrValue::Array(vec![string("a"), string(rng.pick(&["b", "c"]))])));
        }
        let events = if rng.below(3) == 0 {
            vec![SpanEvent {
                time_ns: begin + MILLI,
                name: "exception".into(),
                attributes: vec![("exception.type".into(), string("Timeout"))],
                dropped_attributes_count: 0,
            }]
        } else {
            Vec::new()
        };
        let links = if rng.below(5) == 0 {
            vec![SpanLink {
                trace_id: rng.id(),
                span_id: rng.id(),
                trace_state: String::new(),
                attributes: vec![("link.kind".into(), string("follows"))],
                dropped_attributes_count: 0,
                flags: 1,
            }]
        } else {
            Vec::new()
        };
        let span = Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            trace_state: String::new(),
            name: rng.pick(&NAMES).to_string(),
            kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal][rng.below(3) as usize],
            start_ns: begin,
            end_ns: begin + duration,
            status: if code == 500 {
                SpanStatus { code: StatusCode::Error, message: "internal error".into() }
            } else {
                SpanStatus { code: StatusCode::Unset, message: String::new() }
            },
            attributes: sorted(attributes),
            events,
            links,
            flags: 1,
            dropped_attributes_count: 0,
            dropped_events_count: 0,
            dropped_links_count: 0,
        };
        by_service.entry(service).or_default().push(span);
    }
    by_service
        .into_iter()
        .map(|(service, spans)| ResourceSpans {
            resource: resource(service, rng.below(3)),
            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            scope_spans: vec![ScopeSpans { scope: scope(), schema_url: String::new(), spans }],
        })
        .collect()
}

/// A span with its resource and scope, as compared.
type Flat = (Resource, String, Scope, String, Span);

/// The spans of a trace, in (start, span ID) order: what the store must return.
fn flatten(trace: &Trace) -> Vec<Flat> {
    let mut out: Vec<Flat> = trace
        .spans()
        .map(|(resource, scope, span)| {
            (
                resource.resource.clone(),
                resource.schema_url.clone(),
                scope.scope.clone(),
                scope.schema_url.clone(),
                span.clone(),
            )
        })
        .collect();
    out.sort_by_key(|flat| (flat.4.start_ns, flat.4.span_id));
    out
}

/// Everything appended, per trace (first copy of each span ID), as the store must return it.
#[derive(Default, Clone)]
struct Expected {
    traces: BTreeMap<TraceId, Vec<Flat>>,
    /// Appends so far: every other one goes through a record built beforehand.
    pushes: usize,
}

impl Expected {
    fn add(&mut self, batch: &[ResourceSpans]) {
        for resource in batch {
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    let spans = self.traces.entry(span.trace_id).or_default();
                    if spans.iter().any(|have| have.4.span_id == span.span_id) {
                        continue;
                    }
                    spans.push((
                        resource.resource.clone(),
                        resource.schema_url.clone(),
                        scope.scope.clone(),
                        scope.schema_url.clone(),
                        span.clone(),
                    ));
                    spans.sort_by_key(|flat| (flat.4.start_ns, flat.4.span_id));
                }
            }
        }
    }
}

fn push(storage: &Storage, tenant: &str, batch: &[ResourceSpans], expected: &mut Expected) -> TracesAppendCounts {
    expected.add(batch);
    expected.pushes += 1;
    match SpansRecord::from_batch(tenant, batch) {
        Some(record) if expected.pushes.is_multiple_of(2) => {
            storage.traces().append_record(record).expect("append a record")
        }
        _ => storage.traces().append(tenant, batch).expect("append"),
    }
}

/// Appends `count` generated traces in batches of a few traces, starting at `start_ns`.
fn span_count(expected: &Expected) -> usize {
    expected.traces.values().map(Vec::len).sum()
}

fn fill(storage: &Storage, rng: &mut Rng, count: usize, start_ns: i64, expected: &mut Expected) {
    let mut batch = Vec::new();
    for index in 0..count {
        batch.extend(generate_trace(rng, start_ns + index as i64 * 10 * MILLI));
        if batch.len() >= 6 {
            push(storage, TENANT, &batch, expected);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        push(storage, TENANT, &batch, expected);
    }
}

/// Checks that every expected trace comes back whole, and that an unknown one does not.
fn check_by_id(storage: &Storage, expected: &Expected, when: &str) {
    for (trace_id, spans) in &expected.traces {
        let trace = storage.traces().trace(TENANT, trace_id, None).expect("lookup").unwrap_or_else(|| {
            panic!("{when}: trace {trace_id:02x?} not found");
        });
        assert_eq!(trace.trace_id, *trace_id);
        assert_eq!(&flatten(&trace), spans, "{when}: trace {trace_id:02x?}");
    }
    assert!(storage.traces().trace(TENANT, &[0xab; 16], None).unwrap().is_none(), "{when}");
    assert!(storage.traces().trace("other-tenant", expected.traces.keys().next().unwrap(), None).unwrap().is_none());
}

#[test]
fn traces_are_found_by_id_from_the_head_blocks_restarts_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut rng = Rng(0x1234_5678);
    let mut expected = Expected::default();
    let second_block_spans;
    {
        let storage = open(dir.path(), small(&clock));
        fill(&storage, &mut rng, 60, START, &mut expected);
        check_by_id(&storage, &expected, "from the head");
        // A crash: the head comes back from the WAL alone.
    }
    {
        let storage = open(dir.path(), small(&clock));
        check_by_id(&storage, &expected, "after a restart with WAL replay");
        assert_eq!(storage.traces().flush_all().unwrap(), 1);
        check_by_id(&storage, &expected, "from a block");
        let before_second = span_count(&expected);
        fill(&storage, &mut rng, 40, START + HOUR / 2, &mut expected);
        storage.traces().flush_all().unwrap();
        second_block_spans = span_count(&expected) - before_second;
        fill(&storage, &mut rng, 40, START + HOUR / 2 + 10 * SECOND, &mut expected);
        check_by_id(&storage, &expected, "from two blocks and the head");
        // The checkpoint ends before the head's first segment (the one written since the
        // restart): the segments before it, whose spans are all in the first block, go; the
        // head's records stay where they are, not copied.
        let report = storage.maintenance().unwrap();
        assert!(report.wal_segments_removed > 0, "{report:?}");
    }
    {
        let storage = open(dir.path(), small(&clock));
        check_by_id(&storage, &expected, "after a restart with blocks");
        // The head's segment also holds the second block's spans: replay skips them, once each.
        assert_eq!(storage.traces().store_stats().replay_spans_already_flushed, second_block_spans as u64);
        storage.traces().flush_all().unwrap();
        assert_eq!(storage.traces().store_stats().blocks, 3);
        let report = storage.maintenance().unwrap();
        assert_eq!(report.traces_compactions, 1, "{report:?}");
        assert_eq!(storage.traces().store_stats().blocks, 1);
        check_by_id(&storage, &expected, "after compaction");
        storage.traces().verify_files().unwrap();
    }
    let storage = open(dir.path(), small(&clock));
    check_by_id(&storage, &expected, "after a restart with a compacted block");
    let stats = storage.traces().store_stats();
    assert_eq!(stats.block_traces as usize, expected.traces.len());
    assert_eq!(stats.head_spans, 0);
}

#[test]
fn a_trace_split_across_blocks_and_the_head_comes_back_whole_and_duplicates_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let mut rng = Rng(99);
    let mut expected = Expected::default();
    let mut whole = generate_trace(&mut rng, START);
    while whole.iter().map(|r| r.scope_spans[0].spans.len()).sum::<usize>() < 6 {
        whole = generate_trace(&mut rng, START);
    }
    // The trace's spans one by one, with blocks cut in between and each span sent twice.
    let mut parts = Vec::new();
    for resource in &whole {
        for span in &resource.scope_spans[0].spans {
            let mut part = resource.clone();
            part.scope_spans[0].spans = vec![span.clone()];
            parts.push(part);
        }
    }
    for (index, part) in parts.iter().enumerate() {
        let counts = push(&storage, TENANT, std::slice::from_ref(part), &mut expected);
        assert_eq!((counts.appended, counts.duplicates), (1, 0));
        // Sent again while in the head: counted as a duplicate, not stored.
        let again = push(&storage, TENANT, std::slice::from_ref(part), &mut expected);
        assert_eq!((again.appended, again.duplicates), (0, 1));
        if index % 2 == 1 {
            storage.traces().flush_all().unwrap();
            // Sent again once in a block: stored again, returned once.
            push(&storage, TENANT, std::slice::from_ref(part), &mut expected);
        }
    }
    // Twice in one batch (the first span is in a block by now, not in the head): stored once.
    let doubled = [parts[0].clone(), parts[0].clone()];
    let counts = storage.traces().append(TENANT, &doubled).unwrap();
    assert_eq!((counts.appended, counts.duplicates), (1, 1), "{counts:?}");
    // The same through a record: written again without the copy.
    storage.traces().flush_all().unwrap();
    let doubled = [parts[1].clone(), parts[1].clone()];
    let counts = storage.traces().append_record(SpansRecord::from_batch(TENANT, &doubled).unwrap()).unwrap();
    assert_eq!((counts.appended, counts.duplicates), (1, 1), "{counts:?}");
    assert!(storage.traces().store_stats().blocks >= 3);
    check_by_id(&storage, &expected, "split");
    let trace_id = *expected.traces.keys().next().unwrap();
    let trace = storage.traces().trace(TENANT, &trace_id, Some(NsRange::new(0, 1).unwrap())).unwrap().unwrap();
    assert_eq!(trace.span_count(), parts.len(), "a hint outside the trace changes nothing");
    let search = storage.traces().search(TENANT, &SpanFilter::default(), NsRange::all(), 10).unwrap();
    assert_eq!(search.traces.len(), 1);
    assert_eq!(search.traces[0].trace.span_count(), parts.len());
    assert_eq!(search.traces[0].matched_span_ids.len(), parts.len());
    assert_eq!(search.traces[0].root_service_name.as_deref(), Some("api"));

    // Spans with invalid IDs are refused and counted.
    let mut invalid = parts[0].clone();
    invalid.scope_spans[0].spans[0].span_id = [0; 8];
    let counts = storage.traces().append(TENANT, &[invalid]).unwrap();
    assert_eq!((counts.appended, counts.invalid), (0, 1));
    // Compaction merges the pieces into one trace of one block.
    storage.traces().flush_all().unwrap();
    while storage.traces().store_stats().blocks > 1 {
        assert!(storage.maintenance().unwrap().traces_compactions > 0);
    }
    check_by_id(&storage, &expected, "split, compacted");
}

/// The documented meaning of a condition, written out again for the brute-force check.
fn holds(condition: &SpanCondition, resource: &Resource, span: &Span) -> bool {
    let attribute = |attributes: &[(String, AttrValue)], key: &str, op: CompareOp, wanted: &AttrValue| {
        attributes.iter().any(|(name, value)| {
            let values: Vec<&AttrValue> = match value {
                AttrValue::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            name == key
                && values.into_iter().any(|value| match (value, wanted) {
                    (AttrValue::Int(a), AttrValue::Int(b)) => match op {
                        CompareOp::Eq => a == b,
                        CompareOp::Ne => a != b,
                        CompareOp::Lt => a < b,
                        CompareOp::Le => a <= b,
                        CompareOp::Gt => a > b,
                        CompareOp::Ge => a >= b,
                    },
                    (AttrValue::Int(a), AttrValue::Double(b)) => match op {
                        CompareOp::Eq => *a as f64 == *b,
                        CompareOp::Gt => *a as f64 > *b,
                        _ => unreachable!("not generated"),
                    },
                    (AttrValue::Double(a), AttrValue::Double(b)) => match op {
                        CompareOp::Eq => a == b,
                        CompareOp::Lt => a < b,
                        _ => unreachable!("not generated"),
                    },
                    (AttrValue::String(a), AttrValue::String(b)) => match op {
                        CompareOp::Eq => a == b,
                        CompareOp::Ne => a != b,
                        CompareOp::Lt => a.as_bytes() < b.as_bytes(),
                        CompareOp::Ge => a.as_bytes() >= b.as_bytes(),
                        _ => unreachable!("not generated"),
                    },
                    (AttrValue::Bool(a), AttrValue::Bool(b)) => match op {
                        CompareOp::Eq => a == b,
                        _ => unreachable!("not generated"),
                    },
                    _ => false,
                })
        })
    };
    match condition {
        SpanCondition::ServiceName(name) => {
            attribute(&resource.attributes, "service.name", CompareOp::Eq, &string(name))
        }
        SpanCondition::Name(name) => span.name == *name,
        SpanCondition::Status(code) => span.status.code == *code,
        SpanCondition::Kind(kind) => span.kind == *kind,
        SpanCondition::Duration { min_ns, max_ns } => {
            let duration = span.end_ns - span.start_ns;
            min_ns.is_none_or(|min| duration >= min) && max_ns.is_none_or(|max| duration <= max)
        }
        SpanCondition::Attribute { scope, key, op, value } => match scope {
            AttributeScope::Span => attribute(&span.attributes, key, *op, value),
            AttributeScope::Resource => attribute(&resource.attributes, key, *op, value),
            AttributeScope::Any => {
                attribute(&span.attributes, key, *op, value) || attribute(&resource.attributes, key, *op, value)
            }
        },
        SpanCondition::Exists { scope, key } => {
            let on = |attributes: &[(String, AttrValue)]| attributes.iter().any(|(name, _)| name == key);
            match scope {
                AttributeScope::Span => on(&span.attributes),
                AttributeScope::Resource => on(&resource.attributes),
                AttributeScope::Any => on(&span.attributes) || on(&resource.attributes),
            }
        }
    }
}

fn random_condition(rng: &mut Rng) -> SpanCondition {
    let attribute = |scope, key: &str, op, value| SpanCondition::Attribute { scope, key: key.into(), op, value };
    match rng.below(15) {
        0 => SpanCondition::ServiceName(rng.pick(&["api", "db", "cache", "web", "absent"]).into()),
        1 => SpanCondition::Name(rng.pick(&NAMES).into()),
        2 => SpanCondition::Status(if rng.below(2) == 0 { StatusCode::Error } else { StatusCode::Ok }),
        3 => SpanCondition::Kind([SpanKind::Server, SpanKind::Client, SpanKind::Consumer][rng.below(3) as usize]),
        4 => SpanCondition::Duration { min_ns: Some(rng.below(320) as i64 * MILLI), max_ns: None },
        5 => SpanCondition::Duration { min_ns: None, max_ns: Some(rng.below(40) as i64 * MILLI) },
        6 => attribute(
            AttributeScope::Span,
            "http.status_code",
            CompareOp::Eq,
            AttrValue::Int([200, 404, 500, 503][rng.below(4) as usize]),
        ),
        7 => attribute(
            AttributeScope::Span,
            "http.status_code",
            [CompareOp::Gt, CompareOp::Le][rng.below(2) as usize],
            AttrValue::Int(400),
        ),
        8 => attribute(AttributeScope::Span, "http.status_code", CompareOp::Eq, AttrValue::Double(500.0)),
        9 => attribute(
            [AttributeScope::Span, AttributeScope::Any][rng.below(2) as usize],
            "user.id",
            CompareOp::Eq,
            AttrValue::String(format!("user-{}", rng.below(60))),
        ),
        10 => attribute(
            AttributeScope::Resource,
            "deployment.environment",
            [CompareOp::Eq, CompareOp::Ne][rng.below(2) as usize],
            string("prod"),
        ),
        11 => attribute(AttributeScope::Any, "tags", CompareOp::Eq, string(rng.pick(&["b", "c", "d"]))),
        12 => attribute(AttributeScope::Span, "ratio", CompareOp::Lt, AttrValue::Double(0.3)),
        // Strings ordered by bytes, and `Ne`, which needs the attribute present.
        13 => attribute(
            [AttributeScope::Span, AttributeScope::Any][rng.below(2) as usize],
            "user.id",
            [CompareOp::Lt, CompareOp::Ge, CompareOp::Ne][rng.below(3) as usize],
            AttrValue::String(format!("user-{}", rng.below(60))),
        ),
        _ => SpanCondition::Exists {
            scope: [AttributeScope::Span, AttributeScope::Resource][rng.below(2) as usize],
            key: rng.pick(&["tags", "host.name", "nope"]).into(),
        },
    }
}

/// The traces with a span that satisfies every condition and overlaps the range.
fn brute_force(expected: &Expected, conditions: &[SpanCondition], range: NsRange) -> BTreeSet<TraceId> {
    let mut out = BTreeSet::new();
    for (trace_id, spans) in &expected.traces {
        let matches = spans.iter().any(|(resource, _, _, _, span)| {
            range.overlaps(span.start_ns.min(span.end_ns), span.start_ns.max(span.end_ns))
                && conditions.iter().all(|condition| holds(condition, resource, span))
        });
        if matches {
            out.insert(*trace_id);
        }
    }
    out
}

fn check_searches(storage: &Storage, expected: &Expected, rng: &mut Rng, rounds: usize, when: &str) {
    for round in 0..rounds {
        let conditions: Vec<SpanCondition> = (0..1 + rng.below(3)).map(|_| random_condition(rng)).collect();
        let range = if rng.below(3) == 0 {
            NsRange::all()
        } else {
            let start = START + rng.below(3_600) as i64 * SECOND;
            NsRange::new(start, start + rng.below(1_200) as i64 * SECOND).unwrap()
        };
        let filter = SpanFilter { conditions: conditions.clone() };
        let want = brute_force(expected, &conditions, range);
        let all = storage.traces().search(TENANT, &filter, range, 100_000).unwrap();
        let got: BTreeSet<TraceId> = all.traces.iter().map(|trace| trace.trace_id).collect();
        assert_eq!(got, want, "{when}, round {round}: {conditions:?} in {range:?}");
        assert!(all.complete);
        for trace in &all.traces {
            let spans = &expected.traces[&trace.trace_id];
            assert_eq!(flatten(&trace.trace), *spans);
            let matched: Vec<[u8; 8]> = spans
                .iter()
                .filter(|(resource, _, _, _, span)| {
                    range.overlaps(span.start_ns.min(span.end_ns), span.start_ns.max(span.end_ns))
                        && conditions.iter().all(|condition| holds(condition, resource, span))
                })
                .map(|flat| flat.4.span_id)
                .collect();
            assert_eq!(trace.matched_span_ids, matched);
        }
        assert!(all.traces.windows(2).all(|pair| pair[0].start_ns >= pair[1].start_ns));
        let limited: SearchResult = storage.traces().search(TENANT, &filter, range, 3).unwrap();
        assert_eq!(limited.traces.len(), want.len().min(3), "{when}, round {round}");
        assert_eq!(limited.complete, want.len() <= 3);
        assert!(limited.traces.iter().all(|trace| want.contains(&trace.trace_id)));
    }
}

#[test]
fn searches_never_miss_a_match_in_the_head_blocks_or_both() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut rng = Rng(0xfeed);
    let mut expected = Expected::default();
    let storage = open(dir.path(), small(&clock));
    fill(&storage, &mut rng, 150, START, &mut expected);
    let mut queries = Rng(7);
    check_searches(&storage, &expected, &mut queries, 80, "head");
    storage.traces().flush_all().unwrap();
    check_searches(&storage, &expected, &mut queries, 80, "one block");
    fill(&storage, &mut rng, 150, START + HOUR / 3, &mut expected);
    storage.traces().flush_all().unwrap();
    fill(&storage, &mut rng, 150, START + 2 * HOUR / 3, &mut expected);
    check_searches(&storage, &expected, &mut queries, 80, "blocks and head");
    drop(storage);
    let storage = open(dir.path(), small(&clock));
    check_searches(&storage, &expected, &mut queries, 60, "after a restart");
}

#[test]
fn searches_skip_blocks_and_pages_that_cannot_match() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let mut rng = Rng(5);
    let mut expected = Expected::default();
    // One block per service: every trace of a block has only that service's spans.
    for (index, service) in ["alpha", "beta", "gamma", "delta"].iter().enumerate() {
        let mut batch = Vec::new();
        for n in 0..30 {
            let mut trace = generate_trace(&mut rng, START + (index * 100 + n) as i64 * SECOND);
            for resource in &mut trace {
                resource.resource = resource_with(service, &resource.resource);
            }
            batch.extend(trace);
        }
        push(&storage, TENANT, &batch, &mut expected);
        storage.traces().flush_all().unwrap();
    }
    let before = storage.traces().store_stats();
    let filter = SpanFilter { conditions: vec![SpanCondition::ServiceName("gamma".into())] };
    let result = storage.traces().search(TENANT, &filter, NsRange::all(), 1000).unwrap();
    assert_eq!(result.traces.len(), 30);
    assert_eq!((result.stats.blocks_total, result.stats.blocks_skipped), (4, 3), "{:?}", result.stats);
    let after = storage.traces().store_stats();
    assert_eq!(after.blocks_skipped - before.blocks_skipped, 3);
    assert_eq!(after.blocks_searched - before.blocks_searched, 1);

    // A value with more distinct values than the dictionaries keep: the page blooms decide.
    let user = SpanFilter {
        conditions: vec![SpanCondition::Attribute {
            scope: AttributeScope::Span,
            key: "user.id".into(),
            op: CompareOp::Eq,
            value: string("user-nobody"),
        }],
    };
    let result = storage.traces().search(TENANT, &user, NsRange::all(), 10).unwrap();
    assert!(result.traces.is_empty());
    assert!(
        result.stats.pages_skipped > 0 && result.stats.pages_read * 4 < result.stats.pages_skipped,
        "{:?}",
        result.stats
    );

    // Outside every block's time: nothing is read at all.
    let later = NsRange::new(START + DAY, START + 2 * DAY).unwrap();
    let result = storage.traces().search(TENANT, &SpanFilter::default(), later, 10).unwrap();
    assert!(result.traces.is_empty() && result.complete);
    assert_eq!(result.stats.blocks_total, 0);
}

fn resource_with(service: &str, base: &Resource) -> Resource {
    let mut resource = base.clone();
    for (key, value) in &mut resource.attributes {
        if key == "service.name" {
            *value = string(service);
        }
    }
    resource
}

fn names(storage: &Storage, scope: Option<TagScope>) -> Vec<ScopedTagNames> {
    storage.traces().tag_names(TENANT, scope, NsRange::all()).unwrap()
}

fn values(storage: &Storage, scope: Option<TagScope>, name: &str) -> Vec<TagValue> {
    let tag = TagRef { scope, name: name.into() };
    storage.traces().tag_values(TENANT, &tag, NsRange::all(), 100).unwrap()
}

#[test]
fn tag_names_and_values_per_scope() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut options = small(&clock);
    options.max_values_per_key = 100;
    let storage = open(dir.path(), options);
    let mut rng = Rng(11);
    let mut expected = Expected::default();
    fill(&storage, &mut rng, 40, START, &mut expected);
    for flushed in [false, true] {
        let all = names(&storage, None);
        let scopes: Vec<TagScope> = all.iter().map(|scoped| scoped.scope).collect();
        assert_eq!(
            scopes,
            [
                TagScope::Resource,
                TagScope::Span,
                TagScope::Event,
                TagScope::Link,
                TagScope::Instrumentation,
                TagScope::Intrinsic
            ]
        );
        assert_eq!(all[0].names, ["deployment.environment", "host.name", "service.name"], "flushed: {flushed}");
        assert_eq!(all[1].names, ["http.method", "http.status_code", "ratio", "sampled", "tags", "user.id"]);
        assert_eq!(all[2].names, ["exception.type"]);
        assert_eq!(all[3].names, ["link.kind"]);
        assert_eq!(all[4].names, ["otel.library"]);
        for intrinsic in
            ["duration", "kind", "name", "status", "rootName", "rootServiceName", "statusMessage", "event:name"]
        {
            assert!(all[5].names.iter().any(|name| name == intrinsic), "{intrinsic} in {:?}", all[5].names);
        }
        assert_eq!(names(&storage, Some(TagScope::Span)), all[1..2]);

        assert_eq!(
            values(&storage, Some(TagScope::Resource), "service.name"),
            ["api", "cache", "db", "web"].map(string).map(|v| match v {
                AttrValue::String(s) => TagValue::String(s),
                _ => unreachable!(),
            })
        );
        assert_eq!(
            values(&storage, Some(TagScope::Span), "http.status_code"),
            [TagValue::Int(200), TagValue::Int(404), TagValue::Int(500)]
        );
        assert_eq!(values(&storage, Some(TagScope::Span), "sampled"), [TagValue::Bool(false), TagValue::Bool(true)]);
        assert_eq!(values(&storage, Some(TagScope::Span), "ratio").len(), 4);
        assert_eq!(
            values(&storage, Some(TagScope::Intrinsic), "status"),
            [TagValue::Keyword("error".into()), TagValue::Keyword("unset".into())]
        );
        assert_eq!(
            values(&storage, Some(TagScope::Intrinsic), "kind"),
            ["internal", "server", "client"].map(|k| TagValue::Keyword(k.into())).into_iter().fold(
                Vec::new(),
                |mut v, k| {
                    v.push(k);
                    v.sort_by(|a, b| a.total_cmp(b));
                    v
                }
            )
        );
        assert_eq!(values(&storage, Some(TagScope::Intrinsic), "rootServiceName"), [TagValue::String("api".into())]);
        assert_eq!(values(&storage, Some(TagScope::Intrinsic), "name").len(), NAMES.len());
        // Unscoped: span and resource attributes of that name.
        assert_eq!(values(&storage, None, "service.name").len(), 4);
        assert_eq!(values(&storage, Some(TagScope::Event), "exception.type"), [TagValue::String("Timeout".into())]);
        let tag = TagRef { scope: Some(TagScope::Span), name: "user.id".into() };
        assert_eq!(storage.traces().tag_values(TENANT, &tag, NsRange::all(), 7).unwrap().len(), 7);
        assert!(values(&storage, Some(TagScope::Span), "nope").is_empty());
        assert!(storage.traces().tag_names("other-tenant", None, NsRange::all()).unwrap().is_empty());
        let later = NsRange::new(START + DAY, START + 2 * DAY).unwrap();
        assert!(storage.traces().tag_names(TENANT, None, later).unwrap().is_empty());
        storage.traces().flush_all().unwrap();
    }
}

#[test]
fn retention_deletes_whole_blocks_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut options = small(&clock);
    options.retention_ns = Some(14 * DAY);
    options.tenant_retention_ns.insert("short".into(), DAY);
    let storage = open(dir.path(), options);
    let mut rng = Rng(3);
    let mut expected = Expected::default();
    let mut short = Expected::default();
    let batch: Vec<ResourceSpans> = (0..5).flat_map(|i| generate_trace(&mut rng, START - HOUR + i * SECOND)).collect();
    push(&storage, TENANT, &batch, &mut expected);
    push(&storage, "short", &batch, &mut short);
    storage.traces().flush_all().unwrap();
    assert_eq!(storage.traces().store_stats().blocks, 2);
    let trace_id = *expected.traces.keys().next().unwrap();

    clock.advance(2 * DAY);
    let report = storage.maintenance().unwrap();
    assert_eq!(report.traces_blocks_deleted, 1, "{report:?}");
    assert!(storage.traces().trace("short", &trace_id, None).unwrap().is_none());
    assert!(storage.traces().trace(TENANT, &trace_id, None).unwrap().is_some());
    assert!(storage.traces().tag_names("short", None, NsRange::all()).unwrap().is_empty());

    clock.advance(13 * DAY);
    assert_eq!(storage.maintenance().unwrap().traces_blocks_deleted, 1);
    assert!(storage.traces().trace(TENANT, &trace_id, None).unwrap().is_none());
    let stats = storage.traces().store_stats();
    assert_eq!((stats.blocks, stats.blocks_deleted_by_retention), (0, 2));
    assert!(storage.traces().file_paths().is_empty());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn wal_bytes(dir: &Path) -> u64 {
    walk(&dir.join("wal")).iter().map(|path| fs::metadata(path).map(|m| m.len()).unwrap_or(0)).sum()
}

#[test]
fn the_wal_shrinks_after_a_cut_and_checkpoint_and_replay_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut rng = Rng(17);
    let mut expected = Expected::default();
    {
        let mut options = small(&clock);
        options.max_head_age_ns = HOUR;
        let storage = open(dir.path(), options);
        fill(&storage, &mut rng, 200, START, &mut expected);
        let before = wal_bytes(dir.path());
        // Not old enough yet: nothing is cut.
        assert_eq!(storage.maintenance().unwrap().traces_blocks_cut, 0);
        clock.advance(2 * HOUR);
        let report = storage.maintenance().unwrap();
        assert_eq!(report.traces_blocks_cut, 1);
        assert!(report.wal_segments_removed > 0, "{report:?}");
        let after = wal_bytes(dir.path());
        assert!(after * 10 < before, "wal {before} -> {after} bytes");
        // Appends after the checkpoint are replayed as well.
        fill(&storage, &mut rng, 3, START + HOUR, &mut expected);
    }
    let storage = open(dir.path(), small(&clock));
    check_by_id(&storage, &expected, "after the checkpoint");
    let stats = storage.traces().store_stats();
    assert_eq!(stats.replay_spans_already_flushed, 0);
    assert!(stats.head_spans > 0 && stats.head_spans < 40, "{stats:?}");
}

#[test]
fn replay_skips_records_already_in_blocks_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut rng = Rng(23);
    let mut expected = Expected::default();
    let in_block;
    {
        let storage = open(dir.path(), small(&clock));
        fill(&storage, &mut rng, 20, START, &mut expected);
        storage.traces().flush_all().unwrap();
        in_block = storage.traces().store_stats().block_spans;
        fill(&storage, &mut rng, 2, START + HOUR, &mut expected);
        // A crash: no checkpoint, the WAL holds the cut spans as well.
    }
    let storage = open(dir.path(), small(&clock));
    check_by_id(&storage, &expected, "after replay");
    let stats = storage.traces().store_stats();
    assert_eq!(stats.replay_spans_already_flushed, in_block);
    assert_eq!(stats.head_spans + stats.block_spans, expected.traces.values().map(Vec::len).sum::<usize>() as u64);
}

/// A store with one block file (and nothing left in the WAL); returns its path.
fn one_block(dir: &Path, clock: &Clock, expected: &mut Expected) -> PathBuf {
    let storage = open(dir, small(clock));
    fill(&storage, &mut Rng(31), 30, START, expected);
    storage.traces().flush_all().unwrap();
    storage.maintenance().unwrap();
    let paths = storage.traces().file_paths();
    assert_eq!(paths.len(), 1);
    paths[0].clone()
}

#[test]
fn damaged_block_files_are_reported_never_used() {
    // A flipped byte in the meta, the footer, the trace bloom, a truncation, or a file of
    // another format version: moved aside.
    for damage in ["meta", "footer", "bloom", "truncate", "version"] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let mut expected = Expected::default();
        let path = one_block(dir.path(), &clock, &mut expected);
        let mut bytes = fs::read(&path).unwrap();
        let len = bytes.len();
        match damage {
            "meta" => bytes[len - 40] ^= 0x01,
            "footer" => bytes[len - 10] ^= 0x01,
            "bloom" => {
                // The trace bloom ends (with its checksum) where the meta starts.
                let meta_offset = u64::from_le_bytes(bytes[len - 28..len - 20].try_into().unwrap()) as usize;
                bytes[meta_offset - 10] ^= 0x01;
            }
            "version" => bytes[4] = 1,
            _ => bytes.truncate(len - 7),
        }
        fs::write(&path, &bytes).unwrap();
        let storage = open(dir.path(), small(&clock));
        assert_eq!(storage.traces().store_stats().corrupt_files, 1, "{damage}");
        assert_eq!(storage.traces().store_stats().blocks, 0, "{damage}");
        assert!(path.with_extension("ttrc.corrupt").exists(), "{damage}");
        let trace_id = expected.traces.keys().next().unwrap();
        assert!(storage.traces().trace(TENANT, trace_id, None).unwrap().is_none(), "{damage}");
    }

    // A flipped byte in the first page's directory, its header frame or one of its groups:
    // reads that need it fail with an error naming the file, the other reads succeed.
    for damage in ["directory", "header", "group"] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let mut expected = Expected::default();
        let path = one_block(dir.path(), &clock, &mut expected);
        let mut bytes = fs::read(&path).unwrap();
        let frames = first_page_frames(&bytes);
        assert!(frames.len() >= 3, "the first page has {} frames", frames.len());
        match damage {
            "directory" => bytes[9] ^= 0x01,
            "header" => bytes[frames[0].0 + frames[0].1 / 2] ^= 0x01,
            _ => bytes[frames[2].0 + frames[2].1 / 2] ^= 0x01,
        }
        fs::write(&path, &bytes).unwrap();
        let storage = open(dir.path(), small(&clock));
        assert_eq!(storage.traces().store_stats().corrupt_files, 0, "{damage}");
        let (mut errors, mut found) = (0, 0);
        for (trace_id, spans) in &expected.traces {
            match storage.traces().trace(TENANT, trace_id, None) {
                Err(TracesError::Corrupt { file, problem }) => {
                    assert!(file.ends_with(".ttrc"), "{file}");
                    assert!(problem.contains("page 0"), "{problem}");
                    errors += 1;
                }
                Ok(Some(trace)) => {
                    assert_eq!(flatten(&trace), *spans, "{damage}");
                    found += 1;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert!(errors > 0 && found > 0, "{damage}: {errors} errors, {found} found");
        let search = storage.traces().search(TENANT, &SpanFilter::default(), NsRange::all(), 1000);
        assert!(matches!(search, Err(TracesError::Corrupt { .. })), "{damage}: {search:?}");
        assert!(storage.traces().verify_files().is_err(), "{damage}");
    }
}

/// Where the first page's frames sit in a block file: (offset, stored length) of each, the
/// page header first (see docs/format/trace-blocks.md).
fn first_page_frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let varint = |position: &mut usize| -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = bytes[*position];
            *position += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    };
    let mut position = 8;
    let count = varint(&mut position);
    let mut lengths = Vec::new();
    for _ in 0..count {
        position += 1;
        lengths.push(varint(&mut position));
        varint(&mut position);
        position += 4;
    }
    position += 4;
    let mut frames = Vec::new();
    for length in lengths {
        frames.push((position, length));
        position += length;
    }
    frames
}

#[test]
fn an_unfinished_cut_is_cleaned_up_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut expected = Expected::default();
    let path = one_block(dir.path(), &clock, &mut expected);
    // A crash while writing a block leaves a temporary file behind.
    let temp = path.with_file_name("0000000000000ffffffffffffffff.ttrc.tmp");
    fs::write(&temp, b"TTRC\x01\0\0\0partial").unwrap();
    let storage = open(dir.path(), small(&clock));
    assert!(!temp.exists());
    assert_eq!(storage.traces().store_stats().corrupt_files, 0);
    check_by_id(&storage, &expected, "next to an unfinished file");
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let mut rng = Rng(41);
    let batch = generate_trace(&mut rng, START);
    let trace_id = batch[0].scope_spans[0].spans[0].trace_id;
    storage.traces().append("team-a", &batch).unwrap();
    assert!(storage.traces().trace("team-a", &trace_id, None).unwrap().is_some());
    assert!(storage.traces().trace("team-b", &trace_id, None).unwrap().is_none());
    storage.traces().flush_all().unwrap();
    assert!(storage.traces().trace("team-b", &trace_id, None).unwrap().is_none());
    let found = storage.traces().search("team-b", &SpanFilter::default(), NsRange::all(), 10).unwrap();
    assert!(found.traces.is_empty() && found.complete);
    // The same spans for another tenant are not duplicates.
    let counts = storage.traces().append("team-b", &batch).unwrap();
    assert_eq!(counts.duplicates, 0);
    assert!(counts.appended > 0);
}
