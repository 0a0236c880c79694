//! The OpenTelemetry Python SDK, over gRPC and over HTTP, sends the seed scenario's todo-backend
//! trace; it is fetched back by ID in protobuf and JSON, v1 and v2, and compared field by field
//! with what the SDK reports it sent.

use std::process::Command;

use serde_json::Value;
use tripod::config::ListenerName;

use crate::support::{Fetch, assert_same_spans, fetch, grpc_endpoint, python_with, server, url};

const MODULE: &str = "opentelemetry.exporter.otlp.proto.http.trace_exporter";

/// Runs the SDK script; the spans it reports having sent, in canonical form.
async fn run_sdk(protocol: &str, endpoint: String, trace_id: &str) -> Vec<Value> {
    let python = python_with(MODULE).unwrap();
    let (protocol, trace_id) = (protocol.to_string(), trace_id.to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).args(["tests/clients/otlp_traces.py", &protocol, &endpoint, &trace_id]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "the SDK's export failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["spans"].as_array().unwrap().clone()
}

fn check_seed_trace(sent: &[Value]) {
    let names: Vec<&str> = sent.iter().map(|span| span["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in ["POST /api/todos", "create_todo", "validation", "todo_creation", "metrics_update", "response_send"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let errors: Vec<&Value> = sent.iter().filter(|span| span["status"]["code"] == 2).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["name"], "metrics_update");
}

async fn sdk_round_trip(protocol: &str, trace_id: &str) {
    if python_with(MODULE).is_none() {
        return;
    }
    let server = server().await;
    let endpoint = match protocol {
        "grpc" => grpc_endpoint(&server),
        _ => url(&server, ListenerName::OtlpHttp, "/v1/traces"),
    };
    let sent = run_sdk(protocol, endpoint, trace_id).await;
    check_seed_trace(&sent);
    for how in Fetch::ALL {
        assert_same_spans(&fetch(&server, how, trace_id).await, &sent);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn python_sdk_trace_over_grpc_comes_back_intact() {
    sdk_round_trip("grpc", "4bf92f3577b34da6a3ce929d0e0e4736").await;
}

#[tokio::test]
async fn python_sdk_trace_over_http_comes_back_intact() {
    sdk_round_trip("http", "5c0d5f6b0a1e4f2c9e8d7c6b5a493827").await;
}
