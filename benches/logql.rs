//! LogQL engine figures over the real store, through the engine (pipeline, merge, evaluation):
//!
//! 1. brute force: `{job="traefik"} |= "<absent>"` with the bloom filters off, every block
//!    decompressed and every line searched, over `TRIPOD_BENCH_SCAN_GB` (default 32) of lines:
//!    more than this machine's memory, so no cache can hold the lines uncompressed. Raw line
//!    bytes scanned per second of wall time and per second of the process's CPU time (the
//!    per-core figure), once cold (the data files evicted from the page cache first, so the
//!    compressed blocks come from the disk) and warm (compressed files in the page cache);
//! 2. needle queries the blooms answer: the same over `TRIPOD_BENCH_NEEDLE_GB` (default 10) of
//!    lines with blooms on, for an absent needle and for a trace ID present in one line;
//! 3. `sum by (status_code) (count_over_time({job="traefik"} | json [5m]))` over 1 GB of
//!    Traefik access lines, as a range query over the data's hour at a 1 m step: time and the
//!    process's peak memory growth while it runs.
//!
//! Run: `cargo bench --bench logql`. The data is generated first (Traefik JSON access lines
//! with realistic variety), appended through the store and flushed to files, so queries read
//! compressed blocks from disk (through the page cache). `TRIPOD_BENCH_DIR` chooses where the
//! data directories go. Each figure is the median of several runs, printed with its spread.

use std::path::Path;
use std::time::{Duration, Instant};

use tripod::query::logql::eval::{QueryParams, QueryResult, evaluate};
use tripod::query::logql::syntax::parse;
use tripod_storage::labels::Labels;
use tripod_storage::logs::{Direction, LogEntry, LogsAppender, LogsOptions, StreamEntries};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

/// The server's allocator, so that figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2024-01-01T00:00:00Z.
const START_NS: i64 = 1_704_067_200_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;
/// The trace ID the needle query looks for; written into exactly one line.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

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
}

const PATHS: [&str; 8] = [
    "/api/todos",
    "/api/todos/{}",
    "/api/v1/chat/completions",
    "/login",
    "/static/app.{}.js",
    "/health",
    "/api/v1/orders/{}",
    "/metrics",
];
const STATUSES: [u16; 10] = [200, 200, 200, 200, 201, 204, 301, 404, 500, 503];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "DELETE"];

/// A Traefik JSON access line with the given status.
fn traefik_line(rng: &mut Rng, t_ns: i64, status: u16, trace: Option<&str>) -> String {
    let path = PATHS[rng.below(PATHS.len() as u64) as usize].replace("{}", &rng.below(5000).to_string());
    let duration = 100_000 + rng.below(50_000_000);
    let client = format!("10.{}.{}.{}", rng.below(8), rng.below(256), 1 + rng.below(254));
    let extra = trace.map(|id| format!(r#","trace_id":"{id}""#)).unwrap_or_default();
    format!(
        r#"{{"ClientAddr":"{client}:{port}","ClientHost":"{client}","DownstreamContentSize":{size},"DownstreamStatus":{status},"Duration":{duration},"OriginStatus":{status},"RequestHost":"shop.example.com","RequestMethod":"{method}","RequestPath":"{path}","RequestProtocol":"HTTP/1.1","RouterName":"shop@docker","ServiceName":"shop@docker","StartUTC":"{t}","level":"info","msg":"","time":"{t}"{extra}}}"#,
        port = 30_000 + rng.below(30_000),
        size = rng.below(20_000),
        method = METHODS[rng.below(METHODS.len() as u64) as usize],
        t = t_ns,
    )
}

/// Appends about `bytes` of Traefik lines over one hour, then flushes everything to files.
/// Streams carry the labels Promtail extracts in the seed scenario: one per instance (4) and
/// status code. Returns the raw line bytes written.
fn load(storage: &Storage, bytes: u64, with_trace: bool) -> u64 {
    let mut codes: Vec<u16> = STATUSES.to_vec();
    codes.sort_unstable();
    codes.dedup();
    let mut streams: Vec<Labels> = Vec::new();
    for instance in 0..4 {
        for code in &codes {
            let (instance, code) = (format!("edge-{instance}"), code.to_string());
            streams.push(
                Labels::from_pairs([
                    ("instance", instance.as_str()),
                    ("job", "traefik"),
                    ("log_type", "access"),
                    ("status_code", code.as_str()),
                ])
                .unwrap(),
            );
        }
    }
    let mut rng = Rng(0x10c5);
    let approximate_lines = bytes / 400;
    let gap_ns = (HOUR_NS as u64 / approximate_lines.max(1)).max(1) as i64;
    let mut written = 0u64;
    let mut t = START_NS;
    let mut batch: Vec<Vec<LogEntry>> = vec![Vec::new(); streams.len()];
    let mut line_number = 0u64;
    let mut pending = 0usize;
    let flush = |batch: &mut Vec<Vec<LogEntry>>| {
        let pushes: Vec<StreamEntries> =
            streams.iter().zip(batch.iter()).map(|(labels, entries)| StreamEntries { labels, entries }).collect();
        storage.logs().append("fake", &pushes).unwrap();
        for entries in batch.iter_mut() {
            entries.clear();
        }
    };
    while written < bytes {
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        let instance = (line_number % 4) as usize;
        let code_index = codes.iter().position(|c| *c == status).unwrap_or(0);
        let trace = (with_trace && line_number == approximate_lines / 2).then_some(TRACE_ID);
        let line = traefik_line(&mut rng, t, status, trace);
        written += line.len() as u64;
        batch[instance * codes.len() + code_index].push(LogEntry { t_ns: t, line, metadata: Labels::empty() });
        t += gap_ns;
        line_number += 1;
        pending += 1;
        if pending >= 10_000 {
            flush(&mut batch);
            storage.maintenance().unwrap();
            pending = 0;
        }
    }
    flush(&mut batch);
    storage.logs().flush_all().unwrap();
    storage.maintenance().unwrap();
    written
}

fn open(dir: &std::path::Path, blooms: bool) -> Storage {
    let defaults = LogsOptions::default();
    let options = StorageOptions {
        wal: WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never },
        logs: LogsOptions {
            retention_ns: None,
            bloom_bits_per_kib: if blooms { defaults.bloom_bits_per_kib } else { 0 },
            ..defaults
        },
        ..StorageOptions::default()
    };
    Storage::open(dir, options).unwrap()
}

fn run(storage: &Storage, query: &str, step_ns: i64, limit: usize) -> (Duration, QueryResult) {
    let expr = parse(query).unwrap();
    let params = QueryParams {
        tenant: "fake",
        start_ns: START_NS,
        end_ns: START_NS + HOUR_NS + 1,
        step_ns,
        direction: Direction::Backward,
        limit,
        max_series: 10_000,
        deadline: Instant::now() + Duration::from_secs(600),
    };
    let started = Instant::now();
    let result = evaluate(storage.logs(), &expr, &params).unwrap();
    (started.elapsed(), result)
}

/// Median, minimum and maximum of `runs` timings of `f`.
fn timed(runs: usize, mut f: impl FnMut() -> Duration) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
    times.sort();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

fn entries(result: &QueryResult) -> usize {
    match result {
        QueryResult::Streams(streams) => streams.iter().map(|s| s.entries.len()).sum(),
        _ => 0,
    }
}

/// The process's resident memory and its peak since the last reset, in bytes (Linux).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak_memory() {
    // Writing 5 resets the peak resident size (VmHWM) to the current one.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's CPU time so far, user and system, every thread.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Every file under `dir`, depth first.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn disk_bytes(dir: &Path) -> u64 {
    files(dir).iter().filter_map(|path| path.metadata().ok()).map(|meta| meta.len()).sum()
}

/// Drops the files under `dir` from the page cache (written back first), so that the next
/// reads come from the disk.
fn evict_from_page_cache(dir: &Path) {
    use std::os::fd::AsRawFd;
    for path in files(dir) {
        let Ok(file) = std::fs::File::open(&path) else { continue };
        let _ = file.sync_all();
        // SAFETY: advice on an open descriptor; no memory is involved.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn main() {
    let gigabyte = 1u64 << 30;
    let needle_gb: u64 = std::env::var("TRIPOD_BENCH_NEEDLE_GB").ok().and_then(|v| v.parse().ok()).unwrap_or(10);

    let scan_gb: u64 = std::env::var("TRIPOD_BENCH_SCAN_GB").ok().and_then(|v| v.parse().ok()).unwrap_or(32);

    // 1. Brute force over TRIPOD_BENCH_SCAN_GB, blooms off.
    {
        let dir = bench_dir();
        let storage = open(dir.path(), false);
        let started = Instant::now();
        let bytes = load(&storage, scan_gb * gigabyte, false);
        println!(
            "logql: {:.2} GB of lines loaded (blooms off) in {:.1}s, {:.2} GB on disk",
            bytes as f64 / 1e9,
            started.elapsed().as_secs_f64(),
            disk_bytes(dir.path()) as f64 / 1e9
        );
        let query = r#"{job="traefik"} |= "no such needle anywhere""#;
        let scan = || {
            let cpu_before = cpu_time();
            let (elapsed, result) = run(&storage, query, 0, 100);
            assert_eq!(entries(&result), 0);
            (elapsed, cpu_time() - cpu_before)
        };
        let rate = |time: Duration| bytes as f64 / 1e9 / time.as_secs_f64();
        evict_from_page_cache(dir.path());
        let (cold, cold_cpu) = scan();
        println!(
            "logql brute force |= \"needle\" (absent, no blooms), cold: {:.2} GB/s of raw lines, {:.2} GB per CPU-second ({} ms)",
            rate(cold),
            rate(cold_cpu),
            cold.as_millis()
        );
        let mut runs: Vec<(Duration, Duration)> = (0..5).map(|_| scan()).collect();
        runs.sort();
        let (median, median_cpu) = runs[runs.len() / 2];
        println!(
            "logql brute force |= \"needle\" (absent, no blooms), warm: {:.2} GB/s of raw lines, {:.2} GB per CPU-second ({} ms median, {}..{} ms)",
            rate(median),
            rate(median_cpu),
            median.as_millis(),
            runs[0].0.as_millis(),
            runs[runs.len() - 1].0.as_millis()
        );
    }

    // 3. The dashboard's status-code breakdown over 1 GB.
    {
        let dir = bench_dir();
        let storage = open(dir.path(), false);
        let bytes = load(&storage, gigabyte, false);
        let query = r#"sum by (status_code) (count_over_time({job="traefik"} | json [5m]))"#;
        let (rss_before, _) = memory();
        reset_peak_memory();
        let (elapsed, result) = run(&storage, query, 60_000_000_000, 100);
        let (_, peak) = memory();
        let QueryResult::Series { series, .. } = result else { panic!("a metric query answers series") };
        assert_eq!(series.len(), 7, "one series per status code");
        let (median, min, max) = timed(3, || run(&storage, query, 60_000_000_000, 100).0);
        println!(
            "logql {query} over {:.2} GB, 1 m step: {} ms median ({}..{} ms; first run {} ms), peak memory growth {:.1} MiB",
            bytes as f64 / 1e9,
            median.as_millis(),
            min.as_millis(),
            max.as_millis(),
            elapsed.as_millis(),
            peak.saturating_sub(rss_before) as f64 / (1 << 20) as f64
        );
    }

    // 2. Needle queries over TRIPOD_BENCH_NEEDLE_GB, blooms on.
    {
        let dir = bench_dir();
        let storage = open(dir.path(), true);
        let started = Instant::now();
        let bytes = load(&storage, needle_gb * gigabyte, true);
        println!(
            "logql: {:.2} GB of lines loaded (blooms on) in {:.1}s",
            bytes as f64 / 1e9,
            started.elapsed().as_secs_f64()
        );
        let (median, min, max) = timed(7, || {
            let (elapsed, result) = run(&storage, &format!(r#"{{job="traefik"}} |= "{TRACE_ID}""#), 0, 100);
            assert_eq!(entries(&result), 1, "the trace ID is in one line");
            elapsed
        });
        println!(
            "logql |= \"<trace id>\" over {:.1} GB with blooms: {} ms median ({}..{} ms)",
            bytes as f64 / 1e9,
            median.as_millis(),
            min.as_millis(),
            max.as_millis()
        );
        let (median, min, max) = timed(7, || {
            let (elapsed, result) = run(&storage, r#"{job="traefik"} |= "needle-that-is-nowhere""#, 0, 100);
            assert_eq!(entries(&result), 0);
            elapsed
        });
        println!(
            "logql |= \"<absent needle>\" over {:.1} GB with blooms: {} ms median ({}..{} ms)",
            bytes as f64 / 1e9,
            median.as_millis(),
            min.as_millis(),
            max.as_millis()
        );
    }
}
