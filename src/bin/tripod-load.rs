//! `tripod-load`: sends realistic load to any endpoint that speaks the protocol, so that Tripod
//! and the system it replaces can be measured with the same traffic on the same machine.
//!
//! `tripod-load remote-write --url http://127.0.0.1:9090/api/v1/write` sends node_exporter-like
//! series (about 250 per host, ten labels each: counters, gauges, constants on a 15 s grid) as
//! Prometheus remote write 1.0 or 2.0. Requests are encoded before the clock starts, so the
//! figure measures the receiver, not this tool. It reports samples/s accepted and errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use tripod::api::wire::{put_bytes_field, put_fixed64_field, put_varint, put_varint_field};
use tripod::duration::parse_duration;

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

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
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
                let mut ts = Vec::with_capacity(512);
                for (name, value) in &series.labels {
                    let mut label = Vec::with_capacity(name.len() + value.len() + 4);
                    put_bytes_field(&mut label, 1, name.as_bytes());
                    put_bytes_field(&mut label, 2, value.as_bytes());
                    put_bytes_field(&mut ts, 1, &label);
                }
                for k in 0..samples {
                    step(series, rng);
                    encode_sample(&mut ts, 2, series.value, t_ms + k as i64 * 15_000);
                }
                put_bytes_field(&mut request, 1, &ts);
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
                let sent = client
                    .post(&url)
                    .header("Content-Type", content_type)
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        accepted.fetch_add(*samples, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            let status = response.status();
                            eprintln!("error: {status}: {}", response.text().await.unwrap_or_default().trim());
                        }
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
