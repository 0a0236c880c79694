//! A real Prometheus (Debian's 2.42) and Tripod receive the same generated remote-write data:
//! two hours of counters (with resets), gauges (some negative, some not a number), a classic
//! histogram, `up`, an info metric and series that stop part way (one with a staleness marker).
//! A few hundred PromQL queries, instant and range, must then get the same answers from both.

use std::time::{SystemTime, UNIX_EPOCH};

use tripod::config::ListenerName;

use crate::encode::{self, Series};
use crate::support::{compare_answers, free_port, program, start_prometheus, wait_until_ready};

/// The interval between samples of every series.
const INTERVAL_MS: i64 = 15_000;
/// Samples sit this far past the 15 s grid. Windows and lookbacks that start and end on whole
/// multiples of 15 s then never have a sample on their edge, where Prometheus 2 (closed) and
/// Prometheus 3, whose rules Tripod follows (left-open), differ.
const PHASE_MS: i64 = 7_000;
/// Two hours of samples.
const SAMPLES: usize = 480;
/// Samples per remote-write request: ten minutes. Prometheus only takes samples up to an hour
/// older than the newest it holds, so the data goes in time order.
const BATCH: usize = 40;
/// Where the series that stop part way stop, and where node-3's counters reset.
const STOP: usize = 300;

/// The NaN Prometheus writes to mark a series stale.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// splitmix64 with a fixed seed: the same data on every run.
struct Rng(u64);

impl Rng {
    /// A float in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

/// One generated series: labels and a value (or none) at each sample index.
struct Generated {
    labels: Vec<(&'static str, String)>,
    values: Vec<Option<f64>>,
}

fn labelled(name: &str, labels: &[(&'static str, &str)], values: Vec<Option<f64>>) -> Generated {
    let mut all = vec![("__name__", name.to_string())];
    all.extend(labels.iter().map(|(k, v)| (*k, v.to_string())));
    // Remote write wants labels sorted by name.
    all.sort();
    Generated { labels: all, values }
}

/// A counter from `start` that grows by `increment()` each sample and restarts from zero at
/// `reset`. Every counter has samples from well before any query window: Prometheus 2.42 and 3
/// apply rate's zero-point limit in a different order only for a series starting inside one.
fn counter(start: f64, reset: Option<usize>, mut increment: impl FnMut() -> f64) -> Vec<Option<f64>> {
    let mut value = start;
    (0..SAMPLES)
        .map(|i| {
            value = if reset == Some(i) { 0.0 } else { value } + increment();
            Some(value)
        })
        .collect()
}

/// A gauge wandering from `start` by at most `step` a sample, kept within [low, high].
fn wander(rng: &mut Rng, start: f64, step: f64, low: f64, high: f64) -> Vec<Option<f64>> {
    let mut value = start;
    (0..SAMPLES)
        .map(|_| {
            value = (value + rng.between(-step, step)).clamp(low, high);
            Some(value)
        })
        .collect()
}

const NODES: [&str; 3] = ["node-1:9100", "node-2:9100", "node-3:9100"];
const APIS: [&str; 2] = ["api-1:8080", "api-2:8080"];
const BUCKETS: [(&str, f64); 7] =
    [("0.05", 0.05), ("0.1", 0.1), ("0.25", 0.25), ("0.5", 0.5), ("1", 1.0), ("2.5", 2.5), ("+Inf", f64::INFINITY)];

fn generate() -> Vec<Generated> {
    let mut rng = Rng(0x7269_706f_6421);
    let mut out = Vec::new();
    for (n, instance) in NODES.into_iter().enumerate() {
        let node = [("instance", instance), ("job", "node")];
        // node-3 reboots: its CPU counters restart and it is down around the restart.
        let reset = (n == 2).then_some(STOP);
        for cpu in ["0", "1"] {
            for (mode, start, low, high) in [
                ("idle", 4.0e5, 10.0, 14.5),
                ("user", 6.0e4, 0.3, 3.0),
                ("system", 2.0e4, 0.1, 1.0),
                ("iowait", 3.0e3, 0.0, 0.2),
            ] {
                let start = start * rng.between(1.0, 1.5);
                let values = counter(start, reset, || rng.between(low, high));
                out.push(labelled(
                    "node_cpu_seconds_total",
                    &[&node[..], &[("cpu", cpu), ("mode", mode)]].concat(),
                    values,
                ));
            }
        }
        let up =
            (0..SAMPLES).map(|i| Some(if n == 2 && (STOP - 4..STOP + 4).contains(&i) { 0.0 } else { 1.0 })).collect();
        out.push(labelled("up", &node, up));
        let cpu_temperature = wander(&mut rng, 55.0 + 5.0 * n as f64, 1.5, 35.0, 90.0);
        out.push(labelled("temperature_celsius", &[&node[..], &[("sensor", "cpu")]].concat(), cpu_temperature));
        let outside = wander(&mut rng, 1.0 - n as f64, 0.4, -9.0, 7.0);
        out.push(labelled("temperature_celsius", &[&node[..], &[("sensor", "outside")]].concat(), outside));
        let version = if n == 2 { "1.6.0" } else { "1.5.0" };
        out.push(labelled("build_info", &[&node[..], &[("version", version)]].concat(), vec![Some(1.0); SAMPLES]));
    }

    for (a, instance) in APIS.into_iter().enumerate() {
        let api = [("instance", instance), ("job", "api")];
        // api-2 restarts late: its request counters restart from zero.
        let reset = (a == 1).then_some(STOP + 80);
        for (handler, method, code, per_sample) in [
            ("/users", "GET", "200", 40.0),
            ("/users", "GET", "404", 3.0),
            ("/users", "GET", "500", 0.6),
            ("/users", "POST", "200", 8.0),
            ("/users", "POST", "500", 0.3),
            ("/orders", "GET", "200", 25.0),
            ("/orders", "GET", "500", 1.2),
            ("/orders", "POST", "200", 5.0),
        ] {
            let start = (per_sample * 4000.0 * rng.between(1.0, 2.0)).round();
            let values = counter(start, reset, || (per_sample * rng.between(0.5, 1.5)).round());
            let labels = [&api[..], &[("code", code), ("handler", handler), ("method", method)]].concat();
            out.push(labelled("http_requests_total", &labels, values));
        }
        for (handler, mean) in [("/users", 0.12), ("/orders", 0.4)] {
            out.extend(histogram(&mut rng, &[&api[..], &[("handler", handler)]].concat(), mean));
        }
        let up = (0..SAMPLES).map(|i| Some(if a == 1 && [420, 421, 450].contains(&i) { 0.0 } else { 1.0 })).collect();
        out.push(labelled("up", &api, up));
        for (area, start, step) in [("heap", 5.0e8, 8.0e6), ("rss", 1.2e9, 5.0e6)] {
            let values = wander(&mut rng, start * (1.0 + a as f64), step, 1.0e8, 4.0e9);
            let values = values.into_iter().map(|v| v.map(f64::round)).collect();
            out.push(labelled("memory_bytes", &[&api[..], &[("area", area)]].concat(), values));
        }
        out.push(labelled("build_info", &[&api[..], &[("version", "2.1.0")]].concat(), vec![Some(1.0); SAMPLES]));
    }

    // A cache whose hit ratio is sometimes not a number (no lookups).
    for (a, instance) in APIS.into_iter().enumerate() {
        let ratio = wander(&mut rng, 0.6 + 0.2 * a as f64, 0.05, 0.0, 1.0);
        let ratio = ratio
            .into_iter()
            .enumerate()
            .map(|(i, v)| if i % 37 == a || (200..210).contains(&i) { Some(f64::NAN) } else { v });
        out.push(labelled("cache_hit_ratio", &[("instance", instance), ("job", "api")], ratio.collect()));
    }

    // A batch worker that goes away halfway through: its queue length ends with a staleness
    // marker, its counter just stops.
    let batch = [("instance", "batch-1:9000"), ("job", "batch"), ("queue", "emails")];
    let halfway = |values: Vec<Option<f64>>| values.into_iter().enumerate().map(|(i, v)| v.filter(|_| i < STOP));
    let mut queue: Vec<Option<f64>> =
        halfway(wander(&mut rng, 200.0, 30.0, 0.0, 1000.0)).map(|v| v.map(f64::round)).collect();
    queue[STOP] = Some(f64::from_bits(STALE_NAN));
    out.push(labelled("batch_queue_length", &batch, queue));
    let processed = halfway(counter(9.0e4, None, || rng.between(5.0, 20.0).round())).collect();
    out.push(labelled("batch_processed_total", &batch, processed));
    out
}

/// `_bucket`, `_sum` and `_count` of a classic histogram of request durations, exponentially
/// distributed with `mean`, consistent with each other at every sample.
fn histogram(rng: &mut Rng, labels: &[(&'static str, &str)], mean: f64) -> Vec<Generated> {
    let earlier = 1.0e6;
    let mut buckets: Vec<f64> = BUCKETS.iter().map(|(_, le)| (earlier * (1.0 - (-le / mean).exp())).round()).collect();
    let (mut sum, mut count) = (earlier * mean, earlier);
    let mut bucket_values = vec![Vec::with_capacity(SAMPLES); BUCKETS.len()];
    let (mut sums, mut counts) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..SAMPLES {
        let observations = rng.between(20.0, 60.0) as usize;
        for _ in 0..observations {
            let duration = -(1.0 - rng.unit()).ln() * mean;
            sum += duration;
            count += 1.0;
            for (bucket, (_, le)) in buckets.iter_mut().zip(BUCKETS) {
                if duration <= le {
                    *bucket += 1.0;
                }
            }
        }
        for (values, bucket) in bucket_values.iter_mut().zip(&buckets) {
            values.push(Some(*bucket));
        }
        sums.push(Some(sum));
        counts.push(Some(count));
    }
    let mut out: Vec<Generated> = bucket_values
        .into_iter()
        .zip(BUCKETS)
        .map(|(values, (le, _))| {
            labelled("http_request_duration_seconds_bucket", &[labels, &[("le", le)]].concat(), values)
        })
        .collect();
    out.push(labelled("http_request_duration_seconds_sum", labels, sums));
    out.push(labelled("http_request_duration_seconds_count", labels, counts));
    out
}

/// Queries giving an instant vector or a scalar: run at three instants and over the last hour
/// at steps of 15 s, 1 m and 5 m. `{at}` stands for a fixed time in seconds.
const QUERIES: &[&str] = &[
    // Selectors, every matcher, offset and @.
    "up",
    "up{job=\"node\"}",
    "up{job!=\"node\"}",
    "http_requests_total{code=~\"5..\", method=\"GET\"}",
    "http_requests_total{handler!~\"/us.*\", code!=\"404\"}",
    "{__name__=~\"temperature_.*\", sensor=\"outside\"}",
    "{__name__=~\"http_request_duration_seconds_(sum|count)\", handler=\"/orders\"}",
    "memory_bytes offset 10m",
    "temperature_celsius offset 1h",
    "memory_bytes @ {at}",
    "memory_bytes offset -5m",
    "temperature_celsius @ end()",
    "rate(http_requests_total[5m] @ start())",
    "up{version=\"\"}",
    "up{instance=~\"node-1.*|api-2:8080\"}",
    "up{instance!~\"node.*\"}",
    "{__name__=\"up\", job=\"api\"}",
    "{job=\"batch\"}",
    "cache_hit_ratio",
    "cache_hit_ratio > 0.5",
    "batch_processed_total",
    "temperature_celsius @ {at} offset 5m",
    "batch_queue_length",
    // Counters and gauges over windows.
    "rate(http_requests_total[5m])",
    "rate(node_cpu_seconds_total{mode!=\"idle\"}[1m])",
    "irate(node_cpu_seconds_total{mode=\"user\"}[2m])",
    "increase(http_requests_total{code=\"200\"}[10m])",
    "increase(node_cpu_seconds_total{instance=\"node-3:9100\"}[15m])",
    "rate(http_requests_total{instance=\"api-2:8080\"}[3m])",
    "delta(temperature_celsius[10m])",
    "idelta(memory_bytes[3m])",
    "deriv(memory_bytes[10m])",
    "predict_linear(temperature_celsius[15m], 600)",
    "resets(node_cpu_seconds_total[30m])",
    "resets(http_requests_total[1h])",
    "changes(up[30m])",
    "changes(build_info[1h])",
    "rate(http_requests_total[5m] offset 10m)",
    "rate(http_request_duration_seconds_count[5m] @ {at})",
    "rate(batch_processed_total[5m])",
    "rate(http_requests_total[30s])",
    "irate(http_requests_total{code=\"200\"}[30s])",
    "deriv(memory_bytes[30s])",
    "delta(memory_bytes[90m])",
    "delta(temperature_celsius[2h])",
    "max_over_time(cache_hit_ratio[2m])",
    "min_over_time(cache_hit_ratio[5m])",
    "avg_over_time(cache_hit_ratio[5m])",
    "count_over_time(cache_hit_ratio[5m])",
    "changes(cache_hit_ratio[10m])",
    "resets(cache_hit_ratio[10m])",
    "deriv(cache_hit_ratio[5m])",
    "stddev_over_time(cache_hit_ratio[5m])",
    "quantile_over_time(0.1, cache_hit_ratio[10m])",
    "quantile_over_time(0.9, cache_hit_ratio[10m])",
    "rate(http_requests_total[5m] @ {at} offset 10m)",
    "last_over_time(batch_queue_length[10m])",
    "max_over_time(batch_queue_length[10m])",
    "irate(http_requests_total{instance=\"api-2:8080\"}[1m])",
    "delta(http_requests_total[5m])",
    "predict_linear(node_cpu_seconds_total{mode=\"idle\"}[10m], 3600)",
    "predict_linear(memory_bytes[10m], -300)",
    "deriv(up[10m])",
    "changes(temperature_celsius[5m])",
    "last_over_time(up[1m])",
    "stddev_over_time(build_info[10m])",
    "max_over_time(up[1h]) - min_over_time(up[1h])",
    "quantile_over_time(1.5, temperature_celsius[5m])",
    "quantile_over_time(-1, temperature_celsius[5m])",
    "avg_over_time(temperature_celsius[10m])",
    "min_over_time(temperature_celsius{sensor=\"outside\"}[30m])",
    "max_over_time(memory_bytes[15m])",
    "sum_over_time(up[10m])",
    "count_over_time(batch_queue_length[10m])",
    "last_over_time(batch_queue_length[1h])",
    "present_over_time(batch_queue_length[10m])",
    "stddev_over_time(temperature_celsius[20m])",
    "stdvar_over_time(memory_bytes[5m])",
    "quantile_over_time(0.9, temperature_celsius[30m])",
    "quantile_over_time(0.25, memory_bytes{area=\"heap\"}[10m])",
    "absent_over_time(batch_queue_length[5m])",
    "absent_over_time(nonexistent_metric{job=\"x\"}[5m])",
    "absent_over_time(up[5m])",
    "absent_over_time(nonexistent_metric{job=\"x\", instance=~\"y\"}[5m])",
    // Aggregations.
    "sum(rate(http_requests_total[5m]))",
    "sum by (handler) (rate(http_requests_total[5m]))",
    "sum without (instance, code) (rate(http_requests_total[5m]))",
    "sum(up) by (job)",
    "avg by (instance) (temperature_celsius)",
    "avg without (cpu) (rate(node_cpu_seconds_total[5m]))",
    "min by (sensor) (temperature_celsius)",
    "max without (area) (memory_bytes)",
    "max by (le) (http_request_duration_seconds_bucket)",
    "count by (job) (up)",
    "count without (mode) (node_cpu_seconds_total)",
    "group by (job, instance) (http_requests_total)",
    "group(up)",
    "stddev by (mode) (rate(node_cpu_seconds_total[5m]))",
    "stdvar(temperature_celsius)",
    "topk(3, rate(node_cpu_seconds_total[5m]))",
    "topk by (instance) (2, rate(node_cpu_seconds_total[5m]))",
    "bottomk(2, temperature_celsius)",
    "bottomk without (cpu, mode) (1, rate(node_cpu_seconds_total[5m]))",
    "quantile(0.5, memory_bytes)",
    "quantile by (sensor) (0.75, temperature_celsius)",
    "count_values(\"value\", up)",
    "count_values by (job) (\"v\", build_info)",
    "count_values(\"celsius\", round(temperature_celsius{sensor=\"outside\"}))",
    "count(count by (version) (build_info))",
    "min(cache_hit_ratio)",
    "max by (job) (cache_hit_ratio)",
    "sum(cache_hit_ratio)",
    "topk(1, cache_hit_ratio)",
    "bottomk(1, cache_hit_ratio)",
    "quantile(0.5, cache_hit_ratio)",
    "count_values(\"value\", cache_hit_ratio)",
    "count_values(\"value\", -(up - 1))",
    "sum by (__name__) ({job=\"batch\"})",
    "count by (__name__) ({job=\"api\"})",
    "stddev(cache_hit_ratio)",
    "count_values(\"value\", temperature_celsius)",
    "count_values(\"value\", exp(memory_bytes))",
    // Values become label text here, so they must be exact: ln, say, may differ in the last bit
    // between Go's maths library and the system's, while sqrt is correctly rounded in both.
    "count_values(\"value\", sqrt(temperature_celsius))",
    "count_values(\"value\", http_requests_total{code=\"500\"})",
    "quantile(0.3, rate(http_requests_total[5m]))",
    "quantile(-0.5, temperature_celsius)",
    "quantile(1.5, temperature_celsius)",
    "sum(temperature_celsius{sensor=\"outside\"})",
    "avg(memory_bytes)",
    "stddev(up)",
    "max(sum by (instance) (memory_bytes))",
    "sum(http_requests_total) without (code, method)",
    "sum(vector(1))",
    "sum by (job) (up) / count by (job) (up)",
    "avg by (sensor) (temperature_celsius) - min by (sensor) (temperature_celsius)",
    "count by (instance) (http_requests_total > 100000)",
    "count(up) by (job) > bool 1",
    // Binary operators: arithmetic, comparison, sets, matching, precedence.
    "http_requests_total / 1000",
    "2 * memory_bytes - memory_bytes offset 5m",
    "memory_bytes{area=\"rss\"} - ignoring (area) memory_bytes{area=\"heap\"}",
    "rate(http_requests_total{code=\"500\"}[5m]) / ignoring (code) rate(http_requests_total{code=\"200\"}[5m])",
    "sum by (instance, handler) (rate(http_requests_total[5m])) / on (instance) group_left \
     sum by (instance) (rate(http_requests_total[5m]))",
    "up * on (job, instance) group_left (version) build_info",
    "sum by (instance) (up) * on (instance) group_right rate(node_cpu_seconds_total{cpu=\"0\"}[5m])",
    "temperature_celsius > 50",
    "temperature_celsius < bool 0",
    "memory_bytes >= on (instance) group_left avg by (instance) (memory_bytes)",
    "memory_bytes > bool on (instance) group_left avg by (instance) (memory_bytes)",
    "up == 0",
    "up != bool 1",
    "up and on (instance) temperature_celsius",
    "temperature_celsius{sensor=\"cpu\"} > 60 or temperature_celsius{sensor=\"outside\"} < 0",
    "http_requests_total unless http_requests_total{code=\"200\"}",
    "temperature_celsius unless on (instance) up == 0",
    "rate(node_cpu_seconds_total{mode=\"idle\"}[5m]) and on (instance, cpu) rate(node_cpu_seconds_total{mode=\"user\"}[5m]) > 0.1",
    "1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))",
    "sum by (handler) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (handler) (rate(http_requests_total[5m]))",
    "-temperature_celsius",
    "2 ^ 3 ^ 2 * up",
    "-2 ^ 2 + up",
    "memory_bytes % 1000000",
    "temperature_celsius * 9 / 5 + 32",
    "(memory_bytes + 1) / (memory_bytes offset 1m + 1)",
    // Prometheus 2.42 keeps the metric name through atan2 and 3 drops it: no name to keep here.
    "max by (instance, sensor) (temperature_celsius) atan2 10",
    "up + on (job, instance) group_left () (build_info * 0)",
    "scalar(sum(up)) * up",
    "sum(up) > bool 3",
    "(sum(rate(http_requests_total[5m])) > 0) * 60",
    "rate(http_requests_total[5m]) * on (instance) group_left (version) build_info",
    "build_info * on (instance) group_right (version) rate(http_requests_total[5m])",
    "up or temperature_celsius",
    "up == 0 or temperature_celsius > 60 and temperature_celsius < 80",
    "up unless ignoring (job) up{job=\"api\"}",
    "temperature_celsius % 3",
    "temperature_celsius ^ 0.5",
    "temperature_celsius > bool 0",
    "up / 0",
    "(up - 1) / 0",
    "-time()",
    "scalar(vector(3)) ^ 2",
    "1 < bool 2",
    "abs(-up)",
    "up >= up offset 30m",
    "up == bool up offset 5m",
    "memory_bytes * on (instance) group_left (job) build_info",
    "time() % 3600",
    "temperature_celsius or on (instance) up",
    "up and on () vector(1)",
    "temperature_celsius unless on () (up == 2)",
    "build_info * ignoring (version) group_right (version) up",
    "sum by (nonexistent) (up)",
    "count without () (up)",
    "max without (instance, job) (temperature_celsius)",
    "up + up * 2 ^ 2 % 3",
    "-up ^ 2",
    // Histograms.
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le, handler) (rate(http_request_duration_seconds_bucket[10m])))",
    "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{handler=\"/orders\"}[5m]))",
    "histogram_quantile(0.5, http_request_duration_seconds_bucket)",
    "histogram_quantile(1, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(1.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.9, sum by (le, instance) (rate(http_request_duration_seconds_bucket[5m]))) > 0.2",
    "sum(rate(http_request_duration_seconds_sum[5m])) / sum(rate(http_request_duration_seconds_count[5m]))",
    // Math.
    "abs(temperature_celsius)",
    "ceil(temperature_celsius)",
    "floor(temperature_celsius)",
    "exp(temperature_celsius / 10)",
    "exp(memory_bytes)",
    "ln(memory_bytes)",
    "ln(temperature_celsius)",
    "log2(memory_bytes)",
    "log10(http_requests_total)",
    "sqrt(temperature_celsius)",
    "round(temperature_celsius)",
    "round(temperature_celsius, 0.5)",
    "clamp(temperature_celsius, 0, 50)",
    "clamp_min(temperature_celsius, 0)",
    "clamp_max(memory_bytes, 1e9)",
    "sgn(temperature_celsius)",
    "clamp_min(cache_hit_ratio, 0.5)",
    "clamp_max(cache_hit_ratio, 0.7)",
    "clamp(cache_hit_ratio, 0.2, 0.7)",
    "clamp_max(up, NaN)",
    "sgn(cache_hit_ratio)",
    "quantile(NaN, temperature_celsius)",
    "quantile(0.2, cache_hit_ratio)",
    "histogram_quantile(NaN, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    // Labels.
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_replace(http_requests_total, \"class\", \"${1}xx\", \"code\", \"(.).*\")",
    "label_replace(up, \"job\", \"\", \"job\", \"node\")",
    "label_join(up, \"target\", \"/\", \"job\", \"instance\")",
    "label_join(build_info, \"id\", \"-\", \"version\", \"instance\")",
    "label_join(up, \"empty\", \",\")",
    "label_replace(up, \"instance\", \"$2:$1\", \"instance\", \"(.*):(.*)\")",
    // Absent, scalars and vectors.
    "absent(nonexistent_metric{job=\"x\"})",
    "absent(nonexistent_metric{job=~\"a.*\", instance=\"x\"})",
    "absent(up{job=\"node\"})",
    "absent(batch_queue_length)",
    "absent(sum(nonexistent_metric))",
    "absent(nonexistent_metric{job=\"a\", job=\"b\"})",
    "absent(nonexistent_metric{instance=\"x\", job=~\".*\", job=\"a\"})",
    "histogram_quantile(0.5, http_request_duration_seconds_bucket{le!=\"+Inf\"})",
    "vector(1)",
    "vector(1) + 2",
    "scalar(up{instance=\"node-1:9100\"})",
    "scalar(up)",
    "time()",
    "time() - 3600",
];

/// Queries with subqueries: run at three instants and over the last hour at steps of 1 m and
/// 5 m. Subquery points sit on multiples of their step; a range of whole minutes and a half
/// keeps them off the window's edge at every whole-minute evaluation time.
const SUBQUERIES: &[&str] = &[
    "max_over_time(rate(http_requests_total[5m])[30m30s:1m])",
    "avg_over_time(sum(up)[20m30s:2m])",
    "min_over_time(temperature_celsius[10m30s:1m])",
    "deriv(avg(memory_bytes)[15m30s:1m])",
    "max_over_time(deriv(memory_bytes[5m])[10m30s:5m] offset 5m)",
    "quantile_over_time(0.5, sum by (handler) (rate(http_requests_total[1m]))[30m30s:1m])",
    "max_over_time(temperature_celsius[10m30s:1m] @ {at})",
    "count_over_time(batch_queue_length[20m30s:1m])",
    "max_over_time(max_over_time(temperature_celsius[5m])[10m30s:1m])",
    "rate(sum(http_requests_total)[5m30s:1m])",
    "sum_over_time(sum by (instance) (up)[20m30s:2m] offset 10m)",
    "max_over_time(temperature_celsius[10m30s:])",
    "max_over_time(avg_over_time(temperature_celsius[5m30s:1m])[10m30s:2m])",
    "max_over_time((temperature_celsius @ {at})[10m30s:1m])",
    "max_over_time(rate(http_requests_total[5m] offset 1m)[10m30s:1m])",
    "min_over_time(temperature_celsius[10m30s:1m] @ start())",
];

/// Queries giving a range vector: instant queries only.
const RANGE_VECTOR_QUERIES: &[&str] = &[
    "http_requests_total{instance=\"api-1:8080\"}[2m]",
    "temperature_celsius[5m] offset 30m",
    "up[3m] @ {at}",
    "rate(http_requests_total{code=\"404\"}[5m])[10m30s:1m]",
    "sum_over_time(up[5m])[20m30s:5m]",
];

fn seconds(t_ms: i64) -> String {
    (t_ms / 1000).to_string()
}

async fn remote_write(client: &reqwest::Client, address: &str, body: Vec<u8>) {
    let response = client
        .post(format!("http://{address}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write sent");
    let status = response.status().as_u16();
    assert_eq!(status, 204, "remote write to {address}: {}", response.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_match_a_real_prometheus_over_generated_data() {
    let Some(prometheus_binary) = program("prometheus") else {
        return;
    };
    let mut config = tripod::Config::embedded();
    config.scrape.scrape_self = false;
    let server = crate::support::server_with(config).await;
    let tripod = server.address(ListenerName::Prometheus).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No scrape configs: Prometheus holds only what is written to it. A subquery without a step
    // takes the evaluation interval, one minute as in Tripod.
    let config = "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n";
    let flags = ["--web.enable-remote-write-receiver"];
    let _running = start_prometheus(&prometheus_binary, dir.path(), config, port, &flags);
    let prometheus = format!("127.0.0.1:{port}");
    wait_until_ready(&prometheus).await;

    // The data ends on a whole minute a few minutes ago; every query time is a whole minute.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let end_ms = now_ms - now_ms % 60_000 - 3 * 60_000;
    let start_ms = end_ms - SAMPLES as i64 * INTERVAL_MS;
    let generated = generate();
    let client = reqwest::Client::new();
    for first in (0..SAMPLES).step_by(BATCH) {
        let series: Vec<Series> = generated
            .iter()
            .map(|g| Series {
                labels: g.labels.iter().map(|(k, v)| (*k, v.as_str())).collect(),
                samples: (first..first + BATCH)
                    .filter_map(|i| g.values[i].map(|v| (start_ms + PHASE_MS + i as i64 * INTERVAL_MS, v)))
                    .collect(),
                exemplars: Vec::new(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        let body = encode::snappy(&encode::v1(&series, &[]));
        remote_write(&client, &prometheus, body.clone()).await;
        remote_write(&client, &tripod, body).await;
    }

    let at = seconds(end_ms - 30 * 60_000);
    let instants: Vec<String> = [0, 17, 46].iter().map(|minutes| seconds(end_ms - minutes * 60_000)).collect();
    let (range_start, range_end) = (seconds(end_ms - 60 * 60_000), seconds(end_ms));
    let runs = [(QUERIES, &["15", "60", "300"][..]), (SUBQUERIES, &["60", "300"]), (RANGE_VECTOR_QUERIES, &[])];
    let (mut differences, mut evaluations, mut with_data) = (Vec::new(), 0, 0);
    for (queries, steps) in runs {
        for template in queries {
            let query = template.replace("{at}", &at);
            let mut forms: Vec<(&str, Vec<(&str, &str)>)> = instants
                .iter()
                .map(|time| ("/api/v1/query", vec![("query", query.as_str()), ("time", time.as_str())]))
                .collect();
            for step in steps {
                let form =
                    vec![("query", query.as_str()), ("start", &range_start), ("end", &range_end), ("step", step)];
                forms.push(("/api/v1/query_range", form));
            }
            let (mut query_has_data, mut query_differs) = (false, false);
            for (path, form) in forms {
                evaluations += 1;
                match compare_answers(&client, &prometheus, &tripod, path, &form).await {
                    Ok(answer) if answer.1.is_empty() => {}
                    Ok(_) => {
                        with_data += 1;
                        query_has_data = true;
                    }
                    Err(difference) => {
                        query_differs = true;
                        differences.push(format!("{path} {form:?}: {difference}"));
                    }
                }
            }
            // Guard against comparing nothing with nothing: only `absent` may be empty throughout.
            if !query_has_data && !query_differs && !query.starts_with("absent") {
                differences.push(format!("{query}: prometheus has no result at any time"));
            }
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
    assert!(with_data * 10 >= evaluations * 9, "only {with_data} of {evaluations} answers have data");
    let queries = QUERIES.len() + SUBQUERIES.len() + RANGE_VECTOR_QUERIES.len();
    eprintln!("{queries} queries, {evaluations} answers compared, {with_data} with data");
    server.shutdown().await.unwrap();
}
