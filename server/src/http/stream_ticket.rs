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

pub fn router() -> Router<AppState> {
    Router::new().route("/api/stream-ticket", post(issue))
}

async fn issue(State(state): State<AppState>, user: User) -> (StatusCode, Json<StreamTicket>) {
    let ticket = state.tokens.tickets().issue(&user.0, Utc::now());
    (StatusCode::CREATED, Json(StreamTicket { ticket: ticket.ticket, expires_at: ticket.expires_at }))
}
