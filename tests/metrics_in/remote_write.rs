//! Remote write 1.0 and 2.0 through real HTTP: what is stored, the status codes and headers,
//! and every rejection.

use tripod::Config;
use tripod_storage::labels::{MatchOp, Matcher};
use tripod_storage::metrics::{MetricType, MetricsQueryable, TimeRange};

use crate::encode::{self, Series};
use crate::support::{server, server_with, url};

const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

struct Answer {
    status: u16,
    body: String,
    samples_written: Option<u64>,
    exemplars_written: Option<u64>,
}

async fn post(address: &str, content_type: Option<&str>, encoding: Option<&str>, body: Vec<u8>) -> Answer {
    let mut request =
        reqwest::Client::new().post(address).body(body).header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some(encoding) = encoding {
        request = request.header("Content-Encoding", encoding);
    }
    let response = request.send().await.expect("request sent");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let (samples_written, exemplars_written) =
        (header("x-prometheus-remote-write-samples-written"), header("x-prometheus-remote-write-exemplars-written"));
    let status = response.status().as_u16();
    Answer { status, body: response.text().await.unwrap(), samples_written, exemplars_written }
}

async fn send_v1(address: &str, request: Vec<u8>) -> Answer {
    post(address, Some("application/x-protobuf"), Some("snappy"), encode::snappy(&request)).await
}

fn series<'a>(labels: &[(&'a str, &'a str)], samples: &[(i64, f64)]) -> Series<'a> {
    Series { labels: labels.to_vec(), samples: samples.to_vec(), exemplars: Vec::new() }
}

fn samples_of(server: &tripod::Server, name: &str) -> Vec<(String, Vec<(i64, f64)>)> {
    let storage = server.storage().expect("storage open");
    let matcher = Matcher::new(MatchOp::Equal, "__name__", name).unwrap();
    storage
        .metrics()
        .select(&[matcher], TimeRange::all())
        .unwrap()
        .into_iter()
        .map(|s| (s.labels.to_string(), s.samples().unwrap().iter().map(|x| (x.t_ms, x.value)).collect()))
        .collect()
}

#[tokio::test]
async fn v1_writes_are_stored_and_queryable_at_once() {
    let server = server().await;
    let address = url(&server, "/api/v1/write");
    let request = encode::v1(
        &[
            Series {
                labels: vec![("__name__", "http_requests_total"), ("code", "200"), ("job", "api")],
                samples: vec![(1000, 1.0), (2000, 3.0)],
                exemplars: vec![(vec![("trace_id", "4bf92f3577b34da6")], 1.0, 2000)],
            },
            series(&[("__name__", "http_requests_total"), ("code", "500"), ("job", "api")], &[(1000, 0.0)]),
        ],
        &[(1, "http_requests_total", "Requests served.", "")],
    );
    let answer = send_v1(&address, request.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (204, ""));
    assert_eq!(answer.samples_written, Some(3));
    assert_eq!(answer.exemplars_written, Some(1));
    assert_eq!(
        samples_of(&server, "http_requests_total"),
        vec![
            (r#"{__name__="http_requests_total", code="200", job="api"}"#.to_string(), vec![(1000, 1.0), (2000, 3.0)]),
            (r#"{__name__="http_requests_total", code="500", job="api"}"#.to_string(), vec![(1000, 0.0)]),
        ]
    );
    let storage = server.storage().unwrap();
    let metadata = storage.metrics().metadata(Some("http_requests_total")).unwrap();
    assert_eq!(metadata[0].1[0].metric_type, MetricType::Counter);
    assert_eq!(metadata[0].1[0].help, "Requests served.");
    let exemplars = storage
        .metrics()
        .exemplars(&[vec![Matcher::new(MatchOp::Equal, "code", "200").unwrap()]], TimeRange::all())
        .unwrap();
    assert_eq!(exemplars[0].exemplars[0].labels.get("trace_id"), Some("4bf92f3577b34da6"));

    // The same series again go through the reference cache; the explicit proto= form is v1 too.
    let again = encode::v1(
        &[series(&[("__name__", "http_requests_total"), ("code", "200"), ("job", "api")], &[(3000, 4.0)])],
        &[],
    );
    let answer = post(
        &address,
        Some("application/x-protobuf; proto=prometheus.WriteRequest"),
        Some("snappy"),
        encode::snappy(&again),
    )
    .await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(samples_of(&server, "http_requests_total")[0].1.last(), Some(&(3000, 4.0)));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn v2_writes_are_stored_with_metadata_and_written_headers() {
    let server = server().await;
    let address = url(&server, "/api/v1/write");
    let request = encode::v2(&[
        (
            Series {
                labels: vec![("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("mode", "idle")],
                samples: vec![(5000, 12.5), (20000, 27.25)],
                exemplars: vec![(vec![("trace_id", "abc")], 27.25, 20000)],
            },
            Some((1, "Seconds the CPUs spent in each mode.", "seconds")),
        ),
        (series(&[("__name__", "node_load1")], &[(5000, 0.5)]), Some((2, "1m load average.", ""))),
    ]);
    let answer = post(&address, Some(V2), Some("snappy"), encode::snappy(&request)).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!((answer.samples_written, answer.exemplars_written), (Some(3), Some(1)));
    assert_eq!(samples_of(&server, "node_cpu_seconds_total")[0].1, vec![(5000, 12.5), (20000, 27.25)]);
    let metadata = server.storage().unwrap().metrics().metadata(Some("node_cpu_seconds_total")).unwrap();
    assert_eq!(metadata[0].1[0].unit, "seconds");
    assert_eq!(metadata[0].1[0].metric_type, MetricType::Counter);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason_and_nothing_stored() {
    let server = server().await;
    let address = url(&server, "/api/v1/write");
    let good = encode::v1(&[series(&[("__name__", "x")], &[(1, 1.0)])], &[]);
    let mut not_utf8 = encode::v1(&[series(&[("__name__", "x"), ("job", "zz")], &[(1, 1.0)])], &[]);
    let position = not_utf8.windows(2).position(|w| w == b"zz").unwrap();
    not_utf8[position] = 0xff;
    let cases: Vec<(&str, Option<&str>, Option<&str>, Vec<u8>, u16, &str)> = vec![
        (
            "not snappy",
            Some("application/x-protobuf"),
            Some("snappy"),
            b"definitely not snappy".to_vec(),
            400,
            "not snappy",
        ),
        (
            "not protobuf",
            Some("application/x-protobuf"),
            Some("snappy"),
            encode::snappy(&[0x0b, 0x01]),
            400,
            "malformed write request",
        ),
        (
            "unsorted labels",
            Some("application/x-protobuf"),
            Some("snappy"),
            encode::snappy(&encode::v1(&[series(&[("job", "a"), ("__name__", "x")], &[(1, 1.0)])], &[])),
            400,
            "labels are not sorted",
        ),
        (
            "duplicate label",
            Some("application/x-protobuf"),
            Some("snappy"),
            encode::snappy(&encode::v1(&[series(&[("__name__", "x"), ("a", "1"), ("a", "2")], &[(1, 1.0)])], &[])),
            400,
            "duplicate label name \"a\"",
        ),
        (
            "empty label name",
            Some("application/x-protobuf"),
            Some("snappy"),
            encode::snappy(&encode::v1(&[series(&[("", "v"), ("__name__", "x")], &[(1, 1.0)])], &[])),
            400,
            "empty label name",
        ),
        (
            "invalid UTF-8",
            Some("application/x-protobuf"),
            Some("snappy"),
            encode::snappy(&not_utf8),
            400,
            "not valid UTF-8",
        ),
        (
            "no labels",
            Some("application/x-protobuf"),
            Some("snappy"),
            encode::snappy(&encode::v1(&[series(&[], &[(1, 1.0)])], &[])),
            400,
            "has no labels",
        ),
        (
            "wrong media type",
            Some("application/json"),
            Some("snappy"),
            encode::snappy(&good),
            415,
            "unsupported content type",
        ),
        (
            "unknown message",
            Some("application/x-protobuf;proto=foo.Bar"),
            Some("snappy"),
            encode::snappy(&good),
            415,
            "unsupported remote write message",
        ),
        (
            "gzip",
            Some("application/x-protobuf"),
            Some("gzip"),
            encode::snappy(&good),
            415,
            "unsupported content encoding",
        ),
    ];
    for (name, content_type, encoding, body, status, message) in cases {
        let answer = post(&address, content_type, encoding, body).await;
        assert_eq!(answer.status, status, "{name}: {}", answer.body);
        assert!(answer.body.contains(message), "{name}: {:?} does not contain {message:?}", answer.body);
        assert!(!answer.body.is_empty());
    }
    // A v2 body whose series names a symbol that is not in the table.
    let mut request = Vec::new();
    tripod::api::wire::put_bytes_field(&mut request, 4, b"");
    let mut ts = Vec::new();
    tripod::api::wire::put_bytes_field(&mut ts, 1, &[7, 8]);
    tripod::api::wire::put_bytes_field(&mut request, 5, &ts);
    let answer = post(&address, Some(V2), Some("snappy"), encode::snappy(&request)).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("symbol reference 7 is out of range"), "{}", answer.body);
    // Nothing of any refused request was stored.
    let storage = server.storage().unwrap();
    assert!(storage.metrics().select(&[], TimeRange::all()).unwrap().is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limits_get_413() {
    let mut config = Config::embedded();
    config.max_request_body_bytes = 1024;
    config.max_decompressed_bytes = 4096;
    let server = server_with(config).await;
    let address = url(&server, "/api/v1/write");
    let big: Vec<Series> =
        (0..200).map(|_| series(&[("__name__", "padding_metric_with_a_long_name")], &[(1, 1.0)])).collect();
    let raw = encode::v1(&big, &[]);
    // Compressible: small on the wire, large once decompressed.
    let compressed = encode::snappy(&raw);
    assert!(compressed.len() < 1024 && raw.len() > 4096);
    let answer = post(&address, Some("application/x-protobuf"), Some("snappy"), compressed).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body.contains("over the limit of 4096 bytes"), "{}", answer.body);
    let incompressible: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let answer = post(&address, Some("application/x-protobuf"), Some("snappy"), incompressible).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body.contains("over the limit of 1024 bytes"), "{}", answer.body);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn refused_samples_get_400_and_the_good_ones_are_written() {
    let mut config = Config::embedded();
    config.storage.metrics.out_of_order_window_ms = 0;
    let server = server_with(config).await;
    let address = url(&server, "/api/v1/write");
    let labels = [("__name__", "temperature")];
    assert_eq!(send_v1(&address, encode::v1(&[series(&labels, &[(10_000, 20.0)])], &[])).await.status, 204);
    let answer = send_v1(
        &address,
        encode::v1(
            &[
                series(&labels, &[(5_000, 19.0), (10_000, 21.0), (15_000, 22.0)]),
                series(&[("__name__", "other")], &[(1, 1.0)]),
            ],
            &[],
        ),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.samples_written, Some(2));
    assert!(answer.body.contains("1 x out of order sample"), "{}", answer.body);
    assert!(answer.body.contains("1 x duplicate sample for timestamp"), "{}", answer.body);
    assert_eq!(samples_of(&server, "temperature")[0].1, vec![(10_000, 20.0), (15_000, 22.0)]);
    assert_eq!(samples_of(&server, "other")[0].1, vec![(1, 1.0)]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn chunked_bodies_without_content_length_are_read_and_capped() {
    let mut config = Config::embedded();
    config.max_request_body_bytes = 2048;
    let server = server_with(config).await;
    let address = url(&server, "/api/v1/write");
    let body = encode::snappy(&encode::v1(&[series(&[("__name__", "chunked")], &[(1, 1.0)])], &[]));
    let stream = futures_stream(vec![body[..4].to_vec(), body[4..].to_vec()]);
    let response = reqwest::Client::new()
        .post(&address)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let large = futures_stream(vec![vec![0u8; 1500], vec![0u8; 1500]]);
    let response = reqwest::Client::new()
        .post(&address)
        .header("Content-Type", "application/x-protobuf")
        .body(reqwest::Body::wrap_stream(large))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    server.shutdown().await.unwrap();
}

/// A body stream of the given chunks (sent with chunked transfer encoding).
fn futures_stream(chunks: Vec<Vec<u8>>) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}
