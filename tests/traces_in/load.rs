//! `tripod-load traces` against a port-0 server: a short run over gRPC and one over HTTP JSON
//! with gzip; every span it reports accepted is in the store, and the first trace it sent is
//! found by ID with the shop's services in it.

use std::collections::BTreeSet;
use std::process::Command;

use tripod::config::ListenerName;

use crate::support::{Fetch, fetch, grpc_endpoint, server, url};

/// Runs the tool; `(spans accepted, first trace ID)` from its summary line.
async fn run_load(args: Vec<String>) -> (u64, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tripod-load")).arg("traces").args(&args).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "tripod-load failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let summary = stdout.lines().find(|line| line.starts_with("traces: ")).expect("a summary line");
    assert!(summary.contains(" 0 spans refused, 0 errors;"), "{summary}");
    let spans = summary["traces: ".len()..].split(' ').next().unwrap().parse().unwrap();
    let first = summary.rsplit(' ').next().unwrap().to_string();
    (spans, first)
}

fn flags(url: String, protocol: &str, seed: u64, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--url",
        &url,
        "--protocol",
        protocol,
        "--seed",
        &seed.to_string(),
        "--duration",
        "5s",
        "--prepared",
        "12",
        "--batch-traces",
        "10",
        "--concurrency",
        "2",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

#[tokio::test]
async fn a_short_load_run_is_stored_whole() {
    let server = server().await;
    let (grpc_spans, grpc_first) = run_load(flags(grpc_endpoint(&server), "grpc", 5, &["--gzip"])).await;
    let json_url = url(&server, ListenerName::Loki, "/otlp/v1/traces");
    let (json_spans, json_first) = run_load(flags(json_url, "http-json", 6, &["--gzip"])).await;
    let protobuf_url = url(&server, ListenerName::OtlpHttp, "/v1/traces");
    let (protobuf_spans, _) = run_load(flags(protobuf_url, "http-protobuf", 7, &["--traces-per-second", "400"])).await;

    // 12 requests of 10 traces of about 10 spans each, every one stored.
    for spans in [grpc_spans, json_spans, protobuf_spans] {
        assert!((1000..=1400).contains(&spans), "{spans}");
    }
    let stats = server.storage().unwrap().traces().store_stats();
    assert_eq!(stats.appended.appended, grpc_spans + json_spans + protobuf_spans);
    assert_eq!(stats.head_traces, 3 * 120);
    assert_ne!(grpc_first, json_first);

    for first in [grpc_first, json_first] {
        let spans = fetch(&server, Fetch::V1Json, &first).await;
        assert!((8..=12).contains(&spans.len()), "{} spans", spans.len());
        let services: BTreeSet<String> = spans
            .iter()
            .map(|span| {
                let resource = span["resource"].as_array().unwrap();
                let name = resource.iter().find(|pair| pair[0] == "service.name").unwrap();
                name[1]["string"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(services.is_superset(&["api", "cart", "gateway"].map(String::from).into()), "{services:?}");
        let roots: Vec<_> = spans.iter().filter(|span| span["parentSpanId"] == "").collect();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0]["kind"], "SPAN_KIND_SERVER");
        assert!(spans.iter().all(|span| span["attributes"].as_array().unwrap().len() >= 10));
    }
    server.shutdown().await.unwrap();
}
