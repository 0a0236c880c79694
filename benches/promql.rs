//! PromQL engine figures over the real store: a dashboard's range query on 10k CPU counters.
//!
//! Run: `cargo bench --bench promql`. The data: 10 000 series of `node_cpu_seconds_total`
//! (125 instances x 10 CPUs x 8 modes), six hours at 15 s, compacted into blocks the way the
//! server does; then `sum by (mode) (rate(node_cpu_seconds_total[5m]))` over the six hours at a
//! 15 s step (1 441 steps), timed warm. `TRIPOD_BENCH_DIR` chooses where the data directory
//! goes (default: the system temp dir). The selection alone (series matched and merged across
//! blocks and head, not decoded) is timed as a second figure.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tripod::query::promql::{self, EvalOptions, QueryValue, Steps};
use tripod_storage::labels::{Labels, Matcher};
use tripod_storage::metrics::{
    MetricsAppender, MetricsOptions, MetricsQueryable, Sample, SeriesKey, SeriesSamples, TimeRange,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

/// The server's allocator, so that figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCRAPE_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;
const MODES: [&str; 8] = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Six hours of 10k CPU counters, one batch per scrape; each counter grows by its own rate
/// with a little jitter, two decimals, as node_exporter reports them.
fn load(storage: &Storage) -> u64 {
    let mut labels = Vec::new();
    let mut rates = Vec::new();
    for instance in 0..125 {
        for cpu in 0..10 {
            for (m, mode) in MODES.iter().enumerate() {
                labels.push(
                    Labels::from_pairs([
                        ("__name__", "node_cpu_seconds_total"),
                        ("cpu", cpu.to_string().as_str()),
                        ("instance", format!("host-{instance:03}:9100").as_str()),
                        ("job", "node"),
                        ("mode", mode),
                    ])
                    .unwrap(),
                );
                rates.push(0.01 + (instance * 10 + cpu + m * 7) as f64 % 13.0 / 20.0);
            }
        }
    }
    let mut values: Vec<f64> = (0..labels.len()).map(|i| 1000.0 + i as f64).collect();
    let mut refs = Vec::new();
    let mut appended = 0;
    let mut jitter = 0x9e37_79b9_u64;
    for t in (0..6 * HOUR_MS + SCRAPE_MS).step_by(SCRAPE_MS as usize) {
        for (value, rate) in values.iter_mut().zip(&rates) {
            jitter = jitter.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let seconds = rate * 15.0 * (0.9 + (jitter >> 40) as f64 / (1u64 << 24) as f64 * 0.2);
            *value = ((*value * 100.0).round() + (seconds * 100.0).round()) / 100.0;
        }
        let samples: Vec<[Sample; 1]> = values.iter().map(|&value| [Sample { t_ms: t, value }]).collect();
        let batch: Vec<SeriesSamples> = labels
            .iter()
            .zip(&samples)
            .enumerate()
            .map(|(i, (labels, samples))| SeriesSamples {
                key: match refs.get(i).copied().flatten() {
                    Some(series_ref) => SeriesKey::Ref(series_ref),
                    None => SeriesKey::Labels(labels),
                },
                samples,
                exemplars: &[],
            })
            .collect();
        let result = storage.metrics().append(&batch).unwrap();
        appended += result.counts.appended;
        refs = result.refs;
    }
    appended
}

fn main() {
    let dir = bench_dir();
    let options = StorageOptions {
        wal: WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never },
        metrics: MetricsOptions { retention_ms: None, ..MetricsOptions::default() },
        ..StorageOptions::default()
    };
    let storage = Storage::open(dir.path(), options).unwrap();
    let started = Instant::now();
    let samples = load(&storage);
    storage.maintenance().unwrap();
    println!(
        "promql: {samples} samples in 10 000 series loaded in {:.1}s; blocks {:?}, head from {} ms",
        started.elapsed().as_secs_f64(),
        storage.metrics().block_ranges(),
        storage.metrics().stats().head_min_t,
    );

    let query = "sum by (mode) (rate(node_cpu_seconds_total[5m]))";
    let expr = promql_parser::parser::parse(query).unwrap();
    let steps = Steps { start_ms: 0, end_ms: 6 * HOUR_MS, step_ms: SCRAPE_MS };
    let run = || {
        let options = EvalOptions {
            lookback_ms: promql::DEFAULT_LOOKBACK_MS,
            max_samples: 50_000_000,
            deadline: Instant::now() + Duration::from_secs(120),
            subquery_step_ms: 60_000,
        };
        match promql::range_query(storage.metrics(), &expr, steps, options).unwrap() {
            QueryValue::Matrix(series) => series,
            other => panic!("a range query gave {other:?}"),
        }
    };
    let result = run();
    assert_eq!(result.len(), MODES.len());
    assert!(result.iter().all(|s| s.samples.len() == 1440), "every step but the first has a rate");

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("promql_range_query");
    group.measurement_time(Duration::from_secs(10)).sample_size(20);
    group.throughput(Throughput::Elements(samples));
    group.bench_function("sum_by_mode_rate_5m_10k_series_6h_step_15s", |b| b.iter(|| black_box(run())));
    group.finish();

    // The selection alone (what the query reads before evaluating): every series from the
    // blocks and the head, merged by labels, not decoded.
    let matchers = [Matcher::equal("__name__", "node_cpu_seconds_total")];
    let range = TimeRange::new(-300_000, 6 * HOUR_MS).unwrap();
    assert_eq!(storage.metrics().select(&matchers, range).unwrap().len(), 10_000);
    let mut group = criterion.benchmark_group("promql_select");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("select_10k_series_6h", |b| {
        b.iter(|| black_box(storage.metrics().select(&matchers, range).unwrap()))
    });
    group.finish();
    criterion.final_summary();
}
