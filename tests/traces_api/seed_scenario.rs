//! The seed scenario's four TraceQL queries over OTLP traffic generated from a seed: the
//! todo backend's traces (`POST /api/todos` > `create_todo` > validation, todo_creation,
//! metrics_update, and response_send), some slow, some failing; a frontend calling it (its spans
//! exported apart from the backend's, as two services export them); a shop; a worker with its
//! own `create_todo`; traces whose root span never arrived; and spans of exactly 100 ms. Every
//! answer is compared with what the test works out from the spans it sent: the traces, their
//! order, root names, start and duration, each spanset's `matched` count and the spans and
//! attributes returned, as Grafana sends the query from the TraceQL tab, from the Search tab
//! and over a narrower time range; with the spans in the head, then in blocks. The legacy tag
//! search finds the same traces. A trace is found the moment its export returns.

use crate::support::*;

/// xorshift64*: the scenario is the same on every run.
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

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

const BACKEND: &str = "tp2devops-backend";

/// Builds one trace's spans in order; IDs are numbered within the trace.
struct TraceBuilder {
    number: u64,
    spans: Vec<TestSpan>,
}

impl TraceBuilder {
    fn new(number: u64) -> TraceBuilder {
        TraceBuilder { number, spans: Vec::new() }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &str,
        parent: Option<[u8; 8]>,
        name: &str,
        kind: i32,
        start_ns: u64,
        duration_ns: u64,
        status: i32,
        attributes: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    ) -> [u8; 8] {
        let id = span_id(self.number, self.spans.len() as u8 + 1);
        self.spans.push(TestSpan {
            service: service.into(),
            span_id: id,
            parent,
            name: name.into(),
            kind,
            start_ns,
            end_ns: start_ns + duration_ns,
            status,
            attributes,
            events: vec![],
            links: vec![],
        });
        id
    }

    fn build(self) -> TestTrace {
        TestTrace { id: trace_id(self.number), spans: self.spans }
    }
}

/// The todo backend's spans under `parent` (the frontend's client span, or none for a root),
/// from `t0`; `extra_ns` lengthens todo_creation (and what encloses it); `failing` fails it.
fn todo_backend(
    trace: &mut TraceBuilder,
    service: &str,
    parent: Option<[u8; 8]>,
    t0: u64,
    extra_ns: u64,
    failing: bool,
    todo_id: i64,
) {
    let status = if failing { ERROR } else { UNSET };
    let root = trace.span(
        service,
        parent,
        "POST /api/todos",
        2,
        t0,
        15 * MS + extra_ns,
        status,
        vec![
            string("http.method", "POST"),
            string("http.route", "/api/todos"),
            int("http.status_code", if failing { 500 } else { 201 }),
        ],
    );
    let create = trace.span(
        service,
        Some(root),
        "create_todo",
        1,
        t0 + MS,
        12 * MS + extra_ns,
        status,
        vec![int("todo.id", todo_id)],
    );
    trace.span(service, Some(create), "validation", 1, t0 + MS, MS, UNSET, vec![]);
    trace.span(
        service,
        Some(create),
        "todo_creation",
        1,
        t0 + 2 * MS,
        8 * MS + extra_ns,
        status,
        vec![string("db.system", "postgresql")],
    );
    trace.span(service, Some(create), "metrics_update", 1, t0 + 10 * MS + extra_ns, 2 * MS, UNSET, vec![]);
    trace.span(service, Some(root), "response_send", 1, t0 + 13 * MS + extra_ns, MS, OK, vec![]);
}

/// How much longer a slow todo_creation takes: it lasts exactly 100 ms, 100 ms and 1 ns, or well
/// over.
const SLOW_EXTRA_NS: [u64; 4] = [92 * MS, 92 * MS + 1, 150 * MS, 400 * MS];

/// The scenario's traces, each sent as one export or, for the frontend's, two (one per
/// service). Trace `k` starts about `15 s * k` after `base_ns`.
fn scenario(base_ns: u64) -> (Vec<TestTrace>, Vec<Vec<TestTrace>>) {
    let mut rng = Rng(0x7e57_5eed);
    let mut traces = Vec::new();
    let mut exports = Vec::new();
    for number in 1..=64u64 {
        let t0 = base_ns + number * 15 * SECOND + rng.below(1000) * MS;
        let mut trace = TraceBuilder::new(number);
        let extra = if rng.one_in(4) { SLOW_EXTRA_NS[rng.below(4) as usize] } else { 0 };
        let failing = rng.one_in(5);
        match number % 8 {
            // The todo backend alone.
            0..=3 => todo_backend(&mut trace, BACKEND, None, t0, extra, failing, number as i64),
            // The frontend calling it, each service exporting its own spans.
            4 => {
                let root = trace.span(
                    "tp2devops-frontend",
                    None,
                    "GET /todos",
                    2,
                    t0,
                    30 * MS + extra,
                    UNSET,
                    vec![string("http.method", "GET")],
                );
                let call = trace.span(
                    "tp2devops-frontend",
                    Some(root),
                    "HTTP POST",
                    3,
                    t0 + 5 * MS,
                    20 * MS + extra,
                    UNSET,
                    vec![],
                );
                todo_backend(&mut trace, BACKEND, Some(call), t0 + 6 * MS, extra, failing, number as i64);
            }
            // A shop: frontend, backend, database; slow queries and failed checkouts.
            5 | 6 => {
                let db_ns = if extra > 0 { 250 * MS } else { 4 * MS };
                let root = trace.span(
                    "shop-frontend",
                    None,
                    "GET /checkout",
                    2,
                    t0,
                    db_ns + 20 * MS,
                    UNSET,
                    vec![string("http.method", "GET")],
                );
                let checkout = trace.span(
                    "shop-backend",
                    Some(root),
                    "checkout",
                    2,
                    t0 + 2 * MS,
                    db_ns + 15 * MS,
                    if failing { ERROR } else { OK },
                    vec![int("http.status_code", if failing { 502 } else { 200 })],
                );
                trace.span("postgres", Some(checkout), "SELECT orders", 3, t0 + 4 * MS, db_ns, UNSET, vec![]);
            }
            // A worker with a create_todo of its own, or a backend trace whose root never came.
            _ => {
                if number % 16 == 7 {
                    let root = trace.span("todo-worker", None, "process_queue", 5, t0, 40 * MS + extra, UNSET, vec![]);
                    trace.span(
                        "todo-worker",
                        Some(root),
                        "create_todo",
                        1,
                        t0 + 3 * MS,
                        30 * MS + extra,
                        if failing { ERROR } else { UNSET },
                        vec![],
                    );
                } else {
                    let missing_root = span_id(number, 200);
                    trace.span(BACKEND, Some(missing_root), "create_todo", 1, t0, 12 * MS + extra, UNSET, vec![]);
                    trace.span(BACKEND, Some(missing_root), "response_send", 1, t0 + 13 * MS, MS, ERROR, vec![]);
                }
            }
        }
        let trace = trace.build();
        if number % 8 == 4 {
            for service in ["tp2devops-frontend", BACKEND] {
                let spans = trace.spans.iter().filter(|span| span.service == service).cloned().collect();
                exports.push(vec![TestTrace { id: trace.id, spans }]);
            }
        } else {
            exports.push(vec![trace.clone()]);
        }
        traces.push(trace);
    }
    // Exactly at the 100 ms boundary, alone in their traces.
    for (number, duration_ns) in [(90, 100 * MS), (91, 100 * MS + 1)] {
        let mut trace = TraceBuilder::new(number);
        trace.span(
            "shop-backend",
            None,
            "GET /health",
            2,
            base_ns + (number - 20) * 15 * SECOND,
            duration_ns,
            OK,
            vec![],
        );
        let trace = trace.build();
        exports.push(vec![trace.clone()]);
        traces.push(trace);
    }
    (traces, exports)
}

/// One of the seed scenario's queries with the spans it matches, worked out here.
struct SeedQuery {
    traceql: &'static str,
    matches: fn(&TestSpan) -> bool,
    /// The attributes Tempo shows on a matching span.
    attributes: fn(&TestSpan) -> Vec<KeyValueJson>,
}

fn seed_queries() -> [SeedQuery; 4] {
    [
        SeedQuery {
            traceql: r#"{ resource.service.name = "tp2devops-backend" }"#,
            matches: |span| span.service == BACKEND,
            attributes: |_| {
                vec![KeyValueJson { key: "service.name".into(), value: AnyValueJson::StringValue(BACKEND.into()) }]
            },
        },
        SeedQuery {
            traceql: "{ duration > 100ms }",
            matches: |span| span.duration_ns() > 100 * MS,
            attributes: |_| vec![],
        },
        SeedQuery {
            traceql: r#"{ name = "create_todo" }"#,
            matches: |span| span.name == "create_todo",
            attributes: |_| vec![],
        },
        SeedQuery {
            traceql: "{ status = error }",
            matches: |span| span.status == ERROR,
            attributes: |_| {
                vec![KeyValueJson { key: "status".into(), value: AnyValueJson::StringValue("error".into()) }]
            },
        },
    ]
}

/// The traces with a span that `matches` and overlaps `[start_ns, end_ns]`, most recent first,
/// each with those spans.
fn expected(
    traces: &[TestTrace],
    matches: fn(&TestSpan) -> bool,
    range: (u64, u64),
) -> Vec<(&TestTrace, Vec<&TestSpan>)> {
    let mut out: Vec<(&TestTrace, Vec<&TestSpan>)> = traces
        .iter()
        .map(|trace| {
            let spans = trace
                .spans
                .iter()
                .filter(|span| matches(span) && span.start_ns <= range.1 && span.end_ns >= range.0)
                .collect::<Vec<_>>();
            (trace, spans)
        })
        .filter(|(_, spans)| !spans.is_empty())
        .collect();
    out.sort_by(|a, b| b.0.start_ns().cmp(&a.0.start_ns()).then(a.0.id.cmp(&b.0.id)));
    out
}

/// Checks an answer against the expected traces, field by field.
fn check(
    what: &str,
    answer: &SearchResponse,
    expected: &[(&TestTrace, Vec<&TestSpan>)],
    query: &SeedQuery,
    spss: usize,
) {
    let got: Vec<&str> = answer.traces.iter().map(|trace| trace.trace_id.as_str()).collect();
    let wanted: Vec<String> = expected.iter().map(|(trace, _)| trace.hex_id()).collect();
    assert_eq!(got, wanted, "{what}: traces");
    for (found, (trace, spans)) in answer.traces.iter().zip(expected) {
        let context = format!("{what}: trace {}", trace.hex_id());
        let (root_service, root_name) = match trace.root() {
            Some(root) => (root.service.as_str(), root.name.as_str()),
            None => ("<root span not yet received>", ""),
        };
        assert_eq!(found.root_service_name, root_service, "{context}");
        assert_eq!(found.root_trace_name, root_name, "{context}");
        assert_eq!(found.start_time_unix_nano, trace.start_ns().to_string(), "{context}");
        assert_eq!(u64::from(found.duration_ms), (trace.end_ns() - trace.start_ns()) / MS, "{context}");
        assert_eq!(found.span_sets.len(), 1, "{context}");
        let set = &found.span_sets[0];
        assert_eq!(set.matched as usize, spans.len(), "{context}: matched");
        assert_eq!(set.spans.len(), spans.len().min(spss), "{context}: spans returned");
        assert!(set.attributes.is_empty(), "{context}");
        for returned in &set.spans {
            let span = spans
                .iter()
                .find(|span| hex(&span.span_id) == returned.span_id)
                .unwrap_or_else(|| panic!("{context}: span {} does not match", returned.span_id));
            assert_eq!(returned.name, span.name, "{context}");
            assert_eq!(returned.start_time_unix_nano, span.start_ns.to_string(), "{context}");
            assert_eq!(returned.duration_nanos, span.duration_ns().to_string(), "{context}");
            assert_eq!(returned.attributes, (query.attributes)(span), "{context}");
        }
    }
}

/// Every way Grafana sends the four queries, each answer checked.
async fn check_seed_queries(server: &tripod::Server, traces: &[TestTrace], stage: &str) {
    let now_s = now_ns() / SECOND;
    let (start, end) = ((now_s - 3600).to_string(), now_s.to_string());
    let everything = (0, u64::MAX);
    // A narrower range: a few minutes in the middle of the traffic.
    let middle = traces[20].start_ns() / SECOND;
    let (narrow_start, narrow_end) = (middle.to_string(), (middle + 240).to_string());
    let narrow = (middle * SECOND, (middle + 241) * SECOND - 1);
    for query in seed_queries() {
        let all = expected(traces, query.matches, everything);
        assert!(all.len() >= 8, "{}: the scenario should match several traces, not {}", query.traceql, all.len());

        // TraceQL tab, through the datasource proxy: the default limit of 20.
        let answer = grafana_get(
            server,
            "/api/search",
            &[("q", query.traceql), ("limit", "20"), ("spss", "3"), ("start", &start), ("end", &end)],
        )
        .await;
        let what = format!("{stage} {} (TraceQL tab)", query.traceql);
        check(&what, &answer.strict(), &all[..all.len().min(20)], &query, 3);

        // Search tab from Grafana 12's backend, every match.
        let path =
            format!("/api/search?q={}&limit=1000&spss=5&start={start}&end={end}", encode_uri_component(query.traceql));
        let answer: SearchResponse = get(server, &path, &[("Accept", "application/json")]).await.strict();
        check(&format!("{stage} {} (backend)", query.traceql), &answer, &all, &query, 5);
        let blocks = answer.metrics.total_blocks.unwrap_or(0);
        assert_eq!(blocks > 0, stage == "blocks", "{stage}: {:?}", answer.metrics);

        // A narrower range: only spans overlapping it count.
        let answer = grafana_get(
            server,
            "/api/search",
            &[("q", query.traceql), ("limit", "1000"), ("start", &narrow_start), ("end", &narrow_end)],
        )
        .await;
        let in_range = expected(traces, query.matches, narrow);
        assert!(!in_range.is_empty() && in_range.len() < all.len(), "{}: a narrower answer", query.traceql);
        check(&format!("{stage} {} (narrow range)", query.traceql), &answer.strict(), &in_range, &query, 3);
    }

    // The legacy search finds the same traces by tags, and by the whole trace's duration.
    let legacy = |params: Vec<(&'static str, &'static str)>| async move {
        let mut all = params;
        all.push(("limit", "1000"));
        let response: SearchResponse = grafana_get(server, "/api/search", &all).await.strict();
        response.traces.into_iter().map(|trace| trace.trace_id).collect::<Vec<_>>()
    };
    let ids_of = |matches: fn(&TestSpan) -> bool| {
        expected(traces, matches, everything).iter().map(|(trace, _)| trace.hex_id()).collect::<Vec<_>>()
    };
    let queries = seed_queries();
    assert_eq!(legacy(vec![("tags", "service.name=tp2devops-backend")]).await, ids_of(queries[0].matches));
    assert_eq!(legacy(vec![("tags", "name=create_todo")]).await, ids_of(queries[2].matches));
    assert_eq!(legacy(vec![("tags", "status.code=error")]).await, ids_of(queries[3].matches));
    let mut long: Vec<&TestTrace> =
        traces.iter().filter(|trace| trace.end_ns() - trace.start_ns() >= 100 * MS).collect();
    long.sort_by_key(|trace| std::cmp::Reverse(trace.start_ns()));
    let long: Vec<String> = long.iter().map(|trace| trace.hex_id()).collect();
    assert_eq!(legacy(vec![("minDuration", "100ms")]).await, long, "{stage}: minDuration");
}

#[tokio::test]
async fn the_four_traceql_queries_answer_exactly_the_right_traces() {
    let server = server().await;
    let now = now_ns();
    let base = now - now % SECOND - 40 * 60 * SECOND;
    let (traces, exports) = scenario(base);
    for batch in &exports {
        export(&server, batch).await;
    }
    check_seed_queries(&server, &traces, "head").await;

    // Everything cut into blocks: the same answers.
    let storage = server.storage().unwrap();
    storage.traces().flush_all().unwrap();
    assert_eq!(storage.traces().store_stats().head_spans, 0);
    drop(storage);
    check_seed_queries(&server, &traces, "blocks").await;
    server.shutdown().await.unwrap();
}

#[test]
fn the_scenario_covers_what_the_queries_must_tell_apart() {
    let (traces, exports) = scenario(1_700_000_000 * SECOND);
    assert_eq!(traces.len(), 66);
    assert!(exports.len() > traces.len(), "some traces come in two exports");
    let spans: Vec<&TestSpan> = traces.iter().flat_map(|trace| &trace.spans).collect();
    // Spans of exactly 100 ms (not over it) and of 100 ms and 1 ns.
    assert!(spans.iter().any(|span| span.duration_ns() == 100 * MS));
    assert!(spans.iter().any(|span| span.duration_ns() == 100 * MS + 1));
    // create_todo in two services, errors in several, backend spans under other roots.
    let services_of = |name: &str| {
        spans
            .iter()
            .filter(|span| span.name == name)
            .map(|span| span.service.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(services_of("create_todo").into_iter().collect::<Vec<_>>(), ["todo-worker", BACKEND]);
    assert!(spans.iter().filter(|span| span.status == ERROR).count() >= 5);
    assert!(traces.iter().any(|trace| trace.root().is_none()));
    assert!(traces.iter().any(|trace| trace.root().is_some_and(|root| root.service != BACKEND)
        && trace.spans.iter().any(|span| span.service == BACKEND)));
}

#[tokio::test]
async fn a_trace_is_searchable_the_moment_its_export_returns() {
    let server = server().await;
    let now = now_ns();
    for round in 0..12u64 {
        let service = format!("fresh-{round}");
        let mut trace = TraceBuilder::new(500 + round);
        todo_backend(&mut trace, &service, None, now - 2 * SECOND + round * MS, 0, round % 3 == 0, round as i64);
        let trace = trace.build();
        export(&server, std::slice::from_ref(&trace)).await;
        let q = format!("{{ resource.service.name = \"{service}\" }}");
        let response: SearchResponse = grafana_get(&server, "/api/search", &[("q", &q)]).await.strict();
        assert_eq!(response.traces.len(), 1, "round {round}");
        assert_eq!(response.traces[0].trace_id, trace.hex_id());
        assert_eq!(response.traces[0].span_sets[0].matched, 6);
        // And by its name, among the earlier ones.
        let response: SearchResponse =
            grafana_get(&server, "/api/search", &[("q", r#"{ name = "create_todo" }"#), ("limit", "100")])
                .await
                .strict();
        assert_eq!(response.traces.len() as u64, round + 1);
        assert_eq!(response.traces[0].trace_id, trace.hex_id(), "the newest first");
        let values: TagValuesV2 =
            grafana_get(&server, "/api/v2/search/tag/resource.service.name/values", &[]).await.strict();
        assert!(values.tag_values.contains(&typed("string", &service)), "round {round}");
    }
    server.shutdown().await.unwrap();
}
