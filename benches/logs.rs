//! Logs store figures on Loghub-like generated lines (HDFS data node, syslog and Apache error
//! log styles, with realistic variety: block IDs, IPs and ports, pids, sizes, paths): the
//! on-disk size against the raw lines (blocks, blooms and stream tables included), append
//! throughput into head + WAL on one thread, and `|= "needle"` scans with and without the
//! bloom filters.
//!
//! Run: `cargo bench --bench logs`. The footprint figures are printed first (they are
//! measurements, not timings), with append and flush throughputs by the thread's CPU time and
//! by the clock; criterion then times append (by the clock, and again by CPU time, which a
//! machine shared with other work does not skew) and the scans.
//! `TRIPOD_BENCH_DIR` chooses where the data directories go (default: the system temp dir).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tripod_storage::labels::{Labels, Matcher};
use tripod_storage::logs::{
    Direction, LineFilter, LogEntry, LogSelection, LogsAppender, LogsCodec, LogsOptions, LogsQueryable, NsRange,
    StreamEntries,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

/// 2024-01-01T00:00:00Z.
const START_NS: i64 = 1_704_067_200_000_000_000;

/// CPU time this thread has used (user and system, so the WAL's writes count).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to fill; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRIPOD_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn storage_options(logs: LogsOptions) -> StorageOptions {
    StorageOptions {
        wal: WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Never },
        logs: LogsOptions { retention_ns: None, ..logs },
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

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn ip(&mut self) -> String {
        format!("10.{}.{}.{}", 250 + self.below(2), self.below(256), self.below(256))
    }

    fn public_ip(&mut self) -> String {
        format!("{}.{}.{}.{}", 24 + self.below(200), self.below(256), self.below(256), 1 + self.below(254))
    }
}

/// The three styles of lines.
#[derive(Clone, Copy)]
enum Style {
    Hdfs,
    Syslog,
    ApacheError,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// What repeats in real logs: blocks being written (each shows up in several lines), the
/// cluster's data nodes, the clients and processes of the moment.
struct Pools {
    blocks: Vec<i64>,
    nodes: Vec<String>,
    clients: Vec<String>,
    pids: Vec<u64>,
}

impl Pools {
    fn new(rng: &mut Rng) -> Pools {
        Pools {
            blocks: (0..40).map(|_| rng.next() as i64).collect(),
            nodes: (0..200).map(|_| rng.ip()).collect(),
            clients: (0..60).map(|_| rng.public_ip()).collect(),
            pids: (0..20).map(|_| 1000 + rng.below(30_000)).collect(),
        }
    }

    /// An active block; now and then one completes and a new one starts.
    fn block(&mut self, rng: &mut Rng) -> i64 {
        let index = rng.below(self.blocks.len() as u64) as usize;
        if rng.below(5) == 0 {
            self.blocks[index] = rng.next() as i64;
        }
        self.blocks[index]
    }

    fn node(&self, rng: &mut Rng) -> String {
        self.nodes[rng.below(self.nodes.len() as u64) as usize].clone()
    }

    fn client(&mut self, rng: &mut Rng) -> String {
        let index = rng.below(self.clients.len() as u64) as usize;
        if rng.below(50) == 0 {
            self.clients[index] = rng.public_ip();
        }
        self.clients[index].clone()
    }

    fn pid(&mut self, rng: &mut Rng) -> u64 {
        let index = rng.below(self.pids.len() as u64) as usize;
        if rng.below(20) == 0 {
            self.pids[index] = 1000 + rng.below(30_000);
        }
        self.pids[index]
    }
}

/// One line of `style` at `t_ns`.
fn line(rng: &mut Rng, pools: &mut Pools, style: Style, t_ns: i64, sequence: u64) -> String {
    let seconds = t_ns / 1_000_000_000;
    let (hour, minute, second) = ((seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60);
    match style {
        Style::Hdfs => {
            let block = pools.block(rng);
            let stamp = format!("081109 {hour:02}{minute:02}{second:02} {}", pools.pid(rng));
            match rng.below(6) {
                0 => format!(
                    "{stamp} INFO dfs.DataNode$DataXceiver: Receiving block blk_{block} src: /{}:{} dest: /{}:50010",
                    pools.node(rng),
                    30_000 + rng.below(30_000),
                    pools.node(rng)
                ),
                1 => format!(
                    "{stamp} INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: {}:50010 is added to blk_{block} size {}",
                    pools.node(rng),
                    if rng.below(4) == 0 { rng.below(67_108_864) } else { 67_108_864 }
                ),
                2 => format!(
                    "{stamp} INFO dfs.DataNode$PacketResponder: PacketResponder {} for block blk_{block} terminating",
                    rng.below(3)
                ),
                3 => format!(
                    "{stamp} INFO dfs.DataNode$PacketResponder: Received block blk_{block} of size {} from /{}",
                    if rng.below(4) == 0 { rng.below(67_108_864) } else { 67_108_864 },
                    pools.node(rng)
                ),
                4 => format!(
                    "{stamp} INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/rand{}/_temporary/_task_200811092030_0001_m_{:06}_0/part-{:05}. blk_{block}",
                    rng.below(10),
                    rng.below(2000),
                    rng.below(2000)
                ),
                _ => format!(
                    "{stamp} INFO dfs.FSDataset: Deleting block blk_{block} file /mnt/hadoop/dfs/data/current/subdir{}/blk_{block}",
                    rng.below(64)
                ),
            }
        }
        Style::Syslog => {
            let stamp = format!(
                "{} {:2} {hour:02}:{minute:02}:{second:02} combo",
                MONTHS[(sequence / 50_000 % 12) as usize],
                1 + (sequence / 5000) % 28
            );
            let pid = pools.pid(rng);
            match rng.below(6) {
                0 => format!(
                    "{stamp} sshd(pam_unix)[{pid}]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost={}  user={}",
                    pools.client(rng),
                    rng.pick(&["root", "guest", "test", "admin", "oracle"])
                ),
                1 => format!("{stamp} sshd(pam_unix)[{pid}]: check pass; user unknown"),
                2 => format!(
                    "{stamp} su(pam_unix)[{pid}]: session {} for user {} by (uid=0)",
                    rng.pick(&["opened", "closed"]),
                    rng.pick(&["cyrus", "news", "root"])
                ),
                3 => {
                    format!("{stamp} CRON[{pid}]: (root) CMD (run-parts /etc/cron.{})", rng.pick(&["hourly", "daily"]))
                }
                4 => format!(
                    "{stamp} kernel: eth0: link {} {}Mbps full duplex, lpa 0x{:04X}",
                    rng.pick(&["up,", "down,"]),
                    rng.pick(&["100", "1000"]),
                    rng.below(65_536)
                ),
                _ => format!(
                    "{stamp} ftpd[{pid}]: connection from {} ({}.dyn.example.net) at {} {} {:2} {hour:02}:{minute:02}:{second:02} 2005",
                    pools.client(rng),
                    rng.below(1 << 24),
                    DAYS[(sequence % 7) as usize],
                    MONTHS[(sequence / 50_000 % 12) as usize],
                    1 + (sequence / 5000) % 28
                ),
            }
        }
        Style::ApacheError => {
            let stamp = format!(
                "[{} {} {:02} {hour:02}:{minute:02}:{second:02} 2005]",
                DAYS[(sequence / 20_000 % 7) as usize],
                MONTHS[(sequence / 100_000 % 12) as usize],
                1 + (sequence / 20_000) % 28
            );
            match rng.below(5) {
                0 => format!("{stamp} [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties"),
                1 => format!("{stamp} [error] mod_jk child workerEnv in error state {}", 6 + rng.below(4)),
                2 => format!(
                    "{stamp} [error] [client {}] Directory index forbidden by rule: /var/www/html/{}",
                    pools.client(rng),
                    rng.pick(&["", "icons/", "manual/", "cgi-bin/"])
                ),
                3 => format!(
                    "{stamp} [notice] jk2_init() Found child {} in scoreboard slot {}",
                    1000 + rng.below(9000),
                    rng.below(12)
                ),
                _ => format!(
                    "{stamp} [error] [client {}] File does not exist: /var/www/html/{}",
                    pools.client(rng),
                    rng.pick(&[
                        "favicon.ico",
                        "robots.txt",
                        "scripts/..%255c%255c../winnt/system32/cmd.exe",
                        "sumthin"
                    ])
                ),
            }
        }
    }
}

/// A stream of the generated data: its labels and style.
struct GeneratedStream {
    labels: Labels,
    style: Style,
    rng: Rng,
    pools: Pools,
    t_ns: i64,
    sequence: u64,
}

fn streams() -> Vec<GeneratedStream> {
    let mut out = Vec::new();
    for (index, (job, style)) in
        [("hdfs", Style::Hdfs), ("syslog", Style::Syslog), ("apache", Style::ApacheError)].into_iter().enumerate()
    {
        for host in 0..4 {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((index * 16 + host) as u64 + 1));
            let pools = Pools::new(&mut rng);
            out.push(GeneratedStream {
                labels: Labels::from_pairs([("job", job.to_string()), ("host", format!("node-{host}"))]).unwrap(),
                style,
                rng,
                pools,
                t_ns: START_NS,
                sequence: 0,
            });
        }
    }
    out
}

impl GeneratedStream {
    fn entries(&mut self, count: usize) -> Vec<LogEntry> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            self.t_ns += 1_000_000 + (self.rng.below(20) as i64) * 1_000_000;
            self.sequence += 1;
            let line = line(&mut self.rng, &mut self.pools, self.style, self.t_ns, self.sequence);
            out.push(LogEntry { t_ns: self.t_ns, line, metadata: Labels::empty() });
        }
        out
    }
}

/// Batches of about `batch_bytes` of lines, each batch a few entries of every stream.
fn batches(total_bytes: usize, entries_per_stream: usize) -> Vec<Vec<(Labels, Vec<LogEntry>)>> {
    let mut generated = streams();
    let mut out = Vec::new();
    let mut bytes = 0;
    while bytes < total_bytes {
        let mut batch = Vec::new();
        for stream in &mut generated {
            let entries = stream.entries(entries_per_stream);
            bytes += entries.iter().map(|e| e.line.len()).sum::<usize>();
            batch.push((stream.labels.clone(), entries));
        }
        out.push(batch);
    }
    out
}

fn append_all(storage: &Storage, batches: &[Vec<(Labels, Vec<LogEntry>)>]) -> u64 {
    let mut line_bytes = 0;
    for batch in batches {
        let items: Vec<StreamEntries<'_>> =
            batch.iter().map(|(labels, entries)| StreamEntries { labels, entries }).collect();
        line_bytes += storage.logs().append("fake", &items).unwrap().line_bytes;
    }
    line_bytes
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path).unwrap().filter_map(|entry| entry.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

/// On-disk size against raw line bytes, per style and codec level; printed, not timed.
fn footprint_report() {
    let total = 64 << 20;
    let data = batches(total, 100);
    println!("logs footprint: {} MiB of generated lines, 12 streams, 256 KiB blocks, 1.5 MiB chunks", total >> 20);
    let zstd = |level| LogsCodec::Zstd { level };
    for (name, head_codec, codec, bloom_bits_per_gram) in [
        ("defaults: head raw, files zstd 1, blooms 3 bits/gram", LogsCodec::None, zstd(1), 3),
        ("head raw, files zstd 1, no blooms", LogsCodec::None, zstd(1), 0),
        ("head raw, files zstd 1, blooms 2 bits/gram", LogsCodec::None, zstd(1), 2),
        ("head raw, files zstd 3, blooms 3 bits/gram", LogsCodec::None, zstd(3), 3),
        ("head zstd 1 (compressed on append), blooms 3 bits/gram", zstd(1), zstd(1), 3),
    ] {
        let dir = bench_dir();
        let logs = LogsOptions { head_codec, codec, bloom_bits_per_gram, ..LogsOptions::default() };
        let storage = Storage::open(dir.path(), storage_options(logs)).unwrap();
        let (started, started_cpu) = (Instant::now(), thread_cpu_time());
        let line_bytes = append_all(&storage, &data);
        let (appended, appended_cpu) = (started.elapsed(), thread_cpu_time() - started_cpu);
        let (started, started_cpu) = (Instant::now(), thread_cpu_time());
        storage.logs().flush_all().unwrap();
        let (flushed, flushed_cpu) = (started.elapsed(), thread_cpu_time() - started_cpu);
        let on_disk = dir_bytes(&dir.path().join("logs"));
        let rate = |took: Duration| line_bytes as f64 / took.as_secs_f64() / 1e6;
        println!(
            "  {name}: {line_bytes} line bytes -> {on_disk} bytes on disk, ratio {:.2}x; append {:.0} MB/s of CPU time ({:.0} by the clock), flush {:.0} MB/s of CPU time ({:.0} by the clock)",
            line_bytes as f64 / on_disk as f64,
            rate(appended_cpu),
            rate(appended),
            rate(flushed_cpu),
            rate(flushed)
        );
    }
    // Per style, with the defaults.
    for (style_name, job) in [("hdfs", "hdfs"), ("syslog", "syslog"), ("apache error", "apache")] {
        let dir = bench_dir();
        let storage = Storage::open(dir.path(), storage_options(LogsOptions::default())).unwrap();
        let mut line_bytes = 0;
        for batch in &data {
            let items: Vec<StreamEntries<'_>> = batch
                .iter()
                .filter(|(labels, _)| labels.get("job") == Some(job))
                .map(|(labels, entries)| StreamEntries { labels, entries })
                .collect();
            line_bytes += storage.logs().append("fake", &items).unwrap().line_bytes;
        }
        storage.logs().flush_all().unwrap();
        let on_disk = dir_bytes(&dir.path().join("logs"));
        println!("  defaults, {style_name} only: ratio {:.2}x", line_bytes as f64 / on_disk as f64);
    }
}

fn append_bench(criterion: &mut Criterion) {
    let data = batches(64 << 20, 100);
    let batch_bytes: u64 = data
        .iter()
        .map(|batch| batch.iter().flat_map(|(_, e)| e.iter()).map(|e| e.line.len() as u64).sum::<u64>())
        .sum::<u64>()
        / data.len() as u64;
    let mut group = criterion.benchmark_group("logs_append");
    group.throughput(Throughput::Bytes(batch_bytes));
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    // Timed by the clock, then by the thread's CPU time (what one core of ingestion costs; a
    // machine busy with other work stretches the first, not the second).
    for (name, by_cpu_time) in
        [("head_and_wal_batches_of_1200_entries", false), ("head_and_wal_batches_of_1200_entries_cpu_time", true)]
    {
        let now = |origin: &Instant| if by_cpu_time { thread_cpu_time() } else { origin.elapsed() };
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let origin = Instant::now();
                let mut dir = bench_dir();
                let mut storage = Storage::open(dir.path(), storage_options(LogsOptions::default())).unwrap();
                let mut timed = Duration::ZERO;
                let mut position = 0usize;
                for _ in 0..iterations {
                    if position == data.len() {
                        // The data is used up: start again on a new store, outside the timed
                        // section, so that every timed entry is new to its stream.
                        drop(storage);
                        dir = bench_dir();
                        storage = Storage::open(dir.path(), storage_options(LogsOptions::default())).unwrap();
                        position = 0;
                    }
                    let items: Vec<StreamEntries<'_>> =
                        data[position].iter().map(|(labels, entries)| StreamEntries { labels, entries }).collect();
                    let started = now(&origin);
                    black_box(storage.logs().append("fake", &items).unwrap());
                    timed += now(&origin) - started;
                    position += 1;
                }
                timed
            });
        });
    }
    group.finish();
}

fn scan_bench(criterion: &mut Criterion) {
    let data = batches(64 << 20, 100);
    let needle = "0af7651916cd43dd8448eb211c80319c";
    let mut group = criterion.benchmark_group("logs_contains_scan");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, bloom_bits_per_kib) in [("brute_force", 0), ("bloom_skipped", 256)] {
        let dir = bench_dir();
        let storage =
            Storage::open(dir.path(), storage_options(LogsOptions { bloom_bits_per_kib, ..LogsOptions::default() }))
                .unwrap();
        let line_bytes = append_all(&storage, &data);
        // One entry holds the needle.
        let labels = data[0][0].0.clone();
        let entry = LogEntry {
            t_ns: START_NS + 1,
            line: format!("request failed trace_id={needle}"),
            metadata: Labels::empty(),
        };
        storage
            .logs()
            .append("fake", &[StreamEntries { labels: &labels, entries: std::slice::from_ref(&entry) }])
            .unwrap();
        storage.logs().flush_all().unwrap();
        group.throughput(Throughput::Bytes(line_bytes));
        let matchers = [Matcher::new(tripod_storage::labels::MatchOp::RegexMatch, "job", ".+").unwrap()];
        let filters = [LineFilter::Contains(needle.to_string())];
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                let selection = LogSelection {
                    matchers: &matchers,
                    range: NsRange::all(),
                    direction: Direction::Backward,
                    filters: &filters,
                };
                let mut found = 0;
                for cursor in storage.logs().select("fake", &selection).unwrap() {
                    for entry in cursor.entries {
                        entry.unwrap();
                        found += 1;
                    }
                }
                assert_eq!(found, 1);
                found
            });
        });
    }
    group.finish();
}

fn main() {
    footprint_report();
    let mut criterion = Criterion::default().configure_from_args();
    append_bench(&mut criterion);
    scan_bench(&mut criterion);
    criterion.final_summary();
}
