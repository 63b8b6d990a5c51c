//! The HTTP surface: one `router()` per feature, assembled with the middleware
//! stack in [`app`].

mod account;
mod admin;
pub mod auth;
pub mod error;
mod events;
mod idempotency;
mod money;
pub(crate) use money::submit_withdrawal;
mod ops;
mod pgm;
mod session;
mod site;
mod stream_ticket;
pub mod streams;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::Metrics;
use crate::pientegra::{CallBudget, PientegraApi};
use crate::ratelimit::RateLimiter;
use crate::settings::Settings;
use crate::sse::Hub;
use crate::storage::Storage;
use crate::token::TokenKey;

/// What every handler shares, behind one `Arc`: axum clones the state for
/// every request, and one reference count is cheaper than nine.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles in [`AppState`].
pub struct Shared {
    pub settings: Arc<Settings>,
    pub storage: Arc<dyn Storage>,
    /// Pientegra for the calls a user (or the shop) is waiting for.
    pub pientegra: Arc<dyn PientegraApi>,
    /// Pientegra for background jobs: the same client and budget, yielding to the calls above.
    pub background: Arc<dyn PientegraApi>,
    /// The one budget of calls to Pientegra, and how the latest call ended (readiness).
    pub budget: Arc<CallBudget>,
    pub hub: Hub,
    pub tokens: TokenKey,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// The Mia-Platform PGM facade, when `PGM_FACADE_TOKEN` is set.
    pub pgm: Option<Arc<crate::pgm::Facade>>,
}

/// Bodies larger than this are refused with 413 (webhooks have their own limit).
const BODY_LIMIT: usize = 16 * 1024;
/// Requests other than SSE streams end after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The whole HTTP surface with its middleware.
pub fn app(state: AppState) -> Router {
    let timed = Router::new()
        .merge(money::router())
        .merge(account::router())
        .merge(stream_ticket::router())
        .merge(session::router(state.settings.demo))
        .merge(admin::router())
        .merge(ops::router())
        .merge(webhooks::router())
        .merge(pgm::router(&state.settings))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    let router = Router::new().merge(timed).merge(events::router()).merge(site::router(&state.settings));
    let router = match &state.settings.static_dir {
        Some(dir) => router.fallback_service(site::static_files(dir)),
        None => router.fallback(|| async { error::AppError::not_found("route") }),
    };
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors(&state.settings))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(site::CSP)))
        .layer(
            // Spans carry the path only: an event stream's query holds its ticket.
            TraceLayer::new_for_http().make_span_with(
                |req: &Request<_>| tracing::info_span!("http", method = %req.method(), path = %req.uri().path()),
            ),
        )
        .with_state(state)
}

fn cors(settings: &Settings) -> CorsLayer {
    let origins: Vec<HeaderValue> =
        settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("idempotency-replayed")])
        .max_age(Duration::from_secs(600))
}
