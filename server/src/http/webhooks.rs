//! `POST /webhooks/pientegra`: the webhook receiver.
//!
//! A request without a well-formed signature header is refused before its
//! body is read. The raw body is verified against every configured secret
//! before anything parses it; the event is deduplicated by `eventId` and
//! applied in one transaction; the 2xx goes out only after that commit is
//! durable.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use pientegra_shared::api::codes;
use pientegra_shared::event::{IntentEvent, IntentSnapshot, WebhookEvent, WithdrawalEvent, WithdrawalSnapshot};
use pientegra_shared::signature::{self, HEADER, SignatureError};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{Ref, RefOr};

use super::AppState;
use super::error::{AppError, ErrorAnswers, RawBody, error_answers};
use crate::metrics::Metrics;
use crate::storage::InboxOutcome;

/// Pientegra's events are small; anything bigger is not one.
const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// The code of a request without the signature header.
const SIGNATURE_MISSING: &str = "signature_missing";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/webhooks/pientegra", post(receive))
        .route_layer(middleware::from_fn_with_state(state.clone(), header_first))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
}

/// Refuses a request whose signature header is missing or malformed before
/// its body is read: a sender without one gets its answer at once, and the
/// server reads no body for it.
async fn header_first(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let checked = signature_header(&state, request.headers())
        .and_then(|header| signature::check_header(header).map_err(|e| refused(&state, e.code(), e.to_string())));
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The signature header's value, or the refusal of a request without one.
fn signature_header<'a>(state: &AppState, headers: &'a HeaderMap) -> Result<&'a str, AppError> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused(state, SIGNATURE_MISSING, format!("the {HEADER} header is missing")))
}

/// A 401 for a webhook whose signature failed `code`, counted and logged.
fn refused(state: &AppState, code: &'static str, message: String) -> AppError {
    Metrics::inc(&state.metrics.webhooks_rejected);
    tracing::warn!(code, "webhook refused");
    AppError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(receive), components(schemas(WebhookBody, IntentSnapshot, WithdrawalSnapshot)))]
pub(super) struct Api;

error_answers!(
    WebhookErrors = ErrorAnswers::default()
        .on(400, &[codes::VALIDATION_FAILED])
        .described(401, [(SIGNATURE_MISSING, format!("the {HEADER} header is missing"))])
        .described(401, SignatureError::ALL.map(|e| (e.code(), e.to_string())))
        .on(413, &[codes::PAYLOAD_TOO_LARGE])
        .on(500, &[codes::INTERNAL])
);

/// The answer to an accepted event.
#[derive(Serialize, utoipa::ToSchema)]
struct Receipt {
    received: bool,
    /// What the event did: `applied`; `duplicate` (its `eventId` was seen);
    /// `stale` (the record is past it); `ignored` (a type this server does not
    /// handle); `orphan` (about a record not known yet: kept for later);
    /// `mismatch` (contradicts the local record: kept, nothing changed).
    #[schema(example = "applied")]
    outcome: &'static str,
}

/// A webhook event's body, as Pientegra signs and sends it.
struct WebhookBody;

impl utoipa::PartialSchema for WebhookBody {
    fn schema() -> RefOr<Schema> {
        let event = |types: Vec<&'static str>, subject: &str, snapshot: &str| {
            ObjectBuilder::new()
                .property("eventId", ObjectBuilder::new().schema_type(Type::String).format(Some(uuid())))
                .required("eventId")
                .property("eventType", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(types)))
                .required("eventType")
                .property("occurredAt", ObjectBuilder::new().schema_type(Type::String).format(Some(date_time())))
                .required("occurredAt")
                .property(subject, Ref::from_schema_name(snapshot))
                .required(subject)
        };
        OneOfBuilder::new()
            .item(event(IntentEvent::ALL.map(IntentEvent::event_type).to_vec(), "intent", "IntentSnapshot"))
            .item(event(
                WithdrawalEvent::ALL.map(WithdrawalEvent::event_type).to_vec(),
                "withdrawal",
                "WithdrawalSnapshot",
            ))
            .description(Some(
                "An intent or withdrawal event. An event of a type this server does not know is \
                 acknowledged (`ignored`) and changes nothing.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for WebhookBody {}

fn uuid() -> SchemaFormat {
    SchemaFormat::KnownFormat(KnownFormat::Uuid)
}

fn date_time() -> SchemaFormat {
    SchemaFormat::KnownFormat(KnownFormat::DateTime)
}

/// Receives a Pientegra webhook.
///
/// Pientegra's signed event about an intent or a withdrawal. The signature
/// is checked on the raw body first; the event is applied once per
/// `eventId`, and the answer is sent after the change is durable, so a
/// failed delivery is safe to repeat.
#[utoipa::path(
    post, path = "/webhooks/pientegra", operation_id = "receive_webhook", tag = "webhooks",
    security(("webhookSignature" = [])),
    request_body = WebhookBody,
    responses(
        (status = 200, description = "Received (applied, or already known)", body = Receipt),
        WebhookErrors,
    ),
)]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Receipt>, AppError> {
    let header = signature_header(&state, &headers)?;
    let secrets: Vec<&str> = state.settings.webhook_secrets.iter().map(|s| s.expose_secret()).collect();
    signature::verify(header, &body, &secrets, Utc::now().timestamp_millis())
        .map_err(|e| refused(&state, e.code(), e.to_string()))?;
    let event = WebhookEvent::parse(&body).map_err(|e| {
        Metrics::inc(&state.metrics.webhooks_rejected);
        tracing::error!(error = %e, "a correctly signed webhook body could not be read");
        AppError::validation(e.to_string())
    })?;
    let outcome = state.records().apply_event(&event, &body).await?;
    let counter = match outcome {
        InboxOutcome::Applied => &state.metrics.webhooks_applied,
        InboxOutcome::Duplicate => &state.metrics.webhooks_duplicate,
        _ => &state.metrics.webhooks_other,
    };
    Metrics::inc(counter);
    tracing::info!(event_id = %event.event_id, event_type = event.event_type(), outcome = outcome.as_str(), "webhook");
    Ok(Json(Receipt { received: true, outcome: outcome.as_str() }))
}
