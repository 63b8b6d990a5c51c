//! `POST /external/deposits` and `POST /external/withdrawals`: validation
//! with a code per fault, then the idempotent section, then the store.
//!
//! Bodies are read as raw JSON first and each field is checked on its own, so
//! every fault gets its own code (`amount_below_min`, `invalid_iban`, ...) and
//! a message naming the field, instead of a generic deserializer error.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use pientegra_shared::Amount;
use pientegra_shared::Iban;
use pientegra_shared::ids::{ExternalUserId, HolderName, IdempotencyKey, UserLabel};
use pientegra_shared::status::WithdrawalStatus;
use pientegra_shared::wire::{DEFAULT_CURRENCY, DepositCreated, WithdrawalCreated};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Caller;
use crate::error::ApiError;
use crate::idempotency::{Claim, Conflict, Scope, StoredResponse};
use crate::state::{AppState, now};
use crate::store::{NewIntent, NewWithdrawal};

/// Creates a deposit intent holding a receiving account.
pub async fn deposit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (value, fields) = object(&body)?;
    let new = NewIntent {
        external_user_id: external_user_id(&fields)?,
        external_user_label: label(&fields)?,
        amount: amount(&fields)?,
        currency: currency(&fields)?,
    };
    idempotent(&state, &caller, "deposits", key, value, || {
        let ttl = state.settings().intent_ttl();
        let created = state.change(|store| {
            let token_key = &state.token_key;
            let base_url = &state.base_url;
            store
                .create_intent(new, now(), ttl, |id, expires_at| {
                    format!("{base_url}/d/{}", token_key.sign(id, expires_at))
                })
                .map(|intent| DepositCreated {
                    intent_id: intent.id,
                    reference_no: intent.reference_no.clone(),
                    deposit_url: intent.deposit_url.clone(),
                    requested_amount: intent.requested_amount,
                    amount: intent.amount,
                    currency: intent.currency.clone(),
                    expires_at: intent.expires_at,
                })
        })?;
        Ok(created_json(&created))
    })
    .await
}

/// Creates a withdrawal awaiting review.
pub async fn withdrawal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (value, fields) = object(&body)?;
    let new = NewWithdrawal {
        external_user_id: external_user_id(&fields)?,
        external_user_label: label(&fields)?,
        amount: amount(&fields)?,
        currency: currency(&fields)?,
        target_iban: iban(&fields)?,
        target_holder_name: holder(&fields)?,
    };
    idempotent(&state, &caller, "withdrawals", key, value, || {
        let created = state.change(|store| {
            let w = store.create_withdrawal(new, now());
            WithdrawalCreated {
                withdrawal_id: w.id,
                reference_no: w.reference_no.clone(),
                status: Some(WithdrawalStatus::PendingReview),
                amount: Some(w.amount),
                currency: Some(w.currency.clone()),
            }
        });
        Ok(created_json(&created))
    })
    .await
}

fn created_json(body: &impl serde::Serialize) -> StoredResponse {
    StoredResponse { status: StatusCode::CREATED, body: serde_json::to_vec(body).expect("responses serialize").into() }
}

/// Runs `create` once per (API key, endpoint, key); see [`crate::idempotency`].
async fn idempotent(
    state: &AppState,
    caller: &Caller,
    endpoint: &'static str,
    key: IdempotencyKey,
    body: Value,
    create: impl FnOnce() -> Result<StoredResponse, ApiError>,
) -> Result<Response, ApiError> {
    let scope = Scope { api_key: caller.api_key.clone(), endpoint, key };
    match state.idempotency.claim(scope, body) {
        Err(Conflict::DifferentBody) => Err(ApiError::IdempotencyKeyReuse),
        Err(Conflict::InFlight) => Err(ApiError::DuplicateIdempotencyKey),
        Ok(Claim::Replay(stored)) => Ok(respond(stored, true)),
        Ok(Claim::Fresh(guard)) => {
            // Injected latency lands here, while the key is held: this is the
            // window in which a concurrent retry meets `duplicate_idempotency_key`.
            if !caller.latency.is_zero() {
                tokio::time::sleep(caller.latency).await;
            }
            // An error drops the guard, which frees the key for a retry.
            let stored = create()?;
            guard.complete(stored.clone());
            Ok(respond(stored, false))
        }
    }
}

fn respond(stored: StoredResponse, replayed: bool) -> Response {
    let mut response = (stored.status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert("Idempotency-Replayed", HeaderValue::from_static("true"));
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    let value = headers.get("Idempotency-Key").ok_or(ApiError::MissingIdempotencyKey)?;
    let value = value.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be a UUID"))?;
    IdempotencyKey::parse(value).map_err(|e| ApiError::field("Idempotency-Key", e))
}

/// The body as a JSON value (kept for the idempotency comparison) and as an object.
fn object(body: &[u8]) -> Result<(Value, Map<String, Value>), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
    match &value {
        Value::Object(fields) => Ok((value.clone(), fields.clone())),
        _ => Err(ApiError::invalid("the request body must be a JSON object")),
    }
}

/// A field that is present and not `null`.
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn required_str<'a>(fields: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, ApiError> {
    match present(fields, name) {
        None => Err(ApiError::field(name, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::field(name, "must be a string")),
    }
}

fn optional_str<'a>(fields: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    match present(fields, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(name, "must be a string")),
    }
}

fn external_user_id(fields: &Map<String, Value>) -> Result<ExternalUserId, ApiError> {
    let raw = required_str(fields, "externalUserId")?;
    ExternalUserId::parse(raw).map_err(|e| ApiError::field("externalUserId", e))
}

/// Optional; an empty label is the same as none.
fn label(fields: &Map<String, Value>) -> Result<Option<UserLabel>, ApiError> {
    match optional_str(fields, "externalUserLabel")? {
        Some(raw) if !raw.trim().is_empty() => {
            UserLabel::parse(raw).map(Some).map_err(|e| ApiError::field("externalUserLabel", e))
        }
        _ => Ok(None),
    }
}

/// A string or integer of minor units, within the Pientegra range.
pub fn amount_value(value: Option<&Value>) -> Result<Amount, ApiError> {
    let value = value.ok_or(ApiError::field("amount", "is required"))?;
    let amount = Amount::deserialize(value).map_err(|e| ApiError::field("amount", e))?;
    amount.check_range().map_err(|source| ApiError::AmountRange { field: "amount", source })
}

fn amount(fields: &Map<String, Value>) -> Result<Amount, ApiError> {
    amount_value(present(fields, "amount"))
}

/// Optional, TRY by default, and TRY is all there is.
fn currency(fields: &Map<String, Value>) -> Result<String, ApiError> {
    match optional_str(fields, "currency")? {
        None => Ok(DEFAULT_CURRENCY.to_owned()),
        Some(DEFAULT_CURRENCY) => Ok(DEFAULT_CURRENCY.to_owned()),
        Some(other) => Err(ApiError::UnsupportedCurrency(other.to_owned())),
    }
}

/// A valid IBAN, kept in its compact form (spaces are ignored).
fn iban(fields: &Map<String, Value>) -> Result<String, ApiError> {
    let raw = required_str(fields, "targetIban")?;
    Iban::parse(raw).map(|iban| iban.as_str().to_owned()).map_err(|e| ApiError::InvalidIban(format!("targetIban: {e}")))
}

fn holder(fields: &Map<String, Value>) -> Result<HolderName, ApiError> {
    let raw = required_str(fields, "targetHolderName")?;
    HolderName::parse(raw).map_err(|e| ApiError::field("targetHolderName", e))
}
