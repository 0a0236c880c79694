//! Shared helpers: an embedded server, pushing entries with Loki's JSON push, and GET and POST
//! requests to the Loki listener that return the status and the body.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tripod::config::ListenerName;
use tripod::{Config, Server};

pub async fn server() -> Server {
    server_with(Config::embedded()).await
}

pub async fn server_with(config: Config) -> Server {
    let server = Server::start(config).await.expect("server starts");
    server.ready().await.expect("storage opens");
    server
}

pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.address(ListenerName::Loki).expect("loki listener"))
}

pub fn ws_url(server: &Server, path: &str) -> String {
    format!("ws://{}{path}", server.address(ListenerName::Loki).expect("loki listener"))
}

pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

pub const SECOND_NS: i64 = 1_000_000_000;
pub const MINUTE_NS: i64 = 60 * SECOND_NS;

/// A whole minute about half an hour ago: recent enough to be accepted, old enough that every
/// test entry stamped after it is in the past.
pub fn base_ns() -> i64 {
    let now = now_ns();
    now - now.rem_euclid(MINUTE_NS) - 30 * MINUTE_NS
}

/// One entry to push: its stream's labels, time, line and structured metadata.
pub struct Entry<'a> {
    pub labels: &'a [(&'a str, &'a str)],
    pub t_ns: i64,
    pub line: &'a str,
    pub metadata: &'a [(&'a str, &'a str)],
}

pub fn entry<'a>(labels: &'a [(&'a str, &'a str)], t_ns: i64, line: &'a str) -> Entry<'a> {
    Entry { labels, t_ns, line, metadata: &[] }
}

/// Pushes entries with Loki's JSON push (one stream per entry) as `tenant` (if any), and
/// insists on 204.
pub async fn push_as(server: &Server, tenant: Option<&str>, entries: &[Entry<'_>]) {
    let streams: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let labels: serde_json::Map<String, Value> =
                entry.labels.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
            let mut value = vec![json!(entry.t_ns.to_string()), json!(entry.line)];
            if !entry.metadata.is_empty() {
                let metadata: serde_json::Map<String, Value> =
                    entry.metadata.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
                value.push(Value::Object(metadata));
            }
            json!({"stream": labels, "values": [value]})
        })
        .collect();
    let mut request = reqwest::Client::new()
        .post(url(server, "/loki/api/v1/push"))
        .header("content-type", "application/json")
        .body(json!({ "streams": streams }).to_string());
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 204, "push refused: {}", response.text().await.unwrap());
}

pub async fn push(server: &Server, entries: &[Entry<'_>]) {
    push_as(server, None, entries).await
}

/// GET with these query parameters and headers: the status and the body as text.
pub async fn get_with(server: &Server, path: &str, params: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url(server, path)).query(params);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

pub async fn get(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    get_with(server, path, params, &[]).await
}

/// GET that must answer 200 with JSON.
pub async fn get_json(server: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = get(server, path, params).await;
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("{path}: not JSON ({error}): {body}"))
}

/// POST with a form body (Loki reads form parameters on every read endpoint).
pub async fn post_form(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url(server, path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A query answer with its `stats` taken out (they hold the execution time), after checking
/// the stats carry the summary Loki sends.
pub fn without_stats(mut answer: Value) -> Value {
    let data = answer["data"].as_object_mut().expect("data object");
    let stats = data.remove("stats").expect("stats in data");
    let summary = &stats["summary"];
    for key in [
        "bytesProcessedPerSecond",
        "linesProcessedPerSecond",
        "totalBytesProcessed",
        "totalLinesProcessed",
        "totalEntriesReturned",
        "execTime",
        "queueTime",
    ] {
        assert!(summary[key].is_number(), "stats.summary.{key} missing: {stats}");
    }
    answer
}

/// `ns` as the decimal string Loki writes.
pub fn ns(t_ns: i64) -> String {
    t_ns.to_string()
}
