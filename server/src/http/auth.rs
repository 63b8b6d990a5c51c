//! Who is calling: the widget token (`Authorization: Bearer`), a stream
//! ticket (`GET /api/events?ticket=` only), and the admin token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::Utc;
use pientegra_shared::api::codes;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::AppError;
use crate::token::{Claims, TokenError, looks_like_ticket, may_name};

/// Every code a refused widget token is answered with (401).
pub const TOKEN_REFUSALS: &[&str] = &[
    codes::UNAUTHORIZED,
    codes::TOKEN_EXPIRED,
    codes::TOKEN_WRONG_ALGORITHM,
    codes::TOKEN_WRONG_AUDIENCE,
    codes::TOKEN_MISSING_CLAIM,
    codes::TOKEN_LIFETIME_REFUSED,
    codes::TOKEN_NOT_YET_VALID,
    codes::TOKEN_INVALID_CLAIM,
];

/// The user a valid widget token speaks for.
pub struct User(pub Claims);

impl User {
    /// The user's `externalUserId`.
    pub fn id(&self) -> &str {
        self.0.user.as_str()
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Checks a widget token, mapping each failure to its code.
pub fn check_token(state: &AppState, token: &str) -> Result<User, AppError> {
    let claims = state.tokens.verify(token, Utc::now()).map_err(|e| match e {
        TokenError::Malformed if looks_like_ticket(token) => AppError::unauthorized(
            "a stream ticket opens GET /api/events?ticket= and nothing else: send the widget token here",
        ),
        TokenError::Malformed | TokenError::BadSignature => AppError::unauthorized("the widget token is not valid"),
        TokenError::Expired => AppError::new(StatusCode::UNAUTHORIZED, e.code(), "the widget token has expired"),
        TokenError::Lifetime => AppError::new(
            StatusCode::UNAUTHORIZED,
            e.code(),
            format!(
                "the widget token's exp must be after its iat, by at most {}s (WIDGET_TOKEN_MAX_LIFETIME)",
                state.tokens.max_lifetime().num_seconds()
            ),
        ),
        // The rest name the claim to fix.
        other => AppError::new(StatusCode::UNAUTHORIZED, other.code(), other.to_string()),
    })?;
    speakable(claims, codes::TOKEN_INVALID_CLAIM, "the widget token's sub names a reserved account, not a user")
        .map(User)
}

/// Claims whose user a widget may speak for; the account of a PGM order is not one.
fn speakable(claims: Claims, code: &'static str, message: &'static str) -> Result<Claims, AppError> {
    may_name(&claims.user).map_err(|_| AppError::new(StatusCode::UNAUTHORIZED, code, message))?;
    Ok(claims)
}

/// Checks a stream ticket: the user it speaks for, whose stream may run until
/// the widget token it was issued for expires.
pub fn check_ticket(state: &AppState, ticket: &str) -> Result<User, AppError> {
    let claims = state.tokens.tickets().verify(ticket, Utc::now()).map_err(|e| match e {
        TokenError::Expired => AppError::new(
            StatusCode::UNAUTHORIZED,
            codes::TICKET_EXPIRED,
            "the stream ticket has expired: POST /api/stream-ticket for a new one",
        ),
        // A ticket is checked for its signature and expiry only.
        _ => AppError::unauthorized("the stream ticket is not valid"),
    })?;
    let claims = Claims { user: claims.user, label: None, expires_at: claims.stream_until };
    speakable(claims, codes::UNAUTHORIZED, "the stream ticket is not valid").map(User)
}

impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<User, AppError> {
        let token = bearer(parts)
            .ok_or_else(|| AppError::unauthorized("send the widget token as Authorization: Bearer <token>"))?;
        check_token(state, token)
    }
}

/// A caller holding `ADMIN_TOKEN`.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, AppError> {
        let Some(expected) = &state.settings.admin_token else {
            return Err(AppError::not_found("route"));
        };
        let given = bearer(parts).unwrap_or_default();
        let expected = expected.expose_secret().as_bytes();
        if given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected)) {
            Ok(Admin)
        } else {
            Err(AppError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, "admin token required"))
        }
    }
}
