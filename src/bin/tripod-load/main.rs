//! `tripod-load`: sends realistic load to any endpoint that speaks the protocol, so that Tripod
//! and the system it replaces can be measured with the same traffic on the same machine.
//!
//! `tripod-load remote-write --url http://127.0.0.1:9090/api/v1/write` sends node_exporter-like
//! series (about 250 per host, ten labels each: counters, gauges, constants on a 15 s grid) as
//! Prometheus remote write 1.0 or 2.0. Requests are encoded before the clock starts, so the
//! figure measures the receiver, not this tool. It reports samples/s accepted and errors.
//!
//! `tripod-load backfill --url http://127.0.0.1:9090/api/v1/write` writes history for a query
//! benchmark: `node_cpu_seconds_total{cpu, instance, job, mode}` for 125 hosts x 10 CPUs x 8
//! modes (10 000 counters) over 6 hours at 15 s, ending at `--end`. The values come from a
//! fixed-seed generator, so two receivers given the same flags hold the same data. Remote write
//! 1.0 is sent in time order, slice by slice (every series' samples of one slice before the next
//! slice starts), so that a receiver that only accepts samples close to its newest one, like the
//! Prometheus head, takes all of it. Any refused request stops the tool with an error.
//!
//! `tripod-load logs --url http://127.0.0.1:3100/loki/api/v1/push` sends realistic log traffic
//! (Traefik access lines, app JSON logs with trace ids, syslog lines) as Loki protobuf, Loki JSON
//! or OTLP; see [`logs`].
//!
//! `tripod-load traces --url http://127.0.0.1:4317` sends realistic OTLP trace traffic (a shop's
//! services calling each other, about ten spans a trace and twenty attributes a span, errors,
//! slow spans and events) over gRPC or HTTP (protobuf or JSON); see [`traces`].
//!
//! `tripod-load query --url http://127.0.0.1:9090 --query '...' --start S --end E --step 15s`
//! runs a range query (`POST /api/v1/query_range`) a few times to warm up, then `--runs` times
//! one after the other, checks that every answer is a non-empty matrix, and reports min, p50,
//! p90 and max latency and the size of the answer. Responses are asked for uncompressed, so the
//! figure covers evaluation and JSON encoding but not gzip.

mod logs;
mod traces;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use tripod::api::wire::{put_bytes_field, put_fixed64_field, put_varint, put_varint_field};
use tripod::duration::parse_duration;
use tripod::load::Rng;

#[derive(Parser)]
#[command(name = "tripod-load", about = "Send realistic load to an observability endpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prometheus remote write traffic.
    RemoteWrite(RemoteWrite),
    /// Hours of node_cpu_seconds_total history, sent in time order by remote write 1.0.
    Backfill(Backfill),
    /// Times a range query run again and again.
    Query(Query),
    /// Log traffic: Loki protobuf or JSON, or OTLP.
    Logs(logs::Logs),
    /// OTLP trace traffic over gRPC or HTTP (protobuf or JSON).
    Traces(traces::Traces),
}

#[derive(Clone, Copy, ValueEnum)]
enum Protocol {
    V1,
    V2,
}

#[derive(Parser)]
struct RemoteWrite {
    /// Remote write URL.
    #[arg(long)]
    url: String,
    /// Series in all (rounded to whole hosts of ~250 series).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Series per request: 2000 with one sample each is how agents send.
    #[arg(long, default_value_t = 2000)]
    batch_series: usize,
    /// Samples per series per request (scrapes batched together).
    #[arg(long, default_value_t = 1)]
    samples_per_series: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
    duration: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Target samples per second; 0 sends as fast as the receiver accepts.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Message: remote write 1.0 or 2.0.
    #[arg(long, value_enum, default_value_t = Protocol::V1)]
    protocol: Protocol,
    /// Requests to encode ahead (they are sent round-robin with advancing timestamps).
    #[arg(long, default_value_t = 4000)]
    prepared: usize,
}

#[derive(Parser)]
struct Backfill {
    /// Remote write URL.
    #[arg(long)]
    url: String,
    /// Hosts, each with its own `instance` label.
    #[arg(long, default_value_t = 125)]
    instances: usize,
    /// CPUs per host; every CPU has 8 mode series.
    #[arg(long, default_value_t = 10)]
    cpus: usize,
    /// Hours of history ending at `--end`.
    #[arg(long, default_value_t = 6)]
    hours: u64,
    /// Time between two samples of a series.
    #[arg(long, default_value = "15s", value_parser = parse_duration_arg)]
    interval: Duration,
    /// Timestamp of the last sample, in unix seconds; by default the last whole minute.
    #[arg(long)]
    end: Option<i64>,
    /// Time covered by one slice: all series' samples of a slice are sent before the next.
    #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
    slice: Duration,
    /// Series per request (each with all its samples of the slice).
    #[arg(long, default_value_t = 2000)]
    batch_series: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Parser)]
struct Query {
    /// Base URL of the Prometheus API, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    url: String,
    /// PromQL expression.
    #[arg(long)]
    query: String,
    /// Start of the range, in unix seconds.
    #[arg(long)]
    start: i64,
    /// End of the range, in unix seconds.
    #[arg(long)]
    end: i64,
    /// Resolution step.
    #[arg(long, value_parser = parse_duration_arg)]
    step: Duration,
    /// Timed runs.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

/// How a generated series' value moves between scrapes.
#[derive(Clone, Copy)]
enum Shape {
    Constant,
    Counter(u64),
    Gauge,
}

struct GeneratedSeries {
    /// Sorted label pairs.
    labels: Vec<(String, String)>,
    shape: Shape,
    value: f64,
}

/// node_exporter-like hosts: CPU, memory, filesystem, network, disk and info families.
fn generate_series(count: usize) -> Vec<GeneratedSeries> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(count);
    let mut host = 0;
    while out.len() < count {
        let instance = format!("host-{host:05}.dc1.example.net:9100");
        let mut add = |name: &str, extra: &[(&str, String)], shape: Shape, rng: &mut Rng| {
            let mut labels: Vec<(String, String)> = vec![
                ("__name__".into(), name.into()),
                ("cluster".into(), format!("cluster-{}", host % 4)),
                ("env".into(), "production".into()),
                ("instance".into(), instance.clone()),
                ("job".into(), "node".into()),
                ("region".into(), "eu-west-1".into()),
            ];
            labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
            labels.sort();
            out.push(GeneratedSeries { labels, shape, value: (rng.next() % 1_000_000) as f64 });
        };
        for cpu in 0..8 {
            for mode in ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"] {
                add(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.into())],
                    Shape::Counter(1500),
                    &mut rng,
                );
            }
        }
        for index in 0..40 {
            let shape = if index % 3 == 0 { Shape::Constant } else { Shape::Gauge };
            add(&format!("node_memory_field{index}_bytes"), &[], shape, &mut rng);
        }
        for device in ["eth0", "eth1", "lo", "docker0"] {
            for field in [
                "receive_bytes",
                "transmit_bytes",
                "receive_packets",
                "transmit_packets",
                "receive_errs",
                "transmit_errs",
            ] {
                add(
                    &format!("node_network_{field}_total"),
                    &[("device", device.into())],
                    Shape::Counter(100_000),
                    &mut rng,
                );
            }
        }
        for mount in ["/", "/boot", "/var", "/data", "/home"] {
            for field in ["size", "avail", "free", "files", "files_free"] {
                add(
                    &format!("node_filesystem_{field}_bytes"),
                    &[("mountpoint", mount.into()), ("fstype", "ext4".into())],
                    Shape::Gauge,
                    &mut rng,
                );
            }
        }
        for index in 0..90 {
            add(
                &format!("node_vmstat_field{index}"),
                &[],
                if index % 2 == 0 { Shape::Counter(50) } else { Shape::Constant },
                &mut rng,
            );
        }
        host += 1;
    }
    out.truncate(count);
    out
}

fn step(series: &mut GeneratedSeries, rng: &mut Rng) {
    series.value = match series.shape {
        Shape::Constant => series.value,
        Shape::Counter(max) => series.value + (rng.next() % (max + 1)) as f64,
        Shape::Gauge => (series.value + 4096.0 * ((rng.next() % 21) as f64 - 10.0)).max(0.0),
    };
}

fn encode_sample(out: &mut Vec<u8>, field: u32, value: f64, t_ms: i64) {
    let mut sample = Vec::with_capacity(20);
    put_fixed64_field(&mut sample, 1, value.to_bits());
    put_varint_field(&mut sample, 2, t_ms as u64);
    put_bytes_field(out, field, &sample);
}

/// Appends one remote write 1.0 `TimeSeries` (sorted labels, then samples) to a `WriteRequest`.
fn encode_v1_series(request: &mut Vec<u8>, labels: &[(String, String)], samples: impl IntoIterator<Item = (f64, i64)>) {
    let mut ts = Vec::with_capacity(512);
    for (name, value) in labels {
        let mut label = Vec::with_capacity(name.len() + value.len() + 4);
        put_bytes_field(&mut label, 1, name.as_bytes());
        put_bytes_field(&mut label, 2, value.as_bytes());
        put_bytes_field(&mut ts, 1, &label);
    }
    for (value, t_ms) in samples {
        encode_sample(&mut ts, 2, value, t_ms);
    }
    put_bytes_field(request, 1, &ts);
}

/// One request: series `range` of `all`, `samples` scrapes starting at `t_ms`.
fn encode_request(
    protocol: Protocol,
    all: &mut [GeneratedSeries],
    range: std::ops::Range<usize>,
    t_ms: i64,
    samples: usize,
    rng: &mut Rng,
) -> Vec<u8> {
    let mut request = Vec::new();
    match protocol {
        Protocol::V1 => {
            for series in &mut all[range] {
                let points: Vec<(f64, i64)> = (0..samples)
                    .map(|k| {
                        step(series, rng);
                        (series.value, t_ms + k as i64 * 15_000)
                    })
                    .collect();
                encode_v1_series(&mut request, &series.labels, points);
            }
        }
        Protocol::V2 => {
            let mut symbols: Vec<&str> = vec![""];
            let mut index: std::collections::HashMap<&str, u64> = std::collections::HashMap::from([("", 0)]);
            let mut encoded = Vec::new();
            let series_range: Vec<usize> = range.collect();
            for &i in &series_range {
                step(&mut all[i], rng);
            }
            for &i in &series_range {
                let series = &all[i];
                let mut refs = Vec::new();
                for (name, value) in &series.labels {
                    for text in [name.as_str(), value.as_str()] {
                        let next = symbols.len() as u64;
                        let reference = *index.entry(text).or_insert_with(|| {
                            symbols.push(text);
                            next
                        });
                        put_varint(&mut refs, reference);
                    }
                }
                let mut ts = Vec::with_capacity(128);
                put_bytes_field(&mut ts, 1, &refs);
                for k in 0..samples {
                    encode_sample(&mut ts, 2, series.value + k as f64, t_ms + k as i64 * 15_000);
                }
                encoded.push(ts);
            }
            for symbol in &symbols {
                put_bytes_field(&mut request, 4, symbol.as_bytes());
            }
            for ts in &encoded {
                put_bytes_field(&mut request, 5, ts);
            }
        }
    }
    snap::raw::Encoder::new().compress_vec(&request).unwrap_or_default()
}

/// Sends one snappy-compressed remote write body; an answer outside 2xx is an error carrying its body.
async fn post_write(client: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>) -> Result<(), String> {
    let response = client
        .post(url)
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .map_err(|error| describe(&error))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(format!("{status}: {}", response.text().await.unwrap_or_default().trim()))
}

async fn remote_write(options: RemoteWrite) -> Result<(), String> {
    if options.batch_series == 0 || options.series == 0 || options.samples_per_series == 0 {
        return Err("--series, --batch-series and --samples-per-series must be above 0".into());
    }
    let mut series = generate_series(options.series);
    let batches_per_round = options.series.div_ceil(options.batch_series);
    let now_ms = tripod::duration::unix_now_ms();
    let rounds = options.prepared.div_ceil(batches_per_round).max(1);
    let round_span_ms = 15_000 * options.samples_per_series as i64;
    // The prepared rounds end at the present, so receivers with an out-of-order window accept all.
    let start_ms = now_ms - rounds as i64 * round_span_ms;
    eprintln!(
        "preparing {} requests: {} series, {} series x {} samples a request",
        rounds * batches_per_round,
        series.len(),
        options.batch_series,
        options.samples_per_series
    );
    let mut rng = Rng(42);
    let mut requests = Vec::with_capacity(rounds * batches_per_round);
    for round in 0..rounds {
        for batch in 0..batches_per_round {
            let range = batch * options.batch_series..((batch + 1) * options.batch_series).min(series.len());
            let samples = range.len() * options.samples_per_series;
            let body = encode_request(
                options.protocol,
                &mut series,
                range,
                start_ms + round as i64 * round_span_ms,
                options.samples_per_series,
                &mut rng,
            );
            requests.push((body, samples as u64));
        }
    }
    let requests = Arc::new(requests);
    let content_type = match options.protocol {
        Protocol::V1 => "application/x-protobuf",
        Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    };
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(options.concurrency).build().map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (client, requests, next, accepted, errors, url) =
            (client.clone(), requests.clone(), next.clone(), accepted.clone(), errors.clone(), options.url.clone());
        let rate = options.rate;
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                if index >= requests.len() {
                    break;
                }
                let (body, samples) = &requests[index];
                if rate > 0 {
                    // Pace: request `index` is due when the samples before it fit the rate.
                    let due = started + Duration::from_secs_f64(index as f64 * *samples as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                match post_write(&client, &url, content_type, body.clone()).await {
                    Ok(()) => {
                        accepted.fetch_add(*samples, Ordering::Relaxed);
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
    let accepted = accepted.load(Ordering::Relaxed);
    let sent = next.load(Ordering::Relaxed).min(requests.len() as u64);
    println!(
        "remote-write: {accepted} samples accepted in {seconds:.2}s = {:.0} samples/s; {sent} requests, {} errors",
        accepted as f64 / seconds,
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

/// An error with its causes, which is where reqwest says what went wrong (refused, reset, ...).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `node_cpu_seconds_total` modes with the share of a CPU each takes on average.
const CPU_MODES: [(&str, f64); 8] = [
    ("idle", 0.70),
    ("iowait", 0.03),
    ("irq", 0.01),
    ("nice", 0.005),
    ("softirq", 0.02),
    ("steal", 0.005),
    ("system", 0.06),
    ("user", 0.15),
];

/// One `node_cpu_seconds_total` series of the backfill.
struct CpuCounter {
    /// Sorted label pairs.
    labels: Vec<(String, String)>,
    /// The value in hundredths, so that every sample has two decimals.
    hundredths: u64,
    /// Mean growth per second, in hundredths.
    hundredths_per_second: f64,
    /// Jitter of this series alone, so that its values do not depend on how requests are cut.
    rng: Rng,
}

impl CpuCounter {
    fn value(&self) -> f64 {
        self.hundredths as f64 / 100.0
    }

    /// Moves to the next scrape: the mean growth over `seconds`, give or take 10%.
    fn advance(&mut self, seconds: f64) {
        let jitter = 0.9 + 0.2 * (self.rng.next() % 1001) as f64 / 1000.0;
        self.hundredths += (self.hundredths_per_second * seconds * jitter).round() as u64;
    }
}

/// `instances` hosts x `cpus` CPUs x 8 modes, starting between 1000 and 2000 seconds.
fn cpu_counters(instances: usize, cpus: usize) -> Vec<CpuCounter> {
    let mut out = Vec::with_capacity(instances * cpus * CPU_MODES.len());
    for host in 0..instances {
        for cpu in 0..cpus {
            for (mode, share) in CPU_MODES {
                let seed = 0x9e37_79b9_7f4a_7c15 ^ (out.len() as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut rng = Rng(seed.max(1));
                let mut labels = vec![
                    ("__name__".to_string(), "node_cpu_seconds_total".to_string()),
                    ("cpu".to_string(), cpu.to_string()),
                    ("instance".to_string(), format!("host-{host:03}:9100")),
                    ("job".to_string(), "node".to_string()),
                    ("mode".to_string(), mode.to_string()),
                ];
                labels.sort();
                let hundredths = 100_000 + rng.next() % 100_000;
                // Each series runs at 50% to 150% of its mode's mean share.
                let hundredths_per_second = 100.0 * share * (0.5 + (rng.next() % 1001) as f64 / 1000.0);
                out.push(CpuCounter { labels, hundredths, hundredths_per_second, rng });
            }
        }
    }
    out
}

/// Sends `bodies` with at most `concurrency` in flight; stops at the first refused one.
async fn post_writes(
    client: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
) -> Result<(), String> {
    let mut pending = tokio::task::JoinSet::new();
    for body in bodies {
        if pending.len() >= concurrency
            && let Some(done) = pending.join_next().await
        {
            done.map_err(|error| format!("a send task failed: {error}"))??;
        }
        let (client, url) = (client.clone(), url.to_string());
        pending.spawn(async move { post_write(&client, &url, content_type, body).await });
    }
    while let Some(done) = pending.join_next().await {
        done.map_err(|error| format!("a send task failed: {error}"))??;
    }
    Ok(())
}

async fn backfill(options: Backfill) -> Result<(), String> {
    if options.instances == 0 || options.cpus == 0 || options.hours == 0 {
        return Err("--instances, --cpus and --hours must be above 0".into());
    }
    if options.batch_series == 0 || options.concurrency == 0 {
        return Err("--batch-series and --concurrency must be above 0".into());
    }
    let interval_ms = options.interval.as_millis() as i64;
    if interval_ms == 0 {
        return Err("--interval must be at least 1ms".into());
    }
    let end_s = options.end.unwrap_or_else(|| tripod::duration::unix_now_ms().div_euclid(60_000) * 60);
    let end_ms = end_s.checked_mul(1000).ok_or("--end is out of range")?;
    // Samples at both ends of the span: a range query over exactly the span then has a rate at
    // every step but the first.
    let span_ms =
        options.hours.checked_mul(3_600_000).and_then(|ms| i64::try_from(ms).ok()).ok_or("--hours is too large")?;
    let points = span_ms / interval_ms + 1;
    let first_ms = end_ms - (points - 1) * interval_ms;
    let per_slice = (options.slice.as_millis() as i64 / interval_ms).max(1);
    let seconds = interval_ms as f64 / 1000.0;
    let mut series = cpu_counters(options.instances, options.cpus);
    eprintln!(
        "backfill: {} series x {points} samples from {} to {end_s}, {per_slice} samples a slice",
        series.len(),
        first_ms / 1000
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|error| describe(&error))?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut slice_start = 0;
    while slice_start < points {
        let slice_end = (slice_start + per_slice).min(points);
        let mut bodies = Vec::new();
        for batch in series.chunks_mut(options.batch_series) {
            let mut request = Vec::new();
            for counter in batch.iter_mut() {
                let samples: Vec<(f64, i64)> = (slice_start..slice_end)
                    .map(|k| {
                        let value = counter.value();
                        counter.advance(seconds);
                        (value, first_ms + k * interval_ms)
                    })
                    .collect();
                encode_v1_series(&mut request, &counter.labels, samples);
            }
            sent += (batch.len() as i64 * (slice_end - slice_start)) as u64;
            bodies.push(
                snap::raw::Encoder::new()
                    .compress_vec(&request)
                    .map_err(|error| format!("cannot compress a request: {error}"))?,
            );
        }
        // Each series is in one request of the slice, so the slice's requests may arrive in any
        // order; the next slice waits until all of them are answered.
        post_writes(&client, &options.url, "application/x-protobuf", bodies, options.concurrency).await?;
        slice_start = slice_end;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "backfill: {sent} samples sent in {elapsed:.2}s = {:.0} samples/s ({} series x {points} samples, end {end_s})",
        sent as f64 / elapsed,
        series.len()
    );
    Ok(())
}

/// Checks a `query_range` answer and returns its series and points.
fn matrix_size(status: reqwest::StatusCode, body: &[u8]) -> Result<(usize, usize), String> {
    // The start of the body, enough to show a server's error message.
    let excerpt = || {
        let lossy = String::from_utf8_lossy(body);
        let trimmed = lossy.trim();
        match trimmed.char_indices().nth(500) {
            Some((cut, _)) => format!("{}...", &trimmed[..cut]),
            None => trimmed.to_string(),
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("{status}: the answer is not json ({error}): {}", excerpt()))?;
    if !status.is_success() || answer["status"] != "success" {
        return Err(format!("{status}: {}", excerpt()));
    }
    if answer["data"]["resultType"] != "matrix" {
        return Err(format!("the answer is not a matrix: {}", excerpt()));
    }
    let result =
        answer["data"]["result"].as_array().ok_or_else(|| format!("the answer has no result: {}", excerpt()))?;
    if result.is_empty() {
        return Err("the answer is an empty matrix".into());
    }
    let points = result.iter().map(|series| series["values"].as_array().map_or(0, Vec::len)).sum();
    Ok((result.len(), points))
}

/// The nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], percent: usize) -> f64 {
    let rank = (sorted.len() * percent).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

async fn query(options: Query) -> Result<(), String> {
    if options.runs == 0 {
        return Err("--runs must be above 0".into());
    }
    if options.end < options.start {
        return Err("--end is before --start".into());
    }
    if options.step.is_zero() {
        return Err("--step must be above 0".into());
    }
    let url = format!("{}/api/v1/query_range", options.url.trim_end_matches('/'));
    let form = [
        ("query", options.query.clone()),
        ("start", options.start.to_string()),
        ("end", options.end.to_string()),
        ("step", options.step.as_secs_f64().to_string()),
    ];
    // No gzip: Tripod answers uncompressed, so compression would only add work on one side.
    let client =
        reqwest::Client::builder().no_gzip().timeout(Duration::from_secs(300)).build().map_err(|e| describe(&e))?;
    let mut latencies = Vec::with_capacity(options.runs);
    let mut size = (0, 0);
    for run in 0..options.warmup + options.runs {
        let started = Instant::now();
        let response = client.post(&url).form(&form).send().await.map_err(|error| describe(&error))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|error| describe(&error))?;
        let elapsed = started.elapsed();
        size = matrix_size(status, &body)?;
        if run >= options.warmup {
            latencies.push(elapsed);
        }
    }
    latencies.sort();
    println!(
        "query: {} runs after {} warm-up: min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms; {} series, {} points",
        options.runs,
        options.warmup,
        percentile_ms(&latencies, 0),
        percentile_ms(&latencies, 50),
        percentile_ms(&latencies, 90),
        percentile_ms(&latencies, 100),
        size.0,
        size.1
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::RemoteWrite(options) => remote_write(options).await,
            Command::Backfill(options) => backfill(options).await,
            Command::Query(options) => query(options).await,
            Command::Logs(options) => logs::run(options).await,
            Command::Traces(options) => traces::run(options).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
