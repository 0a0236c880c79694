//! The embedded server: every listener answers health checks, buildinfo and self-metrics have
//! the shapes clients expect, readiness follows storage, and shutdown closes everything.

use std::net::SocketAddr;

use tower::ServiceExt;
use tripod::api::{AppState, router};
use tripod::config::ListenerName;
use tripod::{Config, Server, ServerError};

async fn started() -> Server {
    let server = Server::start(Config::embedded()).await.expect("embedded server starts");
    server.ready().await.expect("storage opens");
    server
}

fn url(address: SocketAddr, path: &str) -> String {
    format!("http://{address}{path}")
}

async fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
    let response = reqwest::get(url(address, path)).await.expect("request succeeds");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|value| value.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn every_http_listener_answers_health_checks() {
    let server = started().await;
    for name in [ListenerName::Loki, ListenerName::Prometheus, ListenerName::Tempo, ListenerName::OtlpHttp] {
        let address = server.address(name).expect("listener is on");
        assert_eq!(get(address, "/ready").await, (200, "text/plain; charset=utf-8".into(), "ready\n".into()), "{name}");
        assert_eq!(get(address, "/-/ready").await.0, 200, "{name}");
        assert_eq!(get(address, "/-/healthy").await.0, 200, "{name}");
        // HEAD works as for GET, as Prometheus's health endpoints allow.
        let head = reqwest::Client::new().head(url(address, "/-/healthy")).send().await.unwrap();
        assert_eq!(head.status().as_u16(), 200);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn buildinfo_has_the_shapes_grafana_reads() {
    let server = started().await;
    let prometheus = server.address(ListenerName::Prometheus).unwrap();
    let (status, content_type, body) = get(prometheus, "/api/v1/status/buildinfo").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "success");
    for field in ["version", "revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(body["data"][field].is_string(), "data.{field} missing: {body}");
    }
    // A non-empty `features` object would make Grafana treat the datasource as Mimir.
    assert!(body["data"].get("features").is_none());
    // Grafana's resource calls may POST; they must not 404.
    let posted = reqwest::Client::new().post(url(prometheus, "/api/v1/status/buildinfo")).send().await.unwrap();
    assert_eq!(posted.status().as_u16(), 200);

    let loki = server.address(ListenerName::Loki).unwrap();
    let (status, _, body) = get(loki, "/loki/api/v1/status/buildinfo").await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Loki's buildinfo is not wrapped in status/data.
    assert!(body.get("status").is_none());
    let version = body["version"].as_str().unwrap();
    assert!(version.starts_with("3."), "{version}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_process_and_wal_figures() {
    let server = started().await;
    let (status, content_type, body) = get(server.address(ListenerName::Prometheus).unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for name in [
        "tripod_build_info{",
        "tripod_uptime_seconds ",
        "tripod_ready 1",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "tripod_wal_records_appended_total ",
        "tripod_wal_replay_duration_seconds ",
        "tripod_metrics_head_series ",
        "tripod_metrics_samples_rejected_total{reason=\"too_old\"} ",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_are_404_and_doubled_slashes_still_route() {
    let server = started().await;
    let tempo = server.address(ListenerName::Tempo).unwrap();
    assert_eq!(get(tempo, "/no/such/path").await.0, 404);
    // A datasource URL ending in a slash makes Grafana's Tempo datasource ask for `//api/...`.
    assert_eq!(get(tempo, "//ready").await.2, "ready\n");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_listener_answers_unimplemented_for_services_not_served() {
    let server = started().await;
    let address = server.address(ListenerName::OtlpGrpc).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("grpc listener accepts connections");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/no.such.Service/Method");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let status = client.unary(tonic::Request::new(()), path, codec).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn not_ready_answers_503_with_the_reason() {
    // A router whose storage has not opened, as during a WAL replay.
    let app = router(AppState::new(), 1 << 20);
    for (path, body_start) in
        [("/ready", "not ready: storage is opening"), ("/-/ready", "Service Unavailable: storage is opening")]
    {
        let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 503, "{path}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).starts_with(body_start), "{path}: {body:?}");
    }
    // Liveness does not depend on storage.
    let request = axum::http::Request::get("/-/healthy").body(axum::body::Body::empty()).unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn storage_that_cannot_open_keeps_ready_at_503_and_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let holder = tripod_storage::Storage::open(dir.path(), Default::default()).unwrap();
    let mut config = Config::embedded();
    config.data_dir = tripod::config::DataDir::Path(dir.path().to_path_buf());
    let server = Server::start(config).await.unwrap();
    let error = server.ready().await.unwrap_err();
    assert!(error.to_string().contains("in use by another process"), "{error}");
    let (status, _, body) = get(server.address(ListenerName::Loki).unwrap(), "/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("storage failed to open"), "{body}");
    let stopped = server.run_until(std::future::pending()).await;
    assert!(matches!(stopped, Err(ServerError::StorageOpen(_))), "{stopped:?}");
    holder.close().unwrap();
}

#[tokio::test]
async fn shutdown_closes_every_listener_and_removes_ephemeral_data() {
    let server = started().await;
    let addresses: Vec<SocketAddr> = server.addresses().iter().map(|(_, address)| *address).collect();
    let data_dir = server.data_dir().to_path_buf();
    assert!(data_dir.join("wal").is_dir());
    server.shutdown().await.unwrap();
    for address in addresses {
        assert!(tokio::net::TcpStream::connect(address).await.is_err(), "{address} still accepts");
    }
    assert!(!data_dir.exists(), "ephemeral data directory left behind");
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded();
    config.data_dir = tripod::config::DataDir::Path(dir.path().to_path_buf());
    let server = Server::start(config.clone()).await.unwrap();
    server.ready().await.unwrap();
    server.shutdown().await.unwrap();
    assert!(dir.path().join("wal").is_dir(), "a persistent data directory is kept");
    let server = Server::start(config).await.unwrap();
    server.ready().await.expect("reopens its own data directory");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn switched_off_listeners_are_not_bound() {
    let mut config = Config::embedded();
    config.set_listen_address(ListenerName::Tempo, None);
    config.set_listen_address(ListenerName::OtlpGrpc, None);
    let server = Server::start(config).await.unwrap();
    assert_eq!(server.address(ListenerName::Tempo), None);
    assert_eq!(server.address(ListenerName::OtlpGrpc), None);
    assert_eq!(server.addresses().len(), 3);
    server.shutdown().await.unwrap();
}
