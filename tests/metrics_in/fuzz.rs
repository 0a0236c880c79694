//! Seeded mutation fuzzing of the remote write decoders: thousands of damaged variants of valid
//! requests (bit flips, truncations, spliced and random bytes) must each decode or be refused
//! with an error, never panic. Deterministic, so it runs in every test run.

use tripod::api::prometheus::remote_write::{decode_v1, decode_v2, decompress_into};

use crate::encode::{self, Series};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() + 1)),
            2 => {
                let at = rng.below(bytes.len() + 1);
                let insert: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, insert);
            }
            3 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)];
            }
            _ => {
                let from = rng.below(bytes.len() + 1);
                let to = rng.below(bytes.len() + 1);
                let (lo, hi) = (from.min(to), from.max(to));
                let copy = bytes[lo..hi].to_vec();
                bytes.extend_from_slice(&copy);
            }
        }
    }
    bytes
}

fn seeds() -> (Vec<u8>, Vec<u8>) {
    let series = || Series {
        labels: vec![("__name__", "http_requests_total"), ("code", "200"), ("job", "api")],
        samples: vec![(1000, 1.5), (2000, f64::NAN)],
        exemplars: vec![(vec![("trace_id", "abc")], 1.0, 1500)],
    };
    let v1 = encode::v1(&[series(), series()], &[(1, "http_requests_total", "help", "")]);
    let v2 = encode::v2(&[(series(), Some((1, "help", "seconds")))]);
    (v1, v2)
}

#[test]
fn damaged_requests_never_panic_the_decoders() {
    let (v1, v2) = seeds();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for _ in 0..20_000 {
        let _ = decode_v1(&mutate(&v1, &mut rng));
        let _ = decode_v2(&mutate(&v2, &mut rng));
    }
}

#[test]
fn damaged_snappy_never_panics_or_overallocates() {
    let (v1, _) = seeds();
    let compressed = encode::snappy(&v1);
    let mut rng = Rng(42);
    let mut buffer = Vec::new();
    for _ in 0..20_000 {
        let damaged = mutate(&compressed, &mut rng);
        if decompress_into(&damaged, 1 << 16, &mut buffer).is_ok() {
            assert!(buffer.len() <= 1 << 16);
            let _ = decode_v1(&buffer);
        }
    }
}

#[test]
fn damaged_otlp_requests_never_panic_the_translation() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric,
    };
    use prost::Message;
    use tripod::ingest::otlp_metrics::OtlpMetricsIngest;

    let histogram = Metric {
        name: "http.server.duration".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 1_000_000_000,
                count: 3,
                sum: Some(12.0),
                bucket_counts: vec![1, 1, 1],
                explicit_bounds: vec![1.0, 10.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    };
    let seed = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![histogram], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let ingest = OtlpMetricsIngest::default();
    let mut rng = Rng(7);
    let mut translated = 0;
    for _ in 0..20_000 {
        if let Ok(request) = ExportMetricsServiceRequest::decode(mutate(&seed, &mut rng).as_slice()) {
            let _ = ingest.translate(&request);
            translated += 1;
        }
    }
    assert!(translated > 100, "the mutations should leave many decodable requests");
}

#[test]
fn damaged_expositions_never_panic_the_parsers() {
    use tripod::scrape::exposition::{parse_openmetrics, parse_prometheus_text};
    let openmetrics = "# TYPE a histogram\n# HELP a help \\n x\n# UNIT a_seconds seconds\na_bucket{le=\"1.0\",x=\"y # \\\"z\"} 0 # {trace_id=\"abc\"} 0.5 123.4\na_bucket{le=\"+Inf\"} 3 1.5\na_count 3\na_sum 2\n# TYPE s stateset\ns{s=\"a\"} 1\n# EOF\n";
    let text =
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"\\n\"} 1.5e3 1700000000000\ny NaN\nz{} -Inf\n";
    let mut rng = Rng(99);
    for _ in 0..20_000 {
        let damaged = mutate(openmetrics.as_bytes(), &mut rng);
        if let Ok(damaged) = std::str::from_utf8(&damaged) {
            let _ = parse_openmetrics(damaged);
            let _ = parse_prometheus_text(damaged);
        }
        let damaged = mutate(text.as_bytes(), &mut rng);
        if let Ok(damaged) = std::str::from_utf8(&damaged) {
            let _ = parse_prometheus_text(damaged);
            let _ = parse_openmetrics(damaged);
        }
    }
}
