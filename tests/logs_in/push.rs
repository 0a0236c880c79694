//! Loki push over HTTP: both wire formats and every compression, read back through the store,
//! and every refusal with its status, its message, and what was and was not stored.

use serde_json::json;
use tripod::Config;

use crate::support::{
    ProtoStream, gzip, loki_url, now_ns, post, protobuf_push, push_json, push_protobuf, server, server_with, snappy,
    stored, stored_lines,
};

const HOUR_NS: i64 = 3600 * 1_000_000_000;

#[tokio::test]
async fn protobuf_pushes_are_readable_at_once() {
    let server = server().await;
    let t = now_ns();
    let streams = [
        ProtoStream {
            labels: r#"{app="api", env="prod"}"#,
            entries: vec![
                (t, "GET /orders 200", vec![("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
                (t - 5, "earlier, out of order", vec![]),
            ],
        },
        ProtoStream { labels: r#"{app="web"}"#, entries: vec![(t + 1, "line with \"quotes\" and ünïcode", vec![])] },
    ];
    let (status, body) = push_protobuf(&server, &[], &streams).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let stored = stored(&server.storage().unwrap(), "fake");
    assert_eq!(
        stored,
        vec![
            (r#"{app="api", env="prod"}"#.to_string(), t - 5, "earlier, out of order".to_string(), "{}".to_string()),
            (
                r#"{app="api", env="prod"}"#.to_string(),
                t,
                "GET /orders 200".to_string(),
                r#"{trace_id="4bf92f3577b34da6a3ce929d0e0e4736"}"#.to_string()
            ),
            (r#"{app="web"}"#.to_string(), t + 1, "line with \"quotes\" and ünïcode".to_string(), "{}".to_string()),
        ]
    );

    // The older path, and a repeat of an entry (stored once).
    let body = snappy(&protobuf_push(&[ProtoStream {
        labels: r#"{app="web"}"#,
        entries: vec![(t + 2, "via /api/prom/push", vec![]), (t + 1, "line with \"quotes\" and ünïcode", vec![])],
    }]));
    let (status, _) = post(&loki_url(&server, "/api/prom/push"), Some("application/x-protobuf"), &[], body).await;
    assert_eq!(status, 204);
    assert_eq!(stored_lines(&server, "fake").len(), 4);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_pushes_in_both_forms() {
    let server = server().await;
    let t = now_ns();
    let body = json!({"streams": [
        {"stream": {"app": "api", "level": "info"}, "values": [
            [t.to_string(), "plain line"],
            [(t + 1).to_string(), "with metadata", {"user_id": "42", "trace_id": "abc"}],
        ]},
        {"labels": "{app=\"legacy\", region=\"eu\\\"west\"}", "entries": [
            {"ts": "2030-01-01T00:00:00Z", "line": "too far ahead"},
        ]},
    ]});
    let (status, message) = push_json(&server, &[], &body).await;
    // The legacy entry is years ahead: refused by name, the others stored.
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains(
            r#"stream {app="legacy", region="eu\"west"}: entry at 2030-01-01T00:00:00Z refused (too_far_in_future)"#
        ),
        "{message}"
    );
    let stored = stored(&server.storage().unwrap(), "fake");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].3, r#"{trace_id="abc", user_id="42"}"#);
    assert_eq!(stored[0].0, r#"{app="api", level="info"}"#);

    let recent = chrono_like_rfc3339(t);
    let legacy =
        json!({"streams": [{"labels": "{app=\"legacy\"}", "entries": [{"ts": recent, "line": "legacy form"}]}]});
    let (status, message) = push_json(&server, &[], &legacy).await;
    assert_eq!((status, message.as_str()), (204, ""));
    assert!(stored_lines(&server, "fake").contains(&"legacy form".to_string()));
    server.shutdown().await.unwrap();
}

/// RFC 3339 with nanoseconds, as Loki's older JSON clients write it.
fn chrono_like_rfc3339(t_ns: i64) -> String {
    tripod::ingest::logs::rfc3339_ns(t_ns)
}

#[tokio::test]
async fn every_compression_decodes() {
    use std::io::Write;
    let server = server().await;
    let t = now_ns();
    let url = loki_url(&server, "/loki/api/v1/push");
    let json_body =
        |line: &str| json!({"streams": [{"stream": {"app": "zip"}, "values": [[t.to_string(), line]]}]}).to_string();
    let proto = |line: &'static str| {
        protobuf_push(&[ProtoStream { labels: r#"{app="zip"}"#, entries: vec![(t, line, vec![])] }])
    };

    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(json_body("json deflate (zlib)").as_bytes()).unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    raw.write_all(json_body("json deflate (raw)").as_bytes()).unwrap();
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    framed.write_all(&proto("protobuf framed snappy")).unwrap();

    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("application/json", Some("gzip"), gzip(json_body("json gzip").as_bytes())),
        ("application/json", Some("deflate"), zlib.finish().unwrap()),
        ("application/json", Some("deflate"), raw.finish().unwrap()),
        ("application/json", Some("snappy"), snappy(json_body("json snappy").as_bytes())),
        ("application/x-protobuf", Some("gzip"), gzip(&snappy(&proto("protobuf gzip over snappy")))),
        ("application/x-protobuf", Some("snappy"), snappy(&proto("protobuf content-encoding snappy"))),
        ("application/x-protobuf", None, framed.into_inner().unwrap()),
    ];
    for (content_type, encoding, body) in cases {
        let headers: Vec<(&str, &str)> = encoding.map(|e| ("content-encoding", e)).into_iter().collect();
        let (status, message) = post(&url, Some(content_type), &headers, body).await;
        assert_eq!((status, message.as_str()), (204, ""), "{content_type} {encoding:?}");
    }
    // No Content-Type at all: protobuf, as Loki assumes.
    let (status, _) = post(&url, None, &[], snappy(&proto("no content type"))).await;
    assert_eq!(status, 204);
    let mut lines = stored_lines(&server, "fake");
    lines.sort();
    assert_eq!(
        lines,
        [
            "json deflate (raw)",
            "json deflate (zlib)",
            "json gzip",
            "json snappy",
            "no content type",
            "protobuf content-encoding snappy",
            "protobuf framed snappy",
            "protobuf gzip over snappy",
        ]
    );
    server.shutdown().await.unwrap();
}

fn small_limits() -> Config {
    let mut config = Config::embedded();
    let limits = &mut config.logs_ingest.limits;
    limits.max_line_size_bytes = 32;
    limits.max_label_names_per_series = 3;
    limits.max_label_name_length = 10;
    limits.max_label_value_length = 12;
    config
}

#[tokio::test]
async fn refused_entries_are_named_and_the_good_ones_stored() {
    let server = server_with(small_limits()).await;
    let t = now_ns();
    let long_line = "x".repeat(40);
    let old = t - 8 * 24 * HOUR_NS;
    let future = t + HOUR_NS;
    let streams = [
        ProtoStream {
            labels: r#"{app="api"}"#,
            entries: vec![
                (t, "good one", vec![]),
                (old, "too old", vec![]),
                (future, "from the future", vec![]),
                (t + 1, &long_line, vec![]),
                (t + 2, "good two", vec![]),
                (t + 3, "empty metadata name", vec![("", "x")]),
            ],
        },
        ProtoStream { labels: r#"{app=api}"#, entries: vec![(t, "unparsable labels", vec![])] },
        ProtoStream { labels: r#"{app=~"api"}"#, entries: vec![(t, "regex matcher", vec![])] },
        ProtoStream { labels: r#"{}"#, entries: vec![(t, "no labels", vec![])] },
        ProtoStream { labels: r#"{a="1", b="2", c="3", d="4"}"#, entries: vec![(t, "too many labels", vec![])] },
        ProtoStream { labels: r#"{a_very_long_name="1"}"#, entries: vec![(t, "long name", vec![])] },
        ProtoStream { labels: r#"{app="a value too long"}"#, entries: vec![(t, "long value", vec![])] },
        ProtoStream { labels: r#"{app="x", app="y"}"#, entries: vec![(t, "duplicate name", vec![])] },
        ProtoStream { labels: r#"{app="web"}"#, entries: vec![(t, "good three", vec![])] },
    ];
    let (status, message) = push_protobuf(&server, &[], &streams).await;
    assert_eq!(status, 400, "{message}");
    let expected = [
        (r#"stream {app="api"}: entry at "#, "refused (greater_than_max_sample_age): timestamp too old"),
        (r#"stream {app="api"}: entry at "#, "refused (too_far_in_future): timestamp too far in the future"),
        (
            r#"stream {app="api"}: entry at "#,
            "refused (line_too_long): line is 40 bytes long, over the limit of 32 bytes",
        ),
        (
            r#"stream {app="api"}: entry at "#,
            "refused (invalid_structured_metadata): structured metadata has an empty name",
        ),
        (
            "stream {app=api}: ",
            "refused (invalid_labels): labels do not parse: expected a quoted label value at byte 5",
        ),
        (
            r#"stream {app=~"api"}: "#,
            "refused (invalid_labels): labels do not parse: only = matchers may name a stream's labels",
        ),
        ("stream {}: ", "refused (missing_labels)"),
        (
            r#"stream {a="1", b="2", c="3", d="4"}: "#,
            "refused (max_label_names_per_series): 4 labels, over the limit of 3",
        ),
        (
            r#"stream {a_very_long_name="1"}: "#,
            "refused (label_name_too_long): label name \"a_very_long_name\" is 16 bytes long, over the limit of 10",
        ),
        (
            r#"stream {app="a value too long"}: "#,
            "refused (label_value_too_long): value of label \"app\" is 16 bytes long, over the limit of 12",
        ),
        (
            r#"stream {app="x", app="y"}: "#,
            "refused (duplicate_label_names): label name \"app\" appears more than once",
        ),
    ];
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), expected.len() + 1, "{message}");
    for (line, (stream, reason)) in lines.iter().zip(expected) {
        assert!(line.starts_with(stream) && line.contains(reason), "{line:?} should be {stream}...{reason}");
    }
    assert_eq!(lines.last(), Some(&"11 of 14 entries refused, the others stored"));
    let mut good = stored_lines(&server, "fake");
    good.sort();
    assert_eq!(good, ["good one", "good three", "good two"]);

    // Each reason is counted, in Loki's metric and in Tripod's.
    let metrics = reqwest::get(loki_url(&server, "/metrics")).await.unwrap().text().await.unwrap();
    for reason in ["greater_than_max_sample_age", "too_far_in_future", "line_too_long", "invalid_labels"] {
        let count = if reason == "invalid_labels" { 2 } else { 1 };
        for name in ["loki_discarded_samples_total", "tripod_logs_discarded_entries_total"] {
            let sample = format!("{name}{{reason=\"{reason}\",tenant=\"fake\"}} {count}\n");
            assert!(metrics.contains(&sample), "{sample} missing from:\n{metrics}");
        }
    }
    assert!(metrics.contains("loki_discarded_bytes_total{reason=\"line_too_long\",tenant=\"fake\"} 40\n"), "{metrics}");
    assert!(metrics.contains("loki_distributor_lines_received_total{tenant=\"fake\"} 14\n"), "{metrics}");
    assert!(metrics.contains("loki_ingester_streams 2\n"), "{metrics}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_streams_with_bad_label_names_are_refused() {
    let server = server_with(small_limits()).await;
    let t = now_ns().to_string();
    // Written by hand: a JSON object with a repeated key (serde_json's own maps would merge it).
    let body = format!(
        r#"{{"streams": [
            {{"stream": {{"service.name": "api"}}, "values": [["{t}", "dotted name"]]}},
            {{"stream": {{"app": "api", "app": "again"}}, "values": [["{t}", "repeated key"]]}},
            {{"stream": {{"app": "ok"}}, "values": [["{t}", "stored"]]}}
        ]}}"#
    );
    let url = loki_url(&server, "/loki/api/v1/push");
    let (status, message) = post(&url, Some("application/json"), &[], body.into_bytes()).await;
    assert_eq!(status, 400);
    assert!(
        message.contains(
            r#"stream {service.name="api"}: refused (invalid_labels): label name "service.name" is not valid"#
        ),
        "{message}"
    );
    assert!(message.contains(r#"stream {app="api", app="again"}: refused (duplicate_label_names)"#), "{message}");
    assert_eq!(stored_lines(&server, "fake"), ["stored"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn long_lines_are_truncated_when_configured() {
    let mut config = small_limits();
    config.logs_ingest.limits.max_line_size_truncate = true;
    let server = server_with(config).await;
    let long_line = "y".repeat(100);
    let (status, _) = push_protobuf(
        &server,
        &[],
        &[ProtoStream { labels: r#"{app="api"}"#, entries: vec![(now_ns(), &long_line, vec![])] }],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(stored_lines(&server, "fake"), ["y".repeat(32)]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn old_entries_pass_when_old_samples_are_accepted() {
    let mut config = Config::embedded();
    config.logs_ingest.limits.reject_old_samples = false;
    let server = server_with(config).await;
    let (status, _) = push_protobuf(
        &server,
        &[],
        &[ProtoStream { labels: r#"{app="api"}"#, entries: vec![(1_000, "1970", vec![])] }],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(stored_lines(&server, "fake"), ["1970"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_the_ingestion_rate_the_whole_push_is_refused_with_429() {
    let mut config = Config::embedded();
    // 10 KiB per second, 20 KiB burst.
    config.logs_ingest.limits.ingestion_rate_mb = 10.0 / 1024.0;
    config.logs_ingest.limits.ingestion_burst_size_mb = 20.0 / 1024.0;
    let server = server_with(config).await;
    let t = now_ns();
    let line = "z".repeat(1000);
    let batch = |offset: i64, count: i64| -> Vec<(i64, &str, Vec<(&str, &str)>)> {
        (0..count).map(|i| (t + offset + i, line.as_str(), vec![])).collect()
    };
    let (status, _) =
        push_protobuf(&server, &[], &[ProtoStream { labels: r#"{app="api"}"#, entries: batch(0, 15) }]).await;
    assert_eq!(status, 204, "15 KB fits the 20 KiB burst");
    let (status, message) =
        push_protobuf(&server, &[], &[ProtoStream { labels: r#"{app="api"}"#, entries: batch(100, 15) }]).await;
    assert_eq!(status, 429);
    assert_eq!(
        message,
        "ingestion rate limit exceeded for tenant \"fake\" (limit 10240 bytes/sec, burst 20480 bytes): refused 15 lines totaling 15000 bytes; send less or raise limits.ingestion_rate_mb and limits.ingestion_burst_size_mb\n"
    );
    assert_eq!(stored_lines(&server, "fake").len(), 15, "nothing of the refused push is stored");
    let metrics = reqwest::get(loki_url(&server, "/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("loki_discarded_samples_total{reason=\"rate_limited\",tenant=\"fake\"} 15\n"),
        "{metrics}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tenants_with_multi_tenancy_on_and_off() {
    let mut config = Config::embedded();
    config.logs_ingest.auth_enabled = true;
    let server = server_with(config).await;
    let t = now_ns();
    let stream = |line: &'static str| [ProtoStream { labels: r#"{app="api"}"#, entries: vec![(t, line, vec![])] }];
    let (status, message) = push_protobuf(&server, &[], &stream("nobody")).await;
    assert_eq!((status, message.as_str()), (401, "no org id\n"));
    let (status, _) = push_protobuf(&server, &[("X-Scope-OrgID", "team-a")], &stream("for a")).await;
    assert_eq!(status, 204);
    let (status, _) = push_protobuf(&server, &[("X-Scope-OrgID", "team-b")], &stream("for b")).await;
    assert_eq!(status, 204);
    let (status, message) = push_protobuf(&server, &[("X-Scope-OrgID", "a|b")], &stream("two")).await;
    assert_eq!(status, 400, "{message}");
    let (status, message) = push_protobuf(&server, &[("X-Scope-OrgID", "a/b")], &stream("slash")).await;
    assert_eq!(status, 400, "{message}");
    assert_eq!(stored_lines(&server, "team-a"), ["for a"]);
    assert_eq!(stored_lines(&server, "team-b"), ["for b"]);
    assert!(stored_lines(&server, "fake").is_empty());
    server.shutdown().await.unwrap();

    // Off: the header is ignored and everything is "fake".
    let server = crate::support::server().await;
    let (status, _) = push_protobuf(&server, &[("X-Scope-OrgID", "team-a")], &stream("single tenant")).await;
    assert_eq!(status, 204);
    assert_eq!(stored_lines(&server, "fake"), ["single tenant"]);
    assert!(stored_lines(&server, "team-a").is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_and_decompression_are_capped() {
    let mut config = Config::embedded();
    config.max_request_body_bytes = 64 << 10;
    config.max_decompressed_bytes = 256 << 10;
    let server = server_with(config).await;
    let url = loki_url(&server, "/loki/api/v1/push");
    let t = now_ns();

    // Over the body cap, with a Content-Length.
    let big = vec![b'x'; 100 << 10];
    let (status, message) = post(&url, Some("application/json"), &[], big.clone()).await;
    assert_eq!(status, 413, "{message}");
    assert_eq!(message, "request body is over the limit of 65536 bytes\n");

    // Over the body cap, chunked, without a Content-Length (as Node's exporters send).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.chunks(8 << 10).map(|chunk| Ok(chunk.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    // A small chunked body is read whole.
    let small =
        json!({"streams": [{"stream": {"app": "chunked"}, "values": [[t.to_string(), "chunked body"]]}]}).to_string();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        small.as_bytes().chunks(7).map(|chunk| Ok(chunk.to_vec())).collect();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    // Compressed bombs: small as sent, over the decompression cap.
    let line = "a".repeat(300 << 10);
    let json_bomb = json!({"streams": [{"stream": {"app": "bomb"}, "values": [[t.to_string(), line]]}]}).to_string();
    let (status, message) =
        post(&url, Some("application/json"), &[("content-encoding", "gzip")], gzip(json_bomb.as_bytes())).await;
    assert_eq!((status, message.as_str()), (413, "decompressed body is over the limit of 262144 bytes\n"));
    let proto_bomb =
        snappy(&protobuf_push(&[ProtoStream { labels: r#"{app="bomb"}"#, entries: vec![(t, &line, vec![])] }]));
    assert!(proto_bomb.len() < 64 << 10);
    let (status, message) = post(&url, Some("application/x-protobuf"), &[], proto_bomb).await;
    assert_eq!(status, 413, "{message}");
    assert!(message.starts_with("decompressed body would be "), "{message}");
    assert_eq!(stored_lines(&server, "fake"), ["chunked body"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unreadable_bodies_are_400_and_unknown_formats_415() {
    let server = server().await;
    let url = loki_url(&server, "/loki/api/v1/push");
    let cases: Vec<(Option<&str>, Vec<(&str, &str)>, Vec<u8>, u16, &str)> = vec![
        (Some("text/plain"), vec![], b"hello".to_vec(), 415, "unsupported content type \"text/plain\""),
        (
            Some("application/json"),
            vec![("content-encoding", "br")],
            b"{}".to_vec(),
            415,
            "unsupported content encoding \"br\"",
        ),
        (
            Some("application/x-protobuf"),
            vec![],
            b"\xff\xff\xff\xff\xff\xff".to_vec(),
            400,
            "body is not snappy-compressed protobuf",
        ),
        (
            Some("application/x-protobuf"),
            vec![],
            snappy(b"\x0a\x05\x0a\x03"),
            400,
            "malformed push request: length runs past the end of the message at byte 2",
        ),
        (Some("application/json"), vec![], b"{\"streams\": [".to_vec(), 400, "body is not a Loki JSON push request"),
        (
            Some("application/json"),
            vec![],
            b"{\"streams\": [{\"stream\": {\"a\": \"b\"}, \"values\": [[\"soon\", \"x\"]]}]}".to_vec(),
            400,
            "timestamp \"soon\" is not an integer of nanoseconds",
        ),
        (
            Some("application/json"),
            vec![("content-encoding", "gzip")],
            b"not gzip".to_vec(),
            400,
            "body is not valid gzip",
        ),
    ];
    for (content_type, headers, body, status, message) in cases {
        let (got_status, got_message) = post(&url, content_type, &headers, body).await;
        assert_eq!(got_status, status, "{content_type:?} {headers:?}: {got_message}");
        assert!(got_message.contains(message), "{got_message:?} should contain {message:?}");
    }
    // An empty push is fine and stores nothing.
    let (status, _) = post(&url, Some("application/json"), &[], br#"{"streams": []}"#.to_vec()).await;
    assert_eq!(status, 204);
    assert!(stored_lines(&server, "fake").is_empty());
    server.shutdown().await.unwrap();
}
