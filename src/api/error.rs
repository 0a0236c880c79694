//! The one API error type, and the single place it is mapped to each protocol's error form:
//! Prometheus error JSON, Loki and Tempo plain text, and gRPC status codes.
//!
//! Handlers return `Result<_, PrometheusError>` (or `LokiError`, `TempoError`) and build the
//! inner [`ApiError`] with the constructor that says what went wrong; the status code, the
//! Prometheus `errorType` and the gRPC code all follow from its [`ErrorKind`].

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What kind of failure an API error is. Each maps to one HTTP status, one Prometheus
/// `errorType` and one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed: bad parameter, unparsable query, undecodable body.
    BadData,
    /// The request is well formed but cannot be executed (Prometheus answers 422).
    Execution,
    /// The requested thing does not exist (e.g. an unknown trace ID).
    NotFound,
    /// The request names no tenant while multi-tenancy is on.
    Unauthorized,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The Content-Type or Content-Encoding is not one this endpoint reads.
    UnsupportedMediaType,
    /// A per-tenant rate limit was exceeded.
    RateLimited,
    /// A query ran past its deadline.
    Timeout,
    /// The client went away or the query was cancelled.
    Canceled,
    /// Tripod is starting up or shutting down.
    Unavailable,
    /// A failure on Tripod's side: storage I/O, a broken invariant.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadData => StatusCode::BAD_REQUEST,
            ErrorKind::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Timeout | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus's and nginx's code for a request the client abandoned.
            ErrorKind::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `errorType` Prometheus puts in its error JSON for this kind.
    pub fn prometheus_error_type(self) -> &'static str {
        match self {
            ErrorKind::BadData
            | ErrorKind::Unauthorized
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType => "bad_data",
            ErrorKind::Execution | ErrorKind::RateLimited => "execution",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::BadData | ErrorKind::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorKind::Execution => tonic::Code::FailedPrecondition,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unauthorized => tonic::Code::Unauthenticated,
            ErrorKind::PayloadTooLarge | ErrorKind::RateLimited => tonic::Code::ResourceExhausted,
            ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
            ErrorKind::Canceled => tonic::Code::Cancelled,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }
}

/// An error an API handler reports: a kind and a message for the client (lowercase, no
/// trailing period, naming what is wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: ErrorKind,
    message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }

    pub fn bad_data(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::BadData, message)
    }

    pub fn execution(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Execution, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unavailable, message)
    }

    /// A failure on Tripod's side. The details are logged here; the client gets them too, as
    /// Prometheus and Loki do.
    pub fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        tracing::error!(error = %message, "internal error answering a request");
        ApiError::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// An [`ApiError`] answered the Prometheus way:
/// `{"status":"error","errorType":"bad_data","error":"..."}`.
#[derive(Debug)]
pub struct PrometheusError(pub ApiError);

/// An [`ApiError`] answered the Loki way: the message as plain text.
#[derive(Debug)]
pub struct LokiError(pub ApiError);

/// An [`ApiError`] answered the Tempo way: the message as plain text.
#[derive(Debug)]
pub struct TempoError(pub ApiError);

/// An [`ApiError`] as plain text, for endpoints whose reference answers with `http.Error`
/// (Prometheus remote write, OTLP over HTTP errors are handled in their own module).
#[derive(Debug)]
pub struct TextError(pub ApiError);

impl From<ApiError> for PrometheusError {
    fn from(error: ApiError) -> Self {
        PrometheusError(error)
    }
}

impl From<ApiError> for LokiError {
    fn from(error: ApiError) -> Self {
        LokiError(error)
    }
}

impl From<ApiError> for TempoError {
    fn from(error: ApiError) -> Self {
        TempoError(error)
    }
}

impl IntoResponse for PrometheusError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.0.kind.prometheus_error_type(),
            "error": self.0.message,
        });
        (self.0.kind.status(), axum::Json(body)).into_response()
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        // Loki answers a query past its deadline with 504, where Prometheus uses 503.
        let timed_out = self.0.kind == ErrorKind::Timeout;
        let mut response = plain_text(self.0);
        if timed_out {
            *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        }
        response
    }
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        // Tempo, like Loki, answers a query past its deadline with 504.
        let timed_out = self.0.kind == ErrorKind::Timeout;
        let mut response = plain_text(self.0);
        if timed_out {
            *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        }
        response
    }
}

impl IntoResponse for TextError {
    fn into_response(self) -> Response {
        plain_text(self.0)
    }
}

fn plain_text(error: ApiError) -> Response {
    let mut response = (error.kind.status(), format!("{}\n", error.message)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        tonic::Status::new(error.kind.grpc_code(), error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> (StatusCode, String, String) {
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, content_type, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn prometheus_errors_are_the_prometheus_envelope() {
        let response = PrometheusError(ApiError::bad_data("invalid parameter \"query\": empty")).into_response();
        let (status, content_type, body) = body_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, "application/json");
        assert_eq!(body, r#"{"error":"invalid parameter \"query\": empty","errorType":"bad_data","status":"error"}"#);

        let (status, _, body) =
            body_of(PrometheusError(ApiError::execution("many-to-many matching")).into_response()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains(r#""errorType":"execution""#));
    }

    #[tokio::test]
    async fn loki_and_tempo_errors_are_plain_text() {
        let (status, content_type, body) =
            body_of(LokiError(ApiError::bad_data("parse error at line 1, col 5: syntax error")).into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(body, "parse error at line 1, col 5: syntax error\n");
        let (status, _, _) = body_of(LokiError(ApiError::new(ErrorKind::Timeout, "too slow")).into_response()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        let (status, _, _) = body_of(TempoError(ApiError::new(ErrorKind::Timeout, "too slow")).into_response()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        let (status, _, body) = body_of(TempoError(ApiError::not_found("trace not found")).into_response()).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, "trace not found\n"));
    }

    #[test]
    fn every_kind_maps_consistently() {
        let table = [
            (ErrorKind::BadData, 400, "bad_data", tonic::Code::InvalidArgument),
            (ErrorKind::Execution, 422, "execution", tonic::Code::FailedPrecondition),
            (ErrorKind::NotFound, 404, "not_found", tonic::Code::NotFound),
            (ErrorKind::Unauthorized, 401, "bad_data", tonic::Code::Unauthenticated),
            (ErrorKind::PayloadTooLarge, 413, "bad_data", tonic::Code::ResourceExhausted),
            (ErrorKind::UnsupportedMediaType, 415, "bad_data", tonic::Code::InvalidArgument),
            (ErrorKind::RateLimited, 429, "execution", tonic::Code::ResourceExhausted),
            (ErrorKind::Timeout, 503, "timeout", tonic::Code::DeadlineExceeded),
            (ErrorKind::Canceled, 499, "canceled", tonic::Code::Cancelled),
            (ErrorKind::Unavailable, 503, "unavailable", tonic::Code::Unavailable),
            (ErrorKind::Internal, 500, "internal", tonic::Code::Internal),
        ];
        for (kind, status, error_type, code) in table {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.prometheus_error_type(), error_type, "{kind:?}");
            assert_eq!(kind.grpc_code(), code, "{kind:?}");
            let grpc = tonic::Status::from(ApiError::new(kind, "why"));
            assert_eq!((grpc.code(), grpc.message()), (code, "why"));
        }
    }
}
