//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(alive)).route("/readyz", get(ready)).route("/metrics", get(metrics))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(alive, ready, metrics))]
pub(super) struct Api;

/// Past this, the latest call's outcome says nothing about Pientegra now
/// (the background check would have refreshed it, unless the budget is jammed).
const CONTACT_STALE: Duration = Duration::from_secs(300);

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "ops",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String, example = "ok")),
)]
async fn alive() -> &'static str {
    "ok"
}

/// What readiness found.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"database": "ok", "pientegra": "ok", "pientegraCheckedSecondsAgo": 12}))]
struct Readiness {
    /// `ok` or `unavailable`.
    database: &'static str,
    /// How the latest call to Pientegra ended: `ok` (answered), `unavailable`,
    /// or `unknown` (no call in the last 5 minutes).
    pientegra: &'static str,
    /// Seconds since that call; `null` when `unknown`.
    pientegra_checked_seconds_ago: Option<u64>,
}

/// Readiness.
///
/// Ready when the database answers and the latest call to Pientegra, a real
/// one or the background check, got an answer. It never calls Pientegra:
/// readiness is unauthenticated, and probes must not spend the API quota.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: the database or Pientegra is not answering", body = Readiness),
    ),
)]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.storage.ping().await.is_ok();
    let contact = state.budget.contact().filter(|c| c.at.elapsed() < CONTACT_STALE);
    let pientegra = match contact {
        Some(c) if c.answered => "ok",
        Some(_) => "unavailable",
        None => "unknown",
    };
    let status = if database && pientegra == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        database: if database { "ok" } else { "unavailable" },
        pientegra,
        pientegra_checked_seconds_ago: contact.map(|c| c.at.elapsed().as_secs()),
    };
    (status, Json(body))
}

/// Prometheus counters and gauges, in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "ops",
    responses((status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(state.hub.connections()))
}
