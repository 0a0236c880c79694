//! Query behaviour beyond the contract: instant metric queries, parameter forms (times, steps,
//! POST forms, interval), read-your-writes, tenancy, the query self-metric, and every refusal
//! with its status and words.

use std::time::Duration;

use serde_json::{Value, json};
use tripod::Config;

use crate::support::*;

const APP: &[(&str, &str)] = &[("app", "api")];

async fn expect_error(server: &tripod::Server, path: &str, params: &[(&str, &str)], status: u16, words: &str) {
    let (got, body) = get(server, path, params).await;
    assert_eq!(got, status, "{path} {params:?}: {body}");
    assert!(body.contains(words), "{path} {params:?}: expected {words:?} in {body:?}");
}

#[tokio::test]
async fn instant_metric_queries_answer_vectors_and_scalars() {
    let server = server().await;
    let base = base_ns();
    push(&server, &[entry(APP, base + SECOND_NS, "a"), entry(APP, base + 2 * SECOND_NS, "b")]).await;
    let at = ns(base + MINUTE_NS);
    let answer =
        get_json(&server, "/loki/api/v1/query", &[("query", r#"count_over_time({app="api"}[5m])"#), ("time", &at)])
            .await;
    let at_seconds = (base + MINUTE_NS) / SECOND_NS;
    assert_eq!(
        without_stats(answer),
        json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{"app":"api"},"value":[at_seconds,"2"]}]}})
    );
    // Stats count what was read.
    let answer =
        get_json(&server, "/loki/api/v1/query", &[("query", r#"count_over_time({app="api"}[5m])"#), ("time", &at)])
            .await;
    assert_eq!(answer["data"]["stats"]["summary"]["totalLinesProcessed"], 2);
    assert_eq!(answer["data"]["stats"]["summary"]["totalBytesProcessed"], 2);
    // A literal is a scalar; times as float seconds and RFC 3339 name the same instant.
    let answer = get_json(&server, "/loki/api/v1/query", &[("query", "1 + 1"), ("time", "1700000000.5")]).await;
    assert_eq!(answer["data"]["resultType"], "scalar");
    assert_eq!(answer["data"]["result"], json!([1700000000.5, "2"]));
    let answer =
        get_json(&server, "/loki/api/v1/query", &[("query", "2 * 3"), ("time", "2023-11-14T22:13:20.5Z")]).await;
    assert_eq!(answer["data"]["result"], json!([1700000000.5, "6"]));
    // POST with a form, as Loki accepts too.
    let (status, body) =
        post_form(&server, "/loki/api/v1/query", &[("query", "vector(1)+vector(1)"), ("time", "4000000000")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"]["result"], json!([{"metric":{},"value":[4,"2"]}]));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn range_defaults_interval_and_read_your_writes() {
    let server = server().await;
    let now = now_ns();
    // Read-your-writes: each entry answers as soon as its push returned, with the default
    // range (the last hour up to now).
    for i in 0..5 {
        let line = format!("line {i}");
        push(&server, &[entry(APP, now - (10 - i) * SECOND_NS, &line)]).await;
        let answer = get_json(&server, "/loki/api/v1/query_range", &[("query", r#"{app="api"}"#)]).await;
        let values = answer["data"]["result"][0]["values"].as_array().unwrap().clone();
        assert_eq!(values.len(), i as usize + 1);
        assert_eq!(values[0][1], line.as_str(), "newest first");
    }
    // `since` instead of `start`: the 3 seconds before `end`.
    let end = ns(now - 5 * SECOND_NS - SECOND_NS / 2);
    let answer =
        get_json(&server, "/loki/api/v1/query_range", &[("query", r#"{app="api"}"#), ("since", "3s"), ("end", &end)])
            .await;
    let lines: Vec<&str> =
        answer["data"]["result"][0]["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()).collect();
    assert_eq!(lines, ["line 4", "line 3", "line 2"]);
    // `interval`: entries at least 2s apart, from the first in the query's direction.
    let answer = get_json(
        &server,
        "/loki/api/v1/query_range",
        &[("query", r#"{app="api"}"#), ("interval", "2s"), ("direction", "forward")],
    )
    .await;
    let lines: Vec<&str> =
        answer["data"]["result"][0]["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()).collect();
    assert_eq!(lines, ["line 0", "line 2", "line 4"]);
    assert_eq!(answer["data"]["stats"]["summary"]["totalEntriesReturned"], 3);
    // A metric range query without a step gets Loki's default (range / 250, at least 1s).
    let (start, end) = (ns(now - 1000 * SECOND_NS), ns(now));
    let answer =
        get_json(&server, "/loki/api/v1/query_range", &[("query", "vector(1)"), ("start", &start), ("end", &end)])
            .await;
    let values = answer["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 251, "1000s in 4s steps, both ends included");
    assert_eq!(values[1][0].as_f64().unwrap() - values[0][0].as_f64().unwrap(), 4.0);
    let start = ns(now - 20 * SECOND_NS);
    let answer = get_json(
        &server,
        "/loki/api/v1/query_range",
        &[("query", r#"sum(count_over_time({app="api"}[1h]))"#), ("start", &start), ("end", &end)],
    )
    .await;
    let values = answer["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 11, "1s steps from the first entry, 10s before the end, on");
    assert_eq!(values[10][1], "5");
    // The older endpoint answers the first API's form.
    let (status, body) = get(&server, "/api/prom/query", &[("query", r#"{app="api"} |= "line 4""#)]).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["streams"][0]["labels"], r#"{app="api"}"#);
    assert_eq!(answer["streams"][0]["entries"][0]["line"], "line 4");
    assert!(answer["streams"][0]["entries"][0]["ts"].as_str().unwrap().ends_with('Z'));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tenants_are_kept_apart_when_multi_tenancy_is_on() {
    let mut config = Config::embedded();
    config.logs_ingest.auth_enabled = true;
    let server = server_with(config).await;
    let base = base_ns();
    push_as(&server, Some("team-a"), &[entry(APP, base + SECOND_NS, "for a")]).await;
    push_as(&server, Some("team-b"), &[entry(APP, base + SECOND_NS, "for b")]).await;
    let (start, end) = (ns(base), ns(base + MINUTE_NS));
    let params = [("query", r#"{app="api"}"#), ("start", start.as_str()), ("end", end.as_str())];
    for tenant in ["team-a", "team-b"] {
        let (status, body) = get_with(&server, "/loki/api/v1/query_range", &params, &[("X-Scope-OrgID", tenant)]).await;
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["data"]["result"][0]["values"][0][1], format!("for {}", &tenant[5..]));
    }
    let (status, body) = get(&server, "/loki/api/v1/query_range", &params).await;
    assert_eq!((status, body.as_str()), (401, "no org id\n"));
    let (status, body) = get_with(&server, "/loki/api/v1/labels", &[], &[("X-Scope-OrgID", "team-a|team-b")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("several tenants"), "{body}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_refusal_names_the_problem() {
    let mut config = Config::embedded();
    config.logs_query.max_query_series = 2;
    let server = server_with(config).await;
    let base = base_ns();
    push(
        &server,
        &[
            entry(&[("app", "a")], base + SECOND_NS, "x"),
            entry(&[("app", "b")], base + SECOND_NS, "x"),
            entry(&[("app", "c")], base + SECOND_NS, "x"),
        ],
    )
    .await;
    let (start, end) = (ns(base), ns(base + MINUTE_NS));
    let range = |query: &'static str| vec![("query", query), ("start", start.as_str()), ("end", end.as_str())];
    let query_range = "/loki/api/v1/query_range";

    expect_error(&server, query_range, &range(r#"{app="a""#), 400, "parse error at line 1, col").await;
    expect_error(&server, query_range, &range(""), 400, "parse error").await;
    expect_error(
        &server,
        "/loki/api/v1/query",
        &[("query", r#"{app="a"}"#)],
        400,
        "log queries are not supported as an instant query type, please change your query to a range query type",
    )
    .await;
    let mut params = range(r#"{app="a"}"#);
    params.push(("limit", "5001"));
    expect_error(
        &server,
        query_range,
        &params,
        400,
        "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)",
    )
    .await;
    for (limit, words) in [
        ("0", "limit must be a positive value"),
        ("-3", "limit must be a positive value"),
        ("ten", "\"ten\" is not an integer"),
    ] {
        let mut params = range(r#"{app="a"}"#);
        params.push(("limit", limit));
        expect_error(&server, query_range, &params, 400, words).await;
    }
    for step in ["0", "-15"] {
        let mut params = range(r#"rate({app="a"}[1m])"#);
        params.push(("step", step));
        expect_error(
            &server,
            query_range,
            &params,
            400,
            "zero or negative query resolution step widths are not accepted",
        )
        .await;
    }
    let mut params = range(r#"rate({app="a"}[1m])"#);
    params.push(("step", "often"));
    expect_error(
        &server,
        query_range,
        &params,
        400,
        "invalid parameter \"step\": cannot parse \"often\" to a valid duration",
    )
    .await;
    let mut params = range(r#"{app="a"}"#);
    params.push(("interval", "-1s"));
    expect_error(&server, query_range, &params, 400, "invalid parameter \"interval\"").await;
    expect_error(
        &server,
        query_range,
        &[("query", r#"{app="a"}"#), ("start", &end), ("end", &start)],
        400,
        "end timestamp must not be before start time",
    )
    .await;
    expect_error(
        &server,
        query_range,
        &[("query", r#"{app="a"}"#), ("start", "yesterday")],
        400,
        "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp",
    )
    .await;
    let long_ago = ns(base - 722 * 3600 * SECOND_NS);
    expect_error(
        &server,
        query_range,
        &[("query", r#"{app="a"}"#), ("start", &long_ago), ("end", &end)],
        400,
        "the query time range exceeds the limit (query length: ",
    )
    .await;
    let four_hours_ago = ns(base - 4 * 3600 * SECOND_NS);
    expect_error(
        &server,
        query_range,
        &[("query", r#"rate({app="a"}[1m])"#), ("start", &four_hours_ago), ("end", &end), ("step", "1s")],
        400,
        "exceeded maximum resolution of 11,000 points",
    )
    .await;
    expect_error(
        &server,
        query_range,
        &range(r#"count_over_time({app=~".+"}[1m])"#),
        400,
        "maximum number of series (2) reached for a single query",
    )
    .await;
    expect_error(&server, query_range, &range(r#"{app="a"} |~ "(""#), 400, "invalid regular expression").await;
    expect_error(
        &server,
        "/api/prom/query",
        &range(r#"rate({app="a"}[1m])"#),
        400,
        "/api/prom/query answers log queries only",
    )
    .await;
    // Errors are plain text, as Loki answers them.
    let (_, body) = get(&server, query_range, &range(r#"{app="a""#)).await;
    assert!(body.ends_with('\n') && !body.starts_with('{'), "{body:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_query_past_its_timeout_gets_504_and_every_query_is_timed() {
    let mut config = Config::embedded();
    config.logs_query.query_timeout = Duration::from_nanos(1);
    let server = server_with(config).await;
    let base = base_ns();
    let lines: Vec<String> = (0..10_000).map(|i| format!("entry {i}")).collect();
    let entries: Vec<Entry<'_>> =
        lines.iter().enumerate().map(|(i, line)| entry(APP, base + i as i64 * 1000, line)).collect();
    push(&server, &entries).await;
    let (start, end) = (ns(base), ns(base + MINUTE_NS));
    // Every 4096 entries the engine looks at its deadline, long past here.
    let (status, body) = get(
        &server,
        "/loki/api/v1/query_range",
        &[("query", r#"sum(count_over_time({app="api"}[1m]))"#), ("start", &start), ("end", &end), ("step", "60s")],
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(body.starts_with("request timed out after "), "{body}");
    assert!(body.contains("(limits.query_timeout)"), "{body}");

    let metrics = reqwest::get(url(&server, "/metrics")).await.unwrap().text().await.unwrap();
    for name in ["tripod_logs_query_duration_seconds", "loki_query_duration_seconds"] {
        assert!(metrics.contains(&format!("# TYPE {name} histogram")), "{metrics}");
        assert!(metrics.contains(&format!("{name}_count{{type=\"metric\"}} 1\n")), "{metrics}");
        assert!(metrics.contains(&format!("{name}_count{{type=\"logs\"}} 0\n")), "{metrics}");
    }
    server.shutdown().await.unwrap();
}
