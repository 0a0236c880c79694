//! `tripod-load traces`: realistic OTLP trace traffic, over gRPC or HTTP (protobuf or JSON), to
//! any OTLP receiver, so that Tripod and Tempo (or a collector) can be measured with the same
//! requests.
//!
//! Each trace is a request through a small shop: `gateway` takes it and calls `api`, which
//! authorizes it and calls `cart` and, for a checkout, `payments`; `cart` and `payments` query
//! the database (client spans with `peer.service=db`). About ten spans a trace, about twenty
//! attributes a span (HTTP, database, user and code attributes), resource attributes per
//! service instance (Kubernetes, host, SDK). Some traces fail (a payment error, with an
//! exception event, propagated up as 5xx), some are slow (a slow query), some carry cache-miss
//! and retry events. Everything comes from a generator seeded by `--seed`, so two runs with the
//! same seed send the same traces (times are taken from the start of the run).
//!
//! Requests are encoded before the clock starts, so the figure measures the receiver, not this
//! tool. It reports spans/s accepted, the spans the receiver refused (partial success), errors,
//! and the first trace ID sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use tripod::load::traces::Generator;

use crate::{describe, parse_duration_arg};

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceProtocol {
    /// OTLP/gRPC `TraceService/Export`; `--url` is the server, e.g. `http://127.0.0.1:4317`.
    Grpc,
    /// OTLP/HTTP protobuf; `--url` is the endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    HttpProtobuf,
    /// OTLP/HTTP JSON (hex IDs); `--url` as for `http-protobuf`.
    HttpJson,
}

#[derive(Parser)]
pub struct Traces {
    /// The gRPC server (`http://host:4317`) or the HTTP endpoint (`http://host:4318/v1/traces`).
    #[arg(long)]
    url: String,
    /// Transport and encoding.
    #[arg(long, value_enum, default_value_t = TraceProtocol::Grpc)]
    protocol: TraceProtocol,
    /// Traces per second to send; 0 sends as fast as the receiver accepts.
    #[arg(long, default_value_t = 0)]
    traces_per_second: u64,
    /// Traces per request (a collector's batch of about ten spans a trace).
    #[arg(long, default_value_t = 50)]
    batch_traces: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
    duration: Duration,
    /// Requests to encode ahead; they are sent once each, in order.
    #[arg(long, default_value_t = 400)]
    prepared: usize,
    /// Seed of the generator: the same seed sends the same traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
    /// `X-Scope-OrgID` to send (header or gRPC metadata), for a multi-tenant receiver.
    #[arg(long)]
    tenant: Option<String>,
}

const MS: u64 = 1_000_000;

/// A prepared request: the body as sent, and the spans it holds.
struct Prepared {
    body: Vec<u8>,
    spans: u64,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Bodies ready to send, and the first trace ID.
fn prepare(options: &Traces, start_ns: u64) -> Result<(Vec<Prepared>, String), String> {
    let spacing_ns = match options.traces_per_second {
        0 => MS,
        rate => (1_000_000_000 / rate).max(1),
    };
    let mut generator = Generator::new(options.seed, start_ns, spacing_ns);
    let mut out = Vec::with_capacity(options.prepared);
    let mut first = String::new();
    for index in 0..options.prepared {
        let (request, spans, first_trace) = generator.request(options.batch_traces);
        if index == 0 {
            first = first_trace.iter().map(|byte| format!("{byte:02x}")).collect();
        }
        let body = match options.protocol {
            TraceProtocol::Grpc | TraceProtocol::HttpProtobuf => request.encode_to_vec(),
            TraceProtocol::HttpJson => {
                serde_json::to_vec(&request).map_err(|error| format!("cannot encode a request as json: {error}"))?
            }
        };
        // gRPC compresses in the transport; HTTP bodies are compressed here, ahead of time.
        let body = if options.gzip && options.protocol != TraceProtocol::Grpc { gzip(&body) } else { body };
        out.push(Prepared { body, spans });
    }
    Ok((out, first))
}

/// A gRPC codec that sends prepared protobuf bytes as the request and decodes the response.
#[derive(Clone, Copy, Default)]
struct PreparedCodec;
struct PreparedEncoder;
struct ResponseDecoder;

impl tonic::codec::Codec for PreparedCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = PreparedEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> PreparedEncoder {
        PreparedEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for PreparedEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buffer, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(buffer)
            .map(Some)
            .map_err(|error| tonic::Status::internal(format!("the response does not decode: {error}")))
    }
}

/// Where requests go.
#[derive(Clone)]
enum Sender {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http(reqwest::Client),
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Sends one request; the spans the receiver refused, or an error.
async fn send(sender: &mut Sender, options: &Traces, body: Vec<u8>) -> Result<u64, String> {
    match sender {
        Sender::Grpc(grpc) => {
            let mut request = tonic::Request::new(body);
            if let Some(tenant) = &options.tenant {
                let value = tenant.parse().map_err(|_| format!("--tenant {tenant:?} is not a valid header value"))?;
                request.metadata_mut().insert("x-scope-orgid", value);
            }
            grpc.ready().await.map_err(|error| describe(&error))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
            let response = grpc
                .unary(request, path, PreparedCodec)
                .await
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
            Ok(response.into_inner().partial_success.map_or(0, |partial| partial.rejected_spans.max(0) as u64))
        }
        Sender::Http(client) => {
            let json = options.protocol == TraceProtocol::HttpJson;
            let content_type = if json { "application/json" } else { "application/x-protobuf" };
            let mut request = client.post(&options.url).header("content-type", content_type).body(body);
            if options.gzip {
                request = request.header("content-encoding", "gzip");
            }
            if let Some(tenant) = &options.tenant {
                request = request.header("x-scope-orgid", tenant);
            }
            let response = request.send().await.map_err(|error| describe(&error))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|error| describe(&error))?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()));
            }
            let rejected = if json {
                let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                answer["partialSuccess"]["rejectedSpans"].as_str().and_then(|text| text.parse().ok()).unwrap_or(0)
            } else {
                ExportTraceServiceResponse::decode(bytes.as_ref())
                    .ok()
                    .and_then(|response| response.partial_success)
                    .map_or(0, |partial| partial.rejected_spans.max(0) as u64)
            };
            Ok(rejected)
        }
    }
}

pub async fn run(options: Traces) -> Result<(), String> {
    if options.batch_traces == 0 || options.prepared == 0 || options.concurrency == 0 {
        return Err("--batch-traces, --prepared and --concurrency must be above 0".into());
    }
    let now_ns = tripod::duration::unix_now_ms().max(0) as u64 * MS;
    eprintln!(
        "preparing {} requests of {} traces (about {} spans each), seed {}",
        options.prepared,
        options.batch_traces,
        options.batch_traces * 10,
        options.seed
    );
    let (requests, first_trace) = prepare(&options, now_ns)?;
    let requests = Arc::new(requests);
    let sender = match options.protocol {
        TraceProtocol::Grpc => None,
        TraceProtocol::HttpProtobuf | TraceProtocol::HttpJson => Some(Sender::Http(
            reqwest::Client::builder()
                .pool_max_idle_per_host(options.concurrency)
                .build()
                .map_err(|error| describe(&error))?,
        )),
    };
    let options = Arc::new(options);
    let next = Arc::new(AtomicU64::new(0));
    let spans_accepted = Arc::new(AtomicU64::new(0));
    let spans_refused = Arc::new(AtomicU64::new(0));
    let traces_accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..options.concurrency {
        let sender = match &sender {
            Some(sender) => sender.clone(),
            None => {
                // A connection a worker, as separate exporters have.
                let channel = tonic::transport::Endpoint::from_shared(options.url.clone())
                    .map_err(|error| format!("--url {:?}: {error}", options.url))?
                    .connect()
                    .await
                    .map_err(|error| format!("cannot connect to {}: {}", options.url, describe(&error)))?;
                let mut grpc = tonic::client::Grpc::new(channel);
                if options.gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                Sender::Grpc(grpc)
            }
        };
        senders.push(sender);
    }
    let started = Instant::now();
    let deadline = started + options.duration;
    for mut sender in senders {
        let (requests, options, next, spans_accepted, spans_refused, traces_accepted, errors) = (
            requests.clone(),
            options.clone(),
            next.clone(),
            spans_accepted.clone(),
            spans_refused.clone(),
            traces_accepted.clone(),
            errors.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(request) = requests.get(index) else { break };
                if options.traces_per_second > 0 {
                    // Pace: a request is due when the traces before it fit the rate.
                    let due = started
                        + Duration::from_secs_f64(
                            index as f64 * options.batch_traces as f64 / options.traces_per_second as f64,
                        );
                    tokio::time::sleep_until(due.into()).await;
                }
                match send(&mut sender, &options, request.body.clone()).await {
                    Ok(refused) => {
                        spans_accepted.fetch_add(request.spans.saturating_sub(refused), Ordering::Relaxed);
                        spans_refused.fetch_add(refused, Ordering::Relaxed);
                        traces_accepted.fetch_add(options.batch_traces as u64, Ordering::Relaxed);
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
    let spans = spans_accepted.load(Ordering::Relaxed);
    let sent = next.load(Ordering::Relaxed).min(requests.len() as u64);
    println!(
        "traces: {spans} spans ({} traces) accepted in {seconds:.2}s = {:.0} spans/s; {sent} requests, {} spans refused, {} errors; first trace {first_trace}",
        traces_accepted.load(Ordering::Relaxed),
        spans as f64 / seconds,
        spans_refused.load(Ordering::Relaxed),
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
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    use super::*;

    fn options(protocol: TraceProtocol, seed: u64) -> Traces {
        Traces {
            url: String::new(),
            protocol,
            traces_per_second: 0,
            batch_traces: 20,
            concurrency: 1,
            duration: Duration::from_secs(1),
            prepared: 5,
            seed,
            gzip: false,
            tenant: None,
        }
    }

    #[test]
    fn the_same_seed_sends_the_same_traces() {
        let start = 1_700_000_000_000_000_000;
        let (a, first_a) = prepare(&options(TraceProtocol::HttpProtobuf, 7), start).unwrap();
        let (b, first_b) = prepare(&options(TraceProtocol::HttpProtobuf, 7), start).unwrap();
        let (c, first_c) = prepare(&options(TraceProtocol::HttpProtobuf, 8), start).unwrap();
        assert_eq!(first_a, first_b);
        assert_ne!(first_a, first_c);
        assert!(a.iter().zip(&b).all(|(x, y)| x.body == y.body));
        assert!(a.iter().zip(&c).any(|(x, y)| x.body != y.body));
    }

    #[test]
    fn every_protocol_prepares_bodies() {
        for protocol in [TraceProtocol::Grpc, TraceProtocol::HttpProtobuf, TraceProtocol::HttpJson] {
            let (prepared, _) = prepare(&options(protocol, 1), 1_700_000_000_000_000_000).unwrap();
            for request in &prepared {
                let decoded: ExportTraceServiceRequest = match protocol {
                    TraceProtocol::HttpJson => serde_json::from_slice(&request.body).unwrap(),
                    _ => ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap(),
                };
                let spans: usize =
                    decoded.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                assert_eq!(spans as u64, request.spans);
            }
        }
    }
}
