//! OTLP metrics: the Python OpenTelemetry SDK over gRPC and HTTP, protobuf and JSON bodies,
//! gzip, the Prometheus 3 translation, delta accumulation, partial success and rejections.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tripod::config::ListenerName;
use tripod_storage::labels::{MatchOp, Matcher};
use tripod_storage::metrics::{MetricType, MetricsQueryable, TimeRange};

use crate::support::server;

/// The venv's Python with the OpenTelemetry SDK, or `None` (skip) outside CI.
fn python() -> Option<PathBuf> {
    let candidate =
        std::env::var_os("TRIPOD_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".venv/bin/python"));
    let usable = candidate.is_file()
        && Command::new(&candidate)
            .args(["-c", "import opentelemetry.sdk.metrics"])
            .output()
            .is_ok_and(|o| o.status.success());
    if usable {
        return Some(candidate);
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("the OpenTelemetry Python SDK is not installed; scripts/test sets up .venv");
    }
    eprintln!("skipping: no Python with the OpenTelemetry SDK (scripts/test sets it up)");
    None
}

/// One value per series whose name is `name`, keyed by the labels other than `__name__`, `job`
/// and `instance` (which are checked separately).
fn latest_values(server: &tripod::Server, name: &str) -> Vec<(String, f64)> {
    let storage = server.storage().unwrap();
    let matcher = Matcher::new(MatchOp::Equal, "__name__", name).unwrap();
    storage
        .metrics()
        .select(&[matcher], TimeRange::all())
        .unwrap()
        .iter()
        .map(|series| {
            let rest: Vec<String> = series
                .labels
                .iter()
                .filter(|l| !matches!(l.name.as_ref(), "__name__" | "job" | "instance"))
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (rest.join(","), series.samples().unwrap().last().unwrap().value)
        })
        .collect()
}

fn check_sdk_export(server: &tripod::Server) {
    assert_eq!(
        latest_values(server, "orders_placed_total"),
        vec![("payment_method=card".into(), 3.0), ("payment_method=voucher".into(), 5.0)]
    );
    assert_eq!(latest_values(server, "queue_depth"), vec![(String::new(), 4.0)]);
    assert_eq!(latest_values(server, "cpu_utilization_ratio"), vec![("cpu=0".into(), 0.42)]);
    assert_eq!(
        latest_values(server, "http_server_duration_milliseconds_sum"),
        vec![("http_route=/api/orders".into(), 262.5)]
    );
    assert_eq!(
        latest_values(server, "http_server_duration_milliseconds_count"),
        vec![("http_route=/api/orders".into(), 2.0)]
    );
    let buckets = latest_values(server, "http_server_duration_milliseconds_bucket");
    assert!(buckets.contains(&("http_route=/api/orders,le=25".into(), 1.0)), "{buckets:?}");
    assert!(buckets.contains(&("http_route=/api/orders,le=250".into(), 2.0)), "{buckets:?}");
    assert!(buckets.contains(&("http_route=/api/orders,le=+Inf".into(), 2.0)), "{buckets:?}");
    // job and instance from the resource; the other resource attributes on target_info.
    let storage = server.storage().unwrap();
    let selected = storage
        .metrics()
        .select(&[Matcher::new(MatchOp::Equal, "__name__", "target_info").unwrap()], TimeRange::all())
        .unwrap();
    assert_eq!(selected.len(), 1);
    let info = &selected[0].labels;
    assert_eq!((info.get("job"), info.get("instance")), (Some("shop/checkout"), Some("pod-1")));
    assert_eq!(info.get("deployment_environment"), Some("test"));
    assert_eq!(info.get("telemetry_sdk_language"), Some("python"));
    let orders = storage
        .metrics()
        .select(&[Matcher::new(MatchOp::Equal, "__name__", "orders_placed_total").unwrap()], TimeRange::all())
        .unwrap();
    assert_eq!(orders[0].labels.get("job"), Some("shop/checkout"));
    let metadata = storage.metrics().metadata(Some("orders_placed_total")).unwrap();
    assert_eq!(metadata[0].1[0].metric_type, MetricType::Counter);
    assert_eq!(metadata[0].1[0].help, "Orders placed.");
}

#[tokio::test]
async fn python_sdk_exports_over_grpc() {
    let Some(python) = python() else { return };
    let server = server().await;
    let endpoint = format!("http://{}", server.address(ListenerName::OtlpGrpc).unwrap());
    let status = tokio::task::spawn_blocking(move || {
        Command::new(python).args(["tests/clients/otlp_metrics.py", "grpc", &endpoint]).status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the SDK's export failed");
    check_sdk_export(&server);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn python_sdk_exports_over_http() {
    let Some(python) = python() else { return };
    let server = server().await;
    let endpoint = format!("http://{}/v1/metrics", server.address(ListenerName::OtlpHttp).unwrap());
    let status = tokio::task::spawn_blocking(move || {
        Command::new(python).args(["tests/clients/otlp_metrics.py", "http", &endpoint]).status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the SDK's export failed");
    check_sdk_export(&server);
    server.shutdown().await.unwrap();
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![attribute("service.name", "api")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn delta_sum(value: i64, t_ms: u64) -> Metric {
    Metric {
        name: "jobs.done".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                time_unix_nano: t_ms * 1_000_000,
                value: Some(number_data_point::Value::AsInt(value)),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

async fn post(url: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().post(url).header("Content-Type", content_type).body(body);
    if let Some(encoding) = encoding {
        request = request.header("Content-Encoding", encoding);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn http_bodies_in_every_encoding_delta_sums_and_partial_success() {
    let server = server().await;
    let base = format!("http://{}", server.address(ListenerName::Prometheus).unwrap());
    // Protobuf on Prometheus's path, JSON gzip on the OTLP path: deltas accumulate.
    let first = request(vec![delta_sum(2, 1000)]);
    let (status, content_type, body) =
        post(&format!("{base}/api/v1/otlp/v1/metrics"), "application/x-protobuf", None, first.encode_to_vec()).await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-protobuf"));
    assert_eq!(ExportMetricsServiceResponse::decode(body.as_slice()).unwrap().partial_success, None);
    let second = serde_json::to_vec(&request(vec![delta_sum(3, 2000)])).unwrap();
    let (status, content_type, _) =
        post(&format!("{base}/otlp/v1/metrics"), "application/json", Some("gzip"), gzip(&second)).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(latest_values(&server, "jobs_done_total"), vec![(String::new(), 5.0)]);

    // Exponential histograms are refused as a partial success, the rest is stored.
    let mixed = request(vec![
        delta_sum(1, 3000),
        Metric {
            name: "latency".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: 3_000_000_000,
                    count: 1,
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ]);
    let (status, _, body) =
        post(&format!("{base}/v1/metrics"), "application/json", None, serde_json::to_vec(&mixed).unwrap()).await;
    assert_eq!(status, 200);
    let response: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(response["partialSuccess"]["rejectedDataPoints"], serde_json::json!("1"), "{response}");
    assert!(response["partialSuccess"]["errorMessage"].as_str().unwrap().contains("exponential histograms"));
    assert_eq!(latest_values(&server, "jobs_done_total"), vec![(String::new(), 6.0)]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_otlp_requests_get_status_bodies() {
    let mut config = tripod::Config::embedded();
    config.max_decompressed_bytes = 10_000;
    let server = crate::support::server_with(config).await;
    let url = format!("http://{}/v1/metrics", server.address(ListenerName::OtlpHttp).unwrap());
    let (status, content_type, body) = post(&url, "application/x-protobuf", None, vec![0x0a, 0xff, 0xff]).await;
    assert_eq!((status, content_type.as_str()), (400, "application/x-protobuf"));
    let rpc = tripod::api::otlp::metrics::RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(rpc.code, 3, "INVALID_ARGUMENT");
    assert!(rpc.message.contains("not an OTLP metrics protobuf message"), "{}", rpc.message);

    let (status, _, body) = post(&url, "application/json", None, b"{\"resourceMetrics\": 5}".to_vec()).await;
    assert_eq!(status, 400);
    let rpc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(rpc["message"].as_str().unwrap().contains("not OTLP metrics JSON"), "{rpc}");

    let (status, _, _) = post(&url, "text/plain", None, b"x".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _, _) = post(&url, "application/json", Some("br"), b"x".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _, _) = post(&url, "application/json", Some("gzip"), b"not gzip".to_vec()).await;
    assert_eq!(status, 400);
    // A small gzip body that inflates past the cap.
    let (status, _, body) = post(&url, "application/json", Some("gzip"), gzip(&vec![b' '; 100_000])).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_export_answers_and_refuses_like_otlp() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    let server = server().await;
    let endpoint = format!("http://{}", server.address(ListenerName::OtlpGrpc).unwrap());
    let mut client = MetricsServiceClient::connect(endpoint).await.unwrap();
    let response = client.export(request(vec![delta_sum(4, 1000)])).await.unwrap().into_inner();
    assert_eq!(response.partial_success, None);
    assert_eq!(latest_values(&server, "jobs_done_total"), vec![(String::new(), 4.0)]);
    // Gzip-compressed requests are accepted too.
    let mut gzip_client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    gzip_client.export(request(vec![delta_sum(1, 2000)])).await.unwrap();
    assert_eq!(latest_values(&server, "jobs_done_total"), vec![(String::new(), 5.0)]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn utf8_names_are_kept_when_configured() {
    let mut config = tripod::Config::embedded();
    config.otlp_translation = tripod::ingest::otlp_metrics::TranslationStrategy::NoUtf8EscapingWithSuffixes;
    let server = crate::support::server_with(config).await;
    let url = format!("http://{}/v1/metrics", server.address(ListenerName::OtlpHttp).unwrap());
    let (status, _, _) =
        post(&url, "application/x-protobuf", None, request(vec![delta_sum(7, 1000)]).encode_to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(latest_values(&server, "jobs.done_total"), vec![(String::new(), 7.0)]);
    server.shutdown().await.unwrap();
}
