//! OTLP traces: gRPC `TraceService/Export` and HTTP `POST /v1/traces` (also served as
//! `/otlp/v1/traces` on every HTTP listener).
//!
//! HTTP bodies are protobuf or OTLP JSON (hex trace and span IDs), plain or gzip; the answer is
//! an `ExportTraceServiceResponse` in the request's encoding, with `partial_success` counting the
//! spans refused (and naming why, with an example each) while the others are stored. Errors
//! follow OTLP/HTTP as the metrics endpoint does: 400 for a body that does not decode, 413 over
//! the caps, 415 for an unknown content type or encoding; over gRPC, `INVALID_ARGUMENT` and
//! the rest through the one error mapping. With multi-tenancy on, `X-Scope-OrgID` (header or
//! gRPC metadata) names the tenant; off, every span goes to Tempo's `single-tenant`.
//!
//! An acknowledged export is in the WAL, and found by trace ID at once.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::metrics::{Encoding, OtlpHttpError, decode_body, encoding_of};
use super::traces_wire::{decode_export, encode_export};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind};
use crate::api::loki::push::{ORG_ID_HEADER, body_or_error};
use crate::ingest::logs::TenantError;
use crate::ingest::otlp_traces::{self, ExportOutcome, Translation, resolve_traces_tenant};
use tripod_storage::traces::SpansRecord;

/// A request in the store's model, and its size as protobuf (what Tempo counts as received).
#[derive(Debug)]
pub struct DecodedExport {
    pub translation: Translation,
    pub protobuf_bytes: usize,
}

/// Decodes a body: protobuf straight into the store's model, JSON through OTLP's types.
pub fn decode_request(bytes: &[u8], encoding: Encoding) -> Result<DecodedExport, ApiError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(bytes),
        Encoding::Json => {
            let request: ExportTraceServiceRequest = serde_json::from_slice(bytes)
                .map_err(|error| ApiError::bad_data(format!("body is not OTLP traces JSON: {error}")))?;
            let protobuf_bytes = request.encoded_len();
            Ok(DecodedExport { translation: otlp_traces::translate(request), protobuf_bytes })
        }
    }
}

fn decode_protobuf(bytes: &[u8]) -> Result<DecodedExport, ApiError> {
    let translation = decode_export(bytes)
        .map_err(|error| ApiError::bad_data(format!("body is not an OTLP traces protobuf message: {error}")))?;
    Ok(DecodedExport { translation, protobuf_bytes: bytes.len() })
}

/// A request ready for the store.
#[derive(Debug)]
pub enum ForStore {
    /// Encoded straight into a record (a protobuf request with nothing to refuse).
    Record { record: SpansRecord, protobuf_bytes: usize },
    /// Judged span by span in the store's model.
    Translated(DecodedExport),
}

/// Decodes a body for `tenant`: a protobuf request straight into a record when nothing in it
/// needs judging (see [`encode_export`]), anything else through [`decode_request`].
pub fn decode_for_store(bytes: &[u8], encoding: Encoding, tenant: &str) -> Result<ForStore, ApiError> {
    if encoding == Encoding::Protobuf
        && let Some(record) = encode_export(bytes, tenant)
    {
        return Ok(ForStore::Record { record, protobuf_bytes: bytes.len() });
    }
    decode_request(bytes, encoding).map(ForStore::Translated)
}

/// The tenant a write goes to, from `X-Scope-OrgID` when multi-tenancy is on.
pub fn write_tenant(state: &AppState, org_id: Option<&str>) -> Result<String, ApiError> {
    resolve_traces_tenant(org_id, state.logs_ingest().settings().auth_enabled).map_err(|error| match error {
        TenantError::Missing => ApiError::new(ErrorKind::Unauthorized, error.to_string()),
        TenantError::Invalid(message) => ApiError::bad_data(message),
    })
}

/// Decodes (`decode`: decompress and decode for the tenant) and stores a request off the
/// async runtime, and counts it.
async fn export(
    state: &AppState,
    tenant: String,
    decode: impl FnOnce(&str) -> Result<ForStore, ApiError> + Send + 'static,
) -> Result<ExportOutcome, ApiError> {
    let storage = state.storage()?.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let stored = match decode(&tenant)? {
            ForStore::Record { record, protobuf_bytes } => {
                otlp_traces::export_record(storage.traces(), record, protobuf_bytes)
            }
            ForStore::Translated(decoded) => {
                otlp_traces::export(storage.traces(), &tenant, decoded.translation, decoded.protobuf_bytes)
            }
        };
        stored.map_err(|error| ApiError::internal(format!("storing otlp traces: {error}")))
    })
    .await
    .map_err(|error| ApiError::internal(format!("otlp traces export task failed: {error}")))??;
    state.telemetry().record_traces_export(&outcome);
    if outcome.rejected_spans() > 0 {
        tracing::debug!(
            tenant = %outcome.tenant,
            rejected = outcome.rejected_spans(),
            message = outcome.message().unwrap_or_default(),
            "otlp trace spans refused"
        );
    }
    Ok(outcome)
}

fn response_of(outcome: &ExportOutcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: outcome.message().map(|message| ExportTracePartialSuccess {
            rejected_spans: outcome.rejected_spans() as i64,
            error_message: message,
        }),
    }
}

/// The response in OTLP JSON: int64 as a decimal string, as proto3 JSON has it.
fn response_json(response: &ExportTraceServiceResponse) -> Vec<u8> {
    let value = match &response.partial_success {
        Some(partial) => serde_json::json!({
            "partialSuccess": {
                "rejectedSpans": partial.rejected_spans.to_string(),
                "errorMessage": partial.error_message,
            }
        }),
        None => serde_json::json!({}),
    };
    value.to_string().into_bytes()
}

pub async fn http_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let encoding = encoding_of(&headers).unwrap_or(Encoding::Protobuf);
    let result: Result<Response, ApiError> = async {
        let org_id = headers.get(ORG_ID_HEADER).map(|value| value.to_str().unwrap_or("\u{fffd}"));
        let tenant = write_tenant(&state, org_id)?;
        let encoding = encoding_of(&headers)?;
        let body = body_or_error(&state, body)?;
        let max_decompressed_bytes = state.limits().max_decompressed_bytes;
        let outcome = export(&state, tenant, move |tenant| {
            if is_identity(&headers) {
                decode_for_store(&body, encoding, tenant)
            } else {
                decode_for_store(&decode_body(&headers, &body, max_decompressed_bytes)?, encoding, tenant)
            }
        })
        .await?;
        let response = response_of(&outcome);
        let body = match encoding {
            Encoding::Protobuf => response.encode_to_vec(),
            Encoding::Json => response_json(&response),
        };
        let mut answer = (StatusCode::OK, body).into_response();
        answer.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
        Ok(answer)
    }
    .await;
    result.unwrap_or_else(|error| OtlpHttpError::new(error, encoding).into_response())
}

/// Whether the body is sent as is (no `Content-Encoding`, or `identity`), so it is read in
/// place rather than copied.
fn is_identity(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).is_none_or(|value| {
        let value = value.trim();
        value.is_empty() || value.eq_ignore_ascii_case("identity")
    })
}

/// The gRPC codec of `Export`: the request's bytes as they came (decoded off the async runtime,
/// so that one that does not decode is answered `INVALID_ARGUMENT` naming the problem, where the
/// generated codec would answer `INTERNAL`), the response as protobuf.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct ExportEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct ExportDecoder;

impl tonic::codec::Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ExportEncoder;
    type Decoder = ExportDecoder;

    fn encoder(&mut self) -> ExportEncoder {
        ExportEncoder
    }

    fn decoder(&mut self) -> ExportDecoder {
        ExportDecoder
    }
}

impl tonic::codec::Encoder for ExportEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, buffer: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(buffer).map_err(|error| tonic::Status::internal(format!("encoding the export response: {error}")))
    }
}

impl tonic::codec::Decoder for ExportDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    /// The message's bytes, decoded later off the async runtime. The message is one
    /// contiguous buffer in practice, so this does not copy.
    fn decode(&mut self, buffer: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        Ok(Some(bytes::Buf::copy_to_bytes(buffer, bytes::Buf::remaining(buffer))))
    }
}

/// The `Export` method: tenancy from the metadata, then the write path.
struct ExportMethod {
    state: AppState,
}

impl tonic::server::UnaryService<Bytes> for ExportMethod {
    type Response = ExportTraceServiceResponse;
    type Future = tonic::codegen::BoxFuture<tonic::Response<ExportTraceServiceResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let org_id = request.metadata().get(ORG_ID_HEADER).map(|value| value.to_str().unwrap_or("\u{fffd}"));
            let tenant = write_tenant(&state, org_id)?;
            let body = request.into_inner();
            let outcome =
                export(&state, tenant, move |tenant| decode_for_store(&body, Encoding::Protobuf, tenant)).await?;
            Ok(tonic::Response::new(response_of(&outcome)))
        })
    }
}

/// The gRPC `TraceService`: `Export`, gzip accepted and sent, messages capped at the
/// decompression limit; other methods answer `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct TracesGrpc {
    state: AppState,
}

/// The path of OTLP's trace export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl tonic::server::NamedService for TracesGrpc {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for TracesGrpc {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let state = self.state.clone();
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                Ok(tonic::Status::unimplemented(format!("unknown method {}", request.uri().path())).into_http())
            });
        }
        Box::pin(async move {
            let max = state.limits().max_decompressed_bytes;
            let mut grpc = tonic::server::Grpc::new(ExportCodec)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            Ok(grpc.unary(ExportMethod { state }, request).await)
        })
    }
}

pub fn grpc_service(state: AppState) -> TracesGrpc {
    TracesGrpc { state }
}
