//! `POST /loki/api/v1/push` (and the older `/api/prom/push`): Loki's push API.
//!
//! Bodies are protobuf (`application/x-protobuf`, or no Content-Type, as Loki assumes):
//! `logproto.PushRequest` snappy-compressed (block format, or the framed format); or JSON
//! (`application/json`) in either of the forms Loki reads. Either may also carry
//! `Content-Encoding: gzip`, `deflate` or `snappy`. The body is capped as sent
//! (`limits.max_request_body_bytes`, chunked bodies included) and every decompression
//! (`limits.max_decompressed_bytes`): 413 over either.
//!
//! Answers as Loki does: 204 when everything was stored; 400 naming each refused stream or
//! entry (the good entries of the push are stored); 400 for a body that does not decode
//! (nothing stored); 401 `no org id` when multi-tenancy is on and `X-Scope-OrgID` is missing;
//! 415 for a content type or encoding it does not read; 429 over the tenant's ingestion rate
//! (nothing stored); 503 while storage opens.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind, LokiError};
use crate::api::loki::model;
use crate::ingest::logs::{PushOutcome, TenantError};

/// The header that names the tenant when multi-tenancy is on.
pub const ORG_ID_HEADER: &str = "x-scope-orgid";

/// Which message a body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

/// `Content-Encoding` of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
    Snappy,
}

/// Reads the format from Content-Type: JSON, protobuf, or (none given) protobuf.
pub fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Protobuf);
    };
    let content_type = content_type.to_str().unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-protobuf" | "application/protobuf" | "" => Ok(Format::Protobuf),
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("unsupported content type {content_type:?}, expected application/x-protobuf or application/json"),
        )),
    }
}

pub fn encoding_of(headers: &HeaderMap) -> Result<ContentEncoding, ApiError> {
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(ContentEncoding::Identity);
    };
    let encoding = encoding.to_str().unwrap_or("?").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(ContentEncoding::Identity),
        "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
        "deflate" => Ok(ContentEncoding::Deflate),
        "snappy" => Ok(ContentEncoding::Snappy),
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("unsupported content encoding {encoding:?}, expected gzip, deflate, snappy or none"),
        )),
    }
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(ErrorKind::PayloadTooLarge, format!("decompressed body is over the limit of {max_bytes} bytes"))
}

/// Reads `reader` to its end into `out`, refusing to produce more than `max_bytes`.
fn read_capped(reader: impl Read, max_bytes: usize, out: &mut Vec<u8>, what: &str) -> Result<(), ApiError> {
    out.clear();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(out)
        .map_err(|error| ApiError::bad_data(format!("body is not valid {what}: {error}")))?;
    if out.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(())
}

/// The stream identifier that opens the framed snappy format.
const SNAPPY_FRAME_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Undoes snappy, block or framed format, never producing more than `max_bytes`.
pub fn unsnappy(body: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), ApiError> {
    if body.starts_with(SNAPPY_FRAME_MAGIC) {
        return read_capped(snap::read::FrameDecoder::new(body), max_bytes, out, "framed snappy");
    }
    let not_snappy =
        |error: snap::Error| ApiError::bad_data(format!("body is not snappy-compressed protobuf: {error}"));
    let length = snap::raw::decompress_len(body).map_err(not_snappy)?;
    if length > max_bytes {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("decompressed body would be {length} bytes, over the limit of {max_bytes} bytes"),
        ));
    }
    out.clear();
    out.resize(length, 0);
    let written = snap::raw::Decoder::new().decompress(body, out).map_err(not_snappy)?;
    out.truncate(written);
    Ok(())
}

/// Undoes gzip or deflate (zlib-wrapped, as HTTP specifies, or raw, as Go clients send).
fn inflate(encoding: ContentEncoding, body: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), ApiError> {
    match encoding {
        ContentEncoding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(body), max_bytes, out, "gzip"),
        _ => {
            let zlib_header =
                body.len() >= 2 && body[0] & 0x0f == 8 && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib_header {
                read_capped(flate2::read::ZlibDecoder::new(body), max_bytes, out, "deflate")
            } else {
                read_capped(flate2::read::DeflateDecoder::new(body), max_bytes, out, "deflate")
            }
        }
    }
}

thread_local! {
    /// Buffers of each blocking thread, reused so a push does not fault in fresh pages: the
    /// body after its Content-Encoding, and the message after snappy.
    static INFLATED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static MESSAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers larger than this are released after the request.
const RETAINED_BUFFER_BYTES: usize = 16 << 20;

/// Decodes a push body and hands the batch to `handle`, all on the calling thread with its
/// reused buffers. The batch borrows from those buffers, hence the callback.
pub fn with_decoded<T>(
    body: &[u8],
    format: Format,
    encoding: ContentEncoding,
    max_decompressed_bytes: usize,
    handle: impl FnOnce(&crate::ingest::logs::PushBatch<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    INFLATED.with(|inflated| {
        MESSAGE.with(|message| {
            let mut inflated = inflated.borrow_mut();
            let mut message = message.borrow_mut();
            // After the Content-Encoding.
            let encoded: &[u8] = match encoding {
                ContentEncoding::Gzip | ContentEncoding::Deflate => {
                    inflate(encoding, body, max_decompressed_bytes, &mut inflated)?;
                    &inflated
                }
                ContentEncoding::Identity | ContentEncoding::Snappy => {
                    if body.len() > max_decompressed_bytes {
                        return Err(too_large(max_decompressed_bytes));
                    }
                    body
                }
            };
            let result = match format {
                // Protobuf is always snappy-compressed; Content-Encoding snappy names that same
                // compression, not a second one.
                Format::Protobuf => {
                    unsnappy(encoded, max_decompressed_bytes, &mut message)?;
                    let batch = model::decode_protobuf(&message)?;
                    handle(&batch)
                }
                Format::Json if encoding == ContentEncoding::Snappy => {
                    unsnappy(encoded, max_decompressed_bytes, &mut message)?;
                    let batch = model::decode_json(&message)?;
                    handle(&batch)
                }
                Format::Json => {
                    let batch = model::decode_json(encoded)?;
                    handle(&batch)
                }
            };
            for buffer in [&mut *inflated, &mut *message] {
                if buffer.capacity() > RETAINED_BUFFER_BYTES {
                    *buffer = Vec::new();
                }
            }
            result
        })
    })
}

/// The tenant of a request, from `X-Scope-OrgID` under the tenancy setting.
pub fn tenant_of(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let org_id = headers.get(ORG_ID_HEADER).map(|value| value.to_str().unwrap_or("\u{fffd}"));
    state.logs_ingest().tenant(org_id).map_err(|error| match error {
        TenantError::Missing => ApiError::new(ErrorKind::Unauthorized, error.to_string()),
        TenantError::Invalid(message) => ApiError::bad_data(message),
    })
}

/// The request body, or 413 / 400 if it could not be read whole.
pub fn body_or_error(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("request body is over the limit of {} bytes", state.limits().max_request_body_bytes),
            )
        } else {
            ApiError::bad_data(format!("cannot read request body: {rejection}"))
        }
    })
}

/// The answer to a push that decoded: 204, 400 with the refusals, or 429.
pub fn answer(outcome: &PushOutcome) -> Response {
    if let Some(message) = &outcome.rate_limited {
        return LokiError(ApiError::new(ErrorKind::RateLimited, message.clone())).into_response();
    }
    match outcome.refusal_message() {
        Some(message) => LokiError(ApiError::bad_data(message)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

pub async fn push(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match push_inner(state, headers, body).await {
        Ok(response) => response,
        Err(error) => LokiError(error).into_response(),
    }
}

async fn push_inner(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let body = body_or_error(&state, body)?;
    let format = format_of(&headers)?;
    let encoding = encoding_of(&headers)?;
    let storage = state.storage()?.clone();
    let max_decompressed = state.limits().max_decompressed_bytes;
    let ingest_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        with_decoded(&body, format, encoding, max_decompressed, |batch| {
            ingest_state
                .logs_ingest()
                .push(storage.logs(), &tenant, batch)
                .map_err(|error| ApiError::internal(format!("storing log entries: {error}")))
        })
    })
    .await
    .map_err(|error| ApiError::internal(format!("loki push task failed: {error}")))??;
    state.telemetry().record_logs_push(&outcome);
    if outcome.discarded_entries() > 0 {
        tracing::debug!(
            tenant = %outcome.tenant,
            received = outcome.received_entries,
            discarded = outcome.discarded_entries(),
            "loki push partly refused"
        );
    }
    Ok(answer(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn content_negotiation() {
        assert_eq!(format_of(&HeaderMap::new()).unwrap(), Format::Protobuf);
        assert_eq!(
            format_of(&headers(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")])).unwrap(),
            Format::Json
        );
        assert_eq!(format_of(&headers(&[(header::CONTENT_TYPE, "application/x-protobuf")])).unwrap(), Format::Protobuf);
        let error = format_of(&headers(&[(header::CONTENT_TYPE, "text/plain")])).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnsupportedMediaType);
        assert_eq!(encoding_of(&headers(&[(header::CONTENT_ENCODING, "GZIP")])).unwrap(), ContentEncoding::Gzip);
        let error = encoding_of(&headers(&[(header::CONTENT_ENCODING, "br")])).unwrap_err();
        assert_eq!(error.message(), "unsupported content encoding \"br\", expected gzip, deflate, snappy or none");
    }

    #[test]
    fn every_compression_is_capped() {
        use std::io::Write;
        let json = format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["1","{}"]]}}]}}"#, "x".repeat(10_000));
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(json.as_bytes()).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(json.as_bytes()).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw_deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw_deflate.write_all(json.as_bytes()).unwrap();
        let raw_deflate = raw_deflate.finish().unwrap();
        let block = snap::raw::Encoder::new().compress_vec(json.as_bytes()).unwrap();
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(json.as_bytes()).unwrap();
        let framed = framed.into_inner().unwrap();
        let cases = [
            (ContentEncoding::Gzip, &gzip),
            (ContentEncoding::Deflate, &zlib),
            (ContentEncoding::Deflate, &raw_deflate),
            (ContentEncoding::Snappy, &block),
            (ContentEncoding::Snappy, &framed),
        ];
        for (encoding, body) in cases {
            let lines =
                with_decoded(body, Format::Json, encoding, 1 << 20, |batch| Ok(batch.streams[0].entries[0].line.len()))
                    .unwrap();
            assert_eq!(lines, 10_000, "{encoding:?}");
            let error = with_decoded(body, Format::Json, encoding, 5_000, |_| Ok(())).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::PayloadTooLarge, "{encoding:?}: {}", error.message());
        }
        let error =
            with_decoded(json.as_bytes(), Format::Json, ContentEncoding::Identity, 5_000, |_| Ok(())).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PayloadTooLarge);
        let error = with_decoded(b"not gzip", Format::Json, ContentEncoding::Gzip, 5_000, |_| Ok(())).unwrap_err();
        assert!(error.message().starts_with("body is not valid gzip"), "{}", error.message());
        let error =
            with_decoded(b"\xff\xff\xff\xff\xff", Format::Protobuf, ContentEncoding::Identity, 5_000, |_| Ok(()))
                .unwrap_err();
        assert!(error.message().starts_with("body is not snappy-compressed protobuf"), "{}", error.message());
    }
}
