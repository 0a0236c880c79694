//! A real Prometheus (Debian's 2.42) scrapes itself, a real node-exporter and Tripod, and
//! remote-writes everything to Tripod. Every series Prometheus holds for a ten-second window
//! must be in Tripod with exactly the same samples, and PromQL queries over that data must
//! give the same answers from both.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tripod::config::ListenerName;
use tripod_storage::metrics::{MetricsQueryable, TimeRange, is_stale_nan};

use crate::support::{Running, compare_answers, free_port, labels_key, program, start_prometheus};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

type SeriesSamples = BTreeMap<String, Vec<(i64, u64)>>;

async fn prometheus_window(address: &str, end_ms: i64) -> SeriesSamples {
    let query = format!(
        "http://{address}/api/v1/query?query=%7B__name__%3D~%22.%2B%22%7D%5B10s%5D&time={}",
        end_ms as f64 / 1000.0
    );
    let body: serde_json::Value = reqwest::get(&query).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "success", "{body}");
    let mut out = SeriesSamples::new();
    for series in body["data"]["result"].as_array().unwrap() {
        let key = labels_key(series["metric"].as_object().unwrap());
        let samples = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let t_ms = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                let value: f64 = pair[1].as_str().unwrap().parse().unwrap();
                (t_ms, if value.is_nan() { f64::NAN.to_bits() } else { value.to_bits() })
            })
            .collect();
        out.insert(key, samples);
    }
    out
}

fn tripod_window(server: &tripod::Server, end_ms: i64) -> SeriesSamples {
    let storage = server.storage().unwrap();
    let range = TimeRange::new(end_ms - 10_000, end_ms).unwrap();
    let mut out = SeriesSamples::new();
    for series in storage.metrics().select(&[], range).unwrap() {
        // Range selectors leave staleness markers out; so does the comparison.
        let samples: Vec<(i64, u64)> = series
            .samples()
            .unwrap()
            .iter()
            .filter(|s| !is_stale_nan(s.value))
            .map(|s| (s.t_ms, if s.value.is_nan() { f64::NAN.to_bits() } else { s.value.to_bits() }))
            .collect();
        if !samples.is_empty() {
            out.insert(series.labels.to_string(), samples);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_delivers_every_series_sample_for_sample() {
    let Some(prometheus) = program("prometheus") else {
        return;
    };
    let Some(node_exporter) = program("prometheus-node-exporter").or_else(|| program("node_exporter")) else {
        return;
    };
    // Tripod's own scrapes of itself would land on the series Prometheus sends for its
    // scrapes of Tripod: this test is about remote write, so Tripod does not scrape.
    let mut config = tripod::Config::embedded();
    config.scrape.scrape_self = false;
    let server = crate::support::server_with(config).await;
    let tripod = server.address(ListenerName::Prometheus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (prometheus_port, node_port) = (free_port(), free_port());

    let _node = Running(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node exporter starts"),
    );
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{prometheus_port}"]}}]
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node_port}"]}}]
  - job_name: tripod
    static_configs: [{{targets: ["{tripod}"]}}]
remote_write:
  - url: http://{tripod}/api/v1/write
    queue_config:
      min_shards: 1
      max_shards: 1
      batch_send_deadline: 500ms
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send_interval: 1s
"#
    );
    let _prometheus = start_prometheus(&prometheus, dir.path(), &config, prometheus_port, &[]);

    // Wait until every target has been scraped for a while and the data reached Tripod.
    let storage = server.storage().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = now_ms();
    loop {
        let jobs = storage.metrics().label_values("job", &[], TimeRange::all()).unwrap();
        if jobs.len() >= 3 && storage.metrics().stats().head_max_t > started + 12_000 {
            break;
        }
        assert!(Instant::now() < deadline, "no data from prometheus; jobs seen: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end_ms = now_ms() - 2_000;
    let expected = prometheus_window(&format!("127.0.0.1:{prometheus_port}"), end_ms).await;
    // Remote write trails the scrapes: wait until Tripod holds samples well past the window.
    while storage.metrics().stats().head_max_t < end_ms + 3_000 {
        assert!(Instant::now() < deadline, "remote write did not catch up");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let actual = tripod_window(&server, end_ms);

    assert!(expected.len() > 300, "expected hundreds of series, prometheus has {}", expected.len());
    for job in ["prometheus", "node", "tripod"] {
        assert!(expected.keys().any(|k| k.contains(&format!("job=\"{job}\""))), "no {job} series");
    }
    let missing: Vec<&String> = expected.keys().filter(|k| !actual.contains_key(*k)).collect();
    let extra: Vec<&String> = actual.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "series differ: missing {missing:?}, extra {extra:?}");
    let differing: Vec<&String> = expected.keys().filter(|k| expected[*k] != actual[*k]).collect();
    assert!(
        differing.is_empty(),
        "{} of {} series differ, e.g. {}: prometheus {:?} tripod {:?}",
        differing.len(),
        expected.len(),
        differing[0],
        expected[differing[0]],
        actual[differing[0]]
    );

    // The same data in both: every query must give the same answer from both.
    let ms_offsets: Vec<i64> = actual.values().flatten().map(|(t, _)| t.rem_euclid(1000)).collect();
    let at = boundary_free_time(end_ms, &ms_offsets);
    compare_queries(&format!("127.0.0.1:{prometheus_port}"), &tripod.to_string(), at).await;
    server.shutdown().await.unwrap();
}

/// A time at or before `end_ms` whose millisecond offset within the second is at least 5 ms
/// from every sample's. Windows of whole seconds then never have a sample on their edge, where
/// Prometheus 2 (closed) and 3 (left-open) differ.
fn boundary_free_time(end_ms: i64, sample_offsets: &[i64]) -> i64 {
    (0..1000)
        .map(|back| end_ms - back)
        .find(|t| {
            let offset = t.rem_euclid(1000);
            sample_offsets.iter().all(|&o| {
                let distance = (offset - o).rem_euclid(1000);
                distance.min(1000 - distance) >= 5
            })
        })
        .expect("a second has room for a time away from every scrape offset")
}

/// Queries Grafana dashboards use, over what Prometheus scraped from itself, node-exporter and
/// Tripod. `rate` and `increase` run over counters far from zero: for a counter that started
/// within about one window, Prometheus 3 (whose rules Tripod follows) applies the zero-point
/// limit after the extrapolation threshold and 2.42 before it, and their answers differ.
const DIFFERENTIAL_QUERIES: &[&str] = &[
    "up",
    "sum by (job) (up)",
    "count by (job) (up)",
    "up == 1",
    "scrape_duration_seconds > bool 0.0001",
    "rate(node_cpu_seconds_total[5s])",
    "sum by (job) (rate(scrape_samples_scraped[10s]))",
    "increase(node_network_receive_bytes_total[10s])",
    "irate(process_cpu_seconds_total[5s])",
    "1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[10s]))",
    "histogram_quantile(0.9, sum by (le) (prometheus_http_request_duration_seconds_bucket))",
    "topk(3, scrape_samples_scraped)",
    "bottomk(2, scrape_series_added)",
    "quantile(0.5, scrape_duration_seconds)",
    "count_values(\"value\", up)",
    "avg_over_time(scrape_duration_seconds[10s])",
    "max_over_time(scrape_samples_scraped[10s]) - min_over_time(scrape_samples_scraped[10s])",
    "deriv(process_resident_memory_bytes[10s])",
    "predict_linear(process_resident_memory_bytes[10s], 60)",
    "changes(process_resident_memory_bytes[10s])",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "up * on (instance) group_left (version) prometheus_build_info",
    "up unless on (job) prometheus_build_info",
    "absent(nonexistent_metric{job=\"x\"})",
    // Subquery steps are whole seconds, not boundary-free: only instant selectors inside.
    "sum(scrape_duration_seconds)[30s:2s]",
    "max_over_time(sum(scrape_samples_scraped)[10s:1s])",
    "time() - process_start_time_seconds",
    "clamp_max(scrape_duration_seconds * 1000, 5)",
];

async fn compare_queries(prometheus: &str, tripod: &str, at_ms: i64) {
    let client = reqwest::Client::new();
    let at = format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000));
    let range_start = format!("{}.{:03}", (at_ms - 8_000).div_euclid(1000), at_ms.rem_euclid(1000));
    for query in DIFFERENTIAL_QUERIES {
        let mut forms = vec![("/api/v1/query", vec![("query", *query), ("time", at.as_str())])];
        if !query.ends_with(":2s]") {
            forms.push((
                "/api/v1/query_range",
                vec![("query", *query), ("start", range_start.as_str()), ("end", at.as_str()), ("step", "2")],
            ));
        }
        for (path, form) in forms {
            let answer = compare_answers(&client, prometheus, tripod, path, &form)
                .await
                .unwrap_or_else(|difference| panic!("{path} {query}: {difference}"));
            assert!(!answer.1.is_empty() || query.starts_with("absent"), "{path} {query}: prometheus has no result");
        }
    }
}
