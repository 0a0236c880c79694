//! `tripod-load logs`: realistic log traffic, as Loki protobuf, Loki JSON or OTLP, to any push
//! endpoint, so that Tripod and a real Loki can be measured with the same requests.
//!
//! Three kinds of stream, mixed: Traefik JSON access lines (`{job="traefik", log_type="access"}`),
//! application JSON logs carrying trace and span ids (`{job="app"}`, the ids also as structured
//! metadata or OTLP ids), and plain-text syslog lines (`{job="syslog"}`). Every request holds
//! about `--batch-bytes` of lines from a rotating set of streams, as Promtail and the agents
//! batch them. Requests are encoded before the clock starts, so the figure measures the
//! receiver, not this tool. Timestamps advance by stream from the present, so no two entries of
//! a stream are alike.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tripod::encoding::hex;

use clap::{Parser, ValueEnum};
use tripod::api::wire::{put_bytes_field, put_fixed64_field, put_varint_field};

use crate::{Rng, describe, parse_duration_arg};

/// The wire form of a push.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Loki `PushRequest`, protobuf, snappy-compressed (what Promtail and Alloy send).
    LokiProto,
    /// Loki JSON (`{"streams":[{"stream":{..},"values":[[ns, line, metadata]]}]}`).
    LokiJson,
    /// OTLP `ExportLogsServiceRequest`, protobuf.
    OtlpProto,
    /// OTLP logs as JSON (hex ids).
    OtlpJson,
}

#[derive(Parser)]
pub struct Logs {
    /// Push URL: `.../loki/api/v1/push` for the Loki formats, `.../v1/logs` for OTLP.
    #[arg(long)]
    url: String,
    /// Wire form.
    #[arg(long, value_enum, default_value_t = LogFormat::LokiProto)]
    format: LogFormat,
    /// Streams in all, split evenly between Traefik, app and syslog streams.
    #[arg(long, default_value_t = 60)]
    streams: usize,
    /// Bytes of lines per request (Promtail's default batch is 1 MiB).
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
    /// Streams per request: each request takes this many streams in turn.
    #[arg(long, default_value_t = 10)]
    streams_per_request: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
    duration: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Target lines per second; 0 sends as fast as the receiver accepts.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Requests to encode ahead; they are sent once each, in order.
    #[arg(long, default_value_t = 400)]
    prepared: usize,
    /// `X-Scope-OrgID` header to send, for a multi-tenant receiver.
    #[arg(long)]
    tenant: Option<String>,
}

/// What a stream's lines look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Traefik,
    App,
    Syslog,
}

/// One generated stream: its labels and its clock.
struct Stream {
    kind: Kind,
    /// Sorted label pairs.
    labels: Vec<(String, String)>,
    /// Timestamp of the next entry.
    next_ns: i64,
    /// Which host or service this stream stands for (varies the content).
    index: usize,
}

/// An entry ready to encode.
struct Entry {
    t_ns: i64,
    line: String,
    /// Structured metadata (Loki) or trace and span ids (OTLP) for app lines.
    trace: Option<([u8; 16], [u8; 8])>,
    severity: &'static str,
}

fn streams(count: usize, now_ns: i64) -> Vec<Stream> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count.max(1) {
        let (kind, labels) = match i % 3 {
            0 => (
                Kind::Traefik,
                vec![
                    ("instance".to_string(), format!("edge-{}", i / 3)),
                    ("job".to_string(), "traefik".to_string()),
                    ("log_type".to_string(), "access".to_string()),
                ],
            ),
            1 => (
                Kind::App,
                vec![
                    ("env".to_string(), "production".to_string()),
                    ("job".to_string(), "app".to_string()),
                    ("service_name".to_string(), format!("{}-{}", SERVICES[(i / 3) % SERVICES.len()], i / 3)),
                ],
            ),
            _ => (
                Kind::Syslog,
                vec![("host".to_string(), format!("node-{:03}", i / 3)), ("job".to_string(), "syslog".to_string())],
            ),
        };
        out.push(Stream { kind, labels, next_ns: now_ns, index: i / 3 });
    }
    out
}

const SERVICES: [&str; 6] = ["checkout", "cart", "catalog", "payments", "users", "search"];
const PATHS: [&str; 12] = [
    "/api/todos",
    "/api/todos/{id}",
    "/api/v1/chat/completions",
    "/api/v1/users/{id}",
    "/login",
    "/static/app.{id}.js",
    "/health",
    "/api/v1/orders",
    "/api/v1/orders/{id}/items",
    "/metrics",
    "/api/v1/search",
    "/favicon.ico",
];
const METHODS: [&str; 5] = ["GET", "GET", "GET", "POST", "DELETE"];
const STATUSES: [u16; 10] = [200, 200, 200, 200, 201, 204, 301, 404, 500, 503];
const MESSAGES: [&str; 8] = [
    "request completed",
    "created todo",
    "cache miss, loading from database",
    "user authenticated",
    "payment authorised",
    "retrying upstream call",
    "slow query detected",
    "validation failed",
];
const DAEMONS: [&str; 6] = ["sshd", "kernel", "systemd", "CRON", "dockerd", "kubelet"];

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[(rng.next() % items.len() as u64) as usize]
}

fn ip(rng: &mut Rng) -> String {
    let n = rng.next();
    format!("10.{}.{}.{}", (n >> 8) % 8, (n >> 16) % 256, (n >> 24) % 254 + 1)
}

fn path(rng: &mut Rng) -> String {
    pick(rng, &PATHS).replace("{id}", &(rng.next() % 5000).to_string())
}

/// RFC 3339 with nanoseconds, UTC.
fn rfc3339(t_ns: i64) -> String {
    let seconds = t_ns.div_euclid(1_000_000_000);
    let nanos = t_ns.rem_euclid(1_000_000_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn line(stream: &Stream, t_ns: i64, rng: &mut Rng) -> Entry {
    match stream.kind {
        Kind::Traefik => {
            let status = *pick(rng, &STATUSES);
            let duration_ns = 200_000 + rng.next() % 40_000_000 + if status >= 500 { 1_500_000_000 } else { 0 };
            let client = ip(rng);
            let line = format!(
                concat!(
                    r#"{{"ClientAddr":"{client}:{port}","ClientHost":"{client}","ClientPort":"{port}","DownstreamContentSize":{size},"#,
                    r#""DownstreamStatus":{status},"Duration":{duration},"OriginContentSize":{size},"OriginDuration":{origin},"#,
                    r#""OriginStatus":{status},"Overhead":{overhead},"RequestAddr":"shop.example.com","RequestHost":"shop.example.com","#,
                    r#""RequestMethod":"{method}","RequestPath":"{path}","RequestPort":"-","RequestProtocol":"HTTP/1.1","#,
                    r#""RequestScheme":"https","RetryAttempts":0,"RouterName":"{service}@docker","#,
                    r#""ServiceName":"{service}@docker","ServiceURL":"http://172.18.0.{backend}:8080","#,
                    r#""StartUTC":"{time}","entryPointName":"websecure","level":"info","msg":"","time":"{time}"}}"#
                ),
                client = client,
                port = 30_000 + rng.next() % 30_000,
                size = rng.next() % 20_000,
                status = status,
                duration = duration_ns,
                origin = duration_ns - duration_ns / 20,
                overhead = duration_ns / 20,
                method = pick(rng, &METHODS),
                path = path(rng),
                service = SERVICES[stream.index % SERVICES.len()],
                backend = 2 + stream.index % 40,
                time = rfc3339(t_ns),
            );
            Entry { t_ns, line, trace: None, severity: if status >= 500 { "ERROR" } else { "INFO" } }
        }
        Kind::App => {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&rng.next().to_be_bytes());
            trace_id[8..].copy_from_slice(&rng.next().to_be_bytes());
            let span_id = rng.next().to_be_bytes();
            let level = match rng.next() % 20 {
                0 => "error",
                1 | 2 => "warn",
                3 => "debug",
                _ => "info",
            };
            let mut line = String::with_capacity(256);
            let _ = write!(
                line,
                r#"{{"level":"{level}","time":"{}","logger":"{}.http","msg":"{}","request_id":"req-{:08x}","todoId":{},"duration_ms":{},"status_code":{},"traceId":"{}","spanId":"{}"}}"#,
                rfc3339(t_ns),
                SERVICES[stream.index % SERVICES.len()],
                pick(rng, &MESSAGES),
                rng.next() as u32,
                rng.next() % 1000,
                rng.next() % 900,
                pick(rng, &STATUSES),
                hex(&trace_id),
                hex(&span_id),
            );
            let severity = match level {
                "error" => "ERROR",
                "warn" => "WARN",
                "debug" => "DEBUG",
                _ => "INFO",
            };
            Entry { t_ns, line, trace: Some((trace_id, span_id)), severity }
        }
        Kind::Syslog => {
            let daemon = *pick(rng, &DAEMONS);
            let pid = 100 + rng.next() % 30_000;
            let body = match daemon {
                "sshd" => {
                    format!("Accepted publickey for deploy from {} port {} ssh2", ip(rng), 30_000 + rng.next() % 30_000)
                }
                "kernel" => format!(
                    "[{}.{:06}] eth0: renamed from veth{:07x}",
                    rng.next() % 900_000,
                    rng.next() % 1_000_000,
                    rng.next() as u32 >> 4
                ),
                "systemd" => format!(
                    "Started session-{}.scope - Session {} of User deploy.",
                    rng.next() % 9000,
                    rng.next() % 9000
                ),
                "CRON" => format!("(root) CMD (/usr/local/bin/backup --target /data/{})", rng.next() % 64),
                "dockerd" => format!(
                    "time=\"{}\" level=info msg=\"ignoring event\" container={:016x} module=libcontainerd",
                    rfc3339(t_ns),
                    rng.next()
                ),
                _ => format!(
                    "I{} kubelet.go:{}] \"SyncLoop (PLEG): event for pod\" pod=\"default/web-{:x}\"",
                    rng.next() % 10_000,
                    1000 + rng.next() % 2000,
                    rng.next() as u32
                ),
            };
            let seconds = t_ns.div_euclid(1_000_000_000);
            let line =
                format!("{} node-{:03} {daemon}[{pid}]: {body}", &rfc3339(seconds * 1_000_000_000)[..19], stream.index);
            Entry { t_ns, line, trace: None, severity: "INFO" }
        }
    }
}

fn selector(labels: &[(String, String)]) -> String {
    let pairs: Vec<String> = labels.iter().map(|(name, value)| format!("{name}={value:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A request's streams with their entries.
type Batch<'a> = Vec<(&'a Stream, Vec<Entry>)>;

fn encode_loki_proto(batch: &Batch<'_>) -> Vec<u8> {
    let mut request = Vec::new();
    for (stream, entries) in batch {
        let mut encoded = Vec::with_capacity(entries.iter().map(|e| e.line.len() + 64).sum());
        put_bytes_field(&mut encoded, 1, selector(&stream.labels).as_bytes());
        for entry in entries {
            let mut timestamp = Vec::with_capacity(16);
            put_varint_field(&mut timestamp, 1, entry.t_ns.div_euclid(1_000_000_000) as u64);
            put_varint_field(&mut timestamp, 2, entry.t_ns.rem_euclid(1_000_000_000) as u64);
            let mut e = Vec::with_capacity(entry.line.len() + 96);
            put_bytes_field(&mut e, 1, &timestamp);
            put_bytes_field(&mut e, 2, entry.line.as_bytes());
            if let Some((trace_id, span_id)) = &entry.trace {
                for (name, value) in [("trace_id", hex(trace_id)), ("span_id", hex(span_id))] {
                    let mut pair = Vec::with_capacity(64);
                    put_bytes_field(&mut pair, 1, name.as_bytes());
                    put_bytes_field(&mut pair, 2, value.as_bytes());
                    put_bytes_field(&mut e, 3, &pair);
                }
            }
            put_bytes_field(&mut encoded, 2, &e);
        }
        put_bytes_field(&mut request, 1, &encoded);
    }
    snap::raw::Encoder::new().compress_vec(&request).unwrap_or_default()
}

fn encode_loki_json(batch: &Batch<'_>) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = batch
        .iter()
        .map(|(stream, entries)| {
            let labels: serde_json::Map<String, serde_json::Value> =
                stream.labels.iter().map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone()))).collect();
            let values: Vec<serde_json::Value> = entries
                .iter()
                .map(|entry| match &entry.trace {
                    Some((trace_id, span_id)) => serde_json::json!([
                        entry.t_ns.to_string(),
                        entry.line,
                        {"trace_id": hex(trace_id), "span_id": hex(span_id)}
                    ]),
                    None => serde_json::json!([entry.t_ns.to_string(), entry.line]),
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}

fn severity_number(severity: &str) -> u64 {
    match severity {
        "DEBUG" => 5,
        "WARN" => 13,
        "ERROR" => 17,
        _ => 9,
    }
}

/// OTLP: the stream's labels become resource attributes (`job` as `service.name`, the rest by
/// name), each entry a log record.
fn encode_otlp_proto(batch: &Batch<'_>) -> Vec<u8> {
    fn string_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
        let mut any = Vec::with_capacity(value.len() + 4);
        put_bytes_field(&mut any, 1, value.as_bytes());
        let mut kv = Vec::with_capacity(key.len() + any.len() + 8);
        put_bytes_field(&mut kv, 1, key.as_bytes());
        put_bytes_field(&mut kv, 2, &any);
        put_bytes_field(out, field, &kv);
    }
    let mut request = Vec::new();
    for (stream, entries) in batch {
        let mut resource = Vec::new();
        for (name, value) in &stream.labels {
            let key = if name == "service_name" { "service.name" } else { name.as_str() };
            string_attribute(&mut resource, 1, key, value);
        }
        let mut scope_logs = Vec::new();
        let mut scope = Vec::new();
        put_bytes_field(&mut scope, 1, b"tripod-load");
        put_bytes_field(&mut scope_logs, 1, &scope);
        for entry in entries {
            let mut record = Vec::with_capacity(entry.line.len() + 96);
            put_fixed64_field(&mut record, 1, entry.t_ns as u64);
            put_varint_field(&mut record, 2, severity_number(entry.severity));
            put_bytes_field(&mut record, 3, entry.severity.as_bytes());
            let mut body = Vec::with_capacity(entry.line.len() + 4);
            put_bytes_field(&mut body, 1, entry.line.as_bytes());
            put_bytes_field(&mut record, 5, &body);
            if let Some((trace_id, span_id)) = &entry.trace {
                put_bytes_field(&mut record, 9, trace_id);
                put_bytes_field(&mut record, 10, span_id);
            }
            put_fixed64_field(&mut record, 11, entry.t_ns as u64);
            put_bytes_field(&mut scope_logs, 2, &record);
        }
        let mut resource_logs = Vec::new();
        put_bytes_field(&mut resource_logs, 1, &resource);
        put_bytes_field(&mut resource_logs, 2, &scope_logs);
        put_bytes_field(&mut request, 1, &resource_logs);
    }
    request
}

fn encode_otlp_json(batch: &Batch<'_>) -> Vec<u8> {
    let resource_logs: Vec<serde_json::Value> = batch
        .iter()
        .map(|(stream, entries)| {
            let attributes: Vec<serde_json::Value> = stream
                .labels
                .iter()
                .map(|(name, value)| {
                    let key = if name == "service_name" { "service.name" } else { name.as_str() };
                    serde_json::json!({"key": key, "value": {"stringValue": value}})
                })
                .collect();
            let records: Vec<serde_json::Value> = entries
                .iter()
                .map(|entry| {
                    let mut record = serde_json::json!({
                        "timeUnixNano": entry.t_ns.to_string(),
                        "observedTimeUnixNano": entry.t_ns.to_string(),
                        "severityNumber": severity_number(entry.severity),
                        "severityText": entry.severity,
                        "body": {"stringValue": entry.line},
                    });
                    if let Some((trace_id, span_id)) = &entry.trace {
                        record["traceId"] = hex(trace_id).into();
                        record["spanId"] = hex(span_id).into();
                    }
                    record
                })
                .collect();
            serde_json::json!({
                "resource": {"attributes": attributes},
                "scopeLogs": [{"scope": {"name": "tripod-load"}, "logRecords": records}],
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "resourceLogs": resource_logs })).unwrap_or_default()
}

/// A prepared request: body, lines and bytes of lines it carries.
struct Prepared {
    body: Vec<u8>,
    lines: u64,
    line_bytes: u64,
}

fn prepare(options: &Logs) -> Vec<Prepared> {
    let now_ns = tripod::duration::unix_now_ms().saturating_mul(1_000_000);
    let mut all = streams(options.streams, now_ns);
    let mut rng = Rng(0x5eed_1065);
    let per_request = options.streams_per_request.clamp(1, all.len());
    let bytes_per_stream = (options.batch_bytes / per_request).max(1);
    let mut out = Vec::with_capacity(options.prepared);
    let mut next_stream = 0;
    for _ in 0..options.prepared {
        let mut chosen: Vec<usize> = Vec::with_capacity(per_request);
        for _ in 0..per_request {
            chosen.push(next_stream);
            next_stream = (next_stream + 1) % all.len();
        }
        let mut generated: Vec<(usize, Vec<Entry>)> = Vec::with_capacity(per_request);
        let (mut lines, mut line_bytes) = (0u64, 0u64);
        for &index in &chosen {
            let stream = &mut all[index];
            let mut entries = Vec::new();
            let mut bytes = 0;
            while bytes < bytes_per_stream {
                // About a millisecond apart, never equal.
                stream.next_ns += 1_000_000 + (rng.next() % 1000) as i64;
                let entry = line(stream, stream.next_ns, &mut rng);
                bytes += entry.line.len();
                entries.push(entry);
            }
            lines += entries.len() as u64;
            line_bytes += bytes as u64;
            generated.push((index, entries));
        }
        let batch: Batch<'_> = generated.into_iter().map(|(index, entries)| (&all[index], entries)).collect();
        let body = match options.format {
            LogFormat::LokiProto => encode_loki_proto(&batch),
            LogFormat::LokiJson => encode_loki_json(&batch),
            LogFormat::OtlpProto => encode_otlp_proto(&batch),
            LogFormat::OtlpJson => encode_otlp_json(&batch),
        };
        out.push(Prepared { body, lines, line_bytes });
    }
    out
}

async fn post(client: &reqwest::Client, options: &Logs, body: Vec<u8>) -> Result<(), String> {
    let content_type = match options.format {
        LogFormat::LokiProto | LogFormat::OtlpProto => "application/x-protobuf",
        LogFormat::LokiJson | LogFormat::OtlpJson => "application/json",
    };
    let mut request = client.post(&options.url).header("Content-Type", content_type).body(body);
    if let Some(tenant) = &options.tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.map_err(|error| describe(&error))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(format!("{status}: {}", response.text().await.unwrap_or_default().trim()))
}

pub async fn run(options: Logs) -> Result<(), String> {
    if options.streams == 0 || options.batch_bytes == 0 || options.prepared == 0 {
        return Err("--streams, --batch-bytes and --prepared must be above 0".into());
    }
    eprintln!(
        "preparing {} requests of ~{} KiB of lines over {} streams",
        options.prepared,
        options.batch_bytes >> 10,
        options.streams
    );
    let requests = Arc::new(prepare(&options));
    let options = Arc::new(options);
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(options.concurrency).build().map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicU64::new(0));
    let lines_accepted = Arc::new(AtomicU64::new(0));
    let bytes_accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (client, requests, next, lines_accepted, bytes_accepted, errors, options) = (
            client.clone(),
            requests.clone(),
            next.clone(),
            lines_accepted.clone(),
            bytes_accepted.clone(),
            errors.clone(),
            options.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(request) = requests.get(index) else { break };
                if options.rate > 0 {
                    // Pace: a request is due when the lines before it (requests are alike) fit the rate.
                    let due =
                        started + Duration::from_secs_f64(index as f64 * request.lines as f64 / options.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                match post(&client, &options, request.body.clone()).await {
                    Ok(()) => {
                        lines_accepted.fetch_add(request.lines, Ordering::Relaxed);
                        bytes_accepted.fetch_add(request.line_bytes, Ordering::Relaxed);
                    }
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error: {error}");
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let lines = lines_accepted.load(Ordering::Relaxed);
    let bytes = bytes_accepted.load(Ordering::Relaxed);
    let sent = next.load(Ordering::Relaxed).min(requests.len() as u64);
    println!(
        "logs: {lines} lines ({:.1} MB of lines) accepted in {seconds:.2}s = {:.1} MB/s, {:.0} lines/s; {sent} requests, {} errors",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds,
        lines as f64 / seconds,
        errors.load(Ordering::Relaxed)
    );
    if sent as usize >= requests.len() && Instant::now() < deadline {
        eprintln!(
            "note: all {} prepared requests were sent before the duration ended; raise --prepared",
            requests.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn every_format_encodes_every_kind() {
        for format in [LogFormat::LokiProto, LogFormat::LokiJson, LogFormat::OtlpProto, LogFormat::OtlpJson] {
            let options = Logs {
                url: String::new(),
                format,
                streams: 6,
                batch_bytes: 8 << 10,
                streams_per_request: 3,
                duration: Duration::from_secs(1),
                concurrency: 1,
                rate: 0,
                prepared: 4,
                tenant: None,
            };
            let prepared = prepare(&options);
            assert_eq!(prepared.len(), 4);
            for request in &prepared {
                assert!(request.line_bytes >= 8 << 10, "each request carries about a batch of lines");
                assert!(!request.body.is_empty());
            }
            if matches!(format, LogFormat::LokiJson | LogFormat::OtlpJson) {
                let parsed: serde_json::Value = serde_json::from_slice(&prepared[0].body).unwrap();
                assert!(parsed.is_object());
            }
        }
    }
}
