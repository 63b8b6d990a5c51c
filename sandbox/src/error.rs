//! The one error type of the sandbox's JSON surfaces and the one place it
//! becomes a response: `{"error": "<code>", "message": "...", "details"?}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use pientegra_shared::amount::RangeError;
use pientegra_shared::wire::{ErrorBody, codes};
use serde_json::json;

use crate::store::StoreError;

/// Everything an External API or control call can answer besides success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A malformed body or query, or a missing or invalid field (named when there is one).
    #[error("{message}")]
    Validation { field: Option<&'static str>, message: String },
    #[error("{field}: {source}")]
    AmountRange { field: &'static str, source: RangeError },
    #[error("{0}")]
    InvalidIban(String),
    #[error("currency {0:?} is not supported; the only active currency is TRY")]
    UnsupportedCurrency(String),
    #[error("the Idempotency-Key header is required on this endpoint")]
    MissingIdempotencyKey,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReuse,
    #[error("a request with this Idempotency-Key is still running; retry later with the same key")]
    DuplicateIdempotencyKey,
    #[error("{0}")]
    InvalidState(String),
    #[error("more than {limit} requests in a minute; retry in {retry_after} s")]
    RateLimited { limit: u32, retry_after: u64 },
    #[error("every receiving account is reserved; retry later")]
    NoAccountAvailable,
    /// A 5xx made on purpose by fault injection.
    #[error("injected fault")]
    Injected(StatusCode),
}

impl ApiError {
    /// A validation failure of one named field.
    pub fn field(field: &'static str, message: impl std::fmt::Display) -> ApiError {
        ApiError::Validation { field: Some(field), message: format!("{field}: {message}") }
    }

    /// A validation failure of the request as a whole.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::Validation { field: None, message: message.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. }
            | ApiError::AmountRange { .. }
            | ApiError::InvalidIban(_)
            | ApiError::UnsupportedCurrency(_)
            | ApiError::MissingIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::IdempotencyKeyReuse | ApiError::DuplicateIdempotencyKey | ApiError::InvalidState(_) => {
                StatusCode::CONFLICT
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NoAccountAvailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Injected(status) => *status,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => codes::VALIDATION_FAILED,
            ApiError::AmountRange { source, .. } => source.code(),
            ApiError::InvalidIban(_) => codes::INVALID_IBAN,
            ApiError::UnsupportedCurrency(_) => codes::UNSUPPORTED_CURRENCY,
            ApiError::MissingIdempotencyKey => codes::MISSING_IDEMPOTENCY_KEY,
            ApiError::Unauthorized(_) => codes::UNAUTHORIZED,
            ApiError::NotFound(_) => codes::NOT_FOUND,
            ApiError::IdempotencyKeyReuse => codes::IDEMPOTENCY_KEY_REUSE,
            ApiError::DuplicateIdempotencyKey => codes::DUPLICATE_IDEMPOTENCY_KEY,
            ApiError::InvalidState(_) => codes::INVALID_STATE,
            ApiError::RateLimited { .. } => codes::RATE_LIMITED,
            ApiError::NoAccountAvailable => codes::NO_ACCOUNT_AVAILABLE,
            ApiError::Injected(StatusCode::SERVICE_UNAVAILABLE) => "service_unavailable",
            ApiError::Injected(StatusCode::BAD_GATEWAY) => "bad_gateway",
            ApiError::Injected(_) => "internal_error",
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::Validation { field: Some(field), .. } | ApiError::AmountRange { field, .. } => {
                Some(json!({ "field": field }))
            }
            ApiError::InvalidIban(_) => Some(json!({ "field": "targetIban" })),
            ApiError::UnsupportedCurrency(_) => Some(json!({ "field": "currency" })),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(_) => ApiError::NotFound(error.to_string()),
            StoreError::InvalidState { .. } | StoreError::ReplayOfPending => ApiError::InvalidState(error.to_string()),
            StoreError::NoAccountAvailable => ApiError::NoAccountAvailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A 5xx says nothing internal; fault injection has nothing internal to say anyway.
        let message = match self {
            ApiError::Injected(_) => "the service is temporarily unavailable (injected fault); retry".to_owned(),
            _ => self.to_string(),
        };
        let body = ErrorBody { error: self.code().to_owned(), message, details: self.details() };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}
