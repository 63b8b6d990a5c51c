//! The test and operator controls under `/sandbox/` (no auth: a local tool):
//! drive intents and withdrawals through review, change the live settings
//! and fault injection, and look at everything at once.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::time::Timestamp;
use pientegra_shared::wire::{self, DeliveryStatus, ReplayAccepted};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::api::amount_value;
use crate::config::{Settings, SettingsUpdate};
use crate::error::ApiError;
use crate::state::{AppState, now};
use crate::store::{EventRecord, IntentRecord, WithdrawalRecord};

/// The routes under `/sandbox`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox/intents/{id}/{action}", post(intent_action))
        .route("/sandbox/withdrawals/{id}/{action}", post(withdrawal_action))
        .route("/sandbox/events/{id}/replay", post(replay))
        .route("/sandbox/config", get(get_config).put(put_config))
        .route("/sandbox/state", get(get_state))
        .route("/sandbox/console", get(crate::console::page))
}

/// The control action that moves an intent to `status`, for the console's buttons.
pub fn intent_action_for(status: IntentStatus) -> &'static str {
    match status {
        IntentStatus::PendingReview => "confirm",
        IntentStatus::Approved => "approve",
        IntentStatus::Rejected => "reject",
        IntentStatus::AutoCancelled => "expire",
        IntentStatus::LateArrival => "late-arrival",
        IntentStatus::Reserved => "none",
    }
}

/// The control action that moves a withdrawal to `status`, for the console's buttons.
pub fn withdrawal_action_for(status: WithdrawalStatus) -> &'static str {
    match status {
        WithdrawalStatus::Approved => "approve",
        WithdrawalStatus::Sent => "send",
        WithdrawalStatus::Rejected => "reject",
        WithdrawalStatus::Returned => "return",
        WithdrawalStatus::PendingReview => "none",
    }
}

const DEFAULT_REASON: &str = "Rejected by the sandbox operator";

async fn intent_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<IntentView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("no such intent".to_owned()))?;
    let fields = object(&body)?;
    let amount = match fields.get("amount").filter(|v| !v.is_null()) {
        Some(value) if action == "approve" => Some(amount_value(Some(value))?),
        _ => None,
    };
    let reason = reason(&fields)?;
    let at = now();
    state.change(|store| {
        let intent = match action.as_str() {
            "confirm" => store.confirm_intent(id, at),
            "approve" => store.approve_intent(id, amount, at),
            "reject" => store.reject_intent(id, reason, at),
            "expire" => store.expire_intent(id, at),
            "late-arrival" => store.late_arrival(id, at),
            _ => return Err(ApiError::NotFound(format!("no intent action {action:?}"))),
        }?;
        Ok(Json(IntentView::of(intent)))
    })
}

async fn withdrawal_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<WithdrawalView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("no such withdrawal".to_owned()))?;
    let reason = reason(&object(&body)?)?;
    let at = now();
    state.change(|store| {
        let withdrawal = match action.as_str() {
            "approve" => store.approve_withdrawal(id, at),
            "send" => store.send_withdrawal(id, at),
            "reject" => store.reject_withdrawal(id, reason, at),
            "return" => store.return_withdrawal(id, at),
            _ => return Err(ApiError::NotFound(format!("no withdrawal action {action:?}"))),
        }?;
        Ok(Json(WithdrawalView::of(withdrawal)))
    })
}

/// The same as the External API's replay, without the API key (for the console).
async fn replay(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ReplayAccepted>, ApiError> {
    let event_id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("no such event".to_owned()))?;
    state.change(|store| store.replay(event_id))?;
    Ok(Json(ReplayAccepted { event_id, delivery_status: DeliveryStatus::Pending }))
}

/// An optional JSON object body: empty means `{}`.
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::invalid("the request body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(format!("the request body is not valid JSON: {e}"))),
    }
}

/// `reason`: optional, a default stands in.
fn reason(fields: &Map<String, Value>) -> Result<String, ApiError> {
    match fields.get("reason") {
        None | Some(Value::Null) => Ok(DEFAULT_REASON.to_owned()),
        Some(Value::String(reason)) if !reason.trim().is_empty() => Ok(reason.trim().to_owned()),
        Some(Value::String(_)) => Ok(DEFAULT_REASON.to_owned()),
        Some(_) => Err(ApiError::field("reason", "must be a string")),
    }
}

async fn get_config(State(state): State<AppState>) -> Json<Settings> {
    Json(state.settings().clone())
}

/// Partial update; answers the full settings.
async fn put_config(State(state): State<AppState>, body: Bytes) -> Result<Json<Settings>, ApiError> {
    let update: SettingsUpdate = if body.iter().all(u8::is_ascii_whitespace) {
        SettingsUpdate::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid config: {e}")))?
    };
    let auto_changed = update.auto_approve_ms.is_some();
    let settings = {
        let mut settings = state.settings();
        let mut updated = settings.clone();
        updated.apply(update).map_err(ApiError::invalid)?;
        *settings = updated.clone();
        updated
    };
    if auto_changed {
        state.change(|store| store.set_auto_review(settings.auto_approve_ms.map(Duration::from_millis)));
    }
    // Webhooks may have been switched back on, or faults cleared: let waiting deliveries go.
    state.wake_delivery.notify_one();
    tracing::info!(?settings, "sandbox settings changed");
    Ok(Json(settings))
}

/// Everything at once, newest first: for tests and the console.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    pub intents: Vec<IntentView>,
    pub withdrawals: Vec<WithdrawalView>,
    pub deliveries: Vec<DeliveryView>,
    pub webhook_url: Option<String>,
    #[serde(with = "pientegra_shared::time::millis")]
    pub secret_rotated_at: Timestamp,
    pub free_accounts: usize,
    /// API calls since start: allowed, and refused by the rate limit.
    pub api_calls: crate::ratelimit::CallCounts,
}

impl StateView {
    /// A snapshot of the whole store.
    pub fn of(state: &AppState) -> StateView {
        let store = state.store();
        let clock = Instant::now();
        StateView {
            intents: store.intents.newest_first().map(IntentView::of).collect(),
            withdrawals: store.withdrawals.newest_first().map(WithdrawalView::of).collect(),
            deliveries: store.events.newest_first().map(|e| DeliveryView::of(e, clock)).collect(),
            webhook_url: store.webhook.url.clone(),
            secret_rotated_at: store.webhook.rotated_at,
            free_accounts: store.free_accounts(),
            api_calls: state.limiter.counts(),
        }
    }
}

async fn get_state(State(state): State<AppState>) -> Json<StateView> {
    Json(StateView::of(&state))
}

/// An intent as the API shows it, plus what only the sandbox knows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntentView {
    #[serde(flatten)]
    pub intent: wire::Intent,
    pub external_user_label: Option<String>,
    pub deposit_url: String,
    pub account_holder: String,
    pub account_iban: String,
}

impl IntentView {
    fn of(intent: &IntentRecord) -> IntentView {
        IntentView {
            intent: intent.to_wire(),
            external_user_label: intent.external_user_label.as_ref().map(ToString::to_string),
            deposit_url: intent.deposit_url.clone(),
            account_holder: intent.account.holder.clone(),
            account_iban: intent.account.iban.clone(),
        }
    }
}

/// A withdrawal as the API shows it, plus what only the sandbox knows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawalView {
    #[serde(flatten)]
    pub withdrawal: wire::Withdrawal,
    pub external_user_label: Option<String>,
    #[serde(with = "pientegra_shared::time::millis_opt")]
    pub approved_at: Option<Timestamp>,
    pub target_iban: String,
    pub target_holder_name: String,
}

impl WithdrawalView {
    fn of(withdrawal: &WithdrawalRecord) -> WithdrawalView {
        WithdrawalView {
            withdrawal: withdrawal.to_wire(),
            external_user_label: withdrawal.external_user_label.as_ref().map(ToString::to_string),
            approved_at: withdrawal.approved_at,
            target_iban: withdrawal.target_iban.clone(),
            target_holder_name: withdrawal.target_holder_name.to_string(),
        }
    }
}

/// An event as the events listing shows it, plus its retry timing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    #[serde(flatten)]
    pub event: wire::EventRecord,
    /// Attempts in the current run (a replay starts a new run).
    pub run_attempts: u32,
    /// Until the next attempt, when one is scheduled.
    pub next_attempt_in_ms: Option<u64>,
}

impl DeliveryView {
    fn of(event: &EventRecord, clock: Instant) -> DeliveryView {
        DeliveryView {
            event: event.to_wire(),
            run_attempts: event.delivery.run_attempts,
            next_attempt_in_ms: event
                .delivery
                .next_attempt_at
                .map(|at| u64::try_from(at.saturating_duration_since(clock).as_millis()).unwrap_or(u64::MAX)),
        }
    }
}
