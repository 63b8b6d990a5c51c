//! What the server's parts share: the handles every request, background job
//! and use case reaches through one [`AppState`].

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::pientegra::{CallBudget, PientegraApi};
use crate::ratelimit::RateLimiter;
use crate::settings::Settings;
use crate::sse::Hub;
use crate::storage::Storage;
use crate::token::TokenKey;

/// What every handler and job shares, behind one `Arc`: axum clones the state for
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
    /// Whether the hosted deposit page may be framed by a page (iframe mode).
    pub framing: crate::framing::FramingCheck,
    /// The database's latest answer to readiness.
    pub database_check: crate::http::DatabaseCheck,
}
