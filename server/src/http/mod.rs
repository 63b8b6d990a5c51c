//! The HTTP surface: one `router()` per feature, assembled with the middleware
//! stack in [`app`].

mod account;
mod admin;
pub mod auth;
mod connections;
mod embed;
pub mod error;
mod events;
mod head;
mod idempotency;
mod money;
pub mod openapi;
mod ops;
mod pgm;
mod session;
mod site;
mod stream_ticket;
mod streams;
mod webhooks;
mod widget_files;

pub use connections::{listen, serve};
pub use ops::DatabaseCheck;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::settings::Settings;
use crate::state::AppState;

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
        .merge(webhooks::router(&state))
        .merge(pgm::router(&state.settings))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    // Before the CORS layer, which must stay around every route's fallback
    // (preflights); the facade keeps its own 405, in PGM's shape.
    let router = Router::new()
        .merge(timed)
        .merge(events::router())
        .merge(site::router(&state.settings))
        .method_not_allowed_fallback(error::method_not_allowed);
    let router = match &state.settings.static_dir {
        Some(dir) => router.fallback_service(site::static_files(dir)),
        None => router.fallback(|| async { error::AppError::not_found("route") }),
    };
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors(&state.settings))
        // Readable from any page, with CORS of their own.
        .merge(embed::router().method_not_allowed_fallback(error::method_not_allowed))
        .merge(openapi::router())
        .merge(widget_files::router(&state))
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            set_security_headers(response.headers_mut());
            response
        }))
        .layer(
            // Spans carry the path only: an event stream's query holds its ticket.
            // Each 5xx is logged once where its cause is known, so the layer's
            // own line per failure (one per readiness probe while Pientegra is
            // down) is left out.
            TraceLayer::new_for_http()
                .make_span_with(
                    |req: &Request<_>| tracing::info_span!("http", method = %req.method(), path = %req.uri().path()),
                )
                .on_failure(()),
        )
        .with_state(state)
}

/// The headers every answer carries, whether the router or the event-stream
/// path wrote it: `(name, value, replace)`. `replace: false` keeps the value a
/// handler chose (an event stream's `Cache-Control: no-cache`).
const SECURITY_HEADERS: [(HeaderName, &str, bool); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff", true),
    (header::REFERRER_POLICY, "no-referrer", true),
    (header::CACHE_CONTROL, "no-store", false),
    (header::CONTENT_SECURITY_POLICY, site::CSP, true),
];

/// Sets [`SECURITY_HEADERS`] on an answer's headers.
pub(crate) fn set_security_headers(headers: &mut HeaderMap) {
    for (name, value, replace) in SECURITY_HEADERS {
        if replace || !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
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
