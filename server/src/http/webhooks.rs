//! `POST /webhooks/pientegra`: the webhook receiver.
//!
//! The raw body is verified against every configured secret before anything
//! parses it; the event is deduplicated by `eventId` and applied in one
//! transaction; the 2xx goes out only after that commit is durable.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use pientegra_shared::event::WebhookEvent;
use pientegra_shared::signature::{self, HEADER};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::AppState;
use super::error::AppError;
use crate::metrics::Metrics;
use crate::storage::InboxOutcome;

/// Pientegra's events are small; anything bigger is not one.
const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/pientegra", post(receive)).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, AppError> {
    let rejected = |code: &'static str, message: String| {
        Metrics::inc(&state.metrics.webhooks_rejected);
        tracing::warn!(code, "webhook refused");
        AppError::new(StatusCode::UNAUTHORIZED, code, message)
    };
    let header = headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| rejected("signature_missing", format!("the {HEADER} header is missing")))?;
    let secrets: Vec<&str> = state.settings.webhook_secrets.iter().map(|s| s.expose_secret()).collect();
    signature::verify(header, &body, &secrets, Utc::now().timestamp_millis())
        .map_err(|e| rejected(e.code(), e.to_string()))?;
    let event = WebhookEvent::parse(&body).map_err(|e| {
        Metrics::inc(&state.metrics.webhooks_rejected);
        tracing::error!(error = %e, "a correctly signed webhook body could not be read");
        AppError::validation(e.to_string())
    })?;
    let changed = state.storage.apply_webhook(&event, &body).await?;
    state.hub.notify(&changed.touched);
    let counter = match changed.value {
        InboxOutcome::Applied => &state.metrics.webhooks_applied,
        InboxOutcome::Duplicate => &state.metrics.webhooks_duplicate,
        _ => &state.metrics.webhooks_other,
    };
    Metrics::inc(counter);
    tracing::info!(event_id = %event.event_id, event_type = event.event_type(), outcome = changed.value.as_str(), "webhook");
    Ok(Json(json!({"received": true, "outcome": changed.value.as_str()})))
}
