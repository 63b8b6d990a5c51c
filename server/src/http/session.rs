//! `POST /api/session` (demo mode only): a widget token for any user name.
//! In production the partner's backend mints tokens (`token::TokenKey::mint`
//! or `pientegra-server token mint`) for its logged-in user.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Duration, Utc};
use pientegra_shared::api::{Session, SessionRequest};
use pientegra_shared::ids::{ExternalUserId, UserLabel};

use super::AppState;
use super::error::AppError;

const DEMO_TOKEN_TTL: Duration = Duration::hours(8);

pub fn router(demo: bool) -> Router<AppState> {
    if demo { Router::new().route("/api/session", post(create)) } else { Router::new() }
}

async fn create(State(state): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Session>), AppError> {
    let request: SessionRequest =
        serde_json::from_slice(&body).map_err(|e| AppError::validation(format!("invalid body: {e}")))?;
    let user = ExternalUserId::parse(&request.external_user_id)
        .map_err(|e| AppError::validation(format!("externalUserId {e}")))?;
    crate::token::may_name(&user).map_err(|e| AppError::validation(format!("externalUserId: {e}")))?;
    let label = request
        .label
        .as_deref()
        .map(UserLabel::parse)
        .transpose()
        .map_err(|e| AppError::validation(format!("label {e}")))?;
    let issued_at = Utc::now();
    let expires_at = issued_at + DEMO_TOKEN_TTL.min(state.tokens.max_lifetime());
    let token = state.tokens.mint(&user, label.as_ref(), issued_at, expires_at);
    Ok((StatusCode::CREATED, Json(Session { token, expires_at })))
}
