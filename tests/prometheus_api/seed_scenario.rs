//! Every PromQL query and alert expression of the seed scenario (../shared/data/seed-scenario.md)
//! over data shaped like it: Traefik, node-exporter, cAdvisor and two application backends,
//! scraped every 15 s. Each answer, instant and range, by GET and by POST, is compared with values
//! this file works out from the parameters that generated the data.
//!
//! Counters grow linearly from long before the first sample and samples sit 7 s past the 15 s grid
//! while queries run on whole minutes, so a 5m window always holds twenty samples with a full
//! extrapolation at both ends: the extrapolated rate is exactly the counter's rate.

use std::collections::BTreeMap;

use serde_json::Value;
use tripod::{Config, Server};
use tripod_storage::labels::Labels;
use tripod_storage::metrics::{MetricsAppender, Sample, SeriesKey, SeriesSamples};

use crate::http::{get, post};

/// Instant queries run here, a whole minute; range queries end here.
const EVAL: i64 = 1_700_000_040;
const INTERVAL: i64 = 15;
/// Samples sit this far past the 15 s grid.
const OFFSET: i64 = 7;
const FIRST_SAMPLE: i64 = EVAL - 40 * 60 + OFFSET;
const LAST_SAMPLE: i64 = EVAL + 2 * 60 + OFFSET;
/// Counters were zero here, long before the first sample, so their values are far from zero.
const ORIGIN: i64 = EVAL - 1_000_000;
/// Range queries: ten minutes at one-minute steps.
const RANGE_START: i64 = EVAL - 600;
const STEP: i64 = 60;
/// Relative tolerance for computed answers.
const TOLERANCE: f64 = 1e-9;

type LabelSet = BTreeMap<String, String>;

/// Scrape targets: job, instance, and whether the last scrape worked.
const TARGETS: [(&str, &str, bool); 6] = [
    ("traefik", "traefik:8082", true),
    ("node", "node-exporter:9100", true),
    ("node", "10.0.0.12:9100", false),
    ("cadvisor", "cadvisor:8080", true),
    ("backend", "backend:3000", true),
    ("backend", "tp2devops-backend:3000", true),
];
const TRAEFIK: (&str, &str) = ("traefik", "traefik:8082");
const CADVISOR: (&str, &str) = ("cadvisor", "cadvisor:8080");
const BACKEND: (&str, &str) = ("backend", "backend:3000");
const TODO_BACKEND: (&str, &str) = ("backend", "tp2devops-backend:3000");

/// Traefik requests: service, code, method, per second.
const TRAEFIK_REQUESTS: [(&str, &str, &str, f64); 9] = [
    ("api@docker", "200", "GET", 8.0),
    ("api@docker", "201", "POST", 2.0),
    ("api@docker", "404", "GET", 0.5),
    ("api@docker", "500", "POST", 0.1),
    ("ai-orchestrator@docker", "200", "POST", 1.5),
    ("ai-orchestrator@docker", "502", "POST", 0.6),
    ("ai-orchestrator@docker", "504", "POST", 0.2),
    ("dashboard@file", "200", "GET", 1.0),
    ("dashboard@file", "304", "GET", 0.5),
];
/// Traefik's default bounds and 10 s, so a p95 above 5 s is told apart from one in the +Inf bucket.
const TRAEFIK_BUCKETS: [&str; 6] = ["0.1", "0.3", "1.2", "5", "10", "+Inf"];
/// Per Traefik service: the share of requests at or under each of TRAEFIK_BUCKETS, and the mean
/// duration in seconds.
const TRAEFIK_LATENCY: [(&str, [f64; 6], f64); 3] = [
    ("api@docker", [0.6, 0.85, 0.97, 0.995, 1.0, 1.0], 0.15),
    // p95 between 5 s and 10 s: the only service SlowResponseTime fires for.
    ("ai-orchestrator@docker", [0.05, 0.1, 0.3, 0.7, 0.97, 1.0], 4.5),
    // p95 inside the first bucket.
    ("dashboard@file", [0.96, 0.99, 1.0, 1.0, 1.0, 1.0], 0.04),
];

/// The todo backend's requests: method, route, status code, per second.
const TODO_REQUESTS: [(&str, &str, &str, f64); 7] = [
    ("GET", "/api/todos", "200", 4.0),
    ("POST", "/api/todos", "201", 0.8),
    ("PUT", "/api/todos/:id", "200", 0.4),
    ("DELETE", "/api/todos/:id", "204", 0.2),
    ("GET", "/api/todos/:id", "404", 0.1),
    ("POST", "/api/todos", "500", 0.05),
    ("GET", "/api/todos", "503", 0.02),
];
const TODO_BUCKETS: [&str; 6] = ["0.01", "0.05", "0.1", "0.5", "1", "+Inf"];
/// The todo backend's durations: method, route, status code, per second, and the share of
/// requests at or under each of TODO_BUCKETS.
const TODO_LATENCY: [(&str, &str, &str, f64, [f64; 6]); 2] = [
    ("GET", "/api/todos", "200", 4.0, [0.55, 0.8, 0.9, 0.97, 0.99, 1.0]),
    // p95 in the +Inf bucket.
    ("POST", "/api/todos", "201", 0.8, [0.1, 0.4, 0.7, 0.85, 0.9, 1.0]),
];
const TODO_OPERATIONS: [(&str, f64); 4] = [("create", 0.8), ("update", 0.4), ("complete", 0.3), ("delete", 0.2)];

/// The other backend's requests: method, handler, status, per second.
const HTTP_REQUESTS: [(&str, &str, &str, f64); 5] = [
    ("GET", "/api/items", "200", 6.0),
    ("POST", "/api/items", "201", 1.5),
    ("GET", "/api/items", "404", 0.3),
    // Above and below the 0.1 per second the scenario's query filters on.
    ("GET", "/api/items", "500", 0.25),
    ("POST", "/api/items", "503", 0.05),
];
/// A duration bucket read without rate: its `le`, count, and change per step of the sample cycle.
type GaugeBucket = (&'static str, f64, f64);
/// The other backend's duration buckets, per handler.
const HTTP_DURATION: [(&str, &[GaugeBucket]); 2] = [
    (
        "/api/items",
        &[
            ("0.05", 120.0, 1.0),
            ("0.1", 300.0, 2.0),
            ("0.25", 700.0, 3.0),
            ("0.5", 900.0, 3.0),
            ("1", 985.0, 4.0),
            ("2.5", 996.0, 4.0),
            ("+Inf", 1000.0, 4.0),
        ],
    ),
    ("/health", &[("0.005", 580.0, 1.0), ("0.01", 598.0, 1.0), ("0.025", 600.0, 1.0), ("+Inf", 600.0, 1.0)]),
];

/// cAdvisor containers: id, name, image, CPU seconds per second. The root cgroup has no name.
const CONTAINERS: [(&str, &str, &str, f64); 4] = [
    ("/", "", "", 1.75),
    ("/docker/1f0c", "traefik", "traefik:v3.1", 0.05),
    ("/docker/7a2e", "backend", "tp2devops/backend:1.4", 0.4),
    ("/docker/c93d", "postgres", "postgres:16", 0.12),
];

const HIGH_ERROR_RATE: &str = "sum(rate(traefik_service_requests_total{code=~\"5..\"}[5m]))\n/\n\
                               sum(rate(traefik_service_requests_total[5m]))\n> 0.05\n";
const SLOW_RESPONSE_TIME: &str =
    "histogram_quantile(0.95, sum(rate(traefik_service_request_duration_seconds_bucket[5m])) by (le, service)) > 5";
const SERVICE_DOWN: &str = "up == 0";

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A counter that has grown at this many per second since ORIGIN.
    Counter(f64),
    /// A gauge at `base + slope * cycle(t)`.
    Gauge { base: f64, slope: f64 },
}

struct Series {
    labels: LabelSet,
    shape: Shape,
}

impl Series {
    fn value_at(&self, t: i64) -> f64 {
        match self.shape {
            Shape::Counter(per_second) => per_second * (t - ORIGIN) as f64,
            Shape::Gauge { base, slope } => base + slope * cycle(t),
        }
    }

    fn name(&self) -> &str {
        &self.labels["__name__"]
    }

    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Runs 0, 1, .. 5 over successive samples, so gauges differ from one range step to the next.
fn cycle(t: i64) -> f64 {
    ((t - OFFSET).div_euclid(INTERVAL) % 6) as f64
}

/// The newest sample time at or before `t`.
fn latest_sample(t: i64) -> i64 {
    t - (t - OFFSET).rem_euclid(INTERVAL)
}

fn sample_times() -> impl Iterator<Item = i64> {
    (FIRST_SAMPLE..=LAST_SAMPLE).step_by(INTERVAL as usize)
}

fn label_set(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A scraped series: its name, target and own labels.
fn scraped(name: &str, (job, instance): (&str, &str), pairs: &[(&str, &str)], shape: Shape) -> Series {
    let mut labels = label_set(pairs);
    labels.extend(label_set(&[("__name__", name), ("job", job), ("instance", instance)]));
    Series { labels, shape }
}

/// Bucket, `_sum` and `_count` counters of a classic histogram of `per_second` observations.
fn histogram(
    name: &str,
    target: (&str, &str),
    pairs: &[(&str, &str)],
    per_second: f64,
    buckets: &[(&str, f64)],
    mean: f64,
) -> Vec<Series> {
    let bucket_name = format!("{name}_bucket");
    let mut series: Vec<Series> = buckets
        .iter()
        .map(|&(le, share)| {
            let mut labels = pairs.to_vec();
            labels.push(("le", le));
            scraped(&bucket_name, target, &labels, Shape::Counter(per_second * share))
        })
        .collect();
    series.push(scraped(&format!("{name}_sum"), target, pairs, Shape::Counter(per_second * mean)));
    series.push(scraped(&format!("{name}_count"), target, pairs, Shape::Counter(per_second)));
    series
}

fn zip_buckets<'a>(les: &[&'a str], shares: &[f64]) -> Vec<(&'a str, f64)> {
    les.iter().copied().zip(shares.iter().copied()).collect()
}

/// Every series of the scenario.
fn scenario() -> Vec<Series> {
    let mut model = Vec::new();
    for (job, instance, up) in TARGETS {
        let base = if up { 1.0 } else { 0.0 };
        model.push(scraped("up", (job, instance), &[], Shape::Gauge { base, slope: 0.0 }));
    }
    for (service, code, method, per_second) in TRAEFIK_REQUESTS {
        let pairs = [("service", service), ("code", code), ("method", method), ("protocol", "http")];
        model.push(scraped("traefik_service_requests_total", TRAEFIK, &pairs, Shape::Counter(per_second)));
        let (_, shares, mean) = TRAEFIK_LATENCY.iter().find(|(name, ..)| *name == service).unwrap();
        let buckets = zip_buckets(&TRAEFIK_BUCKETS, shares);
        let name = "traefik_service_request_duration_seconds";
        model.extend(histogram(name, TRAEFIK, &pairs, per_second, &buckets, *mean));
    }
    for (method, route, status_code, per_second) in TODO_REQUESTS {
        let pairs = [("method", method), ("route", route), ("status_code", status_code)];
        model.push(scraped("tp2devops_http_requests_total", TODO_BACKEND, &pairs, Shape::Counter(per_second)));
    }
    for (method, route, status_code, per_second, shares) in TODO_LATENCY {
        let pairs = [("method", method), ("route", route), ("status_code", status_code)];
        let buckets = zip_buckets(&TODO_BUCKETS, &shares);
        let name = "tp2devops_http_request_duration_seconds";
        model.extend(histogram(name, TODO_BACKEND, &pairs, per_second, &buckets, 0.08));
    }
    model.push(scraped("tp2devops_todos_active", TODO_BACKEND, &[], Shape::Gauge { base: 40.0, slope: 3.0 }));
    for (operation, per_second) in TODO_OPERATIONS {
        let pairs = [("operation", operation)];
        model.push(scraped("tp2devops_todo_operations_total", TODO_BACKEND, &pairs, Shape::Counter(per_second)));
    }
    for (method, handler, status, per_second) in HTTP_REQUESTS {
        let pairs = [("method", method), ("handler", handler), ("status", status)];
        model.push(scraped("http_requests_total", BACKEND, &pairs, Shape::Counter(per_second)));
    }
    for (handler, buckets) in HTTP_DURATION {
        for &(le, base, slope) in buckets {
            let pairs = [("handler", handler), ("le", le)];
            let shape = Shape::Gauge { base, slope };
            model.push(scraped("http_request_duration_seconds_bucket", BACKEND, &pairs, shape));
        }
    }
    for (id, name, image, per_second) in CONTAINERS {
        let pairs = [("id", id), ("name", name), ("image", image), ("cpu", "total")];
        model.push(scraped("container_cpu_usage_seconds_total", CADVISOR, &pairs, Shape::Counter(per_second)));
    }
    model
}

/// One result series: labels and value.
type Point = (LabelSet, f64);

/// What a selector of `name` returns at `t`: each series' newest sample, name kept.
fn selected(model: &[Series], name: &str, t: i64) -> Vec<Point> {
    let at = latest_sample(t);
    model
        .iter()
        .filter(|series| series.name() == name)
        .map(|series| (series.labels.clone(), series.value_at(at)))
        .collect()
}

/// What `rate(name[5m])` returns for the counters named `name` that `keep` accepts: each one's own
/// rate, name dropped.
fn rates(model: &[Series], name: &str, keep: impl Fn(&Series) -> bool) -> Vec<Point> {
    model
        .iter()
        .filter(|series| series.name() == name && keep(series))
        .map(|series| {
            let Shape::Counter(per_second) = series.shape else { panic!("{name} is not a counter") };
            let mut labels = series.labels.clone();
            labels.remove("__name__");
            (labels, per_second)
        })
        .collect()
}

/// `sum by (by) (points)`.
fn sum_by(points: Vec<Point>, by: &[&str]) -> Vec<Point> {
    let mut groups: BTreeMap<LabelSet, f64> = BTreeMap::new();
    for (labels, value) in points {
        let key = labels.into_iter().filter(|(name, _)| by.contains(&name.as_str())).collect();
        *groups.entry(key).or_insert(0.0) += value;
    }
    groups.into_iter().collect()
}

/// `histogram_quantile(q, points)`: one answer per label set without `le` and the name.
fn quantiles(q: f64, points: Vec<Point>) -> Vec<Point> {
    let mut histograms: BTreeMap<LabelSet, Vec<(f64, f64)>> = BTreeMap::new();
    for (mut labels, count) in points {
        labels.remove("__name__");
        let le = labels.remove("le").expect("a bucket without le");
        let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
        histograms.entry(labels).or_default().push((bound, count));
    }
    histograms
        .into_iter()
        .map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            (labels, bucket_quantile(q, &buckets))
        })
        .collect()
}

/// The q-quantile of cumulative `(upper bound, count)` buckets sorted by bound, the last at +Inf,
/// interpolating linearly inside the bucket that holds the rank.
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let (last_bound, total) = *buckets.last().unwrap();
    assert!(last_bound.is_infinite() && total > 0.0 && (0.0..=1.0).contains(&q));
    let rank = q * total;
    let index = buckets.iter().position(|&(_, count)| count >= rank).unwrap();
    if index == buckets.len() - 1 {
        // Nothing is known above the highest finite bound.
        return buckets[index - 1].0;
    }
    let (lower, below) = if index == 0 { (0.0, 0.0) } else { buckets[index - 1] };
    let (upper, count) = buckets[index];
    assert!(upper > 0.0, "the test data keeps every bound positive");
    lower + (upper - lower) * (rank - below) / (count - below)
}

/// The points whose value passes `keep`, labels and values unchanged.
fn filter(points: Vec<Point>, keep: impl Fn(f64) -> bool) -> Vec<Point> {
    points.into_iter().filter(|(_, value)| keep(*value)).collect()
}

/// A three-character status code starting with 5, as `=~"5.."` selects.
fn is_5xx(code: &str) -> bool {
    code.len() == 3 && code.starts_with('5')
}

/// The 5xx share of Traefik's requests, without labels.
fn traefik_error_ratio(model: &[Series]) -> Vec<Point> {
    let errors = sum_by(rates(model, "traefik_service_requests_total", |s| is_5xx(s.label("code"))), &[]);
    let all = sum_by(rates(model, "traefik_service_requests_total", |_| true), &[]);
    vec![(LabelSet::new(), errors[0].1 / all[0].1)]
}

fn traefik_p95_by(model: &[Series], by: &[&str]) -> Vec<Point> {
    let buckets = rates(model, "traefik_service_request_duration_seconds_bucket", |_| true);
    quantiles(0.95, sum_by(buckets, by))
}

/// A query and how to work out its answer at a time.
struct Case {
    query: &'static str,
    /// Stored samples come back exactly; computed values within TOLERANCE.
    exact: bool,
    expected: fn(&[Series], i64) -> Vec<Point>,
}

fn case(query: &'static str, exact: bool, expected: fn(&[Series], i64) -> Vec<Point>) -> Case {
    Case { query, exact, expected }
}

fn cases() -> Vec<Case> {
    vec![
        case("up", true, |m, t| selected(m, "up", t)),
        case(SERVICE_DOWN, true, |m, t| filter(selected(m, "up", t), |v| v == 0.0)),
        case("traefik_service_requests_total", true, |m, t| selected(m, "traefik_service_requests_total", t)),
        case("sum(rate(traefik_service_requests_total[5m]))", false, |m, _| {
            sum_by(rates(m, "traefik_service_requests_total", |_| true), &[])
        }),
        case(r#"sum(rate(traefik_service_requests_total{code=~"5.."}[5m]))"#, false, |m, _| {
            sum_by(rates(m, "traefik_service_requests_total", |s| is_5xx(s.label("code"))), &[])
        }),
        case(
            r#"sum(rate(traefik_service_requests_total{code=~"5.."}[5m])) / sum(rate(traefik_service_requests_total[5m])) > 0.05"#,
            false,
            |m, _| filter(traefik_error_ratio(m), |v| v > 0.05),
        ),
        case(HIGH_ERROR_RATE, false, |m, _| filter(traefik_error_ratio(m), |v| v > 0.05)),
        case(
            "histogram_quantile(0.95, sum(rate(traefik_service_request_duration_seconds_bucket[5m])) by (le))",
            false,
            |m, _| traefik_p95_by(m, &["le"]),
        ),
        case(
            "histogram_quantile(0.95, sum(rate(traefik_service_request_duration_seconds_bucket[5m])) by (le, service))",
            false,
            |m, _| traefik_p95_by(m, &["le", "service"]),
        ),
        case(SLOW_RESPONSE_TIME, false, |m, _| filter(traefik_p95_by(m, &["le", "service"]), |v| v > 5.0)),
        case("rate(tp2devops_http_requests_total[5m])", false, |m, _| {
            rates(m, "tp2devops_http_requests_total", |_| true)
        }),
        case("histogram_quantile(0.95, rate(tp2devops_http_request_duration_seconds_bucket[5m]))", false, |m, _| {
            quantiles(0.95, rates(m, "tp2devops_http_request_duration_seconds_bucket", |_| true))
        }),
        case(r#"rate(tp2devops_http_requests_total{status_code=~"5.."}[5m])"#, false, |m, _| {
            rates(m, "tp2devops_http_requests_total", |s| is_5xx(s.label("status_code")))
        }),
        case("tp2devops_todos_active", true, |m, t| selected(m, "tp2devops_todos_active", t)),
        case("rate(tp2devops_todo_operations_total[5m])", false, |m, _| {
            rates(m, "tp2devops_todo_operations_total", |_| true)
        }),
        case("rate(http_requests_total[5m])", false, |m, _| rates(m, "http_requests_total", |_| true)),
        case("histogram_quantile(0.99, http_request_duration_seconds_bucket)", false, |m, t| {
            quantiles(0.99, selected(m, "http_request_duration_seconds_bucket", t))
        }),
        case(r#"rate(http_requests_total{status=~"5.."}[5m]) > 0.1"#, false, |m, _| {
            filter(rates(m, "http_requests_total", |s| is_5xx(s.label("status"))), |v| v > 0.1)
        }),
        case("container_cpu_usage_seconds_total", true, |m, t| selected(m, "container_cpu_usage_seconds_total", t)),
    ]
}

/// A server without self-scraping, holding every sample of the scenario.
async fn loaded(model: &[Series]) -> Server {
    let mut config = Config::embedded();
    config.scrape.scrape_self = false;
    let server = Server::start(config).await.unwrap();
    server.ready().await.unwrap();
    let labels: Vec<Labels> = model.iter().map(|series| Labels::from_pairs(&series.labels).unwrap()).collect();
    let samples: Vec<Vec<Sample>> = model
        .iter()
        .map(|series| sample_times().map(|t| Sample { t_ms: t * 1000, value: series.value_at(t) }).collect())
        .collect();
    let batch: Vec<SeriesSamples> = labels
        .iter()
        .zip(&samples)
        .map(|(labels, samples)| SeriesSamples { key: SeriesKey::Labels(labels), samples, exemplars: &[] })
        .collect();
    let result = server.storage().unwrap().metrics().append(&batch).unwrap();
    let total: usize = samples.iter().map(Vec::len).sum();
    assert_eq!(result.counts.appended, total as u64);
    server
}

/// Result series by label set, each with its `(time, value)` points.
type Matrix = BTreeMap<LabelSet, Vec<(i64, f64)>>;

fn expected_matrix(case: &Case, model: &[Series], times: impl Iterator<Item = i64>) -> Matrix {
    let mut matrix = Matrix::new();
    for t in times {
        let points = (case.expected)(model, t);
        assert!(!points.is_empty(), "the data must give {:?} an answer at {t}", case.query);
        for (labels, value) in points {
            matrix.entry(labels).or_default().push((t, value));
        }
    }
    matrix
}

fn parse_metric(metric: &Value) -> LabelSet {
    let object = metric.as_object().expect("metric is an object");
    object
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("label values are strings").into()))
        .collect()
}

/// A `[time, "value"]` pair.
fn parse_point(point: &Value) -> (i64, f64) {
    let pair = point.as_array().filter(|pair| pair.len() == 2).expect("a point is [time, value]");
    let time = pair[0].as_f64().expect("the time is a number");
    assert_eq!(time.fract(), 0.0, "times are whole seconds here");
    let value = pair[1].as_str().expect("the value is a string").parse().expect("the value is a float");
    (time as i64, value)
}

/// Checks the success envelope and result type, and reads the series.
fn parse_result(body: &Value, result_type: &str) -> Matrix {
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["resultType"], result_type, "{body}");
    let mut matrix = Matrix::new();
    for series in body["data"]["result"].as_array().expect("result is an array") {
        let points = if result_type == "vector" {
            vec![parse_point(&series["value"])]
        } else {
            series["values"].as_array().expect("values is an array").iter().map(parse_point).collect()
        };
        let labels = parse_metric(&series["metric"]);
        assert!(matrix.insert(labels, points).is_none(), "a label set twice: {body}");
    }
    matrix
}

/// Compares label sets, times and values; returns what differs.
fn compare(query: &str, exact: bool, got: &Matrix, want: &Matrix) -> Option<String> {
    let same = |a: f64, b: f64| a == b || (!exact && (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()));
    let matches = got.keys().eq(want.keys())
        && got.iter().zip(want).all(|((_, got), (_, want))| {
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.0 == w.0 && same(g.1, w.1))
        });
    (!matches).then(|| format!("{query}\n  got:  {got:?}\n  want: {want:?}"))
}

/// Asks `path` with `form` as a URL query (GET) or a form body (POST); the answer must be a 200.
async fn ask(server: &Server, path: &str, form: &[(&str, &str)], by_post: bool) -> Value {
    let (status, body) = if by_post {
        post(server, path, form).await
    } else {
        get(server, &format!("{path}?{}", serde_urlencoded::to_string(form).unwrap())).await
    };
    assert_eq!(status, 200, "{form:?}: {body}");
    body
}

#[tokio::test]
async fn every_query_answers_as_computed_from_the_data() {
    let model = scenario();
    let server = loaded(&model).await;
    let mut failures = Vec::new();
    for (index, case) in cases().iter().enumerate() {
        // Instant by GET and range by POST, or the other way round.
        let by_post = index % 2 == 1;

        let form = [("query", case.query), ("time", &EVAL.to_string())];
        let got = parse_result(&ask(&server, "/api/v1/query", &form, by_post).await, "vector");
        let want = expected_matrix(case, &model, [EVAL].into_iter());
        failures.extend(compare(case.query, case.exact, &got, &want).map(|diff| format!("instant {diff}")));

        let (start, end, step) = (RANGE_START.to_string(), EVAL.to_string(), STEP.to_string());
        let form = [("query", case.query), ("start", &start), ("end", &end), ("step", &step)];
        let got = parse_result(&ask(&server, "/api/v1/query_range", &form, !by_post).await, "matrix");
        let want = expected_matrix(case, &model, (RANGE_START..=EVAL).step_by(STEP as usize));
        failures.extend(compare(case.query, case.exact, &got, &want).map(|diff| format!("range {diff}")));
    }
    server.shutdown().await.unwrap();
    assert!(failures.is_empty(), "{} wrong answers:\n{}", failures.len(), failures.join("\n"));
}

/// The data is built so that every filter both keeps and drops series, and the alerts fire.
#[test]
fn every_filter_keeps_and_drops_series() {
    let model = scenario();
    let up = selected(&model, "up", EVAL);
    let down = filter(up.clone(), |v| v == 0.0);
    assert_eq!(down.len(), 1);
    assert!(down.len() < up.len());

    let ratio = traefik_error_ratio(&model)[0].1;
    assert!(ratio > 0.05, "{ratio}");

    let p95 = traefik_p95_by(&model, &["le", "service"]);
    let slow = filter(p95.clone(), |v| v > 5.0);
    assert_eq!(slow.len(), 1);
    assert_eq!(slow[0].0["service"], "ai-orchestrator@docker");
    assert!(slow.len() < p95.len());

    let errors = rates(&model, "http_requests_total", |s| is_5xx(s.label("status")));
    let fast_errors = filter(errors.clone(), |v| v > 0.1);
    assert_eq!((errors.len(), fast_errors.len()), (2, 1));
}

/// Interpolation from zero in the first bucket, the highest finite bound for a rank in +Inf, and
/// linear interpolation in between.
#[test]
fn bucket_quantile_follows_the_classic_histogram_rules() {
    let buckets = [(0.1, 96.0), (0.3, 99.0), (f64::INFINITY, 100.0)];
    assert!((bucket_quantile(0.95, &buckets) - 0.1 * 95.0 / 96.0).abs() < 1e-15);
    assert_eq!(bucket_quantile(0.995, &buckets), 0.3);
    assert!((bucket_quantile(0.98, &buckets) - (0.1 + 0.2 * 2.0 / 3.0)).abs() < 1e-15);
}
