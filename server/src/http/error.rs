//! The one error type of the HTTP surface and its JSON envelope
//! `{"error": "<code>", "message": "..."}`. 4xx say what to fix; 5xx say nothing internal.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pientegra_shared::api::{ApiError, codes};

use crate::pientegra::PientegraError;

/// An error answer.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl AppError {
    /// An answer with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AppError {
        AppError { status, code, message: message.into(), retry_after: None }
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `validation_failed`.
    pub fn validation(message: impl Into<String>) -> AppError {
        AppError::bad_request(codes::VALIDATION_FAILED, message)
    }

    /// 404 `not_found` (also for records of another user: their existence is not ours to reveal).
    pub fn not_found(what: &str) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("no such {what}"))
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    /// Adds `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> AppError {
        self.retry_after = Some(seconds);
        self
    }

    /// Whether the outcome is final, so an idempotency record may store it.
    pub fn is_definite(&self) -> bool {
        self.status.is_client_error() && self.status != StatusCode::TOO_MANY_REQUESTS
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&ApiError { error: self.code.to_owned(), message: self.message.clone() })
            .expect("the envelope serializes")
    }

    /// A Pientegra failure, in the kit's words.
    pub fn from_provider(err: &PientegraError) -> AppError {
        let code = err.kit_code();
        match err {
            PientegraError::Refused { status: upstream, message, .. } => {
                let status = match code {
                    codes::AMOUNT_BELOW_MIN
                    | codes::AMOUNT_ABOVE_MAX
                    | codes::INVALID_IBAN
                    | codes::UNSUPPORTED_CURRENCY
                    | codes::VALIDATION_FAILED => StatusCode::BAD_REQUEST,
                    codes::PROVIDER_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                tracing::warn!(upstream_status = *upstream, code, "Pientegra refused the request");
                AppError::new(status, code, format!("Pientegra refused the request: {message}"))
            }
            PientegraError::NotFound => {
                AppError::new(StatusCode::BAD_GATEWAY, code, "Pientegra does not know this record")
            }
            PientegraError::NotSent { retry_after, .. } => {
                tracing::warn!(error = %err, "Pientegra call held back");
                let seconds = retry_after.as_secs().max(1);
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::PROVIDER_BUSY,
                    format!("the payment provider is busy; retry in {seconds} s with the same Idempotency-Key"),
                )
                .retry_after(seconds)
            }
            PientegraError::Unavailable { .. } | PientegraError::Protocol { .. } => {
                tracing::warn!(error = %err, "Pientegra unavailable");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::PROVIDER_UNAVAILABLE,
                    "the payment provider did not answer; retry with the same Idempotency-Key",
                )
                .retry_after(2)
            }
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> AppError {
        // Logged once, here, with the cause chain; the client learns nothing internal.
        tracing::error!(error = format!("{err:#}"), "internal error");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, "internal error")
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(ApiError { error: self.code.to_owned(), message: self.message })).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
