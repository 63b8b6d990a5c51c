//! Who is calling: the widget token (`Authorization: Bearer`), and the admin token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::Utc;
use pientegra_shared::api::codes;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::AppError;
use crate::token::{Claims, TokenError};

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
    state.tokens.verify(token, Utc::now()).map(User).map_err(|e| match e {
        TokenError::Expired => {
            AppError::new(StatusCode::UNAUTHORIZED, codes::TOKEN_EXPIRED, "the widget token has expired")
        }
        TokenError::Malformed | TokenError::BadSignature | TokenError::ReservedUser => {
            AppError::unauthorized("the widget token is not valid")
        }
    })
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
