//! Labels, label values, series, metadata and exemplars: GET and POST (form) alike, the exact
//! JSON shapes, and Prometheus's errors.

use serde_json::json;
use tripod::{Config, Server};
use tripod_storage::labels::Labels;
use tripod_storage::metrics::{
    Exemplar, MetricMetadata, MetricType, MetricsAppender, Sample, SeriesKey, SeriesSamples,
};

use crate::http::{get, post, url};

const T0: i64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

/// A server holding a few series, one with an exemplar, and metadata.
async fn loaded() -> Server {
    // Without self-scraping: its series would join the lists these tests compare exactly.
    let mut config = Config::embedded();
    config.scrape.scrape_self = false;
    let server = Server::start(config).await.unwrap();
    server.ready().await.unwrap();
    let storage = server.storage().unwrap();
    let series = [
        (labels(&[("__name__", "up"), ("job", "api"), ("instance", "a:1")]), T0),
        (labels(&[("__name__", "up"), ("job", "db"), ("instance", "b:1")]), T0),
        (labels(&[("__name__", "http_requests_total"), ("job", "api"), ("code", "200")]), T0 + 60_000),
        (labels(&[("__name__", "http_request_duration_seconds_bucket"), ("job", "api"), ("le", "0.5")]), T0),
    ];
    let exemplar = [Exemplar {
        labels: labels(&[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
        value: 0.37,
        t_ms: T0 + 3_141,
    }];
    for (series_labels, t) in &series {
        let samples = [Sample { t_ms: *t, value: 1.0 }, Sample { t_ms: *t + 15_000, value: 2.0 }];
        let exemplars: &[Exemplar] = if series_labels.get("le").is_some() { &exemplar } else { &[] };
        let batch = [SeriesSamples { key: SeriesKey::Labels(series_labels), samples: &samples, exemplars }];
        storage.metrics().append(&batch).unwrap();
    }
    storage
        .metrics()
        .set_metadata(
            "http_requests_total",
            MetricMetadata { metric_type: MetricType::Counter, help: "Requests.".into(), unit: String::new() },
        )
        .unwrap();
    storage
        .metrics()
        .set_metadata(
            "up",
            MetricMetadata { metric_type: MetricType::Gauge, help: "Target up.".into(), unit: String::new() },
        )
        .unwrap();
    server
}

#[tokio::test]
async fn labels_and_values_by_get_and_post() {
    let server = loaded().await;
    let (status, body) = get(&server, "/api/v1/labels").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success", "data": ["__name__", "code", "instance", "job", "le"]}));
    let (_, body) =
        post(&server, "/api/v1/labels", &[("match[]", "up"), ("start", "1700000000"), ("end", "1700000100")]).await;
    assert_eq!(body["data"], json!(["__name__", "instance", "job"]));
    // Grafana's resource calls keep the URL query and send a form body: both count.
    let (_, body) = post(&server, "/api/v1/labels?match[]=http_requests_total", &[("limit", "2")]).await;
    assert_eq!(body["data"], json!(["__name__", "code"]));

    let (_, body) = get(&server, "/api/v1/label/__name__/values").await;
    assert_eq!(body["data"], json!(["http_request_duration_seconds_bucket", "http_requests_total", "up"]));
    let (_, body) = get(&server, "/api/v1/label/job/values?match[]=up%7Bjob%3D~%22d.*%22%7D").await;
    assert_eq!(body["data"], json!(["db"]));
    let (_, body) = post(&server, "/api/v1/label/job/values", &[("match[]", "http_requests_total")]).await;
    assert_eq!(body["data"], json!(["api"]));
    // Nothing in range answers an empty array, never null.
    let (_, body) = get(&server, "/api/v1/label/job/values?start=1&end=2").await;
    assert_eq!(body, json!({"status": "success", "data": []}));
    // Time ranges are RFC3339 too; the UTF-8 escaped form of a name works.
    let (_, body) =
        get(&server, "/api/v1/label/U__job/values?start=2023-11-14T22:13:20Z&end=2023-11-14T22:14:00Z").await;
    assert_eq!(body["data"], json!(["api", "db"]));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn series_and_metadata() {
    let server = loaded().await;
    let (status, body) = post(&server, "/api/v1/series", &[("match[]", "up"), ("match[]", r#"{code="200"}"#)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!([
            {"__name__": "http_requests_total", "code": "200", "job": "api"},
            {"__name__": "up", "instance": "a:1", "job": "api"},
            {"__name__": "up", "instance": "b:1", "job": "db"},
        ])
    );
    let (status, body) = get(&server, "/api/v1/series").await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"status": "error", "errorType": "bad_data", "error": "no match[] parameter provided"}));
    let (status, body) = get(&server, "/api/v1/series?match[]=rate(up%5B5m%5D)").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("not a series selector"), "{body}");

    let (_, body) = get(&server, "/api/v1/metadata").await;
    assert_eq!(
        body["data"],
        json!({
            "http_requests_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
            "up": [{"type": "gauge", "help": "Target up.", "unit": ""}],
        })
    );
    let (_, body) = post(&server, "/api/v1/metadata", &[("metric", "up")]).await;
    assert_eq!(body["data"].as_object().unwrap().len(), 1);
    let (_, body) = get(&server, "/api/v1/metadata?limit=1").await;
    assert_eq!(body["data"].as_object().unwrap().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn exemplars_answer_grafanas_probe_and_real_queries() {
    let server = loaded().await;
    // Grafana's availability probe: query=test with millisecond times must succeed, empty.
    let (status, body) = get(&server, "/api/v1/query_exemplars?query=test&start=1700000000000&end=1700003600000").await;
    assert_eq!((status, body), (200, json!({"status": "success", "data": []})));
    let (status, body) = post(
        &server,
        "/api/v1/query_exemplars",
        &[
            ("query", "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"),
            ("start", "1700000000"),
            ("end", "1700000060"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!([{
            "seriesLabels": {"__name__": "http_request_duration_seconds_bucket", "job": "api", "le": "0.5"},
            "exemplars": [{"labels": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}, "value": "0.37", "timestamp": 1700000003.141}],
        }])
    );
    let (status, body) = get(&server, "/api/v1/query_exemplars?query=sum(").await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_are_bad_data() {
    let server = loaded().await;
    let cases = [
        (
            "/api/v1/labels?start=yesterday",
            "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp",
        ),
        ("/api/v1/labels?start=20&end=10", "end timestamp must not be before start time"),
        ("/api/v1/label/job/values?limit=-1", "invalid parameter \"limit\""),
        ("/api/v1/labels?match[]=%7B", "invalid parameter \"match[]\""),
    ];
    for (path, message) in cases {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "bad_data");
        assert!(body["error"].as_str().unwrap().contains(message), "{path}: {body}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn format_query_and_status_pages() {
    let mut config = Config::embedded();
    config.scrape.scrape_self = false;
    let server = Server::start(config).await.unwrap();
    server.ready().await.unwrap();
    let storage = server.storage().unwrap();
    for (job, instance) in [("api", "a:1"), ("db", "b:1")] {
        let series = labels(&[("__name__", "up"), ("job", job), ("instance", instance)]);
        let batch = [SeriesSamples {
            key: SeriesKey::Labels(&series),
            samples: &[Sample { t_ms: T0, value: 1.0 }],
            exemplars: &[],
        }];
        storage.metrics().append(&batch).unwrap();
    }

    let (status, body) = post(&server, "/api/v1/format_query", &[("query", "sum(rate(up[5m]))by(job)")]).await;
    assert_eq!((status, body["data"].as_str().unwrap()), (200, "sum by (job) (rate(up[5m]))"));
    let (status, body) = get(&server, "/api/v1/format_query?query=sum(").await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");

    let (_, body) = get(&server, "/api/v1/status/config").await;
    let yaml = body["data"]["yaml"].as_str().unwrap();
    assert!(yaml.starts_with("global:\n  scrape_interval: 15s\n"), "{yaml}");
    let (_, body) = get(&server, "/api/v1/status/flags").await;
    assert_eq!(body["data"]["storage.tsdb.retention.time"], "15d");
    assert_eq!(body["data"]["storage.tsdb.out-of-order-time-window"], "1h");
    let (_, body) = get(&server, "/api/v1/status/runtimeinfo").await;
    assert!(body["data"]["startTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["reloadConfigSuccess"], true);
    assert_eq!(body["data"]["storageRetention"], "15d");

    let (status, body) = get(&server, "/api/v1/status/tsdb").await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["headStats"]["numSeries"], 2);
    assert_eq!(data["headStats"]["chunkCount"], 2);
    assert_eq!(data["headStats"]["minTime"], T0);
    assert_eq!(data["seriesCountByMetricName"], json!([{"name": "up", "value": 2}]));
    assert_eq!(data["labelValueCountByLabelName"][0], json!({"name": "instance", "value": 2}));
    assert_eq!(data["seriesCountByLabelValuePair"][0], json!({"name": "__name__=up", "value": 2}));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn federate_serves_the_latest_fresh_sample_of_each_selected_series() {
    let server = Server::start(Config::embedded()).await.unwrap();
    server.ready().await.unwrap();
    let storage = server.storage().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let series: [(Labels, Vec<Sample>); 5] = [
        (
            labels(&[("__name__", "up"), ("job", "api"), ("path", "a\"b\\c\nd")]),
            vec![Sample { t_ms: now - 30_000, value: 0.0 }, Sample { t_ms: now - 15_000, value: 1.0 }],
        ),
        (labels(&[("__name__", "bytes_total"), ("job", "api")]), vec![Sample { t_ms: now - 1_000, value: 2.5e9 }]),
        (
            labels(&[("__name__", "up"), ("job", "gone")]),
            vec![Sample { t_ms: now - 20_000, value: 1.0 }, Sample { t_ms: now - 5_000, value: stale }],
        ),
        (labels(&[("__name__", "up"), ("job", "old")]), vec![Sample { t_ms: now - 600_000, value: 1.0 }]),
        (labels(&[("job", "api"), ("nameless", "yes")]), vec![Sample { t_ms: now - 1_000, value: 7.0 }]),
    ];
    for (series_labels, samples) in &series {
        let batch = [SeriesSamples { key: SeriesKey::Labels(series_labels), samples, exemplars: &[] }];
        storage.metrics().append(&batch).unwrap();
    }

    let query = "/federate?match[]=%7Bjob%3D~%22.%2B%22%7D&match[]=up";
    let response = reqwest::get(url(&server, query)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let body = response.text().await.unwrap();
    let want = format!(
        "# TYPE bytes_total untyped\nbytes_total{{job=\"api\"}} 2.5e+09 {}\n# TYPE up untyped\nup{{job=\"api\",path=\"a\\\"b\\\\c\\nd\"}} 1 {}\n",
        now - 1_000,
        now - 15_000
    );
    assert_eq!(body, want);

    let response = reqwest::get(url(&server, "/federate")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");

    let response = reqwest::get(url(&server, "/federate?match[]=up%7B")).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(!response.text().await.unwrap().is_empty());
    server.shutdown().await.unwrap();
}
