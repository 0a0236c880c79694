//! SIGKILL during an export load: the real `tripod` binary takes OTLP trace exports over HTTP
//! and gRPC from concurrent exporters, is killed with SIGKILL mid-load, and every span of every
//! export it acknowledged must be found by trace ID when the data directory is opened again,
//! and by the binary started again on it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tripod_storage::traces::{DEFAULT_TENANT, TraceId, TracesQueryable};
use tripod_storage::{Storage, StorageOptions};

use crate::otlp::{int, string};
use crate::support::now_ns;

/// Guards against a hung process; never reached when things work.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A `tripod` process on loopback ports, killed when dropped.
struct Tripod {
    child: Child,
    otlp_http: SocketAddr,
    otlp_grpc: SocketAddr,
}

impl Tripod {
    fn start(data_dir: &std::path::Path) -> Tripod {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tripod"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TRIPOD_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--log.format", "json", "--log.level", "info", "--data-dir"])
            .arg(data_dir)
            .args(["--listen.loki", "off", "--listen.prometheus", "off", "--listen.tempo", "off"])
            .args(["--listen.otlp-http", "127.0.0.1:0", "--listen.otlp-grpc", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("tripod binary starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + HANG_GUARD;
        let (mut otlp_http, mut otlp_grpc) = (None, None);
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(remaining).unwrap_or_else(|_| panic!("tripod did not get ready: {seen:?}"));
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"] == "listening" {
                let address = event["address"].as_str().and_then(|a| a.parse().ok());
                match event["listener"].as_str() {
                    Some("listen.otlp_http") => otlp_http = address,
                    Some("listen.otlp_grpc") => otlp_grpc = address,
                    _ => {}
                }
            }
            seen.push(line);
            if event["message"] == "ready" {
                break;
            }
        }
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || while lines.recv().is_ok() {});
        Tripod {
            child,
            otlp_http: otlp_http.expect("the otlp http listener's address is logged"),
            otlp_grpc: otlp_grpc.expect("the otlp grpc listener's address is logged"),
        }
    }

    fn kill(&mut self) {
        // SAFETY: sending a signal to our own child process.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(sent, 0);
        let _ = self.child.wait();
    }
}

impl Drop for Tripod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exporter `exporter`'s batch `batch`: five traces of eight spans, with some attributes.
fn batch(exporter: usize, batch: usize, t0: u64) -> (ExportTraceServiceRequest, Vec<(TraceId, [u8; 8])>) {
    let mut spans = Vec::new();
    let mut ids = Vec::new();
    for trace in 0..5u64 {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(exporter as u64 + 1).to_be_bytes());
        trace_id[8..].copy_from_slice(&((batch as u64) << 8 | trace).to_be_bytes());
        for n in 0..8u8 {
            let mut span_id = [n + 1; 8];
            span_id[..4].copy_from_slice(&(batch as u32).to_be_bytes());
            ids.push((trace_id, span_id));
            let start = t0 + (batch as u64 * 5 + trace) * 1_000_000 + u64::from(n) * 10_000;
            spans.push(Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: if n == 0 {
                    vec![]
                } else {
                    [span_id[0], span_id[1], span_id[2], span_id[3], 1, 1, 1, 1].to_vec()
                },
                name: format!("operation {n}"),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 5_000,
                attributes: vec![
                    string("http.route", "/api/todos"),
                    int("batch", batch as i64),
                    string("pad", &"x".repeat(64)),
                ],
                ..Default::default()
            });
        }
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", &format!("exporter-{exporter}"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { scope: None, spans, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    };
    (request, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_span_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut tripod = Tripod::start(dir.path());
    let http_url = format!("http://{}/v1/traces", tripod.otlp_http);
    let grpc_url = format!("http://{}", tripod.otlp_grpc);
    let t0 = now_ns() - 60_000_000_000;

    // Four concurrent exporters, two over HTTP and two over gRPC; each records the spans of the
    // exports that were acknowledged.
    let (kill_after, exporters) = (40usize, 4usize);
    let acknowledged = Arc::new(Mutex::new(Vec::<(TraceId, [u8; 8])>::new()));
    let batches = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for exporter in 0..exporters {
        let (http_url, grpc_url, acknowledged, batches) =
            (http_url.clone(), grpc_url.clone(), acknowledged.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut grpc = if exporter % 2 == 1 { TraceServiceClient::connect(grpc_url).await.ok() } else { None };
            for n in 0..10_000usize {
                let (request, ids) = batch(exporter, n, t0);
                let stored = match &mut grpc {
                    Some(client) => {
                        client.export(request).await.is_ok_and(|answer| answer.into_inner().partial_success.is_none())
                    }
                    None => {
                        let sent = http
                            .post(&http_url)
                            .header("content-type", "application/x-protobuf")
                            .body(request.encode_to_vec())
                            .send()
                            .await;
                        matches!(sent, Ok(response) if response.status().as_u16() == 200)
                    }
                };
                if !stored {
                    // The server is gone: stop.
                    return;
                }
                acknowledged.lock().unwrap().extend(ids);
                batches.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + HANG_GUARD;
    while batches.load(Ordering::SeqCst) < kill_after {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tripod.kill();
    for task in tasks {
        task.await.unwrap();
    }
    let mut by_trace: BTreeMap<TraceId, BTreeSet<[u8; 8]>> = BTreeMap::new();
    for (trace_id, span_id) in acknowledged.lock().unwrap().iter() {
        by_trace.entry(*trace_id).or_default().insert(*span_id);
    }
    assert!(by_trace.len() >= kill_after * 5);

    // Reopen the directory the way the server does and look every trace up.
    let storage = Storage::open(dir.path(), StorageOptions::default()).expect("storage reopens after SIGKILL");
    let mut missing = Vec::new();
    for (trace_id, span_ids) in &by_trace {
        let trace = storage.traces().trace(DEFAULT_TENANT, trace_id, None).unwrap();
        let found: BTreeSet<[u8; 8]> =
            trace.iter().flat_map(|trace| trace.spans().map(|(_, _, span)| span.span_id)).collect();
        for span_id in span_ids.difference(&found) {
            missing.push((*trace_id, *span_id));
        }
    }
    assert!(missing.is_empty(), "{} acknowledged spans lost, e.g. {:?}", missing.len(), missing.first());
    storage.close().unwrap();
    drop(storage);

    // And the binary itself starts on the same directory.
    let mut again = Tripod::start(dir.path());
    again.kill();
}
