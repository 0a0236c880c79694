//! Every request Grafana's Loki datasource (10.x to 12.x) sends, as it sends it, against the
//! exact JSON Grafana parses (grafana-contract.md section 2).

use serde_json::{Value, json};

use crate::support::*;

const API_INFO: &[(&str, &str)] = &[("app", "api"), ("level", "info")];
const API_ERROR: &[(&str, &str)] = &[("app", "api"), ("level", "error")];
const DB_INFO: &[(&str, &str)] = &[("app", "db"), ("level", "info")];

const LINE_10S: &str = "method=GET path=/users status=200 duration=12ms";
const LINE_20S: &str = "method=POST path=/orders status=500 duration=1.5s";
const LINE_30S: &str = r#"{"query":"select 1","rows":3,"db":{"name":"main"}}"#;
const LINE_70S: &str = "method=GET path=/users status=200 duration=15ms";
const LINE_130S: &str = "method=GET path=/health status=204 duration=1ms";

/// Five entries in three streams, from `base` on; returns `base`.
async fn seed(server: &tripod::Server) -> i64 {
    let base = base_ns();
    push(
        server,
        &[
            entry(API_INFO, base + 10 * SECOND_NS, LINE_10S),
            Entry {
                labels: API_ERROR,
                t_ns: base + 20 * SECOND_NS,
                line: LINE_20S,
                metadata: &[("trace_id", "abc123")],
            },
            entry(DB_INFO, base + 30 * SECOND_NS, LINE_30S),
            entry(API_INFO, base + 70 * SECOND_NS, LINE_70S),
            entry(API_INFO, base + 130 * SECOND_NS, LINE_130S),
        ],
    )
    .await;
    base
}

fn seconds(t_ns: i64) -> i64 {
    t_ns / SECOND_NS
}

#[tokio::test]
async fn health_check_of_grafana_10_2_and_later() {
    let server = server().await;
    // Exactly as Grafana's backend sends it, with and without the encoding flag.
    for headers in [&[][..], &[("X-Loki-Response-Encoding-Flags", "categorize-labels")][..]] {
        let (status, body) = get_with(
            &server,
            "/loki/api/v1/query?direction=backward&query=vector%281%29%2Bvector%281%29&time=4000000000",
            &[],
            headers,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            without_stats(answer),
            json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[4,"2"]}]}})
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_check_of_grafana_10_0_and_10_1_needs_labels() {
    let server = server().await;
    let now = now_ns();
    let (start, end) = (ns(now - 10 * MINUTE_NS), ns(now));
    let params = [("start", start.as_str()), ("end", end.as_str())];
    // No data yet: an empty list, never null (Grafana then says no labels were received).
    assert_eq!(get_json(&server, "/loki/api/v1/labels", &params).await, json!({"status":"success","data":[]}));
    push(&server, &[entry(API_INFO, now - MINUTE_NS, "ready")]).await;
    assert_eq!(
        get_json(&server, "/loki/api/v1/labels", &params).await,
        json!({"status":"success","data":["app","level"]})
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn log_queries_in_both_directions_with_limit_and_step() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 3 * MINUTE_NS));
    let query = r#"{app="api"}"#;
    // Structured metadata is folded into `stream` in this encoding, so the error entry is filed
    // under a label set of its own.
    let answer = get_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "backward"),
            ("limit", "1000"),
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("step", "15000ms"),
        ],
    )
    .await;
    assert_eq!(
        without_stats(answer),
        json!({"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"api","level":"error","trace_id":"abc123"},"values":[[ns(base + 20 * SECOND_NS), LINE_20S]]},
            {"stream":{"app":"api","level":"info"},"values":[
                [ns(base + 130 * SECOND_NS), LINE_130S],
                [ns(base + 70 * SECOND_NS), LINE_70S],
                [ns(base + 10 * SECOND_NS), LINE_10S]]}
        ]}})
    );

    // Forward, limited: the two oldest entries of the query, each under its stream.
    let answer = get_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "forward"),
            ("limit", "2"),
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("step", "15000ms"),
        ],
    )
    .await;
    assert_eq!(
        without_stats(answer),
        json!({"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"api","level":"error","trace_id":"abc123"},"values":[[ns(base + 20 * SECOND_NS), LINE_20S]]},
            {"stream":{"app":"api","level":"info"},"values":[[ns(base + 10 * SECOND_NS), LINE_10S]]}
        ]}})
    );

    // Backward, limited: the newest.
    let answer = get_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "backward"),
            ("limit", "1"),
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("step", "15000ms"),
        ],
    )
    .await;
    assert_eq!(
        without_stats(answer)["data"]["result"],
        json!([{"stream":{"app":"api","level":"info"},"values":[[ns(base + 130 * SECOND_NS), LINE_130S]]}])
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn logs_volume_histogram_queries() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 3 * MINUTE_NS));
    let expected = json!({"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"level":"error"},"values":[[seconds(base) + 60, "1"]]},
        {"metric":{"level":"info"},"values":[[seconds(base) + 60, "1"], [seconds(base) + 120, "1"], [seconds(base) + 180, "1"]]}
    ]}});
    // Grafana 10.2+ (the drop is appended because it parses), then the older form.
    for query in [
        r#"sum by (level, detected_level) (count_over_time({app="api"} | drop __error__ [1m]))"#,
        r#"sum by (level) (count_over_time({app="api"}[1m]))"#,
    ] {
        let (status, body) = get_with(
            &server,
            "/loki/api/v1/query_range",
            &[
                ("direction", "backward"),
                ("limit", "1000"),
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", "60000ms"),
            ],
            &[("X-Query-Tags", "Source=logvolhist")],
        )
        .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(without_stats(serde_json::from_str(&body).unwrap()), expected, "{query}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn categorized_labels_keep_indexed_metadata_and_parsed_apart() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 3 * MINUTE_NS));
    let params = [
        ("direction", "backward"),
        ("limit", "1000"),
        ("query", r#"{level="error"} | logfmt"#),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", "15000ms"),
    ];
    let (status, body) = get_with(
        &server,
        "/loki/api/v1/query_range",
        &params,
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        without_stats(serde_json::from_str(&body).unwrap()),
        json!({"status":"success","data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[
            {"stream":{"app":"api","level":"error"},"values":[[ns(base + 20 * SECOND_NS), LINE_20S, {
                "structuredMetadata":{"trace_id":"abc123"},
                "parsed":{"duration":"1.5s","method":"POST","path":"/orders","status":"500"}
            }]]}
        ]}})
    );
    // Without the flag every label is folded into `stream` and values have two elements.
    assert_eq!(
        without_stats(get_json(&server, "/loki/api/v1/query_range", &params).await),
        json!({"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"api","duration":"1.5s","level":"error","method":"POST","path":"/orders","status":"500","trace_id":"abc123"},
             "values":[[ns(base + 20 * SECOND_NS), LINE_20S]]}
        ]}})
    );
    // Entries without metadata or parsed labels still get their (empty) third element.
    let (_, body) = get_with(
        &server,
        "/loki/api/v1/query_range",
        &[("query", r#"{app="db"}"#), ("start", &start), ("end", &end)],
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    )
    .await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["data"]["result"],
        json!([{"stream":{"app":"db","level":"info"},"values":[[ns(base + 30 * SECOND_NS), LINE_30S, {}]]}])
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn label_browser_and_variables() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 5 * MINUTE_NS));
    let range = [("start", start.as_str()), ("end", end.as_str())];
    assert_eq!(
        get_json(&server, "/loki/api/v1/labels", &range).await,
        json!({"status":"success","data":["app","level"]})
    );
    assert_eq!(
        get_json(&server, "/loki/api/v1/label/app/values", &range).await,
        json!({"status":"success","data":["api","db"]})
    );
    let with_query = [("start", start.as_str()), ("end", end.as_str()), ("query", r#"{level="error"}"#)];
    assert_eq!(
        get_json(&server, "/loki/api/v1/label/app/values", &with_query).await,
        json!({"status":"success","data":["api"]})
    );
    let with_query = [("start", start.as_str()), ("end", end.as_str()), ("query", r#"{app="db"}"#)];
    assert_eq!(
        get_json(&server, "/loki/api/v1/labels", &with_query).await,
        json!({"status":"success","data":["app","level"]})
    );
    // The shard label Grafana probes for: none, so it queries without sharding.
    assert_eq!(
        get_json(&server, "/loki/api/v1/label/__stream_shard__/values", &range).await,
        json!({"status":"success","data":[]})
    );
    let series = json!({"status":"success","data":[{"app":"api","level":"error"},{"app":"api","level":"info"}]});
    let params = [("match[]", r#"{app="api"}"#), ("start", start.as_str()), ("end", end.as_str())];
    assert_eq!(get_json(&server, "/loki/api/v1/series", &params).await, series);
    let (status, body) = post_form(&server, "/loki/api/v1/series", &params).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, series));
    // A range before any entry finds nothing.
    let early = ns(base - 10 * MINUTE_NS);
    let before = [("start", early.as_str()), ("end", start.as_str())];
    assert_eq!(get_json(&server, "/loki/api/v1/labels", &before).await, json!({"status":"success","data":[]}));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn index_stats_and_volume() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 3 * MINUTE_NS));
    let api_bytes = (LINE_10S.len() + LINE_20S.len() + LINE_70S.len() + LINE_130S.len()) as u64;
    let db_bytes = LINE_30S.len() as u64;

    let stats =
        get_json(&server, "/loki/api/v1/index/stats", &[("query", r#"{app="api"}"#), ("start", &start), ("end", &end)])
            .await;
    assert_eq!(
        (stats["streams"].clone(), stats["entries"].clone(), stats["bytes"].clone()),
        (json!(2), json!(4), json!(api_bytes))
    );
    assert!(stats["chunks"].as_u64().unwrap() >= 2, "{stats}");
    // Grafana sends the whole query, pipeline included.
    let piped = get_json(
        &server,
        "/loki/api/v1/index/stats",
        &[("query", r#"{app="api"} |= "GET""#), ("start", &start), ("end", &end)],
    )
    .await;
    assert_eq!(piped, stats);

    let volume = get_json(
        &server,
        "/loki/api/v1/index/volume",
        &[("query", r#"{app=~".+"}"#), ("start", &start), ("end", &end), ("limit", "100")],
    )
    .await;
    let at_end = seconds(base) + 180;
    assert_eq!(
        volume,
        json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"app":"api"},"value":[at_end, api_bytes.to_string()]},
            {"metric":{"app":"db"},"value":[at_end, db_bytes.to_string()]}
        ]}})
    );
    let by_level = get_json(
        &server,
        "/loki/api/v1/index/volume",
        &[("query", r#"{app=~".+"}"#), ("start", &start), ("end", &end), ("targetLabels", "level"), ("limit", "1")],
    )
    .await;
    let info_bytes = api_bytes - LINE_20S.len() as u64 + db_bytes;
    assert_eq!(
        by_level["data"]["result"],
        json!([{"metric":{"level":"info"},"value":[at_end, info_bytes.to_string()]}])
    );
    let by_labels = get_json(
        &server,
        "/loki/api/v1/index/volume",
        &[("query", r#"{app=~".+"}"#), ("start", &start), ("end", &end), ("aggregateBy", "labels")],
    )
    .await;
    let all = (api_bytes + db_bytes).to_string();
    assert_eq!(
        by_labels["data"]["result"],
        json!([{"metric":{"app":""},"value":[at_end, all]},{"metric":{"level":""},"value":[at_end, all]}])
    );
    let range = get_json(
        &server,
        "/loki/api/v1/index/volume_range",
        &[("query", r#"{app="api"}"#), ("start", &start), ("end", &end), ("step", "60")],
    )
    .await;
    let bytes = |lines: &[&str]| lines.iter().map(|line| line.len()).sum::<usize>().to_string();
    assert_eq!(
        range,
        json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"app":"api"},"values":[
                [seconds(base) + 60, bytes(&[LINE_10S, LINE_20S])],
                [seconds(base) + 120, bytes(&[LINE_70S])],
                [seconds(base) + 180, bytes(&[LINE_130S])]]}
        ]}})
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn detected_fields_labels_and_values() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 3 * MINUTE_NS));
    let params = [("query", r#"{app="api"}"#), ("start", start.as_str()), ("end", end.as_str()), ("limit", "1000")];
    assert_eq!(
        get_json(&server, "/loki/api/v1/detected_fields", &params).await,
        json!({"fields":[
            {"label":"duration","type":"duration","cardinality":4,"parsers":["logfmt"]},
            {"label":"method","type":"string","cardinality":2,"parsers":["logfmt"]},
            {"label":"path","type":"string","cardinality":3,"parsers":["logfmt"]},
            {"label":"status","type":"int","cardinality":3,"parsers":["logfmt"]},
            {"label":"trace_id","type":"string","cardinality":1,"parsers":null}
        ],"limit":1000})
    );
    let json_fields = [("query", r#"{app="db"}"#), ("start", start.as_str()), ("end", end.as_str())];
    assert_eq!(
        get_json(&server, "/loki/api/v1/detected_fields", &json_fields).await,
        json!({"fields":[
            {"label":"db_name","type":"string","cardinality":1,"parsers":["json"],"jsonPath":["db","name"]},
            {"label":"query","type":"string","cardinality":1,"parsers":["json"],"jsonPath":["query"]},
            {"label":"rows","type":"int","cardinality":1,"parsers":["json"],"jsonPath":["rows"]}
        ],"limit":1000})
    );
    assert_eq!(
        get_json(&server, "/loki/api/v1/detected_field/status/values", &params).await,
        json!({"values":["200","204","500"],"limit":1000})
    );
    assert_eq!(
        get_json(
            &server,
            "/loki/api/v1/detected_labels",
            &[("query", r#"{app=~".+"}"#), ("start", &start), ("end", &end)]
        )
        .await,
        json!({"detectedLabels":[{"label":"app","cardinality":2},{"label":"level","cardinality":2}]})
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn patterns_format_query_and_buildinfo() {
    let server = server().await;
    let base = seed(&server).await;
    let (start, end) = (ns(base), ns(base + 3 * MINUTE_NS));
    // The four api lines share keys and differ in values: one pattern, counted per minute.
    let patterns = [("query", r#"{app="api"}"#), ("start", &start), ("end", &end), ("step", "60s")];
    assert_eq!(
        get_json(&server, "/loki/api/v1/patterns", &patterns).await,
        json!({"status":"success","data":[{
            "pattern":"method=<_> path=<_> status=<_> duration=<_>",
            "samples":[[seconds(base), 2], [seconds(base) + 60, 1], [seconds(base) + 120, 1]]
        }]})
    );
    let nothing = [("query", r#"{app="nothing"}"#), ("start", &start), ("end", &end)];
    assert_eq!(get_json(&server, "/loki/api/v1/patterns", &nothing).await, json!({"status":"success","data":[]}));
    assert_eq!(
        get_json(
            &server,
            "/loki/api/v1/format_query",
            &[("query", r#"{app="api",level=~"err.*"}|="x"|json|status>=500"#)]
        )
        .await,
        json!({"status":"success","data":r#"{app="api", level=~"err.*"} |= "x" | json | status>=500"#})
    );
    let buildinfo = get_json(&server, "/loki/api/v1/status/buildinfo", &[]).await;
    assert_eq!(buildinfo["version"], "3.4.0");
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(buildinfo[key].is_string(), "{key} missing: {buildinfo}");
    }
    server.shutdown().await.unwrap();
}
