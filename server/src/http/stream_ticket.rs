//! `POST /api/stream-ticket`: a stream ticket for the caller's widget token,
//! so that the URL an `EventSource` opens (`GET /api/events?ticket=`) never
//! holds the widget token. The ticket opens the stream for a minute
//! ([`crate::token::TICKET_TTL`]) and nothing else; the stream it opens ends
//! when the widget token expires. Any instance sharing `WIDGET_TOKEN_SECRET`
//! accepts it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use pientegra_shared::api::StreamTicket;

use super::AppState;
use super::auth::User;
use super::error::{ErrorAnswers, error_answers};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/stream-ticket", post(issue))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(issue))]
pub(super) struct Api;

error_answers!(TicketErrors = ErrorAnswers::default().on(401, super::auth::TOKEN_REFUSALS));

/// A stream ticket.
///
/// A stream ticket for the token's user: it opens `GET /api/events?ticket=`
/// within a minute, and nothing else.
#[utoipa::path(
    post, path = "/api/stream-ticket", operation_id = "create_stream_ticket", tag = "events",
    security(("widgetToken" = [])),
    responses((status = 201, description = "The ticket", body = StreamTicket), TicketErrors),
)]
async fn issue(State(state): State<AppState>, user: User) -> (StatusCode, Json<StreamTicket>) {
    let ticket = state.tokens.tickets().issue(&user.0, Utc::now());
    (StatusCode::CREATED, Json(StreamTicket { ticket: ticket.ticket, expires_at: ticket.expires_at }))
}
