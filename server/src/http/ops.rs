//! Liveness, readiness and metrics.

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::time::Instant;

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

/// How long the database's answer to readiness is reused.
const DATABASE_CHECK_FRESH: Duration = Duration::from_secs(1);
/// How long readiness waits for the database before calling it unavailable.
const DATABASE_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The database's latest answer to readiness. Probes need no credentials, so
/// however many come, at most one query a second reaches the database: the
/// first probe past [`DATABASE_CHECK_FRESH`] asks, and those arriving while
/// it asks wait for its answer.
#[derive(Default)]
pub struct DatabaseCheck(tokio::sync::Mutex<Option<(Instant, bool)>>);

impl DatabaseCheck {
    /// Whether the database answers, asked with `ask` unless a fresh answer is at hand.
    async fn answers<F: Future<Output = bool>>(&self, ask: impl FnOnce() -> F) -> bool {
        let mut latest = self.0.lock().await;
        match *latest {
            Some((at, answered)) if at.elapsed() < DATABASE_CHECK_FRESH => answered,
            _ => {
                let answered = tokio::time::timeout(DATABASE_ANSWER_WITHIN, ask()).await.unwrap_or(false);
                *latest = Some((Instant::now(), answered));
                answered
            }
        }
    }
}

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
    let database = state.database_check.answers(|| async { state.storage.ping().await.is_ok() }).await;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_probes_asks_the_database_once_a_second() {
        let check = Arc::new(DatabaseCheck::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let probe = |check: Arc<DatabaseCheck>, asked: Arc<AtomicUsize>| async move {
            check
                .answers(|| async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    true
                })
                .await
        };
        let probes: Vec<_> = (0..100).map(|_| tokio::spawn(probe(check.clone(), asked.clone()))).collect();
        for answered in futures::future::join_all(probes).await {
            assert!(answered.unwrap());
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        tokio::time::advance(DATABASE_CHECK_FRESH).await;
        assert!(probe(check.clone(), asked.clone()).await);
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_database_that_does_not_answer_in_time_is_unavailable() {
        let check = DatabaseCheck::default();
        assert!(!check.answers(std::future::pending).await);
    }
}
