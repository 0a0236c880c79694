//! Shared helpers: an embedded server, Loki push requests built by hand (protobuf wire bytes
//! and JSON), reading what was stored back through the logs store's seam, and finding the
//! outside clients the way the test command promises (with CI=true a missing one fails).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use tripod::api::wire::{put_bytes_field, put_varint_field};
use tripod::config::ListenerName;
use tripod::{Config, Server};
use tripod_storage::Storage;
use tripod_storage::labels::{MatchOp, Matcher};
use tripod_storage::logs::{Direction, LogSelection, LogsQueryable, NsRange};

pub async fn server() -> Server {
    server_with(Config::embedded()).await
}

pub async fn server_with(config: Config) -> Server {
    let server = Server::start(config).await.expect("server starts");
    server.ready().await.expect("storage opens");
    server
}

pub fn loki_url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.address(ListenerName::Loki).expect("loki listener"))
}

pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// One stored entry, flattened for comparisons: `(stream labels, t_ns, line, metadata)`,
/// labels and metadata in their display form.
pub type Stored = (String, i64, String, String);

/// Every entry of `tenant`, oldest first, through the logs store's query seam.
pub fn stored(storage: &Storage, tenant: &str) -> Vec<Stored> {
    let everything = [Matcher::new(MatchOp::RegexMatch, "__tripod_none__", ".*").unwrap()];
    let selection =
        LogSelection { matchers: &everything, range: NsRange::all(), direction: Direction::Forward, filters: &[] };
    let mut out = Vec::new();
    for cursor in storage.logs().select(tenant, &selection).unwrap() {
        for entry in cursor.entries {
            let entry = entry.unwrap();
            out.push((cursor.labels.to_string(), entry.t_ns, entry.line, entry.metadata.to_string()));
        }
    }
    out.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    out
}

/// The lines stored for `tenant`, oldest first.
pub fn stored_lines(server: &Server, tenant: &str) -> Vec<String> {
    stored(&server.storage().unwrap(), tenant).into_iter().map(|(_, _, line, _)| line).collect()
}

/// A stream for [`protobuf_push`]: labels in selector form and `(t_ns, line, metadata)`.
pub struct ProtoStream<'a> {
    pub labels: &'a str,
    pub entries: Vec<(i64, &'a str, Vec<(&'a str, &'a str)>)>,
}

/// A `logproto.PushRequest`, uncompressed.
pub fn protobuf_push(streams: &[ProtoStream<'_>]) -> Vec<u8> {
    let mut request = Vec::new();
    for stream in streams {
        let mut encoded = Vec::new();
        put_bytes_field(&mut encoded, 1, stream.labels.as_bytes());
        for (t_ns, line, metadata) in &stream.entries {
            let mut timestamp = Vec::new();
            put_varint_field(&mut timestamp, 1, t_ns.div_euclid(1_000_000_000) as u64);
            put_varint_field(&mut timestamp, 2, t_ns.rem_euclid(1_000_000_000) as u64);
            let mut entry = Vec::new();
            put_bytes_field(&mut entry, 1, &timestamp);
            put_bytes_field(&mut entry, 2, line.as_bytes());
            for (name, value) in metadata {
                let mut pair = Vec::new();
                put_bytes_field(&mut pair, 1, name.as_bytes());
                put_bytes_field(&mut pair, 2, value.as_bytes());
                put_bytes_field(&mut entry, 3, &pair);
            }
            put_bytes_field(&mut encoded, 2, &entry);
        }
        put_bytes_field(&mut request, 1, &encoded);
    }
    request
}

pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Status and body of a push.
pub async fn post(url: &str, content_type: Option<&str>, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Pushes a protobuf body (snappy-compressed here) to `/loki/api/v1/push`.
pub async fn push_protobuf(server: &Server, headers: &[(&str, &str)], streams: &[ProtoStream<'_>]) -> (u16, String) {
    let body = snappy(&protobuf_push(streams));
    post(&loki_url(server, "/loki/api/v1/push"), Some("application/x-protobuf"), headers, body).await
}

/// Pushes a JSON body to `/loki/api/v1/push`.
pub async fn push_json(server: &Server, headers: &[(&str, &str)], body: &serde_json::Value) -> (u16, String) {
    post(&loki_url(server, "/loki/api/v1/push"), Some("application/json"), headers, body.to_string().into_bytes()).await
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// The venv's Python with `module` importable, or `None` (skip) outside CI.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidate =
        std::env::var_os("TRIPOD_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".venv/bin/python"));
    let usable = candidate.is_file()
        && Command::new(&candidate)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
    if usable {
        return Some(candidate);
    }
    if ci() {
        panic!(
            "python module {module} is not installed; scripts/test sets up .venv from tests/clients/requirements.txt"
        );
    }
    eprintln!("skipping: no Python with {module} (scripts/test sets it up)");
    None
}

/// `node` with the packages of tests/clients/package.json installed, or `None` (skip) outside CI.
pub fn node_with(package: &str) -> Option<PathBuf> {
    let installed = PathBuf::from("tests/clients/node_modules").join(package).join("package.json").is_file();
    let node = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("node")).find(|candidate| candidate.is_file())
    });
    match node {
        Some(node) if installed => Some(node),
        _ => {
            if ci() {
                panic!(
                    "node or the npm package {package} is missing; scripts/test installs tests/clients/package.json"
                );
            }
            eprintln!("skipping: node or the npm package {package} is missing (scripts/test installs them)");
            None
        }
    }
}
