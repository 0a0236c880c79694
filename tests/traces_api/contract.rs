//! Every request Grafana's Tempo datasource (10.x to 12.x) sends, as it sends it, against the
//! exact answers it decodes (grafana-contract.md section 3): the health check, buildinfo, trace
//! by ID in protobuf with the v2-then-v1 fallback, search from the TraceQL, Search and legacy
//! tabs, tag names and values in both versions, double-encoded tag segments, `//api` paths,
//! every refusal, the deadline, and tenants.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{TracesData, span};
use prost::Message;
use serde::Deserialize;
use tripod::Config;
use tripod::api::tempo::trace::TraceByIdResponse;

use crate::support::*;

/// Three traces: a cart view (checkout calling postgres, with an event and a link), a failed
/// slow payment, and a frontend page calling checkout. Spans start from `base_ns`.
fn shop(base_ns: u64) -> Vec<TestTrace> {
    let cart = TestTrace {
        id: trace_id(1),
        spans: vec![
            TestSpan {
                service: "checkout".into(),
                span_id: span_id(1, 1),
                parent: None,
                name: "GET /cart".into(),
                kind: 2,
                start_ns: base_ns,
                end_ns: base_ns + 40 * MS,
                status: UNSET,
                attributes: vec![
                    string("http.method", "GET"),
                    int("http.status_code", 200),
                    double("ratio", 0.5),
                    boolean("cache.hit", true),
                    string("app/region", "eu/west"),
                ],
                events: vec![],
                links: vec![span::Link {
                    trace_id: trace_id(3).to_vec(),
                    span_id: span_id(3, 1).to_vec(),
                    attributes: vec![string("link.kind", "follows_from")],
                    ..Default::default()
                }],
            },
            TestSpan {
                service: "postgres".into(),
                span_id: span_id(1, 2),
                parent: Some(span_id(1, 1)),
                name: "SELECT cart".into(),
                kind: 3,
                start_ns: base_ns + 5 * MS,
                end_ns: base_ns + 30 * MS,
                status: ERROR,
                attributes: vec![string("db.system", "postgresql"), int("http.status_code", 503)],
                events: vec![span::Event {
                    time_unix_nano: base_ns + 20 * MS,
                    name: "exception".into(),
                    attributes: vec![string("exception.type", "Timeout")],
                    dropped_attributes_count: 0,
                }],
                links: vec![],
            },
        ],
    };
    let pay = TestTrace {
        id: trace_id(2),
        spans: vec![TestSpan {
            service: "checkout".into(),
            span_id: span_id(2, 1),
            parent: None,
            name: "POST /pay".into(),
            kind: 2,
            start_ns: base_ns + 60 * SECOND,
            end_ns: base_ns + 60 * SECOND + 250 * MS,
            status: ERROR,
            attributes: vec![string("http.method", "POST"), int("http.status_code", 500)],
            events: vec![],
            links: vec![],
        }],
    };
    let page = TestTrace {
        id: trace_id(3),
        spans: vec![
            TestSpan {
                service: "frontend".into(),
                span_id: span_id(3, 1),
                parent: None,
                name: "GET /".into(),
                kind: 2,
                start_ns: base_ns + 120 * SECOND,
                end_ns: base_ns + 120 * SECOND + 90 * MS,
                status: OK,
                attributes: vec![string("http.method", "GET"), int("http.status_code", 200)],
                events: vec![],
                links: vec![],
            },
            TestSpan {
                service: "checkout".into(),
                span_id: span_id(3, 2),
                parent: Some(span_id(3, 1)),
                name: "GET /cart".into(),
                kind: 2,
                start_ns: base_ns + 120 * SECOND + 10 * MS,
                end_ns: base_ns + 120 * SECOND + 80 * MS,
                status: UNSET,
                attributes: vec![string("http.method", "GET"), int("http.status_code", 200)],
                events: vec![],
                links: vec![],
            },
        ],
    };
    vec![cart, pay, page]
}

/// About ten minutes ago, on a whole second.
fn base_ns() -> u64 {
    let now = now_ns();
    now - now % SECOND - 600 * SECOND
}

/// Grafana's time range around the shop traffic: the last hour, in Unix seconds.
fn last_hour() -> (String, String) {
    let now_s = now_ns() / SECOND;
    ((now_s - 3600).to_string(), (now_s + 1).to_string())
}

async fn shop_server() -> (tripod::Server, Vec<TestTrace>) {
    let server = server().await;
    let traces = shop(base_ns());
    export(&server, &traces).await;
    (server, traces)
}

fn ids(response: &SearchResponse) -> Vec<String> {
    response.traces.iter().map(|trace| trace.trace_id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Health, buildinfo, trace by ID.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: String,
    revision: String,
    branch: String,
    build_user: String,
    build_date: String,
    go_version: String,
}

#[tokio::test]
async fn health_check_and_buildinfo() {
    let server = server().await;
    let answer = grafana_get(&server, "/api/echo", &[]).await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "echo"));
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    // A datasource URL ending in / makes Grafana ask for //api/...
    assert_eq!(get(&server, "//api/echo", &[]).await.status, 200);

    let answer = grafana_get(&server, "/api/status/buildinfo", &[]).await;
    assert_eq!(answer.status, 200);
    let info: BuildInfo = serde_json::from_slice(&answer.body).unwrap();
    // Below 2.2.0, so that Grafana never turns on gRPC streaming.
    assert_eq!(info.version, "2.1.0");
    for field in [&info.revision, &info.branch, &info.build_user, &info.build_date, &info.go_version] {
        assert!(!field.is_empty(), "{}", answer.text());
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn trace_by_id_as_grafana_fetches_it() {
    let (server, traces) = shop_server().await;
    let protobuf = [("Accept", "application/protobuf")];
    for trace in &traces {
        let id = trace.hex_id();
        // Grafana 12: v2 first, in protobuf.
        let answer = get(&server, &format!("/api/v2/traces/{id}"), &protobuf).await;
        assert_eq!((answer.status, answer.content_type.as_str()), (200, "application/protobuf"));
        let v2 = TraceByIdResponse::decode(answer.body.as_slice()).unwrap();
        assert_eq!((v2.status, v2.message.as_str()), (0, ""));
        let v2_spans = v2.trace.unwrap().resource_spans;
        // Grafana 10 and 11: v1, in protobuf, with start and end when time shift is on.
        let (start, end) = last_hour();
        for path in [format!("/api/traces/{id}"), format!("/api/traces/{id}?start={start}&end={end}")] {
            let answer = get(&server, &path, &protobuf).await;
            assert_eq!((answer.status, answer.content_type.as_str()), (200, "application/protobuf"));
            let v1 = TracesData::decode(answer.body.as_slice()).unwrap();
            assert_eq!(v1.resource_spans, v2_spans);
        }
        // Every resource names its service (Grafana drops resources without attributes).
        let mut span_ids = BTreeSet::new();
        for resource_spans in &v2_spans {
            let attributes = &resource_spans.resource.as_ref().unwrap().attributes;
            assert!(attributes.iter().any(|kv| kv.key == "service.name"));
            for scope in &resource_spans.scope_spans {
                span_ids.extend(scope.spans.iter().map(|span| hex(&span.span_id)));
            }
        }
        let expected: BTreeSet<String> = trace.spans.iter().map(|span| hex(&span.span_id)).collect();
        assert_eq!(span_ids, expected);
        // Time hints that miss the trace do not hide it.
        let answer = get(&server, &format!("/api/traces/{id}?start=1000&end=2000"), &protobuf).await;
        assert_eq!(answer.status, 200);
        // `//api/...` routes.
        assert_eq!(get(&server, &format!("//api/v2/traces/{id}"), &protobuf).await.status, 200);
    }
    // Unknown: 404 on v2 (so Grafana retries v1), and 404 on v1, never an empty 200.
    let unknown = hex(&trace_id(99));
    for path in [format!("/api/v2/traces/{unknown}"), format!("/api/traces/{unknown}")] {
        let answer = get(&server, &path, &protobuf).await;
        assert_refused(&answer, 404, "trace not found");
    }
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Search.

#[tokio::test]
async fn search_as_grafana_sends_it() {
    let (server, traces) = shop_server().await;
    let (start, end) = last_hour();
    let query = r#"{ resource.service.name = "checkout" }"#;

    // TraceQL tab, through the datasource proxy (10, 11 and 12).
    let frontend = grafana_get(
        &server,
        "/api/search",
        &[("q", query), ("limit", "20"), ("spss", "3"), ("start", &start), ("end", &end)],
    )
    .await;
    let response: SearchResponse = frontend.strict();
    // Every trace with a checkout span, most recent first.
    assert_eq!(ids(&response), [traces[2].hex_id(), traces[1].hex_id(), traces[0].hex_id()]);
    let page = &response.traces[0];
    assert_eq!((page.root_service_name.as_str(), page.root_trace_name.as_str()), ("frontend", "GET /"));
    assert_eq!(page.start_time_unix_nano, traces[2].start_ns().to_string());
    assert_eq!(page.duration_ms, 90);
    let set = &page.span_sets[0];
    assert_eq!(set.matched, 1);
    let span = &set.spans[0];
    assert_eq!(span.span_id, hex(&span_id(3, 2)));
    assert_eq!(span.name, "GET /cart");
    assert_eq!(span.start_time_unix_nano, traces[2].spans[1].start_ns.to_string());
    assert_eq!(span.duration_nanos, (70 * MS).to_string());
    assert_eq!(
        span.attributes,
        [KeyValueJson { key: "service.name".into(), value: AnyValueJson::StringValue("checkout".into()) }]
    );
    assert!(response.metrics.inspected_traces.unwrap() >= 3, "{}", frontend.text());
    assert!(response.metrics.inspected_bytes.is_some());
    assert!(response.metrics.inspected_spans.is_some());
    // Every span is still in the head: no blocks to count.
    assert_eq!(response.metrics.total_blocks, None);

    // Search tab from Grafana 12's backend: Accept: application/json, the same parameters; the
    // query written into the URL without encoding (braces and = pass as they are).
    let backend = get(
        &server,
        &format!("/api/search?q={{status=error}}&limit=20&spss=3&start={start}&end={end}"),
        &[("Accept", "application/json"), ("User-Agent", "Grafana/12.0.0")],
    )
    .await;
    let response: SearchResponse = backend.strict();
    assert_eq!(ids(&response), [traces[1].hex_id(), traces[0].hex_id()]);
    let cart = &response.traces[1];
    assert_eq!(cart.span_sets[0].spans[0].name, "SELECT cart");
    assert_eq!(
        cart.span_sets[0].spans[0].attributes,
        [KeyValueJson { key: "status".into(), value: AnyValueJson::StringValue("error".into()) }]
    );
    // Without start and end (the backend leaves them out when the range is 0): recent traces.
    let response: SearchResponse =
        get(&server, "/api/search?q={status=error}&limit=20", &[("Accept", "application/json")]).await.strict();
    assert_eq!(ids(&response), [traces[1].hex_id(), traces[0].hex_id()]);

    // Typed attribute values, as Grafana decodes them: intValue a string, doubleValue a number,
    // boolValue a bool.
    let response: SearchResponse = grafana_get(
        &server,
        "/api/search",
        &[("q", "{ span.http.status_code >= 500 || span.ratio > 0.1 || span.cache.hit = true }"), ("limit", "20")],
    )
    .await
    .strict();
    let mut seen = Vec::new();
    for trace in &response.traces {
        for span in &trace.span_sets[0].spans {
            for attribute in &span.attributes {
                seen.push((span.name.clone(), attribute.key.clone(), format!("{:?}", attribute.value)));
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("GET /cart".into(), "cache.hit".into(), "BoolValue(true)".into()),
            ("GET /cart".into(), "http.status_code".into(), "IntValue(\"200\")".into()),
            ("GET /cart".into(), "ratio".into(), "DoubleValue(0.5)".into()),
            ("POST /pay".into(), "http.status_code".into(), "IntValue(\"500\")".into()),
            ("SELECT cart".into(), "http.status_code".into(), "IntValue(\"503\")".into()),
        ]
    );

    // `//api/search`, and POST with a form body.
    let response: SearchResponse =
        get(&server, &format!("//api/search?q={}", encode_uri_component("{ name = \"POST /pay\" }")), &[])
            .await
            .strict();
    assert_eq!(ids(&response), [traces[1].hex_id()]);
    let answer = send(
        reqwest::Client::new()
            .post(tempo_url(&server, "/api/search"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(query_string(&[("q", "{ name = \"POST /pay\" }"), ("limit", "5")])),
    )
    .await;
    assert_eq!(ids(&answer.strict()), [traces[1].hex_id()]);

    // Nothing in the range: the exact empty answer.
    let empty = grafana_get(&server, "/api/search", &[("q", "{}"), ("start", "1000"), ("end", "2000")]).await;
    assert_eq!((empty.status, empty.text().as_str()), (200, r#"{"traces":[],"metrics":{}}"#));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn legacy_search_as_grafana_10_sends_it() {
    let (server, traces) = shop_server().await;
    let (start, end) = last_hour();
    let search = |tags: &'static str, min: &'static str, max: &'static str| {
        let (start, end, server) = (start.clone(), end.clone(), &server);
        async move {
            let mut params = vec![("tags", tags), ("limit", "20"), ("start", start.as_str()), ("end", end.as_str())];
            if !min.is_empty() {
                params.push(("minDuration", min));
            }
            if !max.is_empty() {
                params.push(("maxDuration", max));
            }
            let response: SearchResponse = grafana_get(server, "/api/search", &params).await.strict();
            ids(&response)
        }
    };
    let [cart, pay, page] = [traces[0].hex_id(), traces[1].hex_id(), traces[2].hex_id()];
    let [cart, pay, page] = [cart.as_str(), pay.as_str(), page.as_str()];
    assert_eq!(search(r#"service.name="checkout""#, "", "").await, [page, pay, cart]);
    assert_eq!(search(r#"service.name="checkout" http.method="POST""#, "", "").await, [pay]);
    // Every tag must hold on one span: postgres's span has no GET.
    assert_eq!(search(r#"service.name=postgres http.method=GET"#, "", "").await, Vec::<String>::new());
    assert_eq!(search("http.status_code=503", "", "").await, [cart]);
    assert_eq!(search("status.code=error", "", "").await, [pay, cart]);
    assert_eq!(search("error=true", "", "").await, [pay, cart]);
    assert_eq!(search("name=\"GET /cart\"", "", "").await, [page, cart]);
    assert_eq!(search("root.service.name=frontend", "", "").await, [page]);
    // The trace's duration: 40 ms, 250 ms and 90 ms.
    assert_eq!(search("", "50ms", "").await, [page, pay]);
    assert_eq!(search("", "50ms", "100ms").await, [page]);
    assert_eq!(search(r#"http.method=GET"#, "", "45ms").await, [cart]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn search_limit_and_spans_per_spanset() {
    let (server, traces) = shop_server().await;
    let everything = |limit: &'static str, spss: &'static str| {
        let server = &server;
        async move {
            let mut params = vec![("q", "{ }")];
            if !limit.is_empty() {
                params.push(("limit", limit));
            }
            if !spss.is_empty() {
                params.push(("spss", spss));
            }
            let response: SearchResponse = grafana_get(server, "/api/search", &params).await.strict();
            response
        }
    };
    // The most recent traces first, at most the limit.
    assert_eq!(ids(&everything("1", "").await), [traces[2].hex_id()]);
    assert_eq!(ids(&everything("2", "").await), [traces[2].hex_id(), traces[1].hex_id()]);
    assert_eq!(ids(&everything("", "").await).len(), 3);
    // spss bounds the spans returned, never `matched`; 0 means the default of 3.
    for (spss, returned) in [("1", 1), ("2", 2), ("0", 2), ("", 2), ("100", 2)] {
        let response = everything("", spss).await;
        let cart = response.traces.iter().find(|trace| trace.trace_id == traces[0].hex_id()).unwrap();
        assert_eq!((cart.span_sets[0].spans.len(), cart.span_sets[0].matched), (returned, 2), "spss={spss}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn search_refusals_are_400s_that_name_the_problem() {
    let (server, _) = shop_server().await;
    for (params, message) in [
        (&[("q", "{ .a = }")][..], "invalid traceql query: parse error at line 1, col 8: "),
        (&[("q", "{ resource.service.name = \"a\" ")][..], "invalid traceql query: parse error at line 1, col 31: "),
        (
            &[("q", "{ status = error } | rate()")][..],
            "traceql metrics queries are answered by /api/metrics/query_range",
        ),
        (&[("q", "{}"), ("tags", "a=b")][..], "invalid request: q and tags cannot be used in the same search"),
        (&[("tags", "a")][..], "invalid tags: parse error at line 1, col 1: "),
        (&[("limit", "0")][..], "invalid limit 0: must be a positive number"),
        (&[("limit", "many")][..], "invalid limit \"many\": expected a whole number"),
        (&[("limit", "-5")][..], "invalid limit \"-5\": expected a whole number"),
        (&[("spss", "1000")][..], "invalid spss 1000: at most 100"),
        (&[("start", "yesterday"), ("end", "10")][..], "invalid start \"yesterday\": expected unix seconds"),
        (&[("start", "1700000000.5"), ("end", "1800000000")][..], "invalid start \"1700000000.5\""),
        (&[("start", "20"), ("end", "10")][..], "invalid start 20 and end 10: start must be before end"),
        (&[("minDuration", "soon")][..], "invalid minDuration \"soon\": expected a duration"),
        (&[("minDuration", "2s"), ("maxDuration", "1s")][..], "invalid maxDuration: must be greater than minDuration"),
    ] {
        let answer = grafana_get(&server, "/api/search", params).await;
        assert_refused(&answer, 400, message);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_search_past_the_query_timeout_is_504() {
    let mut config = Config::embedded();
    config.logs_query.query_timeout = Duration::from_nanos(1);
    let server = server_with(config).await;
    export(&server, &shop(base_ns())).await;
    let answer = grafana_get(&server, "/api/search", &[("q", "{ status = error }")]).await;
    assert_refused(&answer, 504, "");
    assert!(answer.text().contains("query timeout"), "{}", answer.text());
    let answer =
        grafana_get(&server, "/api/v2/search/tag/span.http.method/values", &[("q", "{ status = error }")]).await;
    assert_refused(&answer, 504, "");
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tag names.

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    names.sort();
    names
}

const INTRINSICS: [&str; 26] = [
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "link:spanID",
    "link:traceID",
    "name",
    "rootName",
    "rootServiceName",
    "span:childCount",
    "span:duration",
    "span:id",
    "span:kind",
    "span:name",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:id",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

#[tokio::test]
async fn tag_names_in_both_versions() {
    let (server, _) = shop_server().await;
    let (start, end) = last_hour();
    let resource = sorted(&["deployment.environment", "service.name"]);
    let span = sorted(&["app/region", "cache.hit", "db.system", "http.method", "http.status_code", "ratio"]);

    // v2, as Grafana 10 asks (no parameters) and as 11 and 12 ask (the time range, a scope).
    for params in [&[][..], &[("start", start.as_str()), ("end", end.as_str())][..]] {
        let names: TagNamesV2 = grafana_get(&server, "/api/v2/search/tags", params).await.strict();
        assert_eq!(names.metrics, MetadataMetrics::default());
        let names_of = names.by_scope();
        assert_eq!(names_of.keys().collect::<Vec<_>>(), ["event", "intrinsic", "link", "resource", "span"]);
        assert_eq!(names_of["resource"], resource);
        assert_eq!(names_of["span"], span);
        assert_eq!(names_of["event"], ["exception.type"]);
        assert_eq!(names_of["link"], ["link.kind"]);
        assert_eq!(names_of["intrinsic"], INTRINSICS);
        // The intrinsic scope comes last, as Tempo sends it.
        assert_eq!(names.scopes.last().unwrap().name, "intrinsic");
    }
    for (scope, expected) in [("resource", &resource), ("span", &span)] {
        let params = [("scope", scope), ("start", start.as_str()), ("end", end.as_str())];
        let names: TagNamesV2 = grafana_get(&server, "/api/v2/search/tags", &params).await.strict();
        assert_eq!(names.scopes.len(), 1);
        assert_eq!((&names.scopes[0].name, &names.scopes[0].tags), (&scope.to_string(), expected));
    }
    let names: TagNamesV2 = grafana_get(&server, "/api/v2/search/tags", &[("scope", "intrinsic")]).await.strict();
    assert_eq!(names.by_scope().into_iter().collect::<Vec<_>>(), [("intrinsic".to_string(), sorted(&INTRINSICS))]);
    let names: TagNamesV2 =
        grafana_get(&server, "/api/v2/search/tags", &[("scope", "span"), ("limit", "2")]).await.strict();
    assert_eq!(names.scopes[0].tags, &span[..2]);
    // A range without spans: only the intrinsics.
    let names: TagNamesV2 =
        grafana_get(&server, "/api/v2/search/tags", &[("start", "1000"), ("end", "2000")]).await.strict();
    assert_eq!(names.by_scope().keys().collect::<Vec<_>>(), ["intrinsic"]);
    // Filtered by a query: the names of the spans it matches (postgres's span).
    let names: TagNamesV2 =
        grafana_get(&server, "/api/v2/search/tags", &[("q", "{ span.db.system = \"postgresql\" }")]).await.strict();
    let names_of = names.by_scope();
    assert_eq!(names_of["span"], ["db.system", "http.status_code"]);
    assert_eq!(names_of["resource"], resource);
    assert_eq!(names_of["event"], ["exception.type"]);
    assert!(!names_of.contains_key("link"));
    // An incomplete query keeps what it can: the service.
    let q = "{ resource.service.name = \"frontend\" && span.http.method = }";
    let names: TagNamesV2 = grafana_get(&server, "/api/v2/search/tags", &[("q", q), ("scope", "span")]).await.strict();
    assert_eq!(names.by_scope()["span"], ["http.method", "http.status_code"]);

    // v1: resource and span names together; intrinsics only when asked for.
    let mut both: Vec<String> = resource.iter().chain(&span).cloned().collect();
    both.sort();
    let names: TagNamesV1 = grafana_get(&server, "/api/search/tags", &[]).await.strict();
    assert_eq!(names.tag_names, both);
    assert_eq!(names.metrics, MetadataMetrics::default());
    let names: TagNamesV1 =
        grafana_get(&server, "/api/search/tags", &[("start", &start), ("end", &end)]).await.strict();
    assert_eq!(names.tag_names, both);
    let names: TagNamesV1 = grafana_get(&server, "/api/search/tags", &[("scope", "intrinsic")]).await.strict();
    assert_eq!(names.tag_names, INTRINSICS);
    let names: TagNamesV1 = grafana_get(&server, "/api/search/tags", &[("scope", "event")]).await.strict();
    assert_eq!(names.tag_names, ["exception.type"]);
    let names: TagNamesV1 = get(&server, "//api/search/tags", &[]).await.strict();
    assert_eq!(names.tag_names, both);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tag values.

const NO_VALUES: Vec<TypedValue> = Vec::new();

async fn values_v2(server: &tripod::Server, tag_segment: &str, params: &[(&str, &str)]) -> Vec<TypedValue> {
    let answer = grafana_get(server, &format!("/api/v2/search/tag/{tag_segment}/values"), params).await;
    let values: TagValuesV2 = answer.strict();
    assert_eq!(values.metrics, MetadataMetrics::default());
    values.tag_values
}

async fn values_v1(server: &tripod::Server, tag_segment: &str, params: &[(&str, &str)]) -> Vec<String> {
    let values: TagValuesV1 =
        grafana_get(server, &format!("/api/search/tag/{tag_segment}/values"), params).await.strict();
    assert_eq!(values.metrics, MetadataMetrics::default());
    values.tag_values
}

/// The path segment the server receives for a tag: Grafana's frontend encodes it twice, its
/// proxy decodes once.
fn grafana_segment(tag: &str) -> String {
    encode_uri_component(tag)
}

#[tokio::test]
async fn tag_values_in_both_versions() {
    let (server, _) = shop_server().await;
    let (start, end) = last_hour();
    let range = [("start", start.as_str()), ("end", end.as_str())];
    let strings = |values: &[&str]| values.iter().map(|value| typed("string", value)).collect::<Vec<_>>();

    for params in [&[][..], &range[..]] {
        assert_eq!(
            values_v2(&server, "resource.service.name", params).await,
            strings(&["checkout", "frontend", "postgres"])
        );
    }
    assert_eq!(values_v2(&server, ".service.name", &[]).await, strings(&["checkout", "frontend", "postgres"]));
    assert_eq!(values_v2(&server, "span.http.method", &range).await, strings(&["GET", "POST"]));
    assert_eq!(
        values_v2(&server, "span.http.status_code", &range).await,
        [typed("int", "200"), typed("int", "500"), typed("int", "503")]
    );
    assert_eq!(values_v2(&server, "span.ratio", &[]).await, [typed("float", "0.5")]);
    assert_eq!(values_v2(&server, "span.cache.hit", &[]).await, [typed("bool", "true")]);
    assert_eq!(values_v2(&server, "event.exception.type", &[]).await, strings(&["Timeout"]));
    assert_eq!(values_v2(&server, "link.link.kind", &[]).await, strings(&["follows_from"]));
    assert_eq!(values_v2(&server, "span.nothing", &[]).await, NO_VALUES);
    // Intrinsics.
    assert_eq!(values_v2(&server, "name", &range).await, strings(&["GET /", "GET /cart", "POST /pay", "SELECT cart"]));
    assert_eq!(values_v2(&server, "span:name", &[]).await, values_v2(&server, "name", &[]).await);
    assert_eq!(values_v2(&server, "rootServiceName", &[]).await, strings(&["checkout", "frontend"]));
    assert_eq!(values_v2(&server, "trace:rootName", &[]).await, strings(&["GET /", "GET /cart", "POST /pay"]));
    assert_eq!(values_v2(&server, "event:name", &[]).await, strings(&["exception"]));
    assert_eq!(values_v2(&server, "instrumentation:name", &[]).await, strings(&["tripod-tests"]));
    assert_eq!(values_v2(&server, "instrumentation:version", &range).await, strings(&["1.0"]));
    assert_eq!(values_v2(&server, "statusMessage", &[]).await, NO_VALUES);
    let keywords = |values: &[&str]| values.iter().map(|value| typed("keyword", value)).collect::<Vec<_>>();
    assert_eq!(values_v2(&server, "status", &range).await, keywords(&["error", "ok", "unset"]));
    assert_eq!(
        values_v2(&server, "kind", &[]).await,
        keywords(&["client", "consumer", "internal", "producer", "server", "unspecified"])
    );
    assert_eq!(values_v2(&server, "duration", &[]).await, NO_VALUES);
    // `limit`.
    assert_eq!(
        values_v2(&server, "resource.service.name", &[("limit", "2")]).await,
        strings(&["checkout", "frontend"])
    );
    // A range without spans.
    assert_eq!(values_v2(&server, "resource.service.name", &[("start", "1000"), ("end", "2000")]).await, NO_VALUES);

    // v1: text values of the span and resource attribute, and the legacy names.
    assert_eq!(values_v1(&server, "service.name", &[]).await, ["checkout", "frontend", "postgres"]);
    assert_eq!(values_v1(&server, "http.status_code", &range).await, ["200", "500", "503"]);
    assert_eq!(values_v1(&server, "ratio", &[]).await, ["0.5"]);
    assert_eq!(values_v1(&server, "cache.hit", &[]).await, ["true"]);
    assert_eq!(values_v1(&server, "status.code", &[]).await, ["error", "ok", "unset"]);
    assert_eq!(values_v1(&server, "error", &[]).await, ["true"]);
    assert_eq!(values_v1(&server, "root.service.name", &[]).await, ["checkout", "frontend"]);
    assert_eq!(values_v1(&server, "name", &[("limit", "1")]).await, ["GET /"]);
    let values: TagValuesV1 = get(&server, "//api/search/tag/service.name/values", &[]).await.strict();
    assert_eq!(values.tag_values, ["checkout", "frontend", "postgres"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tag_values_filtered_by_a_query() {
    let (server, _) = shop_server().await;
    let strings = |values: &[&str]| values.iter().map(|value| typed("string", value)).collect::<Vec<_>>();
    for (tag, q, expected) in [
        ("resource.service.name", r#"{ span.http.method = "POST" }"#, strings(&["checkout"])),
        ("resource.service.name", "{ status = error }", strings(&["checkout", "postgres"])),
        ("span.http.method", r#"{ resource.service.name = "frontend" }"#, strings(&["GET"])),
        ("name", r#"{ resource.service.name = "checkout" && span.http.status_code = 200 }"#, strings(&["GET /cart"])),
        ("rootName", "{ kind = client }", strings(&["GET /cart"])),
        (
            "span.http.status_code",
            r#"{ resource.service.name = "checkout" }"#,
            vec![typed("int", "200"), typed("int", "500")],
        ),
        // What Grafana sends while the user types: the complete conditions filter.
        ("span.http.method", r#"{ resource.service.name = "frontend" && span.http.method = }"#, strings(&["GET"])),
        ("span.http.method", r#"{ resource.service.name = "frontend" && "#, strings(&["GET"])),
        // Nothing usable: no filter.
        ("span.http.method", "{ span.http.method = ", strings(&["GET", "POST"])),
        ("span.http.method", r#"{ .a = "x" || .b = }"#, strings(&["GET", "POST"])),
        ("span.http.method", "{}", strings(&["GET", "POST"])),
        // Status and kind list every keyword, whatever the filter (as Tempo does).
        (
            "status",
            r#"{ resource.service.name = "frontend" }"#,
            vec![typed("keyword", "error"), typed("keyword", "ok"), typed("keyword", "unset")],
        ),
    ] {
        assert_eq!(values_v2(&server, tag, &[("q", q)]).await, expected, "{tag} {q}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tag_segments_are_decoded_once() {
    let (server, _) = shop_server().await;
    // The attribute `app/region`: Grafana's frontend sends span.app%252Fregion, its proxy
    // forwards span.app%2Fregion, and the server decodes that once.
    assert_eq!(grafana_segment("span.app/region"), "span.app%2Fregion");
    assert_eq!(values_v2(&server, &grafana_segment("span.app/region"), &[]).await, [typed("string", "eu/west")]);
    assert_eq!(values_v1(&server, &grafana_segment("app/region"), &[]).await, ["eu/west"]);
    // Quoted names and the unscoped form, encoded the same way.
    assert_eq!(values_v2(&server, &grafana_segment("span.\"app/region\""), &[]).await, [typed("string", "eu/west")]);
    assert_eq!(values_v2(&server, &grafana_segment(".app/region"), &[]).await, [typed("string", "eu/west")]);
    // Decoded once only: a segment still encoded after that is a different name.
    assert_eq!(values_v2(&server, "span.app%252Fregion", &[]).await, NO_VALUES);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tag_refusals_are_400s_that_name_the_problem() {
    let (server, _) = shop_server().await;
    for (path, params, message) in [
        ("/api/v2/search/tags", &[("scope", "spans")][..], "invalid scope \"spans\": expected resource, span"),
        ("/api/search/tags", &[("scope", "trace")][..], "invalid scope \"trace\""),
        ("/api/v2/search/tags", &[("start", "x"), ("end", "10")][..], "invalid start \"x\": expected unix seconds"),
        ("/api/v2/search/tags", &[("start", "30"), ("end", "20")][..], "invalid start 30 and end 20"),
        ("/api/v2/search/tags", &[("limit", "some")][..], "invalid limit \"some\": expected a whole number"),
        ("/api/search/tags", &[("maxStaleValues", "-1")][..], "invalid maxStaleValues \"-1\""),
        (
            "/api/v2/search/tag/http.method/values",
            &[][..],
            "invalid tag \"http.method\": parse error at line 1, col 1: syntax error: unknown attribute scope \"http\"",
        ),
        ("/api/v2/search/tag/span:foo/values", &[][..], "invalid tag \"span:foo\": span:foo is not an intrinsic"),
        ("/api/v2/search/tag/trace.x/values", &[][..], "invalid tag \"trace.x\": trace attributes are not stored"),
        (
            "/api/v2/search/tag/limit/values",
            &[][..],
            "invalid tag \"limit\": limit is not an intrinsic; attributes are written span.limit",
        ),
        (
            "/api/v2/search/tag/span.a%20b/values",
            &[][..],
            "invalid tag \"span.a b\": expected an attribute (span.x, resource.x, .x) or an intrinsic",
        ),
        ("/api/v2/search/tag/name/values", &[("end", "soon")][..], "invalid end \"soon\""),
        ("/api/search/tag/name/values", &[("limit", "1.5")][..], "invalid limit \"1.5\""),
    ] {
        let answer = grafana_get(&server, path, params).await;
        assert_refused(&answer, 400, message);
    }
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tenants.

#[tokio::test]
async fn tenants_are_kept_apart() {
    let mut config = Config::embedded();
    config.logs_ingest.auth_enabled = true;
    let server = server_with(config).await;
    let traces = shop(base_ns());
    export_as(&server, Some("team-a"), &traces[..2]).await;
    export_as(&server, Some("team-b"), &traces[2..]).await;
    let search = |tenant: &'static str| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> = if tenant.is_empty() { vec![] } else { vec![("X-Scope-OrgID", tenant)] };
            get(server, "/api/search?q=%7B%7D", &headers).await
        }
    };
    assert_eq!(ids(&search("team-a").await.strict()), [traces[1].hex_id(), traces[0].hex_id()]);
    assert_eq!(ids(&search("team-b").await.strict()), [traces[2].hex_id()]);
    assert_eq!(
        ids(&search("team-a|team-b").await.strict()),
        [traces[2].hex_id(), traces[1].hex_id(), traces[0].hex_id()]
    );
    assert_eq!(ids(&search("team-c").await.strict()), Vec::<String>::new());
    assert_refused(&search("").await, 401, "no org id");
    assert_refused(&search("team/a").await, 400, "");

    let tenant_b = [("X-Scope-OrgID", "team-b")];
    let values: TagValuesV2 = get(&server, "/api/v2/search/tag/resource.service.name/values", &tenant_b).await.strict();
    assert_eq!(values.tag_values, [typed("string", "checkout"), typed("string", "frontend")]);
    let values: TagValuesV1 =
        get(&server, "/api/search/tag/service.name/values", &[("X-Scope-OrgID", "team-a")]).await.strict();
    assert_eq!(values.tag_values, ["checkout", "postgres"]);
    let names: TagNamesV2 = get(&server, "/api/v2/search/tags?scope=event", &tenant_b).await.strict();
    assert_eq!(names.scopes.len(), 0, "team b has no events");
    let names: TagNamesV1 = get(&server, "/api/search/tags?scope=event", &[("X-Scope-OrgID", "team-a")]).await.strict();
    assert_eq!(names.tag_names, ["exception.type"]);
    for path in
        ["/api/search/tags", "/api/v2/search/tags", "/api/v2/search/tag/name/values", "/api/search/tag/name/values"]
    {
        assert_refused(&get(&server, path, &[]).await, 401, "no org id");
    }
    // Traces by ID stay per tenant too.
    let protobuf_for = |tenant: &'static str| [("Accept", "application/protobuf"), ("X-Scope-OrgID", tenant)];
    let id = traces[2].hex_id();
    assert_eq!(get(&server, &format!("/api/traces/{id}"), &protobuf_for("team-b")).await.status, 200);
    assert_eq!(get(&server, &format!("/api/traces/{id}"), &protobuf_for("team-a")).await.status, 404);
    server.shutdown().await.unwrap();
}

#[test]
fn the_test_data_has_every_value_type() {
    let traces = shop(0);
    let types: BTreeSet<&str> = traces
        .iter()
        .flat_map(|trace| &trace.spans)
        .flat_map(|span| &span.attributes)
        .map(|kv| match kv.value.as_ref().and_then(|value| value.value.as_ref()) {
            Some(any_value::Value::StringValue(_)) => "string",
            Some(any_value::Value::IntValue(_)) => "int",
            Some(any_value::Value::DoubleValue(_)) => "double",
            Some(any_value::Value::BoolValue(_)) => "bool",
            _ => "other",
        })
        .collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["bool", "double", "int", "string"]);
}
