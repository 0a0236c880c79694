//! Tempo's trace by ID, as Grafana asks for it: v1 and v2 in protobuf and JSON, 404 for an
//! unknown trace (never an empty 200), 400 for a bad ID or time, IDs in any case and as short as
//! 64-bit IDs are written, `start`/`end` as hints that never change the answer, a trace whose
//! spans sit in the head and in blocks, across a restart; the health check and buildinfo.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tripod::Config;
use tripod::config::{DataDir, ListenerName};

use crate::otlp::{export_http, rich_request, span_id, string, trace_id};
use crate::support::{
    Fetch, assert_same_spans, canonical_spans, fetch, fetch_answer, fetch_with, get, hex, now_ns, server, server_with,
    url,
};

#[tokio::test]
async fn unknown_traces_are_404_and_bad_requests_400() {
    let server = server().await;
    export_http(&server, &rich_request(1)).await;
    let unknown = hex(&trace_id(2));
    for how in Fetch::ALL {
        let answer = fetch_answer(&server, how, &unknown, "", &[]).await;
        assert_eq!(answer.status, 404, "{how:?}");
        assert_eq!(answer.content_type, "text/plain; charset=utf-8");
        assert_eq!(answer.text(), format!("trace not found: {unknown}\n"));
    }
    let known = hex(&trace_id(1));
    let long = "1".repeat(33);
    let cases = [
        ("xyz", "", "invalid trace id \"xyz\": not hexadecimal"),
        ("0x12", "", "invalid trace id \"0x12\": not hexadecimal"),
        ("12%2034", "", "invalid trace id \"12 34\": not hexadecimal"),
        (long.as_str(), "", "invalid trace id \"111111111111111111111111111111111\": 33 hex digits, at most 32"),
        (known.as_str(), "?start=abc", "invalid start \"abc\": expected unix seconds, a whole number"),
        (known.as_str(), "?end=1.5", "invalid end \"1.5\": expected unix seconds, a whole number"),
        (known.as_str(), "?start=-10", "invalid start \"-10\""),
        (known.as_str(), "?start=200&end=100", "invalid start 200 and end 100: start must not be after end"),
    ];
    for (id, query, message) in cases {
        for how in Fetch::ALL {
            let answer = fetch_answer(&server, how, id, query, &[]).await;
            assert_eq!(answer.status, 400, "{how:?} {id}{query}: {}", answer.text());
            assert!(answer.text().starts_with(message), "{how:?} {id}{query}: {}", answer.text());
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn ids_are_case_insensitive_and_may_be_short() {
    let server = server().await;
    // A 64-bit trace ID: the first eight bytes are zeros.
    let mut request = rich_request(3);
    let short_id = [0u8, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x0b, 0xad, 0xf0, 0x0d];
    for resource in &mut request.resource_spans {
        for scope in &mut resource.scope_spans {
            for span in &mut scope.spans {
                span.trace_id = short_id.to_vec();
            }
        }
    }
    export_http(&server, &request).await;
    let expected = canonical_spans(&request.resource_spans);
    for id in [
        "deadbeef0badf00d",
        "DEADBEEF0BADF00D",
        "DeadBeef0BadF00d",
        "0000000000000000deadbeef0badf00d",
        "000deadbeef0badf00d",
    ] {
        for how in Fetch::ALL {
            assert_same_spans(&fetch(&server, how, id).await, &expected);
        }
    }
    // Not the same as a different short ID.
    assert_eq!(fetch_answer(&server, Fetch::V1Json, "deadbeef0badf00e", "", &[]).await.status, 404);
    // Repeated slashes, as a datasource URL ending in / produces, still route.
    let answer = get(&url(&server, ListenerName::Tempo, "//api/traces/deadbeef0badf00d"), &[]).await;
    assert_eq!(answer.status, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn time_hints_never_change_the_answer() {
    let server = server().await;
    let request = rich_request(4);
    export_http(&server, &request).await;
    let id = hex(&trace_id(4));
    let expected = canonical_spans(&request.resource_spans);
    let now_s = now_ns() / 1_000_000_000;
    let queries = [
        String::new(),
        format!("?start={}&end={}", now_s - 3600, now_s + 60),
        // A range that holds none of the spans: still found, as Tempo's hint allows.
        "?start=1&end=2".to_string(),
        format!("?start={}", now_s + 86_400),
        "?end=10".to_string(),
        "?start=&end=".to_string(),
        "?start=0&end=0&unknown=1".to_string(),
    ];
    for query in &queries {
        for how in Fetch::ALL {
            assert_same_spans(&fetch_with(&server, how, &id, query, &[]).await, &expected);
        }
    }
    server.shutdown().await.unwrap();
}

/// The request's spans split in two: the root's resource and the rest.
fn halves(request: &ExportTraceServiceRequest) -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let mut first = request.clone();
    let second = ExportTraceServiceRequest { resource_spans: vec![first.resource_spans.pop().unwrap()] };
    (first, second)
}

#[tokio::test]
async fn a_trace_split_across_blocks_head_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = Config::embedded();
        config.data_dir = DataDir::Path(dir.path().to_path_buf());
        config
    };
    let request = rich_request(5);
    let expected = canonical_spans(&request.resource_spans);
    let id = hex(&trace_id(5));
    let (first, second) = halves(&request);

    let server = server_with(config()).await;
    export_http(&server, &first).await;
    // The first half goes into a block; the second half stays in the head.
    let storage = server.storage().unwrap();
    assert_eq!(storage.traces().flush_all().unwrap(), 1);
    storage.maintenance().unwrap();
    export_http(&server, &second).await;
    let stats = storage.traces().store_stats();
    assert_eq!((stats.blocks, stats.block_spans, stats.head_spans), (1, 4, 2));
    drop(storage);
    for how in Fetch::ALL {
        assert_same_spans(&fetch(&server, how, &id).await, &expected);
    }
    // The head's half is in the WAL only: it comes back after a restart.
    server.shutdown().await.unwrap();
    let server = server_with(config()).await;
    for how in Fetch::ALL {
        assert_same_spans(&fetch(&server, how, &id).await, &expected);
    }
    // Spans sent again after the restart: those in the head are duplicates, those in a block are
    // stored again and cut into a second block; the answer still has each span once.
    export_http(&server, &request).await;
    let storage = server.storage().unwrap();
    storage.traces().flush_all().unwrap();
    assert_eq!(storage.traces().store_stats().blocks, 2);
    drop(storage);
    assert_same_spans(&fetch(&server, Fetch::V1Protobuf, &id).await, &expected);
    server.shutdown().await.unwrap();

    // Everything in blocks now, read by a fresh process.
    let server = server_with(config()).await;
    assert_eq!(server.storage().unwrap().traces().store_stats().head_spans, 0);
    for how in Fetch::ALL {
        assert_same_spans(&fetch(&server, how, &id).await, &expected);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn resources_without_attributes_are_given_a_service_name() {
    let server = server().await;
    let t = now_ns();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![Span {
                        trace_id: trace_id(6),
                        span_id: span_id(6, 1),
                        name: "anonymous".into(),
                        start_time_unix_nano: t,
                        end_time_unix_nano: t + 1,
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
            ResourceSpans {
                resource: Some(Resource { attributes: vec![string("host.name", "node-1")], ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![Span {
                        trace_id: trace_id(6),
                        span_id: span_id(6, 2),
                        parent_span_id: span_id(6, 1),
                        name: "named".into(),
                        start_time_unix_nano: t + 1,
                        end_time_unix_nano: t + 2,
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    };
    export_http(&server, &request).await;
    for how in Fetch::ALL {
        let spans = fetch(&server, how, &hex(&trace_id(6))).await;
        assert_eq!(spans[0]["resource"], serde_json::json!([["service.name", {"string": "unknown_service"}]]));
        // A resource with attributes is returned as it came, without a service name added.
        assert_eq!(spans[1]["resource"], serde_json::json!([["host.name", {"string": "node-1"}]]));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn echo_and_buildinfo_keep_grafana_on_http() {
    let server = server().await;
    for listener in [ListenerName::Tempo, ListenerName::Loki] {
        let answer = get(&url(&server, listener, "/api/echo"), &[]).await;
        assert_eq!((answer.status, answer.text().as_str()), (200, "echo"));
        let answer = get(&url(&server, listener, "/api/status/buildinfo"), &[]).await;
        assert_eq!(answer.status, 200);
        let info = answer.json();
        // Below 2.2.0, so that Grafana never tries gRPC streaming.
        assert_eq!(info["version"], "2.1.0");
        for field in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
            assert!(info[field].is_string(), "{field}: {info}");
        }
    }
    server.shutdown().await.unwrap();
}
