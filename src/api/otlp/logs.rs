//! OTLP logs: gRPC `LogsService/Export` and HTTP `POST /v1/logs` (also served as
//! `/otlp/v1/logs`, the path Loki serves it on).
//!
//! HTTP bodies are protobuf or OTLP JSON (hex trace and span IDs), plain or gzip; the answer is
//! an `ExportLogsServiceResponse` in the request's encoding, with `partial_success` counting
//! the records refused (and naming why) while the others are stored. A push over the tenant's
//! ingestion rate is refused whole: 429 over HTTP, `RESOURCE_EXHAUSTED` over gRPC. Errors
//! follow OTLP/HTTP as the metrics endpoint does. With multi-tenancy on, `X-Scope-OrgID`
//! (header or gRPC metadata) names the tenant.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use super::metrics::{Encoding, OtlpHttpError, decode_body, encoding_of};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorKind};
use crate::api::loki::push::{ORG_ID_HEADER, body_or_error};
use crate::ingest::logs::{PushOutcome, TenantError};
use crate::ingest::otlp_logs;

pub fn decode_request(bytes: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, ApiError> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(bytes)
            .map_err(|error| ApiError::bad_data(format!("body is not an OTLP logs protobuf message: {error}"))),
        Encoding::Json => serde_json::from_slice(bytes)
            .map_err(|error| ApiError::bad_data(format!("body is not OTLP logs JSON: {error}"))),
    }
}

fn tenant_of(state: &AppState, org_id: Option<&str>) -> Result<String, ApiError> {
    state.logs_ingest().tenant(org_id).map_err(|error| match error {
        TenantError::Missing => ApiError::new(ErrorKind::Unauthorized, error.to_string()),
        TenantError::Invalid(message) => ApiError::bad_data(message),
    })
}

/// Translates, checks and stores a request off the async runtime. A rate-limited push is an
/// error (nothing was stored); refused records are in the outcome.
async fn export(state: &AppState, tenant: String, request: ExportLogsServiceRequest) -> Result<PushOutcome, ApiError> {
    let storage = state.storage()?.clone();
    let ingest_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let ingest = ingest_state.logs_ingest();
        let batch = otlp_logs::translate(&request, ingest.clock().now_ns());
        ingest.push(storage.logs(), &tenant, &batch)
    })
    .await
    .map_err(|error| ApiError::internal(format!("otlp logs export task failed: {error}")))?
    .map_err(|error| ApiError::internal(format!("storing otlp logs: {error}")))?;
    state.telemetry().record_logs_push(&outcome);
    if let Some(message) = &outcome.rate_limited {
        return Err(ApiError::new(ErrorKind::RateLimited, message.clone()));
    }
    Ok(outcome)
}

fn response_of(outcome: &PushOutcome) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: outcome.refusal_message().map(|message| ExportLogsPartialSuccess {
            rejected_log_records: outcome.discarded_entries() as i64,
            error_message: message,
        }),
    }
}

/// The response in OTLP JSON: int64 as a decimal string, as proto3 JSON has it.
fn response_json(response: &ExportLogsServiceResponse) -> Vec<u8> {
    let value = match &response.partial_success {
        Some(partial) => serde_json::json!({
            "partialSuccess": {
                "rejectedLogRecords": partial.rejected_log_records.to_string(),
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
        let tenant = tenant_of(&state, org_id)?;
        let encoding = encoding_of(&headers)?;
        let body = body_or_error(&state, body)?;
        let bytes = decode_body(&headers, &body, state.limits().max_decompressed_bytes)?;
        let request = decode_request(&bytes, encoding)?;
        drop(bytes);
        let outcome = export(&state, tenant, request).await?;
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

/// The gRPC service.
pub struct LogsGrpc {
    state: AppState,
}

#[tonic::async_trait]
impl LogsService for LogsGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let org_id = request.metadata().get(ORG_ID_HEADER).map(|value| value.to_str().unwrap_or("\u{fffd}"));
        let tenant = tenant_of(&self.state, org_id)?;
        let outcome = export(&self.state, tenant, request.into_inner()).await?;
        Ok(tonic::Response::new(response_of(&outcome)))
    }
}

pub fn grpc_service(state: AppState) -> LogsServiceServer<LogsGrpc> {
    let max = state.limits().max_decompressed_bytes;
    LogsServiceServer::new(LogsGrpc { state })
        .max_decoding_message_size(max)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
}
