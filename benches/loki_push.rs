//! Loki push throughput on one core, in MB/s of raw log lines: a snappy protobuf or JSON body,
//! as a client sends it, decompressed, decoded, checked by the write path and appended to a
//! real logs store (WAL included, `fsync: never`). Decoding alone is measured beside it, to
//! show where the time goes. The HTTP layer is left out: with 1 MB bodies it is a small,
//! fixed cost per request.
//!
//! Run: `cargo bench --bench loki_push`. Files go to a temporary directory under
//! `TRIPOD_BENCH_DIR` (default: the system temp dir).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tripod::api::loki::push::{ContentEncoding, Format, with_decoded};
use tripod::api::wire::{put_bytes_field, put_varint_field};
use tripod::ingest::logs::{LogsIngest, LogsIngestSettings, LogsLimits, SystemClock};
use tripod_storage::logs::{LogAppendCounts, LogsAppender, LogsError, StreamEntries};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

/// The server's allocator, so that figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lines per request and streams they are spread over: a promtail-sized batch of about 1 MB.
const LINES: usize = 5000;
const STREAMS: usize = 20;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A small deterministic generator, so every run pushes the same lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Lines in the style of HDFS, syslog and web server logs, 100 to 300 bytes, with ids, IPs,
/// numbers and paths that vary.
fn lines() -> Vec<String> {
    let mut rng = Rng(0x1095_eed5);
    (0..LINES)
        .map(|i| match i % 3 {
            0 => format!(
                "081109 {:06} {} INFO dfs.DataNode$PacketResponder: PacketResponder {} for block blk_{}{} terminating, received {} bytes from /10.250.{}.{}:50010",
                rng.below(240000),
                rng.below(4000),
                rng.below(3),
                if rng.below(2) == 0 { "-" } else { "" },
                rng.next() >> 1,
                rng.below(67108864),
                rng.below(256),
                rng.below(256)
            ),
            1 => format!(
                "Nov 14 22:13:{:02} host-{:03} sshd[{}]: Failed password for invalid user admin{} from 192.168.{}.{} port {} ssh2; session {:016x}",
                rng.below(60),
                rng.below(500),
                rng.below(65536),
                rng.below(100),
                rng.below(256),
                rng.below(256),
                rng.below(65536),
                rng.next()
            ),
            _ => format!(
                "[Tue Nov 14 22:13:{:02}.{:06} 2023] [proxy:error] [pid {}:tid {}] (111)Connection refused: AH00957: http: attempt to connect to 10.0.{}.{}:{} (backend-{}) failed, referer: https://shop.example/cart/{}",
                rng.below(60),
                rng.below(1_000_000),
                rng.below(65536),
                rng.next() % 140_000_000_000_000,
                rng.below(256),
                rng.below(256),
                8000 + rng.below(100),
                rng.below(20),
                rng.below(100_000)
            ),
        })
        .collect()
}

fn labels(stream: usize) -> String {
    format!(
        r#"{{app="service-{}", env="prod", namespace="shop", pod="service-{}-7f9c{}"}}"#,
        stream % 7,
        stream % 7,
        stream
    )
}

/// A snappy `logproto.PushRequest` of `lines` whose timestamps start at `start_ns`.
fn protobuf_body(lines: &[String], start_ns: i64) -> Vec<u8> {
    let mut request = Vec::new();
    for stream in 0..STREAMS {
        let mut encoded = Vec::new();
        put_bytes_field(&mut encoded, 1, labels(stream).as_bytes());
        for (i, line) in lines.iter().enumerate().skip(stream).step_by(STREAMS) {
            let t_ns = start_ns + i as i64;
            let mut timestamp = Vec::new();
            put_varint_field(&mut timestamp, 1, (t_ns / 1_000_000_000) as u64);
            put_varint_field(&mut timestamp, 2, (t_ns % 1_000_000_000) as u64);
            let mut entry = Vec::new();
            put_bytes_field(&mut entry, 1, &timestamp);
            put_bytes_field(&mut entry, 2, line.as_bytes());
            put_bytes_field(&mut encoded, 2, &entry);
        }
        put_bytes_field(&mut request, 1, &encoded);
    }
    snap::raw::Encoder::new().compress_vec(&request).unwrap()
}

/// The same push as Loki JSON.
fn json_body(lines: &[String], start_ns: i64) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = (0..STREAMS)
        .map(|stream| {
            let values: Vec<serde_json::Value> = lines
                .iter()
                .enumerate()
                .skip(stream)
                .step_by(STREAMS)
                .map(|(i, line)| serde_json::json!([(start_ns + i as i64).to_string(), line]))
                .collect();
            let stream_labels = serde_json::json!({
                "app": format!("service-{}", stream % 7), "env": "prod", "namespace": "shop",
                "pod": format!("service-{}-7f9c{stream}", stream % 7),
            });
            serde_json::json!({"stream": stream_labels, "values": values})
        })
        .collect();
    serde_json::json!({ "streams": streams }).to_string().into_bytes()
}

/// A store that accepts everything and keeps nothing, to time the write path alone.
struct Discard;

impl LogsAppender for Discard {
    fn append(&self, _tenant: &str, batch: &[StreamEntries<'_>]) -> Result<LogAppendCounts, LogsError> {
        let appended = batch.iter().map(|stream| stream.entries.len() as u64).sum();
        Ok(LogAppendCounts { appended, ..LogAppendCounts::default() })
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn push(c: &mut Criterion) {
    let lines = lines();
    let raw_bytes: usize = lines.iter().map(String::len).sum();
    let dir = bench_dir();
    let options = StorageOptions {
        wal: WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never },
        ..StorageOptions::default()
    };
    let storage = Storage::open(dir.path(), options).unwrap();
    let settings = LogsIngestSettings {
        auth_enabled: false,
        limits: LogsLimits { ingestion_rate_mb: 1e9, ingestion_burst_size_mb: 1e9, ..LogsLimits::default() },
    };
    let ingest = LogsIngest::new(settings, Arc::new(SystemClock));
    let mut start_ns = now_ns() - 3_600_000_000_000;

    let mut group = c.benchmark_group("loki_push");
    group.measurement_time(Duration::from_secs(6)).sample_size(10);
    group.throughput(Throughput::Bytes(raw_bytes as u64));
    for (name, format) in [("protobuf_snappy", Format::Protobuf), ("json", Format::Json)] {
        let body_at = |start_ns: i64| match format {
            Format::Protobuf => protobuf_body(&lines, start_ns),
            Format::Json => json_body(&lines, start_ns),
        };
        let sample = body_at(start_ns);
        println!("{name}: {} lines, {raw_bytes} bytes of lines, body {} bytes", LINES, sample.len());
        group.bench_function(format!("{name}_decode"), |b| {
            b.iter(|| {
                with_decoded(black_box(&sample), format, ContentEncoding::Identity, 256 << 20, |batch| {
                    Ok(batch.streams.len())
                })
                .unwrap()
            })
        });
        // Decoding and the write path's checks, into a store that keeps nothing.
        group.bench_function(format!("{name}_decode_and_check"), |b| {
            b.iter(|| {
                with_decoded(black_box(&sample), format, ContentEncoding::Identity, 256 << 20, |batch| {
                    Ok(ingest.push(&Discard, "fake", batch).unwrap().received_entries)
                })
                .unwrap()
            })
        });
        // Each push has new timestamps, so the store appends rather than finding duplicates.
        group.bench_function(format!("{name}_end_to_end"), |b| {
            b.iter_batched(
                || {
                    start_ns += LINES as i64;
                    body_at(start_ns)
                },
                |body| {
                    with_decoded(&body, format, ContentEncoding::Identity, 256 << 20, |batch| {
                        let outcome = ingest.push(storage.logs(), "fake", batch).unwrap();
                        assert_eq!(outcome.stored.appended, LINES as u64);
                        Ok(())
                    })
                    .unwrap()
                },
                BatchSize::LargeInput,
            )
        });
        // Flush what the head holds, outside the timing, so later runs start from a small head.
        storage.maintenance().unwrap();
    }
    group.finish();
    storage.close().unwrap();
}

criterion_group!(benches, push);
criterion_main!(benches);
