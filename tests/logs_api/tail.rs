//! Live tailing with a real WebSocket client: the first answer, then new entries as they are
//! pushed, with the query's filter applied; entries dropped (and named) for a client that does
//! not keep up; a clean close when the server shuts down; refusals before the upgrade.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tripod::Config;

use crate::support::*;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &tripod::Server, params: &[(&str, &str)]) -> Socket {
    let query = serde_urlencoded::to_string(params).unwrap();
    let (socket, response) =
        tokio_tungstenite::connect_async(ws_url(server, &format!("/loki/api/v1/tail?{query}"))).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    socket
}

/// The next text frame as JSON. A guard against a hang, not a timing assertion.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a frame within a minute")
            .expect("socket open")
            .expect("frame reads");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// `(labels, t_ns, line)` of every entry in a frame.
fn entries(frame: &Value) -> Vec<(Value, String, String)> {
    let mut out = Vec::new();
    for stream in frame["streams"].as_array().unwrap() {
        for value in stream["values"].as_array().unwrap() {
            assert_eq!(value.as_array().unwrap().len(), 2, "{frame}");
            out.push((stream["stream"].clone(), value[0].as_str().unwrap().into(), value[1].as_str().unwrap().into()));
        }
    }
    out
}

#[tokio::test]
async fn past_entries_first_then_new_ones_filtered() {
    let server = server().await;
    let now = now_ns();
    let api: &[(&str, &str)] = &[("app", "api")];
    push(
        &server,
        &[
            entry(api, now - 30 * SECOND_NS, "error one"),
            entry(api, now - 20 * SECOND_NS, "info two"),
            entry(api, now - 10 * SECOND_NS, "error three"),
        ],
    )
    .await;
    let mut socket = connect(&server, &[("query", r#"{app="api"} |= "error""#), ("delay_for", "1")]).await;
    let first = next_frame(&mut socket).await;
    assert_eq!(
        first,
        json!({"streams":[{"stream":{"app":"api"},"values":[
            [ns(now - 30 * SECOND_NS), "error one"],
            [ns(now - 10 * SECOND_NS), "error three"]
        ]}]})
    );
    // Non-matching entries (by line, by stream) go first; when the matching one arrives they
    // have all been seen and left out.
    push(&server, &[entry(api, now_ns(), "info five"), entry(&[("app", "db")], now_ns(), "error in db")]).await;
    let pushed_at = now_ns();
    push(&server, &[entry(api, pushed_at, "error four")]).await;
    let mut seen = Vec::new();
    while !seen.iter().any(|(_, _, line): &(Value, String, String)| line == "error four") {
        seen.extend(entries(&next_frame(&mut socket).await));
    }
    assert_eq!(seen, [(json!({"app":"api"}), ns(pushed_at), "error four".to_string())]);
    socket.close(None).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_first_answer_is_the_newest_limit_entries_with_labels_from_the_pipeline() {
    let server = server().await;
    let now = now_ns();
    let lines: Vec<String> = (0..5).map(|i| format!("level=info n={i}")).collect();
    let entries_to_push: Vec<Entry<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| entry(&[("app", "api")], now - (10 - i as i64) * SECOND_NS, line))
        .collect();
    push(&server, &entries_to_push).await;
    let mut socket = connect(&server, &[("query", r#"{app="api"} | logfmt | n >= 1"#), ("limit", "2")]).await;
    let first = next_frame(&mut socket).await;
    let got = entries(&first);
    let lines: Vec<&str> = got.iter().map(|(_, _, line)| line.as_str()).collect();
    assert_eq!(lines, ["level=info n=3", "level=info n=4"]);
    assert_eq!(got[0].0, json!({"app":"api","level":"info","n":"3"}));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn categorized_frames_when_asked() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = server().await;
    let t_ns = now_ns() - SECOND_NS;
    let entry = Entry { labels: &[("app", "api")], t_ns, line: "status=500", metadata: &[("trace_id", "abc")] };
    push(&server, &[entry]).await;
    let query =
        serde_urlencoded::to_string([("query", r#"{app="api"} | logfmt | line_format "{{.status}}""#)]).unwrap();
    let mut request = ws_url(&server, &format!("/loki/api/v1/tail?{query}")).into_client_request().unwrap();
    request.headers_mut().insert("X-Loki-Response-Encoding-Flags", "categorize-labels".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        next_frame(&mut socket).await,
        json!({"streams":[{"stream":{"app":"api"},"values":[
            [ns(t_ns), "500", {"structuredMetadata":{"trace_id":"abc"},"parsed":{"status":"500"}}]
        ]}],"encodingFlags":["categorize-labels"]})
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_client_is_told_what_was_dropped() {
    let mut config = Config::embedded();
    config.logs_ingest.limits.ingestion_rate_mb = 100_000.0;
    config.logs_ingest.limits.ingestion_burst_size_mb = 100_000.0;
    let server = server_with(config).await;
    let flood: &[(&str, &str)] = &[("app", "flood")];
    let mut socket = connect(&server, &[("query", r#"{app="flood"}"#)]).await;
    // 64 MiB while the client reads nothing: far more than the server's queue (4 MiB), one
    // frame in flight and the kernel's socket buffers hold together.
    let line = "x".repeat(16 << 10);
    let start = now_ns();
    let mut pushed = std::collections::HashSet::new();
    for push_number in 0..64 {
        let batch: Vec<Entry<'_>> =
            (0..64).map(|i| entry(flood, start + (push_number * 64 + i) * 1000, line.as_str())).collect();
        pushed.extend(batch.iter().map(|entry| ns(entry.t_ns)));
        push(&server, &batch).await;
    }
    let mut received = 0usize;
    let mut dropped = Vec::new();
    while dropped.is_empty() {
        let frame = next_frame(&mut socket).await;
        received += entries(&frame).len();
        if let Some(list) = frame["dropped_entries"].as_array() {
            dropped.extend(list.iter().cloned());
        }
    }
    assert!(received + dropped.len() <= pushed.len());
    for dropped_entry in &dropped {
        assert_eq!(dropped_entry["labels"], json!({"app":"flood"}));
        assert!(pushed.contains(dropped_entry["timestamp"].as_str().unwrap()), "{dropped_entry}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_the_socket_as_going_away() {
    let server = server().await;
    let mut socket = connect(&server, &[("query", r#"{app="api"}"#)]).await;
    let stopping = tokio::spawn(server.shutdown());
    let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
        .await
        .expect("closed within a minute")
        .expect("a close frame")
        .expect("frame reads");
    let Message::Close(Some(frame)) = message else { panic!("expected a close frame, got {message:?}") };
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "server shutting down");
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn refusals_come_before_the_upgrade() {
    let server = server().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("query", r#"rate({app="api"}[1m])"#)], "tail needs a log query"),
        (&[("query", r#"{app="api""#)], "parse error at line 1, col"),
        (&[("query", r#"{app="api"} |~ "(""#)], "invalid regular expression"),
        (&[("query", r#"{app="api"}"#), ("delay_for", "6")], "delay_for can't be greater than 5"),
        (&[("query", r#"{app="api"}"#), ("limit", "5001")], "max entries limit per query exceeded"),
        (&[("query", r#"{app="api"}"#)], "tail is a WebSocket endpoint"),
    ];
    for (params, words) in cases {
        let (status, body) = get(&server, "/loki/api/v1/tail", params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body.contains(words), "{params:?}: expected {words:?} in {body:?}");
    }
    server.shutdown().await.unwrap();
}
