//! Metrics store figures on node_exporter-like data: bytes per sample on disk after compaction,
//! head memory per series, append, select-and-decode and WAL replay throughput.
//!
//! Run: `cargo bench --bench metrics`. The footprint figures are printed first (they are
//! measurements, not timings); criterion then times append, select and replay.
//! `TRIPOD_BENCH_DIR` chooses where the data directories go (default: the system temp dir).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tripod_storage::labels::{Labels, MatchOp, Matcher};
use tripod_storage::metrics::{
    MetricsAppender, MetricsOptions, MetricsQueryable, Sample, SeriesKey, SeriesRef, SeriesSamples, TimeRange,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

const SCRAPE_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn storage_options() -> StorageOptions {
    StorageOptions {
        wal: WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never },
        metrics: MetricsOptions { retention_ms: None, ..MetricsOptions::default() },
        ..StorageOptions::default()
    }
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How one series' value moves from scrape to scrape, after node_exporter's metric kinds.
#[derive(Clone, Copy)]
enum Shape {
    /// Sizes, limits, info metrics, boot time: never change.
    Constant,
    /// CPU seconds: a counter with two decimals, growing by about `rate` per second.
    CpuSeconds { rate: f64 },
    /// Byte or packet counters: whole numbers growing by a random amount up to `max_step`.
    Counter { max_step: u64 },
    /// Error and drop counters: mostly flat, now and then +1.
    RareCounter,
    /// Memory and filesystem gauges: whole pages, a small random walk.
    PageGauge,
    /// Load averages: two decimals, a random walk.
    LoadGauge,
}

struct GenSeries {
    labels: Labels,
    shape: Shape,
    value: f64,
}

/// The series of `hosts` node_exporter-like hosts, about 270 each, with ~10 labels.
fn node_exporter_series(hosts: usize, rng: &mut Rng) -> Vec<GenSeries> {
    let mut out = Vec::new();
    for host in 0..hosts {
        let instance = format!("host-{host:04}.dc1.example.net:9100");
        let base = |name: &str, extra: &[(&str, &str)]| {
            let mut pairs: Vec<(String, String)> = vec![
                ("__name__".into(), name.into()),
                ("instance".into(), instance.clone()),
                ("job".into(), "node".into()),
                ("env".into(), "production".into()),
                ("region".into(), "eu-west-1".into()),
                ("cluster".into(), format!("cluster-{}", host % 4)),
                ("team".into(), "platform".into()),
            ];
            pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Labels::from_pairs(pairs).unwrap()
        };
        let mut push = |labels: Labels, shape: Shape, value: f64| out.push(GenSeries { labels, shape, value });
        for cpu in 0..8 {
            for (mode, rate) in [
                ("idle", 0.85),
                ("user", 0.08),
                ("system", 0.04),
                ("iowait", 0.01),
                ("irq", 0.001),
                ("softirq", 0.005),
                ("steal", 0.0),
                ("nice", 0.0),
            ] {
                let labels = base(
                    "node_cpu_seconds_total",
                    &[("cpu", &cpu.to_string()), ("mode", mode), ("host_type", "m5.xlarge")],
                );
                let shape = if rate == 0.0 { Shape::Constant } else { Shape::CpuSeconds { rate } };
                push(labels, shape, (rng.below(10_000_000) as f64) / 100.0);
            }
        }
        for index in 0..40 {
            let labels = base(&format!("node_memory_field{index}_bytes"), &[("host_type", "m5.xlarge")]);
            let shape = if index % 3 == 0 { Shape::Constant } else { Shape::PageGauge };
            push(labels, shape, (rng.below(4_000_000) * 4096) as f64);
        }
        for mount in ["/", "/boot", "/var", "/data", "/home"] {
            for (field, shape) in [
                ("size", Shape::Constant),
                ("avail", Shape::PageGauge),
                ("free", Shape::PageGauge),
                ("files", Shape::Constant),
                ("files_free", Shape::RareCounter),
            ] {
                let labels = base(
                    &format!("node_filesystem_{field}_bytes"),
                    &[("mountpoint", mount), ("fstype", "ext4"), ("device", "/dev/nvme0n1p1")],
                );
                push(labels, shape, (rng.below(100_000_000) * 4096) as f64);
            }
        }
        for device in ["eth0", "eth1", "lo", "docker0"] {
            for (field, shape) in [
                ("receive_bytes", Shape::Counter { max_step: 2_000_000 }),
                ("transmit_bytes", Shape::Counter { max_step: 1_000_000 }),
                ("receive_packets", Shape::Counter { max_step: 3_000 }),
                ("transmit_packets", Shape::Counter { max_step: 2_000 }),
                ("receive_errs", Shape::RareCounter),
                ("transmit_errs", Shape::RareCounter),
                ("receive_drop", Shape::RareCounter),
                ("transmit_drop", Shape::RareCounter),
            ] {
                let labels = base(&format!("node_network_{field}_total"), &[("device", device)]);
                push(labels, shape, rng.below(1 << 40) as f64);
            }
        }
        for device in ["nvme0n1", "nvme1n1", "sda", "sdb"] {
            for (field, shape) in [
                ("reads_completed", Shape::Counter { max_step: 200 }),
                ("writes_completed", Shape::Counter { max_step: 500 }),
                ("read_bytes", Shape::Counter { max_step: 800_000 }),
                ("written_bytes", Shape::Counter { max_step: 2_000_000 }),
                ("io_time_seconds", Shape::CpuSeconds { rate: 0.02 }),
            ] {
                let labels = base(&format!("node_disk_{field}_total"), &[("device", device)]);
                push(labels, shape, rng.below(1 << 36) as f64);
            }
        }
        for (name, _) in [("node_load1", 1), ("node_load5", 5), ("node_load15", 15)] {
            push(base(name, &[]), Shape::LoadGauge, (rng.below(400) as f64) / 100.0);
        }
        for index in 0..50 {
            let shape = match index % 4 {
                0 => Shape::Counter { max_step: 100_000 },
                1 => Shape::Counter { max_step: 50 },
                2 => Shape::RareCounter,
                _ => Shape::Constant,
            };
            push(base(&format!("node_vmstat_field{index}"), &[]), shape, rng.below(1 << 30) as f64);
        }
        for index in 0..16 {
            push(base(&format!("node_info_field{index}"), &[("version", "1.8.2")]), Shape::Constant, 1.0);
        }
    }
    out
}

fn step(series: &mut GenSeries, rng: &mut Rng) {
    series.value = match series.shape {
        Shape::Constant => series.value,
        Shape::CpuSeconds { rate } => {
            let seconds = rate * 15.0 * (0.5 + rng.unit());
            ((series.value * 100.0).round() + (seconds * 100.0).round()) / 100.0
        }
        Shape::Counter { max_step } => series.value + rng.below(max_step + 1) as f64,
        Shape::RareCounter => series.value + if rng.below(50) == 0 { 1.0 } else { 0.0 },
        Shape::PageGauge => (series.value + 4096.0 * (rng.below(21) as f64 - 10.0)).max(0.0),
        Shape::LoadGauge => (((series.value * 100.0).round() + rng.below(21) as f64 - 10.0).max(0.0)) / 100.0,
    };
}

/// Appends `duration_ms` of scrapes of every series, one batch per scrape (by reference after
/// the first). Returns the samples appended.
fn load(
    storage: &Storage,
    series: &mut [GenSeries],
    refs: &mut Vec<Option<SeriesRef>>,
    from_ms: i64,
    duration_ms: i64,
    rng: &mut Rng,
) -> u64 {
    let mut appended = 0;
    let mut t = from_ms;
    while t < from_ms + duration_ms {
        for entry in series.iter_mut() {
            step(entry, rng);
        }
        let samples: Vec<[Sample; 1]> = series.iter().map(|s| [Sample { t_ms: t, value: s.value }]).collect();
        let batch: Vec<SeriesSamples> = series
            .iter()
            .zip(&samples)
            .enumerate()
            .map(|(i, (s, sample))| SeriesSamples {
                key: match refs.get(i).copied().flatten() {
                    Some(series_ref) => SeriesKey::Ref(series_ref),
                    None => SeriesKey::Labels(&s.labels),
                },
                samples: sample,
                exemplars: &[],
            })
            .collect();
        let result = storage.metrics().append(&batch).unwrap();
        appended += result.counts.appended;
        *refs = result.refs;
        t += SCRAPE_MS;
    }
    appended
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Bytes per sample on disk after compaction, and head memory per series.
fn footprint_report() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let dir = bench_dir();
    let storage = Storage::open(dir.path(), storage_options()).unwrap();
    let mut series = node_exporter_series(20, &mut rng);
    let mut refs = Vec::new();
    let started = Instant::now();
    // 7 hours: enough for the head to cut three 2h blocks, which compact into one 6h block.
    let appended = load(&storage, &mut series, &mut refs, 0, 7 * HOUR_MS, &mut rng);
    let load_seconds = started.elapsed().as_secs_f64();
    storage.maintenance().unwrap();
    let stats = storage.metrics().stats();
    println!(
        "footprint: {} series, {} samples appended in {:.2}s; blocks {:?}",
        series.len(),
        appended,
        load_seconds,
        storage
            .metrics()
            .block_ranges()
            .iter()
            .map(|(lo, hi)| format!("{:.2}h-{:.2}h", *lo as f64 / HOUR_MS as f64, *hi as f64 / HOUR_MS as f64))
            .collect::<Vec<_>>()
    );
    println!(
        "footprint: bytes per sample on disk after compaction: {:.3} ({} bytes for {} samples, index and chunks)",
        stats.block_bytes as f64 / stats.block_samples as f64,
        stats.block_bytes,
        stats.block_samples
    );
    drop(storage);

    // Head memory: RSS growth for series with an hour of samples each.
    // The generator's own label sets exist before the first measurement, so that the growth
    // counts only what the store holds.
    let dir = bench_dir();
    let mut rng = Rng(7);
    let mut series = node_exporter_series(200, &mut rng);
    let mut refs = Vec::with_capacity(series.len());
    let before = rss_bytes();
    let storage = Storage::open(dir.path(), storage_options()).unwrap();
    load(&storage, &mut series, &mut refs, 0, HOUR_MS, &mut rng);
    // The steady state: maintenance (every minute in the server) has packed closed chunks.
    storage.maintenance().unwrap();
    let after = rss_bytes();
    let stats = storage.metrics().stats();
    println!(
        "footprint: head memory per series with 1h of 15s samples (~10 labels): {:.0} bytes RSS, {:.0} bytes accounted ({} series)",
        (after.saturating_sub(before)) as f64 / stats.head_series as f64,
        stats.head_memory_bytes as f64 / stats.head_series as f64,
        stats.head_series
    );
}

fn append_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_append");
    group.measurement_time(Duration::from_secs(8)).sample_size(10);
    let mut rng = Rng(11);
    let dir = bench_dir();
    let storage = Storage::open(dir.path(), storage_options()).unwrap();
    let mut series = node_exporter_series(40, &mut rng);
    let mut refs = Vec::new();
    let mut t = 0i64;
    load(&storage, &mut series, &mut refs, t, SCRAPE_MS, &mut rng);
    t += SCRAPE_MS;
    // One batch = one scrape of 40 hosts (~10k series), by reference, 10 samples per series.
    let per_batch = 10;
    group.throughput(Throughput::Elements((series.len() * per_batch) as u64));
    group.bench_function("10k_series_x_10_samples_by_ref", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let samples: Vec<Vec<Sample>> = series
                    .iter_mut()
                    .map(|s| {
                        (0..per_batch as i64)
                            .map(|k| {
                                step(s, &mut rng);
                                Sample { t_ms: t + k * SCRAPE_MS, value: s.value }
                            })
                            .collect()
                    })
                    .collect();
                let batch: Vec<SeriesSamples> = refs
                    .iter()
                    .zip(&samples)
                    .map(|(r, s)| SeriesSamples { key: SeriesKey::Ref(r.unwrap()), samples: s, exemplars: &[] })
                    .collect();
                let started = Instant::now();
                black_box(storage.metrics().append(&batch).unwrap());
                elapsed += started.elapsed();
                t += per_batch as i64 * SCRAPE_MS;
            }
            elapsed
        })
    });
    group.finish();
}

fn select_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_select_decode");
    group.measurement_time(Duration::from_secs(8)).sample_size(10);
    let mut rng = Rng(13);
    let dir = bench_dir();
    let storage = Storage::open(dir.path(), storage_options()).unwrap();
    let mut series = node_exporter_series(10, &mut rng);
    let mut refs = Vec::new();
    load(&storage, &mut series, &mut refs, 0, 7 * HOUR_MS, &mut rng);
    storage.maintenance().unwrap();
    let count_samples = |range: TimeRange| -> u64 {
        let selected =
            storage.metrics().select(&[Matcher::new(MatchOp::Equal, "job", "node").unwrap()], range).unwrap();
        let mut buffer = Vec::new();
        let mut total = 0u64;
        for series in &selected {
            series.samples_into(&mut buffer).unwrap();
            total += buffer.len() as u64;
        }
        total
    };
    for (name, range) in [
        ("blocks_6h", TimeRange::new(0, 6 * HOUR_MS - 1).unwrap()),
        ("head_1h", TimeRange::new(6 * HOUR_MS, 7 * HOUR_MS).unwrap()),
    ] {
        let samples = count_samples(range);
        group.throughput(Throughput::Elements(samples));
        group.bench_function(name, |b| b.iter(|| black_box(count_samples(range))));
    }
    group.finish();
}

fn replay_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_wal_replay");
    group.measurement_time(Duration::from_secs(10)).sample_size(10);
    let mut rng = Rng(17);
    let dir = bench_dir();
    let samples = {
        let storage = Storage::open(dir.path(), storage_options()).unwrap();
        let mut series = node_exporter_series(40, &mut rng);
        let mut refs = Vec::new();
        let samples = load(&storage, &mut series, &mut refs, 0, HOUR_MS, &mut rng);
        storage.close().unwrap();
        samples
    };
    group.throughput(Throughput::Elements(samples));
    group.bench_function("10k_series_1h", |b| {
        b.iter(|| {
            let storage = Storage::open(dir.path(), storage_options()).unwrap();
            black_box(storage.metrics().stats().head_series);
        })
    });
    group.finish();
}

fn main() {
    footprint_report();
    let mut criterion = Criterion::default().configure_from_args();
    append_bench(&mut criterion);
    select_bench(&mut criterion);
    replay_bench(&mut criterion);
    criterion.final_summary();
}
