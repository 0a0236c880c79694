//! OTLP metrics: gRPC `MetricsService/Export` and HTTP `POST /v1/metrics` (also served as
//! `/otlp/v1/metrics` and Prometheus's `/api/v1/otlp/v1/metrics`).
//!
//! HTTP bodies are protobuf (`application/x-protobuf`) or OTLP JSON (`application/json`),
//! plain or gzip-compressed; the answer is an `ExportMetricsServiceResponse` in the request's
//! encoding, with `partial_success` when some points were refused. Errors follow OTLP/HTTP: a
//! `google.rpc.Status` body in the request's encoding, 400 for bad input, 415 for an unknown
//! content type or encoding, 413 over the caps, 503 while storage opens.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind};
use crate::ingest::otlp_metrics::OtlpOutcome;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error answered the OTLP/HTTP way.
pub struct OtlpHttpError {
    error: ApiError,
    encoding: Encoding,
}

impl OtlpHttpError {
    pub fn new(error: ApiError, encoding: Encoding) -> OtlpHttpError {
        OtlpHttpError { error, encoding }
    }
}

impl IntoResponse for OtlpHttpError {
    fn into_response(self) -> Response {
        let status =
            RpcStatus { code: self.error.kind().grpc_code() as i32, message: self.error.message().to_string() };
        let body = match self.encoding {
            Encoding::Protobuf => status.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
        };
        let mut response = (self.error.kind().status(), body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.encoding.content_type()));
        response
    }
}

/// Reads the content type; anything but protobuf or JSON is refused.
pub fn encoding_of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("unsupported content type {content_type:?}, expected application/x-protobuf or application/json"),
        )),
    }
}

/// Undoes `Content-Encoding: gzip` (or nothing), never producing more than `max_bytes`.
pub fn decode_body(headers: &HeaderMap, body: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(max_bytes as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|error| ApiError::bad_data(format!("body is not valid gzip: {error}")))?;
            if out.len() > max_bytes {
                return Err(ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    format!("decompressed body is over the limit of {max_bytes} bytes"),
                ));
            }
            Ok(out)
        }
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("unsupported content encoding {other:?}, expected gzip or none"),
        )),
    }
}

pub fn decode_request(bytes: &[u8], encoding: Encoding) -> Result<ExportMetricsServiceRequest, ApiError> {
    match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(bytes)
            .map_err(|error| ApiError::bad_data(format!("body is not an OTLP metrics protobuf message: {error}"))),
        Encoding::Json => serde_json::from_slice(bytes)
            .map_err(|error| ApiError::bad_data(format!("body is not OTLP metrics JSON: {error}"))),
    }
}

fn response_of(outcome: &OtlpOutcome) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (outcome.rejected_points > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: outcome.rejected_points as i64,
            error_message: outcome.message.clone(),
        }),
    }
}

/// The response in OTLP JSON: int64 as a decimal string, as proto3 JSON has it.
fn response_json(response: &ExportMetricsServiceResponse) -> Vec<u8> {
    let value = match &response.partial_success {
        Some(partial) => serde_json::json!({
            "partialSuccess": {
                "rejectedDataPoints": partial.rejected_data_points.to_string(),
                "errorMessage": partial.error_message,
            }
        }),
        None => serde_json::json!({}),
    };
    value.to_string().into_bytes()
}

/// Translates and stores a request off the async runtime.
async fn export(state: &AppState, request: ExportMetricsServiceRequest) -> Result<OtlpOutcome, ApiError> {
    let storage = state.storage()?.clone();
    let state = state.clone();
    tokio::task::spawn_blocking(move || state.otlp_metrics().write(storage.metrics(), &request))
        .await
        .map_err(|error| ApiError::internal(format!("otlp export task failed: {error}")))?
        .map_err(|error| ApiError::internal(format!("storing otlp metrics: {error}")))
}

pub async fn http_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let encoding = encoding_of(&headers).unwrap_or(Encoding::Protobuf);
    let result: Result<Response, ApiError> = async {
        let encoding = encoding_of(&headers)?;
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
        let bytes = decode_body(&headers, &body, state.limits().max_decompressed_bytes)?;
        let request = decode_request(&bytes, encoding)?;
        let outcome = export(&state, request).await?;
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
    result.unwrap_or_else(|error| OtlpHttpError { error, encoding }.into_response())
}

/// The gRPC service.
pub struct MetricsGrpc {
    state: AppState,
}

#[tonic::async_trait]
impl MetricsService for MetricsGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let outcome = export(&self.state, request.into_inner()).await?;
        Ok(tonic::Response::new(response_of(&outcome)))
    }
}

pub fn grpc_service(state: AppState) -> MetricsServiceServer<MetricsGrpc> {
    let max = state.limits().max_decompressed_bytes;
    MetricsServiceServer::new(MetricsGrpc { state })
        .max_decoding_message_size(max)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
}
