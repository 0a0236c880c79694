//! `/api/v1/query` and `/api/v1/query_range` over HTTP: Grafana's health check, instant and
//! range results byte for byte, parameters by GET and POST, and Prometheus's errors.

use serde_json::{Value, json};
use tripod::{Config, Server};
use tripod_storage::labels::Labels;
use tripod_storage::metrics::{MetricsAppender, Sample, SeriesKey, SeriesSamples};

use crate::http::{get_text, post};

const T0: i64 = 1_700_000_000_000;

async fn loaded() -> Server {
    loaded_with(Config::embedded()).await
}

async fn loaded_with(config: Config) -> Server {
    let server = Server::start(config).await.unwrap();
    server.ready().await.unwrap();
    let storage = server.storage().unwrap();
    for (instance, step) in [("a:1", 1.0), ("b:1", 2.0)] {
        let labels =
            Labels::from_pairs([("__name__", "requests_total"), ("job", "api"), ("instance", instance)]).unwrap();
        let samples: Vec<Sample> = (0..20).map(|i| Sample { t_ms: T0 + i * 15_000, value: step * i as f64 }).collect();
        let batch = [SeriesSamples { key: SeriesKey::Labels(&labels), samples: &samples, exemplars: &[] }];
        storage.metrics().append(&batch).unwrap();
    }
    server
}

#[tokio::test]
async fn grafana_health_check_and_instant_queries() {
    let server = loaded().await;
    // Grafana's datasource test: `1+1` at a time, by POST.
    let (status, body) = post(&server, "/api/v1/query", &[("query", "1+1"), ("time", "1700000000.5")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.5, "2"]}}));

    let t = (T0 + 60_000) / 1000;
    let (status, text) =
        get_text(&server, &format!("/api/v1/query?query=sum%20by%20(job)%20(requests_total)%20*%202&time={t}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        text,
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"job":"api"}},"value":[{t},"24"]}}]}}}}"#
        )
    );

    let (status, body) =
        post(&server, "/api/v1/query", &[("query", "requests_total{instance=\"a:1\"}[30s]"), ("time", &t.to_string())])
            .await;
    assert_eq!(status, 200);
    let t0 = T0 / 1000;
    assert_eq!(
        body["data"],
        json!({"resultType": "matrix", "result": [{
            "metric": {"__name__": "requests_total", "instance": "a:1", "job": "api"},
            "values": [[t0 + 45, "3"], [t0 + 60, "4"]],
        }]})
    );

    // Lookback: five minutes after the last sample the series is gone.
    let late = (T0 + 19 * 15_000 + 300_000) / 1000;
    let (_, body) = post(&server, "/api/v1/query", &[("query", "requests_total"), ("time", &late.to_string())]).await;
    assert_eq!(body["data"]["result"], json!([]));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn range_queries_fill_every_step() {
    let server = loaded().await;
    let (start, end) = (T0 / 1000, T0 / 1000 + 60);
    let form = [
        ("query", "requests_total - on(instance) requests_total"),
        ("start", &start.to_string()[..]),
        ("end", &end.to_string()[..]),
        ("step", "30s"),
    ];
    let (status, body) = post(&server, "/api/v1/query_range", &form).await;
    assert_eq!(status, 200);
    let zeros = json!([[start, "0"], [start + 30, "0"], [start + 60, "0"]]);
    assert_eq!(
        body["data"],
        json!({"resultType": "matrix", "result": [
            {"metric": {"instance": "a:1"}, "values": zeros},
            {"metric": {"instance": "b:1"}, "values": zeros},
        ]})
    );
    // A scalar becomes one series without labels; a float step in seconds works too.
    let path = format!("/api/v1/query_range?query=2&start={start}&end={end}&step=60");
    let (status, text) = get_text(&server, &path).await;
    assert_eq!(status, 200);
    let want = json!([{"metric": {}, "values": [[start, "2"], [end, "2"]]}]);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["data"]["result"], want);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_queries_get_prometheus_errors() {
    let server = loaded().await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 10] = [
        ("/api/v1/query", &[("query", "sum(")], 400, "invalid parameter \"query\""),
        ("/api/v1/query", &[("query", "up"), ("time", "yesterday")], 400, "invalid parameter \"time\""),
        ("/api/v1/query_range", &[("query", "up"), ("end", "10"), ("step", "1")], 400, "invalid parameter \"start\""),
        ("/api/v1/query_range", &[("query", "up"), ("start", "10"), ("end", "5"), ("step", "1")], 400, "end timestamp"),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "0"), ("end", "5"), ("step", "0")],
            400,
            "zero or negative",
        ),
        ("/api/v1/query_range", &[("query", "up"), ("start", "0"), ("end", "100000"), ("step", "1")], 400, "11,000"),
        (
            "/api/v1/query_range",
            &[("query", "up[5m]"), ("start", "0"), ("end", "5"), ("step", "1")],
            400,
            "range vector",
        ),
        // Bounds whose difference overflows a 64-bit millisecond count.
        ("/api/v1/query_range", &[("query", "1"), ("start", "-9e15"), ("end", "9e15"), ("step", "1")], 400, "11,000"),
        // A subquery with more steps than any query may load.
        ("/api/v1/query", &[("query", "max_over_time(requests_total[1000y:1ms])")], 422, "too many samples"),
        // Both sides have two series per `job`: ambiguous matching is an execution error.
        ("/api/v1/query", &[("query", "requests_total + on(job) requests_total"), ("time", "1700000060")], 422, "many"),
    ];
    for (path, form, want_status, want_message) in cases {
        let (status, body) = post(&server, path, form).await;
        assert_eq!(status, want_status, "{form:?}: {body}");
        assert_eq!(body["status"], "error");
        let want_type = if want_status == 400 { "bad_data" } else { "execution" };
        assert_eq!(body["errorType"], want_type, "{form:?}");
        assert!(body["error"].as_str().unwrap().contains(want_message), "{form:?}: {body}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_query_section_of_the_configuration_sets_the_limits() {
    let mut config = Config::embedded();
    config.query.max_samples = 30;
    config.query.lookback_delta_ms = 10_000;
    let server = loaded_with(config).await;
    let t = ((T0 + 285_000) / 1000).to_string();
    // 40 stored samples: more than the server allows one query to hold.
    let (status, body) = post(&server, "/api/v1/query", &[("query", "requests_total[10m]"), ("time", &t)]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("too many samples"), "{body}");
    // Four points of one series fit.
    let (status, body) =
        post(&server, "/api/v1/query", &[("query", "requests_total{instance=\"a:1\"}[1m]"), ("time", &t)]).await;
    assert_eq!(status, 200, "{body}");
    // Samples are 15 s apart: 7.5 s after one, a 10 s lookback still sees it; 12 s after, not.
    let between = format!("{}.5", (T0 + 67_000) / 1000);
    let (_, body) = post(&server, "/api/v1/query", &[("query", "requests_total"), ("time", &between)]).await;
    assert_eq!(body["data"]["result"].as_array().unwrap().len(), 2, "{body}");
    let late = ((T0 + 285_000 + 12_000) / 1000).to_string();
    let (_, body) = post(&server, "/api/v1/query", &[("query", "requests_total"), ("time", &late)]).await;
    assert_eq!(body["data"]["result"], json!([]), "{body}");
    // A request's own lookback_delta overrides the server's.
    let (_, body) =
        post(&server, "/api/v1/query", &[("query", "requests_total"), ("time", &late), ("lookback_delta", "1m")]).await;
    assert_eq!(body["data"]["result"].as_array().unwrap().len(), 2, "{body}");
    // status/flags shows the settings under Prometheus's flag names.
    let (_, body) = crate::http::get(&server, "/api/v1/status/flags").await;
    assert_eq!(body["data"]["query.max-samples"], "30");
    assert_eq!(body["data"]["query.lookback-delta"], "10s");
    server.shutdown().await.unwrap();
}
