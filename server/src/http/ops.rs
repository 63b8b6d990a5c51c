//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready)).route("/metrics", get(metrics))
}

/// Past this, the latest call's outcome says nothing about Pientegra now
/// (the background check would have refreshed it, unless the budget is jammed).
const CONTACT_STALE: Duration = Duration::from_secs(300);

/// Ready when the database answers and the latest call to Pientegra, a real
/// one or the background check, got an answer. It never calls Pientegra:
/// readiness is unauthenticated, and probes must not spend the API quota.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.storage.ping().await.is_ok();
    let contact = state.budget.contact().filter(|c| c.at.elapsed() < CONTACT_STALE);
    let pientegra = match contact {
        Some(c) if c.answered => "ok",
        Some(_) => "unavailable",
        None => "unknown",
    };
    let status = if database && pientegra == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "database": if database { "ok" } else { "unavailable" },
        "pientegra": pientegra,
        "pientegraCheckedSecondsAgo": contact.map(|c| c.at.elapsed().as_secs()),
    });
    (status, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(state.hub.connections()))
}
