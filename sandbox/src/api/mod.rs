//! The Pientegra External API under `/api/v1/external/...`: bearer auth, the
//! rate limit and the API fault injection in one middleware, then the handlers.

mod create;
mod events;
mod list;

pub use create::amount_value;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderMap, Method, StatusCode, header};
use rand::Rng;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;

/// The routes below `/api/v1`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/external/deposits", post(create::deposit))
        .route("/external/withdrawals", post(create::withdrawal).get(list::withdrawals))
        .route("/external/withdrawals/{id}", get(list::withdrawal))
        .route("/external/intents", get(list::intents))
        .route("/external/intents/{id}", get(list::intent))
        .route("/external/events", get(events::list))
        .route("/external/events/{id}/replay", post(events::replay))
        .route("/external/site/webhook-config", put(events::webhook_config))
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .layer(middleware::from_fn_with_state(state, guard))
}

/// Who is calling, and the latency fault a create must wait inside its
/// idempotent section (other calls have already waited it out).
#[derive(Clone, Debug)]
pub struct Caller {
    pub api_key: String,
    pub latency: Duration,
}

/// Auth, then the rate limit, then the injected faults, in that order: an
/// unauthenticated call has no key to count against, and an injected 5xx is
/// a call the site made (so it counts) that did nothing.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let api_key = match authenticate(&state, request.headers()) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let limit = state.settings().rate_limit_per_minute;
    if let Err(retry_after) = state.limiter.check(&api_key, limit, Instant::now()) {
        return ApiError::RateLimited { limit, retry_after }.into_response();
    }
    if let Some(status) = injected_error(&state) {
        return ApiError::Injected(status).into_response();
    }
    let latency = injected_latency(&state);
    let is_create = request.method() == Method::POST
        && ["/external/deposits", "/external/withdrawals"].iter().any(|p| request.uri().path().ends_with(p));
    if !is_create && !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let latency = if is_create { latency } else { Duration::ZERO };
    request.extensions_mut().insert(Caller { api_key, latency });
    next.run(request).await
}

/// The API key of a well-formed `Authorization: Bearer <key>` naming the sandbox's key.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("the Authorization header is missing; send `Authorization: Bearer <api key>`"))?;
    let malformed = ApiError::Unauthorized("the Authorization header must be `Bearer <api key>`");
    let value = value.to_str().map_err(|_| malformed.clone())?;
    let (scheme, key) = value.trim().split_once(' ').ok_or(malformed.clone())?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(malformed);
    }
    let expected = state.config.api_key.as_bytes();
    // Constant time, so response timing does not reveal how much of a guess was right.
    if key.len() == expected.len() && bool::from(key.as_bytes().ct_eq(expected)) {
        Ok(key.to_owned())
    } else {
        Err(ApiError::Unauthorized("the API key is not valid (unknown, revoked or rotated)"))
    }
}

/// The 5xx fault for this call, if one is due: the next-N counter cycles
/// through 500, 502 and 503; the percentage picks one of them at random.
fn injected_error(state: &AppState) -> Option<StatusCode> {
    const STATUSES: [StatusCode; 3] =
        [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE];
    let mut settings = state.settings();
    let faults = &mut settings.faults;
    if faults.api_errors_next > 0 {
        faults.api_errors_next -= 1;
        let index = usize::try_from(faults.api_errors_next % 3).unwrap_or(0);
        return Some(STATUSES[index]);
    }
    let mut rng = rand::thread_rng();
    (faults.api_error_percent > 0 && rng.gen_range(0..100) < faults.api_error_percent)
        .then(|| STATUSES[rng.gen_range(0..STATUSES.len())])
}

/// The latency fault for this call. Once a next-N budget is used up the
/// latency switches itself off (rather than the 0 meaning "every call").
fn injected_latency(state: &AppState) -> Duration {
    let mut settings = state.settings();
    let faults = &mut settings.faults;
    if faults.api_latency_ms == 0 {
        return Duration::ZERO;
    }
    let latency = Duration::from_millis(faults.api_latency_ms);
    if faults.api_latency_next > 0 {
        faults.api_latency_next -= 1;
        if faults.api_latency_next == 0 {
            faults.api_latency_ms = 0;
        }
    }
    latency
}
