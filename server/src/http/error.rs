//! The one error type of the HTTP surface and its JSON envelope
//! `{"error": "<code>", "message": "..."}`. 4xx say what to fix; 5xx say nothing internal.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pientegra_shared::api::{ApiError, codes};

use crate::pientegra::PientegraError;
use crate::service::{DepositError, WithdrawalError};

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
            PientegraError::Refused { status: upstream, .. } => {
                tracing::warn!(upstream_status = *upstream, code, "Pientegra refused the request");
                match code {
                    // No receiving account was free and nothing was created:
                    // the same request may go through in a moment.
                    codes::PROVIDER_BUSY => AppError::provider_busy(NO_ACCOUNT_RETRY_SECONDS),
                    // The partner's API key, or a proxy's page in front of
                    // Pientegra: nothing a user can fix, and nothing of it
                    // reaches the answer.
                    codes::PROVIDER_UNAVAILABLE => AppError::provider_unavailable(),
                    codes::AMOUNT_BELOW_MIN
                    | codes::AMOUNT_ABOVE_MAX
                    | codes::INVALID_IBAN
                    | codes::UNSUPPORTED_CURRENCY
                    | codes::VALIDATION_FAILED => AppError::bad_request(code, err.refusal().unwrap_or_default()),
                    _ => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, code, err.refusal().unwrap_or_default()),
                }
            }
            PientegraError::NotFound => AppError::new(StatusCode::BAD_GATEWAY, code, err.refusal().unwrap_or_default()),
            PientegraError::NotSent { retry_after, .. } => {
                tracing::warn!(error = %err, "Pientegra call held back");
                AppError::provider_busy(retry_after.as_secs().max(1))
            }
            PientegraError::Unavailable { .. } | PientegraError::Protocol { .. } => {
                tracing::warn!(error = %err, "Pientegra unavailable");
                AppError::provider_unavailable()
            }
        }
    }

    /// 503 `provider_busy`: retry the same request in `seconds`.
    fn provider_busy(seconds: u64) -> AppError {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::PROVIDER_BUSY,
            format!("the payment provider is busy; retry in {seconds} s with the same Idempotency-Key"),
        )
        .retry_after(seconds)
    }

    /// 503 `provider_unavailable`: retry the same request shortly.
    fn provider_unavailable() -> AppError {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::PROVIDER_UNAVAILABLE,
            "the payment provider did not answer; retry with the same Idempotency-Key",
        )
        .retry_after(2)
    }
}

/// When to retry after Pientegra had no receiving account free (its retries,
/// a few seconds long, already spent): accounts free up as deposits end.
const NO_ACCOUNT_RETRY_SECONDS: u64 = 5;

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> AppError {
        // Logged once, here, with the cause chain; the client learns nothing internal.
        tracing::error!(error = format!("{err:#}"), "internal error");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, "internal error")
    }
}

impl From<DepositError> for AppError {
    fn from(err: DepositError) -> AppError {
        match err {
            DepositError::Provider(err) => AppError::from_provider(&err),
            DepositError::UrlNotAllowed => {
                AppError::new(StatusCode::BAD_GATEWAY, codes::DEPOSIT_URL_NOT_ALLOWED, err.to_string())
            }
            DepositError::Internal(err) => err.into(),
        }
    }
}

impl From<WithdrawalError> for AppError {
    fn from(err: WithdrawalError) -> AppError {
        match err {
            WithdrawalError::InsufficientFunds { .. } => {
                AppError::new(StatusCode::CONFLICT, codes::INSUFFICIENT_FUNDS, err.to_string())
            }
            WithdrawalError::Refused { reason } => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, codes::PROVIDER_REJECTED, reason)
            }
            WithdrawalError::Provider(err) => AppError::from_provider(&err),
            WithdrawalError::Internal(err) => err.into(),
        }
    }
}

impl From<BytesRejection> for AppError {
    fn from(rejection: BytesRejection) -> AppError {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                AppError::new(StatusCode::PAYLOAD_TOO_LARGE, codes::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE)
            }
            _ => AppError::validation("the request body could not be read"),
        }
    }
}

/// What a body over the route's limit is answered with.
pub(super) const BODY_TOO_LARGE: &str = "the request body is larger than this route takes";

/// A request's body, read whole within the route's limit; refusals in the
/// kit's envelope (axum's own are plain text).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<RawBody, AppError> {
        Ok(RawBody(Bytes::from_request(request, state).await?))
    }
}

/// The answer to a method a route does not take.
pub async fn method_not_allowed() -> AppError {
    AppError::new(StatusCode::METHOD_NOT_ALLOWED, codes::METHOD_NOT_ALLOWED, "this route does not take that method")
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

/// A route's error answers for its OpenAPI operation: each status with the
/// stable codes the route answers it with, an example of each.
#[derive(Default)]
pub(crate) struct ErrorAnswers {
    statuses: std::collections::BTreeMap<u16, Vec<(&'static str, String)>>,
}

/// The codes that come with a `Retry-After` header.
const RETRY_CODES: [&str; 4] =
    [codes::IDEMPOTENCY_KEY_IN_FLIGHT, codes::RATE_LIMITED, codes::PROVIDER_BUSY, codes::PROVIDER_UNAVAILABLE];

impl ErrorAnswers {
    /// The answers of a route behind the widget token: its refusals (401) and `internal_error` (500).
    pub(crate) fn widget() -> ErrorAnswers {
        ErrorAnswers::default().on(401, super::auth::TOKEN_REFUSALS).on(500, &[codes::INTERNAL])
    }

    /// `status` with `codes`, each with the example message [`example_message`] gives it.
    pub(crate) fn on(self, status: u16, codes: &[&'static str]) -> ErrorAnswers {
        self.described(status, codes.iter().map(|&code| (code, example_message(code).to_owned())))
    }

    /// `status` with codes and an example message of each.
    pub(crate) fn described(
        mut self,
        status: u16,
        codes: impl IntoIterator<Item = (&'static str, String)>,
    ) -> ErrorAnswers {
        self.statuses.entry(status).or_default().extend(codes);
        self
    }

    /// The OpenAPI responses: per status, the envelope with `error` limited to its codes.
    pub(crate) fn build(
        self,
    ) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::example::ExampleBuilder;
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let mut responses = std::collections::BTreeMap::new();
        for (status, answers) in self.statuses {
            let names: Vec<&str> = answers.iter().map(|(code, _)| *code).collect();
            let schema = AllOfBuilder::new().item(Ref::from_schema_name("ApiError")).item(
                ObjectBuilder::new()
                    .property("error", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names.clone()))),
            );
            let examples = answers.iter().map(|(code, message)| {
                let value = serde_json::json!({ "error": code, "message": message });
                (code.to_string(), ExampleBuilder::new().value(Some(value)).build())
            });
            let content = ContentBuilder::new().schema(Some(schema)).examples_from_iter(examples).build();
            let list = names.iter().map(|code| format!("`{code}`")).collect::<Vec<_>>().join(", ");
            let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
            let mut response =
                ResponseBuilder::new().description(format!("{reason}: {list}")).content("application/json", content);
            if names.iter().any(|code| RETRY_CODES.contains(code)) {
                let seconds = HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                    .description(Some(format!(
                        "Seconds to wait before retrying; sent with {}",
                        RETRY_CODES.map(|code| format!("`{code}`")).join(", ")
                    )));
                response = response.header("Retry-After", seconds.build());
            }
            responses.insert(status.to_string(), response.build().into());
        }
        responses
    }
}

/// What a code's message typically says, for the document's examples.
fn example_message(code: &str) -> &'static str {
    match code {
        codes::VALIDATION_FAILED => "invalid body: missing field `amount`",
        codes::AMOUNT_BELOW_MIN => "amount is below the minimum (1.00 to 1,000,000.00 TRY)",
        codes::AMOUNT_ABOVE_MAX => "amount is above the maximum (1.00 to 1,000,000.00 TRY)",
        codes::INVALID_IBAN => "the IBAN's check digits do not match",
        codes::UNSUPPORTED_CURRENCY => "EUR is not supported; use TRY",
        codes::INSUFFICIENT_FUNDS => "insufficient funds: ₺12.50 available",
        codes::MISSING_IDEMPOTENCY_KEY => "send an Idempotency-Key header (a UUID)",
        codes::PAYLOAD_TOO_LARGE => BODY_TOO_LARGE,
        codes::IDEMPOTENCY_KEY_REUSED => "this Idempotency-Key was used with another request body",
        codes::IDEMPOTENCY_KEY_IN_FLIGHT => "a request with this Idempotency-Key is still running; retry shortly",
        codes::UNAUTHORIZED => "send the widget token as Authorization: Bearer <token>",
        codes::TOKEN_EXPIRED => "the widget token has expired",
        codes::TOKEN_WRONG_ALGORITHM => "the token's alg must be HS256",
        codes::TOKEN_WRONG_AUDIENCE => "the token's aud must be \"pientegra-kit/widget\"",
        codes::TOKEN_MISSING_CLAIM => "the token lacks a required claim (sub, iat and exp are required)",
        codes::TOKEN_LIFETIME_REFUSED => {
            "the widget token's exp must be after its iat, by at most 86400s (WIDGET_TOKEN_MAX_LIFETIME)"
        }
        codes::TOKEN_NOT_YET_VALID => "the token's iat or nbf is in the future",
        codes::TOKEN_INVALID_CLAIM => {
            "the token's sub is not a valid user id (1 to 128 characters, no control characters)"
        }
        codes::STREAM_TICKET_REQUIRED => {
            "a widget token does not belong in a URL: POST /api/stream-ticket, then GET /api/events?ticket="
        }
        codes::TICKET_EXPIRED => "the stream ticket has expired: POST /api/stream-ticket for a new one",
        codes::NOT_FOUND => "no such deposit",
        codes::RATE_LIMITED => "too many requests; slow down",
        codes::PROVIDER_UNAVAILABLE => "the payment provider did not answer; retry with the same Idempotency-Key",
        codes::PROVIDER_BUSY => "the payment provider is busy; retry in 5 s with the same Idempotency-Key",
        codes::PROVIDER_REJECTED => "Pientegra refused the request: the withdrawal limit of this user is reached",
        codes::DEPOSIT_URL_NOT_ALLOWED => "the payment page address is not on the allow-list",
        codes::INTERNAL => "internal error",
        _ => "",
    }
}

/// Defines a type whose OpenAPI responses are the [`ErrorAnswers`] `$answers`,
/// to name in a handler's `#[utoipa::path(responses(...))]`.
macro_rules! error_answers {
    ($(#[$meta:meta])* $name:ident = $answers:expr) => {
        $(#[$meta])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $answers.build()
            }
        }
    };
}
pub(crate) use error_answers;
