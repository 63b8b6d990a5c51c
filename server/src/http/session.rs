//! `POST /api/session` (demo mode only): a widget token for any user name.
//! In production the partner's backend mints tokens (`token::TokenKey::mint`
//! or `pientegra-server token mint`) for its logged-in user.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Duration, Utc};
use pientegra_shared::api::{Session, SessionRequest, codes};
use pientegra_shared::ids::{ExternalUserId, UserLabel};

use super::AppState;
use super::error::{AppError, ErrorAnswers, RawBody, error_answers};

const DEMO_TOKEN_TTL: Duration = Duration::hours(8);

pub fn router(demo: bool) -> Router<AppState> {
    if demo { Router::new().route("/api/session", post(create)) } else { Router::new() }
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create))]
pub(super) struct Api;

error_answers!(
    SessionErrors = ErrorAnswers::default()
        .on(400, &[codes::VALIDATION_FAILED])
        .described(404, [(codes::NOT_FOUND, "no such route".to_owned())])
        .on(413, &[codes::PAYLOAD_TOO_LARGE])
);

/// A widget token for any user (demo mode).
///
/// Demo mode only (elsewhere 404 `not_found`): a widget token for any user,
/// valid for 8 hours. In production the partner's backend mints tokens.
#[utoipa::path(
    post, path = "/api/session", operation_id = "create_demo_session", tag = "demo",
    request_body = SessionRequest,
    responses((status = 201, description = "A widget token", body = Session), SessionErrors),
)]
async fn create(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Session>), AppError> {
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
