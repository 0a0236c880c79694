//! Write-ahead log throughput: appending batches (MB/s of framed records) and replaying a WAL at
//! open (MB/s read, checksummed and handed to the callback). Replay reads a WAL that was just
//! written, so it comes from the page cache: it measures Tripod's cost, not the disk's.
//!
//! Run: `cargo bench --bench wal`. The files go to a temporary directory under
//! `TRIPOD_BENCH_DIR` (default: the system temp dir); point it at a tmpfs such as `/dev/shm` to
//! measure the CPU cost of appending without the disk's write-back limit.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tripod_storage::wal::{RecordKind, SyncPolicy, Wal, WalOptions};

const KIND: RecordKind = match RecordKind::new(1) {
    Some(kind) => kind,
    None => unreachable!(),
};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn options() -> WalOptions {
    WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never }
}

/// Payloads that look like encoded samples: varied bytes, not all zeros.
fn payloads(record_bytes: usize, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| (0..record_bytes).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()).collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    for (record_bytes, batch) in [(128usize, 256usize), (4096, 64), (65536, 4)] {
        let records = payloads(record_bytes, batch);
        let refs: Vec<(RecordKind, &[u8])> = records.iter().map(|p| (KIND, p.as_slice())).collect();
        group.throughput(Throughput::Bytes((record_bytes * batch) as u64));
        let dir = bench_dir();
        let (wal, _) = Wal::open(dir.path(), options(), |_, _| {}).unwrap();
        group.bench_function(format!("{record_bytes}B_records_batch_{batch}"), |b| {
            b.iter_custom(|iterations| {
                let mut appending = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let position = wal.append(black_box(&refs)).unwrap();
                    appending += started.elapsed();
                    // Keep the log bounded, as the engines' checkpoints do, outside the timing:
                    // an unbounded log measures the page cache's write-back, not the WAL.
                    if position.offset > 32 << 20 {
                        let closed = wal.cut().unwrap();
                        wal.checkpoint(closed, std::iter::empty()).unwrap();
                    }
                }
                appending
            })
        });
        wal.close().unwrap();
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_replay");
    group.measurement_time(Duration::from_secs(10)).sample_size(10);
    for record_bytes in [128usize, 4096] {
        let total_bytes = 256usize << 20;
        let count = total_bytes / record_bytes;
        let dir = bench_dir();
        {
            let (wal, _) = Wal::open(dir.path(), options(), |_, _| {}).unwrap();
            let records = payloads(record_bytes, 256);
            let refs: Vec<(RecordKind, &[u8])> = records.iter().map(|p| (KIND, p.as_slice())).collect();
            for _ in 0..count / refs.len() {
                wal.append(&refs).unwrap();
            }
            wal.close().unwrap();
        }
        group.throughput(Throughput::Bytes(total_bytes as u64));
        group.bench_function(format!("{record_bytes}B_records_256MiB"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut seen = 0u64;
                    let (wal, _) = Wal::open(dir.path(), options(), |_, payload| seen += payload.len() as u64).unwrap();
                    wal.close().unwrap();
                    black_box(seen)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
