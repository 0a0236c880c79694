//! The read endpoints beyond the contract: POST forms, sampling limits, and every refusal with
//! its status and words.

use serde_json::{Value, json};

use crate::support::*;

async fn expect_error(server: &tripod::Server, path: &str, params: &[(&str, &str)], words: &str) {
    let (status, body) = get(server, path, params).await;
    assert_eq!(status, 400, "{path} {params:?}: {body}");
    assert!(body.contains(words), "{path} {params:?}: expected {words:?} in {body:?}");
}

#[tokio::test]
async fn forms_samples_and_selectors() {
    let server = server().await;
    let base = base_ns();
    let labels: &[(&str, &str)] = &[("app", "web")];
    push(
        &server,
        &[
            entry(labels, base + SECOND_NS, "level=info took=1.5 size=10KB ok=true"),
            entry(labels, base + 2 * SECOND_NS, "level=warn took=2 size=3MB ok=false"),
        ],
    )
    .await;
    let (start, end) = (ns(base), ns(base + MINUTE_NS));
    // POST forms on the label endpoints.
    let (status, body) = post_form(&server, "/loki/api/v1/labels", &[("start", &start), ("end", &end)]).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status":"success","data":["app"]}))
    );
    let (status, body) = post_form(&server, "/loki/api/v1/label/app/values", &[("start", &start), ("end", &end)]).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status":"success","data":["web"]}))
    );
    // A label query may be a whole LogQL query; its selectors count.
    let labels = get_json(
        &server,
        "/loki/api/v1/labels",
        &[("query", r#"sum(rate({app="web"} |= "x" [1m]))"#), ("start", &start), ("end", &end)],
    )
    .await;
    assert_eq!(labels["data"], json!(["app"]));
    // Types widen across values (1.5 and 2 are floats together); sizes with units are bytes.
    let fields = get_json(
        &server,
        "/loki/api/v1/detected_fields",
        &[("query", r#"{app="web"}"#), ("start", &start), ("end", &end)],
    )
    .await;
    assert_eq!(
        fields["fields"],
        json!([
            {"label":"level","type":"string","cardinality":2,"parsers":["logfmt"]},
            {"label":"ok","type":"boolean","cardinality":2,"parsers":["logfmt"]},
            {"label":"size","type":"bytes","cardinality":2,"parsers":["logfmt"]},
            {"label":"took","type":"float","cardinality":2,"parsers":["logfmt"]}
        ])
    );
    // The sample is the newest `line_limit` entries; `limit` cuts the fields.
    let fields = get_json(
        &server,
        "/loki/api/v1/detected_fields",
        &[("query", r#"{app="web"}"#), ("start", &start), ("end", &end), ("line_limit", "1"), ("limit", "2")],
    )
    .await;
    assert_eq!(
        fields,
        json!({"fields":[
            {"label":"level","type":"string","cardinality":1,"parsers":["logfmt"]},
            {"label":"ok","type":"boolean","cardinality":1,"parsers":["logfmt"]}
        ],"limit":2})
    );
    let values = get_json(
        &server,
        "/loki/api/v1/detected_field/level/values",
        &[("query", r#"{app="web"} |= "warn""#), ("start", &start), ("end", &end)],
    )
    .await;
    assert_eq!(values, json!({"values":["warn"],"limit":1000}));
    // Fields of a metric query are those of the lines it reads.
    let values = get_json(
        &server,
        "/loki/api/v1/detected_field/took/values",
        &[("query", r#"sum(count_over_time({app="web"}[1m]))"#), ("start", &start), ("end", &end)],
    )
    .await;
    assert_eq!(values["values"], json!(["1.5", "2"]));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn read_endpoint_refusals() {
    let server = server().await;
    let cases: &[(&str, &[(&str, &str)], &str)] = &[
        ("/loki/api/v1/labels", &[("query", "{app=")], "invalid parameter \"query\": parse error at line 1, col"),
        ("/loki/api/v1/label/app/values", &[("start", "soon")], "invalid parameter \"start\""),
        ("/loki/api/v1/labels", &[("start", "20"), ("end", "10")], "end timestamp must not be before start time"),
        ("/loki/api/v1/series", &[], "at least one stream selector is required"),
        ("/loki/api/v1/series", &[("match[]", "app=web")], "invalid parameter \"match[]\""),
        ("/loki/api/v1/index/stats", &[("query", r#"{app="web""#)], "invalid parameter \"query\""),
        ("/loki/api/v1/index/volume", &[], "invalid parameter \"query\": a stream selector is required"),
        (
            "/loki/api/v1/index/volume",
            &[("query", r#"{app="web"}"#), ("aggregateBy", "pods")],
            "\"pods\" is not series or labels",
        ),
        ("/loki/api/v1/index/volume", &[("query", r#"{app="web"}"#), ("limit", "0")], "invalid parameter \"limit\""),
        (
            "/loki/api/v1/index/volume_range",
            &[("query", r#"{app="web"}"#), ("step", "0")],
            "zero or negative query resolution step",
        ),
        ("/loki/api/v1/detected_fields", &[("query", "{")], "parse error"),
        ("/loki/api/v1/detected_fields", &[("query", "vector(1)")], "the query reads no log lines"),
        (
            "/loki/api/v1/detected_fields",
            &[("query", r#"{app="web"}"#), ("line_limit", "many")],
            "invalid parameter \"line_limit\"",
        ),
        ("/loki/api/v1/detected_field/x/values", &[("query", "")], "parse error"),
        ("/loki/api/v1/detected_labels", &[("query", "{app=~")], "invalid parameter \"query\""),
        ("/loki/api/v1/patterns", &[], "parse error"),
        ("/loki/api/v1/patterns", &[("query", "vector(1)")], "patterns need a log query"),
        (
            "/loki/api/v1/patterns",
            &[("query", r#"{app="web"}"#), ("step", "0")],
            "zero or negative query resolution step",
        ),
        ("/loki/api/v1/format_query", &[("query", "sum(")], "parse error at line 1, col"),
    ];
    for (path, params, words) in cases {
        expect_error(&server, path, params, words).await;
    }
    server.shutdown().await.unwrap();
}
