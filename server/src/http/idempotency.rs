//! Our own `Idempotency-Key` handling on the money-moving POSTs (IETF
//! draft-ietf-httpapi-idempotency-key-header): missing key 400, same key with
//! another body 422, same key in flight 409, otherwise the stored response is
//! replayed. Transient failures are not stored, so a retry runs again.

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pientegra_shared::api::codes;
use pientegra_shared::ids::IdempotencyKey;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::AppError;
use crate::storage::{IdempotencyClaim, IdempotencyScope, Reply};

/// How long a claim holds before its key can be taken over. On PostgreSQL the
/// claim of an instance that died is taken over at once (`storage::presence`);
/// the lease bounds what presence cannot tell.
const LEASE_MS: i64 = 90_000;

/// Reads the `Idempotency-Key` header.
pub fn key(headers: &HeaderMap) -> Result<IdempotencyKey, AppError> {
    let raw = headers.get("idempotency-key").ok_or_else(|| {
        AppError::bad_request(codes::MISSING_IDEMPOTENCY_KEY, "send an Idempotency-Key header (a UUID)")
    })?;
    let raw = raw.to_str().map_err(|_| AppError::validation("Idempotency-Key must be a UUID"))?;
    IdempotencyKey::parse(raw).map_err(|_| AppError::validation("Idempotency-Key must be a UUID"))
}

/// A fingerprint of the request body that ignores key order and whitespace.
pub fn fingerprint(body: &serde_json::Value) -> String {
    // serde_json's map is ordered by key, so this serialization is canonical.
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// A successful JSON answer to send, and store unless the work stored it already.
pub struct Stored {
    pub status: StatusCode,
    pub body: String,
    /// The work's own transaction stored this answer (a [`Reply`] passed to
    /// storage, e.g. [`crate::storage::Storage::record_deposit`]).
    pub kept: bool,
}

fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Runs `work` at most once per (user, route, key) and body.
pub async fn run<F, Fut>(
    state: &AppState,
    scope: &IdempotencyScope<'_>,
    fingerprint: &str,
    work: F,
) -> Result<Response, AppError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Stored, AppError>>,
{
    let reply = |status: StatusCode| Reply { scope, request_hash: fingerprint, status: status.as_u16() };
    match state.storage.claim_idempotency(scope, fingerprint, LEASE_MS).await? {
        IdempotencyClaim::Mismatch => Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used with another request body",
        )),
        IdempotencyClaim::InFlight => Err(AppError::new(
            StatusCode::CONFLICT,
            codes::IDEMPOTENCY_KEY_IN_FLIGHT,
            "a request with this Idempotency-Key is still running; retry shortly",
        )
        .retry_after(1)),
        IdempotencyClaim::Done { status, body } => {
            Ok(json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body, true))
        }
        IdempotencyClaim::Claimed => match work().await {
            Ok(Stored { status, body, kept: true }) => {
                state.storage.settle_idempotency(scope).await?;
                Ok(json_response(status, body, false))
            }
            Ok(Stored { status, body, kept: false }) => {
                state.storage.finish_idempotency(&reply(status), &body).await?;
                Ok(json_response(status, body, false))
            }
            Err(err) if err.is_definite() => {
                state.storage.finish_idempotency(&reply(err.status), &err.body()).await?;
                Err(err)
            }
            Err(err) => {
                state.storage.release_idempotency(scope).await?;
                Err(err)
            }
        },
    }
}
