//! `POST /api/v1/write`: Prometheus remote write 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`), chosen by the Content-Type `proto=` parameter, snappy
//! block-compressed protobuf. Message layouts: `proto/prometheus/`.
//!
//! Answers as Prometheus does: 204 when everything was written; 400 with a message naming the
//! problem for a body that does not decode or a series with bad labels (nothing written), and
//! for samples refused as out of order, too old or duplicate (the rest written); 415 for a
//! content type or encoding it does not read; 413 over the body or decompression cap. Every
//! answer to a decoded request carries the `X-Prometheus-Remote-Write-*-Written` headers.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tripod_storage::labels::Labels;
use tripod_storage::metrics::{Exemplar, MetricMetadata, MetricType, Sample};

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind, TextError};
use crate::api::wire::{WireError, WireReader, WireValue, read_packed_varints};
use crate::ingest::metrics::{BatchSeries, IngestError, WriteBatch, WriteOutcome};

/// Which message a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

/// Picks the message from Content-Type and checks Content-Encoding, as the 2.0 spec asks.
pub fn negotiate(headers: &HeaderMap) -> Result<Protocol, ApiError> {
    let unsupported = |message: String| ApiError::new(ErrorKind::UnsupportedMediaType, message);
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("").trim();
        if !encoding.eq_ignore_ascii_case("snappy") {
            return Err(unsupported(format!("unsupported content encoding {encoding:?}, only snappy is accepted")));
        }
    }
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Protocol::V1);
    };
    let content_type = content_type.to_str().unwrap_or("");
    let mut parts = content_type.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or("");
    if !media_type.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(unsupported(format!("unsupported content type {content_type:?}, expected application/x-protobuf")));
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("proto") {
            return match value.trim().trim_matches('"') {
                "prometheus.WriteRequest" => Ok(Protocol::V1),
                "io.prometheus.write.v2.Request" => Ok(Protocol::V2),
                other => Err(unsupported(format!(
                    "unsupported remote write message {other:?}, expected prometheus.WriteRequest or io.prometheus.write.v2.Request"
                ))),
            };
        }
    }
    Ok(Protocol::V1)
}

thread_local! {
    /// The decompression buffer of each blocking thread, reused so that a request does not
    /// fault in fresh pages for its body.
    static DECOMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers larger than this are released after the request.
const RETAINED_BUFFER_BYTES: usize = 16 << 20;

/// Decompresses a snappy block body into `out`, refusing to produce more than `max_bytes`.
pub fn decompress_into(body: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let not_snappy = |error: snap::Error| ApiError::bad_data(format!("body is not snappy block-compressed: {error}"));
    let length = snap::raw::decompress_len(body).map_err(not_snappy)?;
    if length > max_bytes {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("decompressed body would be {length} bytes, over the limit of {max_bytes} bytes"),
        ));
    }
    out.resize(length, 0);
    let written = snap::raw::Decoder::new().decompress(body, out).map_err(not_snappy)?;
    out.truncate(written);
    Ok(())
}

fn malformed(what: &str, error: WireError) -> ApiError {
    ApiError::bad_data(format!("malformed {what}: {error}"))
}

fn utf8<'a>(bytes: &'a [u8], what: &str, offset: usize) -> Result<&'a str, ApiError> {
    std::str::from_utf8(bytes).map_err(|_| ApiError::bad_data(format!("{what} at byte {offset} is not valid UTF-8")))
}

fn as_i64(value: WireValue<'_>) -> Option<i64> {
    match value {
        WireValue::Varint(v) => Some(v as i64),
        _ => None,
    }
}

fn as_f64(value: WireValue<'_>) -> Option<f64> {
    match value {
        WireValue::Fixed64(bits) => Some(f64::from_bits(bits)),
        _ => None,
    }
}

fn decode_sample(bytes: &[u8], offset: usize) -> Result<Sample, ApiError> {
    let mut sample = Sample { t_ms: 0, value: 0.0 };
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, value, _)) = reader.next_field().map_err(|e| malformed("sample", e))? {
        match field {
            1 => sample.value = as_f64(value).ok_or_else(|| ApiError::bad_data("sample value is not a double"))?,
            2 => sample.t_ms = as_i64(value).ok_or_else(|| ApiError::bad_data("sample timestamp is not an int64"))?,
            _ => {}
        }
    }
    Ok(sample)
}

/// Decodes a `prometheus.WriteRequest`.
pub fn decode_v1(body: &[u8]) -> Result<WriteBatch<'_>, ApiError> {
    let mut batch = WriteBatch::default();
    let mut reader = WireReader::new(body);
    while let Some((field, value, offset)) = reader.next_field().map_err(|e| malformed("write request", e))? {
        match (field, value) {
            (1, WireValue::Bytes(series)) => decode_v1_series(series, offset, &mut batch)?,
            (3, WireValue::Bytes(metadata)) => {
                if let Some(entry) = decode_v1_metadata(metadata, offset)? {
                    batch.metadata.push(entry);
                }
            }
            (1 | 3, _) => {
                return Err(ApiError::bad_data(format!("field {field} at byte {offset} is not a message")));
            }
            _ => {}
        }
    }
    Ok(batch)
}

/// A label's name and value as raw bytes: UTF-8 and order are checked by the ingester, and
/// only for label sets it has not seen before.
fn decode_label(bytes: &[u8], offset: usize) -> Result<(&[u8], &[u8]), ApiError> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, wire, _)) = reader.next_field().map_err(|e| malformed("label", e))? {
        match (field, wire) {
            (1, WireValue::Bytes(bytes)) => name = bytes,
            (2, WireValue::Bytes(bytes)) => value = bytes,
            _ => {}
        }
    }
    Ok((name, value))
}

fn decode_v1_series<'a>(bytes: &'a [u8], offset: usize, batch: &mut WriteBatch<'a>) -> Result<(), ApiError> {
    let index = batch.series.len();
    let labels_start = batch.label_pairs.len();
    let samples_start = batch.samples.len();
    let mut exemplar_raw: Vec<(&'a [u8], usize)> = Vec::new();
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("time series", e))? {
        match (field, value) {
            (1, WireValue::Bytes(label)) => batch.label_pairs.push(decode_label(label, at)?),
            (2, WireValue::Bytes(sample)) => batch.samples.push(decode_sample(sample, at)?),
            (3, WireValue::Bytes(exemplar)) => exemplar_raw.push((exemplar, at)),
            (4, _) => batch.histograms += 1,
            _ => {}
        }
    }
    let exemplars_start = batch.exemplars.len();
    for (raw, at) in exemplar_raw {
        let mut labels = Vec::new();
        let mut exemplar = Exemplar { labels: Labels::empty(), value: 0.0, t_ms: 0 };
        let mut reader = WireReader::nested(raw, at);
        while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("exemplar", e))? {
            match (field, value) {
                (1, WireValue::Bytes(label)) => {
                    let (name, value) = decode_label(label, at)?;
                    labels.push((utf8(name, "exemplar label name", at)?, utf8(value, "exemplar label value", at)?));
                }
                (2, value) => {
                    exemplar.value =
                        as_f64(value).ok_or_else(|| ApiError::bad_data("exemplar value is not a double"))?
                }
                (3, value) => {
                    exemplar.t_ms =
                        as_i64(value).ok_or_else(|| ApiError::bad_data("exemplar timestamp is not an int64"))?
                }
                _ => {}
            }
        }
        exemplar.labels = Labels::from_pairs(labels)
            .map_err(|error| ApiError::bad_data(format!("series {index}: exemplar labels: {error}")))?;
        batch.exemplars.push(exemplar);
    }
    batch.series.push(BatchSeries {
        labels: labels_start..batch.label_pairs.len(),
        samples: samples_start..batch.samples.len(),
        exemplars: exemplars_start..batch.exemplars.len(),
    });
    Ok(())
}

fn metric_type(code: u64) -> MetricType {
    match code {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

fn decode_v1_metadata(bytes: &[u8], offset: usize) -> Result<Option<(String, MetricMetadata)>, ApiError> {
    let mut name = "";
    let mut metadata = MetricMetadata { metric_type: MetricType::Unknown, help: String::new(), unit: String::new() };
    let mut reader = WireReader::nested(bytes, offset);
    while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("metadata", e))? {
        match (field, value) {
            (1, WireValue::Varint(code)) => metadata.metric_type = metric_type(code),
            (2, WireValue::Bytes(bytes)) => name = utf8(bytes, "metric family name", at)?,
            (4, WireValue::Bytes(bytes)) => metadata.help = utf8(bytes, "help", at)?.to_string(),
            (5, WireValue::Bytes(bytes)) => metadata.unit = utf8(bytes, "unit", at)?.to_string(),
            _ => {}
        }
    }
    Ok((!name.is_empty()).then(|| (name.to_string(), metadata)))
}

/// Decodes an `io.prometheus.write.v2.Request`.
pub fn decode_v2(body: &[u8]) -> Result<WriteBatch<'_>, ApiError> {
    let mut symbols: Vec<&str> = Vec::new();
    let mut series_raw: Vec<(&[u8], usize)> = Vec::new();
    let mut reader = WireReader::new(body);
    while let Some((field, value, offset)) = reader.next_field().map_err(|e| malformed("write request", e))? {
        match (field, value) {
            (4, WireValue::Bytes(bytes)) => symbols.push(utf8(bytes, "symbol", offset)?),
            (5, WireValue::Bytes(bytes)) => series_raw.push((bytes, offset)),
            (4 | 5, _) => {
                return Err(ApiError::bad_data(format!("field {field} at byte {offset} has the wrong wire type")));
            }
            _ => {}
        }
    }
    if !series_raw.is_empty() && symbols.first() != Some(&"") {
        return Err(ApiError::bad_data("symbols table must start with the empty string"));
    }
    let symbol = |reference: u64| -> Result<&str, ApiError> {
        symbols.get(reference as usize).copied().ok_or_else(|| {
            ApiError::bad_data(format!(
                "symbol reference {reference} is out of range (the table has {})",
                symbols.len()
            ))
        })
    };
    let mut batch = WriteBatch::default();
    let mut refs = Vec::new();
    for (index, (bytes, offset)) in series_raw.into_iter().enumerate() {
        let labels_start = batch.label_pairs.len();
        let samples_start = batch.samples.len();
        let exemplars_start = batch.exemplars.len();
        refs.clear();
        let mut metadata: Option<(u64, u64, u64)> = None;
        let mut reader = WireReader::nested(bytes, offset);
        while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("time series", e))? {
            match (field, value) {
                (1, value) => read_packed_varints(value, at, &mut refs).map_err(|e| malformed("labels_refs", e))?,
                (2, WireValue::Bytes(sample)) => batch.samples.push(decode_sample(sample, at)?),
                (3, _) => batch.histograms += 1,
                (4, WireValue::Bytes(exemplar)) => {
                    let mut exemplar_refs = Vec::new();
                    let mut value_f = 0.0;
                    let mut t_ms = 0;
                    let mut reader = WireReader::nested(exemplar, at);
                    while let Some((field, value, at)) = reader.next_field().map_err(|e| malformed("exemplar", e))? {
                        match field {
                            1 => read_packed_varints(value, at, &mut exemplar_refs)
                                .map_err(|e| malformed("exemplar labels_refs", e))?,
                            2 => {
                                value_f =
                                    as_f64(value).ok_or_else(|| ApiError::bad_data("exemplar value is not a double"))?
                            }
                            3 => {
                                t_ms = as_i64(value)
                                    .ok_or_else(|| ApiError::bad_data("exemplar timestamp is not an int64"))?
                            }
                            _ => {}
                        }
                    }
                    if exemplar_refs.len() % 2 != 0 {
                        return Err(ApiError::bad_data(format!(
                            "series {index}: exemplar labels_refs has an odd length"
                        )));
                    }
                    let mut pairs = Vec::with_capacity(exemplar_refs.len() / 2);
                    for pair in exemplar_refs.chunks(2) {
                        pairs.push((symbol(pair[0])?, symbol(pair[1])?));
                    }
                    let labels = Labels::from_pairs(pairs)
                        .map_err(|error| ApiError::bad_data(format!("series {index}: exemplar labels: {error}")))?;
                    batch.exemplars.push(Exemplar { labels, value: value_f, t_ms });
                }
                (5, WireValue::Bytes(meta)) => {
                    let (mut kind, mut help, mut unit) = (0, 0, 0);
                    let mut reader = WireReader::nested(meta, at);
                    while let Some((field, value, _)) = reader.next_field().map_err(|e| malformed("metadata", e))? {
                        match (field, value) {
                            (1, WireValue::Varint(v)) => kind = v,
                            (3, WireValue::Varint(v)) => help = v,
                            (4, WireValue::Varint(v)) => unit = v,
                            _ => {}
                        }
                    }
                    metadata = Some((kind, help, unit));
                }
                _ => {}
            }
        }
        if refs.len() % 2 != 0 {
            return Err(ApiError::bad_data(format!("series {index}: labels_refs has an odd length")));
        }
        for pair in refs.chunks(2) {
            batch.label_pairs.push((symbol(pair[0])?.as_bytes(), symbol(pair[1])?.as_bytes()));
        }
        let labels = &batch.label_pairs[labels_start..];
        if let Some((kind, help, unit)) = metadata
            && let Some((_, name)) = labels.iter().find(|(name, _)| *name == b"__name__")
            && (kind != 0 || help != 0 || unit != 0)
        {
            let metadata = MetricMetadata {
                metric_type: metric_type(kind),
                help: symbol(help)?.to_string(),
                unit: symbol(unit)?.to_string(),
            };
            let name = String::from_utf8_lossy(name).into_owned();
            if !batch.metadata.iter().any(|(n, m)| *n == name && *m == metadata) {
                batch.metadata.push((name, metadata));
            }
        }
        batch.series.push(BatchSeries {
            labels: labels_start..batch.label_pairs.len(),
            samples: samples_start..batch.samples.len(),
            exemplars: exemplars_start..batch.exemplars.len(),
        });
    }
    Ok(batch)
}

/// The `X-Prometheus-Remote-Write-*-Written` headers.
fn written_headers(response: &mut Response, outcome: &WriteOutcome) {
    let headers = response.headers_mut();
    let counts = [
        ("x-prometheus-remote-write-samples-written", outcome.samples_written()),
        ("x-prometheus-remote-write-histograms-written", 0),
        ("x-prometheus-remote-write-exemplars-written", outcome.counts.exemplars_appended),
    ];
    for (name, count) in counts {
        headers.insert(name, HeaderValue::from(count));
    }
}

/// The message for a partly refused write, in the words Prometheus uses for each reason.
fn partial_write_message(outcome: &WriteOutcome) -> Option<String> {
    let counts = &outcome.counts;
    let mut reasons = Vec::new();
    for (count, reason) in [
        (counts.rejected_out_of_order, "out of order sample"),
        (counts.rejected_too_old, "out of bounds (too old) sample"),
        (counts.rejected_duplicate_timestamp, "duplicate sample for timestamp"),
        (outcome.histograms_rejected, "native histogram sample (not supported)"),
        (counts.unknown_series_ref, "sample for an unknown series"),
    ] {
        if count > 0 {
            reasons.push(format!("{count} x {reason}"));
        }
    }
    (!reasons.is_empty())
        .then(|| format!("{} samples written, rejected: {}", outcome.samples_written(), reasons.join(", ")))
}

pub async fn write(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match write_inner(state, headers, body).await {
        Ok(response) => response,
        Err(error) => TextError(error).into_response(),
    }
}

async fn write_inner(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("request body is over the limit of {} bytes", state.limits().max_request_body_bytes),
            )
        } else {
            ApiError::bad_data(format!("cannot read request body: {rejection}"))
        }
    })?;
    let protocol = negotiate(&headers)?;
    let storage = state.storage()?.clone();
    let max_decompressed = state.limits().max_decompressed_bytes;
    let ingest_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<WriteOutcome, ApiError> {
        DECOMPRESSED.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            decompress_into(&body, max_decompressed, &mut buffer)?;
            let batch = match protocol {
                Protocol::V1 => decode_v1(&buffer)?,
                Protocol::V2 => decode_v2(&buffer)?,
            };
            let outcome = ingest_state.metrics_ingest().write(storage.metrics(), &batch).map_err(|error| match error {
                IngestError::InvalidLabels(message) => ApiError::bad_data(message),
                IngestError::Store(error) => ApiError::internal(format!("storing samples: {error}")),
            });
            drop(batch);
            if buffer.capacity() > RETAINED_BUFFER_BYTES {
                *buffer = Vec::new();
            }
            outcome
        })
    })
    .await
    .map_err(|error| ApiError::internal(format!("remote write task failed: {error}")))??;

    let mut response = match partial_write_message(&outcome) {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(message) => TextError(ApiError::bad_data(message)).into_response(),
    };
    written_headers(&mut response, &outcome);
    Ok(response)
}
