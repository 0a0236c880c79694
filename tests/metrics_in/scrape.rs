//! Scraping, end to end: a test exporter on loopback (text and OpenMetrics, auth), a real
//! node-exporter, Tripod itself; relabeling, staleness, sample limits, file discovery, the
//! targets APIs and reload.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tripod::config::{Config, ListenerName, Overrides};
use tripod_storage::labels::{MatchOp, Matcher};
use tripod_storage::metrics::{MetricsQueryable, TimeRange, is_stale_nan};

use crate::support::{program, server_with};

/// What the test exporter serves: (content type, body), changeable while running.
type Exposed = Arc<Mutex<(String, String)>>;

async fn exporter(exposed: Exposed) -> SocketAddr {
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let exposed = exposed.clone();
                async move {
                    let (content_type, body) = exposed.lock().unwrap().clone();
                    let authorized = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                    if let Some(auth) = body.strip_prefix("#auth ") {
                        let (expected, rest) = auth.split_once('\n').unwrap();
                        if authorized != Some(expected) {
                            return (StatusCode::UNAUTHORIZED, "no".to_string()).into_response();
                        }
                        return ([(header::CONTENT_TYPE, content_type)], rest.to_string()).into_response();
                    }
                    ([(header::CONTENT_TYPE, content_type)], body).into_response()
                }
            }),
        )
        .route("/broken", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

fn config_with(yaml: &str, dir: &std::path::Path) -> Config {
    let path = dir.join("tripod.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut config = Config::load(Some(&path), &Overrides::default()).expect("config loads");
    let embedded = Config::embedded();
    config.listen = embedded.listen;
    config.data_dir = embedded.data_dir;
    config.log_level = embedded.log_level;
    config
}

/// Waits (bounded) for `check` to hold on the stored samples of `name`.
async fn wait_for(
    server: &tripod::Server,
    matchers: &[Matcher],
    check: impl Fn(&[(String, Vec<f64>)]) -> bool,
) -> Vec<(String, Vec<f64>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let storage = server.storage().unwrap();
        let found: Vec<(String, Vec<f64>)> = storage
            .metrics()
            .select(matchers, TimeRange::all())
            .unwrap()
            .iter()
            .map(|s| (s.labels.to_string(), s.samples().unwrap().iter().map(|x| x.value).collect()))
            .collect();
        if check(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "condition not reached; last saw {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn name(value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, "__name__", value).unwrap()
}

fn m(label: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, label, value).unwrap()
}

async fn get_json(server: &tripod::Server, path: &str) -> serde_json::Value {
    let url = format!("http://{}{path}", server.address(ListenerName::Prometheus).unwrap());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_relabel_mark_stale_and_report_targets() {
    let exposed: Exposed = Arc::new(Mutex::new((
        "text/plain; version=0.0.4".into(),
        "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{code=\"200\",job=\"inner\"} 10\napp_requests_total{code=\"500\",job=\"inner\"} 1\napp_debug_gauge 3\napp_temperature_celsius 21.5\n".into(),
    )));
    let address = exporter(exposed.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        &format!(
            r#"
scrape:
  interval: 1s
  timeout: 1s
  configs:
    - job_name: app
      static_configs: [{{targets: ["{address}"], labels: {{team: core}}}}]
      metric_relabel_configs:
        - source_labels: [__name__]
          regex: app_debug_.*
          action: drop
        - source_labels: [code]
          target_label: status
        - regex: code
          action: labeldrop
    - job_name: filtered
      static_configs: [{{targets: ["{address}", "other:1"]}}]
      relabel_configs:
        - source_labels: [__address__]
          regex: other:1
          action: drop
      sample_limit: 2
    - job_name: broken
      metrics_path: /broken
      static_configs: [{{targets: ["{address}"]}}]
"#
        ),
        dir.path(),
    );
    let server = server_with(config).await;

    // Samples with target labels; the exposed job becomes exported_job; relabeling applied.
    let found = wait_for(&server, &[name("app_requests_total"), m("job", "app")], |f| f.len() == 2).await;
    assert_eq!(
        found[0].0,
        format!(
            r#"{{__name__="app_requests_total", exported_job="inner", instance="{address}", job="app", status="200", team="core"}}"#
        )
    );
    assert!(wait_for(&server, &[name("app_debug_gauge")], |_| true).await.is_empty(), "dropped by metric relabeling");
    wait_for(&server, &[name("up"), m("job", "app")], |f| f.len() == 1 && f[0].1.last() == Some(&1.0)).await;
    wait_for(&server, &[name("scrape_samples_scraped"), m("job", "app")], |f| {
        f.len() == 1 && f[0].1.last() == Some(&4.0)
    })
    .await;
    wait_for(&server, &[name("scrape_samples_post_metric_relabeling"), m("job", "app")], |f| {
        f.len() == 1 && f[0].1.last() == Some(&3.0)
    })
    .await;
    // The sample limit (2 of 4) fails the scrape; an HTTP error does too.
    wait_for(&server, &[name("up"), m("job", "filtered")], |f| f.len() == 1 && f[0].1.last() == Some(&0.0)).await;
    wait_for(&server, &[name("up"), m("job", "broken")], |f| f.len() == 1 && f[0].1.last() == Some(&0.0)).await;
    // Tripod scrapes itself by default.
    wait_for(&server, &[name("up"), m("job", "tripod")], |f| f.len() == 1 && f[0].1.last() == Some(&1.0)).await;
    wait_for(&server, &[name("tripod_build_info"), m("job", "tripod")], |f| f.len() == 1).await;

    // A series that disappears from the exposition ends with a staleness marker.
    exposed.lock().unwrap().1 = "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{code=\"200\"} 11\napp_requests_total{code=\"500\"} 1\napp_debug_gauge 4\n".into();
    let storage = server.storage().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let series = storage.metrics().select(&[name("app_temperature_celsius")], TimeRange::all()).unwrap();
        if series[0].samples().unwrap().last().is_some_and(|s| is_stale_nan(s.value)) {
            break;
        }
        assert!(Instant::now() < deadline, "no staleness marker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The targets API.
    let targets = get_json(&server, "/api/v1/targets").await;
    assert_eq!(targets["status"], "success");
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    let app = active.iter().find(|t| t["scrapePool"] == "app").unwrap();
    assert_eq!(app["health"], "up");
    assert_eq!(app["labels"]["team"], "core");
    assert_eq!(app["discoveredLabels"]["__address__"], address.to_string());
    assert_eq!(app["scrapeUrl"], format!("http://{address}/metrics"));
    assert_eq!(app["scrapeInterval"], "1s");
    assert!(app["lastScrape"].as_str().unwrap().ends_with('Z'));
    let filtered = active.iter().find(|t| t["scrapePool"] == "filtered").unwrap();
    assert_eq!(filtered["health"], "down");
    assert!(filtered["lastError"].as_str().unwrap().contains("sample limit"), "{filtered}");
    let broken = active.iter().find(|t| t["scrapePool"] == "broken").unwrap();
    assert!(broken["lastError"].as_str().unwrap().contains("500"), "{broken}");
    let dropped = targets["data"]["droppedTargets"].as_array().unwrap();
    assert!(dropped.iter().any(|t| t["discoveredLabels"]["__address__"] == "other:1"), "{targets}");
    let only_dropped = get_json(&server, "/api/v1/targets?state=dropped").await;
    assert!(only_dropped["data"]["activeTargets"].as_array().unwrap().is_empty());

    let metadata =
        get_json(&server, "/api/v1/targets/metadata?match_target=%7Bjob%3D%22app%22%7D&metric=app_requests_total")
            .await;
    assert_eq!(metadata["data"][0]["type"], "counter", "{metadata}");
    assert_eq!(metadata["data"][0]["help"], "Requests.");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_auth_file_discovery_and_reload() {
    let exposed: Exposed = Arc::new(Mutex::new((
        "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        "#auth Bearer s3cret\n# TYPE rpc_duration_seconds histogram\nrpc_duration_seconds_bucket{le=\"0.5\"} 3 # {trace_id=\"abc\"} 0.2 1700000000.5\nrpc_duration_seconds_bucket{le=\"+Inf\"} 5\nrpc_duration_seconds_count 5\nrpc_duration_seconds_sum 4.5\n# EOF\n".into(),
    )));
    let address = exporter(exposed.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    std::fs::write(
        dir.path().join("targets.json"),
        format!(r#"[{{"targets": ["{address}"], "labels": {{"env": "test"}}}}]"#),
    )
    .unwrap();
    let first = r#"
scrape:
  self: false
  interval: 1s
  timeout: 1s
  configs:
    - job_name: rpc
      bearer_token_file: token
      file_sd_configs: [{files: ["*.json"], refresh_interval: 1s}]
"#
    .to_string();
    let config = config_with(&first, dir.path());
    let server = server_with(config).await;
    let found = wait_for(&server, &[name("rpc_duration_seconds_bucket"), m("le", "0.5")], |f| f.len() == 1).await;
    assert!(found[0].0.contains(r#"env="test""#), "{found:?}");
    let exemplars = server
        .storage()
        .unwrap()
        .metrics()
        .exemplars(&[vec![name("rpc_duration_seconds_bucket")]], TimeRange::all())
        .unwrap();
    assert_eq!(exemplars[0].exemplars[0].labels.get("trace_id"), Some("abc"));
    assert_eq!(exemplars[0].exemplars[0].t_ms, 1_700_000_000_500);

    // Reload: a second job appears; a broken file leaves the running configuration.
    std::fs::write(
        dir.path().join("tripod.yaml"),
        format!("{first}    - job_name: second\n      authorization: {{credentials_file: token}}\n      static_configs: [{{targets: [\"{address}\"]}}]\n"),
    )
    .unwrap();
    let url = format!("http://{}/-/reload", server.address(ListenerName::Prometheus).unwrap());
    let answer = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    wait_for(&server, &[name("up"), m("job", "second")], |f| f.len() == 1 && f[0].1.last() == Some(&1.0)).await;
    std::fs::write(dir.path().join("tripod.yaml"), "scrape:\n  configs: [{job_name: x, scheme: ftp}]\n").unwrap();
    let answer = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 500);
    assert!(answer.text().await.unwrap().contains("scheme \"ftp\""));
    let targets = get_json(&server, "/api/v1/targets?state=active").await;
    assert_eq!(targets["data"]["activeTargets"].as_array().unwrap().len(), 2, "{targets}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_a_real_node_exporter() {
    let Some(node_exporter) = program("prometheus-node-exporter").or_else(|| program("node_exporter")) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(node_exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        &format!(
            "scrape:\n  self: false\n  interval: 1s\n  timeout: 1s\n  configs:\n    - job_name: node\n      static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n"
        ),
        dir.path(),
    );
    let server = server_with(config).await;
    wait_for(&server, &[name("up"), m("job", "node")], |f| f.len() == 1 && f[0].1.last() == Some(&1.0)).await;
    let found =
        wait_for(&server, &[Matcher::new(MatchOp::RegexMatch, "__name__", "node_.*").unwrap()], |f| f.len() > 50).await;
    assert!(found.iter().any(|(labels, _)| labels.contains("node_cpu_seconds_total")), "no cpu series");
    let scraped = wait_for(&server, &[name("scrape_samples_scraped"), m("job", "node")], |f| f.len() == 1).await;
    assert!(scraped[0].1.last().unwrap() > &100.0);
    let metadata = server.storage().unwrap().metrics().metadata(Some("node_cpu_seconds_total")).unwrap();
    assert_eq!(metadata[0].1[0].metric_type, tripod_storage::metrics::MetricType::Counter);
    server.shutdown().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

/// An HTTPS server with a self-signed certificate that answers every request with `body`.
async fn https_exporter(body: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_with_and_without_certificate_checks() {
    let address = https_exporter("secure_metric 42\n").await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        &format!(
            "scrape:\n  self: false\n  interval: 1s\n  timeout: 1s\n  configs:\n    - job_name: skip\n      scheme: https\n      tls_config: {{insecure_skip_verify: true}}\n      static_configs: [{{targets: [\"localhost:{}\"]}}]\n    - job_name: verify\n      scheme: https\n      static_configs: [{{targets: [\"localhost:{}\"]}}]\n",
            address.port(),
            address.port()
        ),
        dir.path(),
    );
    let server = server_with(config).await;
    wait_for(&server, &[name("secure_metric"), m("job", "skip")], |f| f.len() == 1 && f[0].1.last() == Some(&42.0))
        .await;
    // Without skipping verification the self-signed certificate is refused.
    wait_for(&server, &[name("up"), m("job", "verify")], |f| f.len() == 1 && f[0].1.last() == Some(&0.0)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent() {
    // "user:pass" in base64.
    let exposed: Exposed = Arc::new(Mutex::new(("text/plain".into(), "#auth Basic dXNlcjpwYXNz\nguarded 1\n".into())));
    let address = exporter(exposed).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        &format!(
            "scrape:\n  self: false\n  interval: 1s\n  timeout: 1s\n  configs:\n    - job_name: right\n      basic_auth: {{username: user, password: pass}}\n      static_configs: [{{targets: [\"{address}\"]}}]\n    - job_name: wrong\n      basic_auth: {{username: user, password: nope}}\n      static_configs: [{{targets: [\"{address}\"]}}]\n"
        ),
        dir.path(),
    );
    let server = server_with(config).await;
    wait_for(&server, &[name("guarded"), m("job", "right")], |f| f.len() == 1).await;
    wait_for(&server, &[name("up"), m("job", "wrong")], |f| f.len() == 1 && f[0].1.last() == Some(&0.0)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_removed_from_discovery_gets_staleness_markers() {
    let exposed: Exposed = Arc::new(Mutex::new(("text/plain".into(), "vanishing 1\n".into())));
    let address = exporter(exposed).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("targets.yml"), format!("- targets: ['{address}']\n")).unwrap();
    let config = config_with(
        "scrape:\n  self: false\n  interval: 1s\n  timeout: 1s\n  configs:\n    - job_name: sd\n      file_sd_configs: [{files: [targets.yml], refresh_interval: 1s}]\n",
        dir.path(),
    );
    let server = server_with(config).await;
    wait_for(&server, &[name("vanishing")], |f| f.len() == 1).await;
    std::fs::write(dir.path().join("targets.yml"), "[]\n").unwrap();
    let storage = server.storage().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let series = storage.metrics().select(&[name("vanishing")], TimeRange::all()).unwrap();
        let up = storage.metrics().select(&[name("up"), m("job", "sd")], TimeRange::all()).unwrap();
        let ended =
            |s: &tripod_storage::metrics::Series| s.samples().unwrap().last().is_some_and(|x| is_stale_nan(x.value));
        if ended(&series[0]) && ended(&up[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no staleness markers after the target went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let targets = get_json(&server, "/api/v1/targets").await;
    assert!(targets["data"]["activeTargets"].as_array().unwrap().is_empty(), "{targets}");
    server.shutdown().await.unwrap();
}

/// A scrape under way when the server stops does not keep the data directory locked: the
/// directory opens again as soon as `shutdown` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_under_way_does_not_outlive_shutdown() {
    // A target that accepts and never answers, telling the test when a scrape has connected.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (connected, mut connection) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = connected.send(()).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = config_with(
            &format!(
                "scrape:\n  self: false\n  interval: 2s\n  timeout: 2s\n  configs:\n    - job_name: silent\n      static_configs: [{{targets: [\"{address}\"]}}]\n"
            ),
            dir.path(),
        );
        config.data_dir = tripod::config::DataDir::Path(dir.path().join("data"));
        config
    };
    let server = server_with(config()).await;
    tokio::time::timeout(Duration::from_secs(30), connection.recv())
        .await
        .expect("the target is scraped")
        .expect("the target runs");
    server.shutdown().await.unwrap();
    let again = tripod::Server::start(config()).await.expect("server starts");
    again.ready().await.expect("the data directory is free once shutdown returned");
    again.shutdown().await.unwrap();
}
