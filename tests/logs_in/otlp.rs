//! OTLP logs: HTTP protobuf and JSON (gzip too), gRPC, the Loki 3 mapping of resources,
//! scopes and records, partial success for refused records, tenancy, the rate limit, and the
//! OpenTelemetry Python SDK's log exporters over both transports.

use std::process::Command;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tripod::Config;
use tripod::config::ListenerName;

use crate::support::{gzip, now_ns, post, python_with, server, server_with, stored};

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn record(t_ns: i64, body: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: t_ns as u64,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
        attributes,
        trace_id: vec![0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36],
        span_id: vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        ..Default::default()
    }
}

fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", "checkout"),
                    attribute("k8s.namespace.name", "shop"),
                    attribute("host.name", "node-7"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "checkout.orders".into(), ..Default::default() }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

const STREAM: &str = r#"{k8s_namespace_name="shop", service_name="checkout"}"#;
const METADATA: &str = r#"{host_name="node-7", order_id="17", scope_name="checkout.orders", severity_number="17", severity_text="ERROR", span_id="00f067aa0ba902b7", trace_id="4bf92f3577b34da6a3ce929d0e0e4736"}"#;

#[tokio::test]
async fn http_protobuf_with_partial_success() {
    let server = server().await;
    let t = now_ns();
    let too_old = t - 30 * 24 * 3600 * 1_000_000_000;
    let body = request(vec![
        record(t, "payment declined", vec![attribute("order.id", "17")]),
        record(too_old, "ancient", vec![]),
    ])
    .encode_to_vec();
    let url = format!("http://{}/v1/logs", server.address(ListenerName::OtlpHttp).unwrap());
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer = ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("refused (greater_than_max_sample_age)"), "{}", partial.error_message);
    let stored = stored(&server.storage().unwrap(), "fake");
    assert_eq!(stored, vec![(STREAM.to_string(), t, "payment declined".to_string(), METADATA.to_string())]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_json_with_hex_ids_and_gzip_on_the_main_router() {
    let server = server().await;
    let t = now_ns();
    let body = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}},
            {"key": "host.name", "value": {"stringValue": "node-7"}},
        ]},
        "scopeLogs": [{
            "scope": {"name": "checkout.orders"},
            "logRecords": [{
                "timeUnixNano": t.to_string(),
                "severityNumber": 17,
                "severityText": "ERROR",
                "body": {"stringValue": "payment declined"},
                "attributes": [{"key": "order.id", "value": {"stringValue": "17"}}],
                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                "spanId": "00f067aa0ba902b7",
            }],
        }],
    }]})
    .to_string();
    // /otlp/v1/logs on the Loki port, as Loki serves it.
    let url = format!("http://{}/otlp/v1/logs", server.address(ListenerName::Loki).unwrap());
    let (status, answer) =
        post(&url, Some("application/json"), &[("content-encoding", "gzip")], gzip(body.as_bytes())).await;
    assert_eq!((status, answer.as_str()), (200, "{}"));
    let stored = stored(&server.storage().unwrap(), "fake");
    assert_eq!(stored, vec![(STREAM.to_string(), t, "payment declined".to_string(), METADATA.to_string())]);

    let (status, answer) = post(&url, Some("application/json"), &[], b"{\"resourceLogs\": 5}".to_vec()).await;
    assert_eq!(status, 400);
    assert!(answer.contains("body is not OTLP logs JSON"), "{answer}");
    let (status, _) = post(&url, Some("text/plain"), &[], b"x".to_vec()).await;
    assert_eq!(status, 415);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_export_with_tenants_and_the_rate_limit() {
    let mut config = Config::embedded();
    config.logs_ingest.auth_enabled = true;
    config.logs_ingest.limits.ingestion_rate_mb = 1.0 / 1024.0;
    config.logs_ingest.limits.ingestion_burst_size_mb = 1.0 / 1024.0;
    let server = server_with(config).await;
    let endpoint = format!("http://{}", server.address(ListenerName::OtlpGrpc).unwrap());
    let mut client = LogsServiceClient::connect(endpoint).await.unwrap();
    let t = now_ns();

    let error = client.export(request(vec![record(t, "no tenant", vec![])])).await.unwrap_err();
    assert_eq!((error.code(), error.message()), (tonic::Code::Unauthenticated, "no org id"));

    let mut with_tenant =
        tonic::Request::new(request(vec![record(t, "payment declined", vec![attribute("order.id", "17")])]));
    with_tenant.metadata_mut().insert("x-scope-orgid", "team-a".parse().unwrap());
    let answer = client.export(with_tenant).await.unwrap().into_inner();
    assert_eq!(answer.partial_success, None);
    let stored_a = stored(&server.storage().unwrap(), "team-a");
    assert_eq!(stored_a, vec![(STREAM.to_string(), t, "payment declined".to_string(), METADATA.to_string())]);

    // Over the 1 KiB burst: refused whole.
    let big = "q".repeat(2000);
    let mut over = tonic::Request::new(request(vec![record(t + 1, &big, vec![])]));
    over.metadata_mut().insert("x-scope-orgid", "team-a".parse().unwrap());
    let error = client.export(over).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    assert!(error.message().starts_with("ingestion rate limit exceeded for tenant \"team-a\""), "{}", error.message());
    assert_eq!(stored(&server.storage().unwrap(), "team-a").len(), 1);
    server.shutdown().await.unwrap();
}

/// What the Python SDK script logs, as stored: `(stream, line, metadata)`.
fn check_sdk_export(server: &tripod::Server) {
    let stored = stored(&server.storage().unwrap(), "fake");
    let shown: Vec<(String, String, String)> =
        stored.into_iter().map(|(stream, _, line, metadata)| (stream, line, metadata)).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    let stream = r#"{deployment_environment="test", service_instance_id="pod-1", service_name="checkout", service_namespace="shop"}"#;
    assert!(shown.iter().all(|(s, _, _)| s == stream), "{shown:?}");
    let (_, line, metadata) = shown.iter().find(|(_, line, _)| line == "order 17 placed").expect("the info record");
    assert_eq!(line, "order 17 placed");
    assert!(metadata.contains(r#"order_id="17""#), "{metadata}");
    assert!(metadata.contains(r#"severity_text="INFO""#), "{metadata}");
    assert!(metadata.contains(r#"severity_number="9""#), "{metadata}");
    assert!(metadata.contains(r#"scope_name="tripod.tests""#), "{metadata}");
    assert!(metadata.contains(r#"telemetry_sdk_language="python""#), "{metadata}");
    assert!(metadata.contains(r#"trace_id="4bf92f3577b34da6a3ce929d0e0e4736""#), "{metadata}");
    let (_, _, warning) = shown.iter().find(|(_, line, _)| line == "payment retried").expect("the warning record");
    assert!(warning.contains(r#"severity_text="WARN""#), "{warning}");
}

async fn run_sdk(protocol: &str, endpoint: String) {
    let python = python_with("opentelemetry.sdk._logs").unwrap();
    let protocol = protocol.to_string();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(python).args(["tests/clients/otlp_logs.py", &protocol, &endpoint]).status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the SDK's export failed");
}

#[tokio::test]
async fn python_sdk_exports_logs_over_grpc() {
    if python_with("opentelemetry.sdk._logs").is_none() {
        return;
    }
    let server = server().await;
    run_sdk("grpc", format!("http://{}", server.address(ListenerName::OtlpGrpc).unwrap())).await;
    check_sdk_export(&server);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn python_sdk_exports_logs_over_http() {
    if python_with("opentelemetry.sdk._logs").is_none() {
        return;
    }
    let server = server().await;
    run_sdk("http", format!("http://{}/v1/logs", server.address(ListenerName::OtlpHttp).unwrap())).await;
    check_sdk_export(&server);
    server.shutdown().await.unwrap();
}
