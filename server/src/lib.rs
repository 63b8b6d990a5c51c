//! The companion server of the Pientegra kit: it holds the secrets, calls
//! Pientegra, receives its signed webhooks, keeps an exactly-once balance
//! ledger and pushes every outcome to the user's browser over SSE.
//!
//! The whole server is [`run`]: a listener, settings and a shutdown token.

pub mod cli;
pub mod framing;
pub mod http;
mod jobs;
pub mod ledger;
pub mod metrics;
pub mod pgm;
pub mod pientegra;
pub mod ratelimit;
pub mod reconcile;
pub mod service;
pub mod settings;
pub mod sse;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod token;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pientegra::{CallBudget, HttpClient, PientegraApi};
use crate::settings::Settings;
use crate::state::{AppState, Shared};

/// Serves until `shutdown` is cancelled, calling Pientegra over HTTP.
pub async fn run(listener: TcpListener, settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(listener, settings, None, shutdown).await
}

/// Serves; `pientegra` replaces the HTTP client to Pientegra (tests swap it).
pub async fn run_with(
    listener: TcpListener,
    settings: Settings,
    pientegra: Option<Arc<dyn PientegraApi>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let limits = settings.connections;
    let state = app_state(settings, pientegra, shutdown.clone()).await?;
    let jobs = jobs::spawn(state.clone());
    tracing::info!(addr = %listener.local_addr()?, "pientegra-server listening");
    http::serve(listener, http::app(state), limits, shutdown.clone()).await;
    shutdown.cancel();
    let mut jobs = jobs;
    while let Some(job) = jobs.join_next().await {
        job.context("a background job panicked")?;
    }
    Ok(())
}

/// What the handlers of a server with `settings` share: the storage,
/// connected and recovered after the previous process, the call budget and
/// the Pientegra client (`pientegra` replaces it). Nothing runs yet.
pub async fn app_state(
    settings: Settings,
    pientegra: Option<Arc<dyn PientegraApi>>,
    shutdown: CancellationToken,
) -> anyhow::Result<AppState> {
    let storage = storage::connect(&settings.database_url).await?;
    storage.serving_starts().await.context("recovering after the previous process")?;
    // After the storage: on PostgreSQL its migrations made the budget's row.
    let budget =
        Arc::new(CallBudget::connect(settings.pientegra_budget, &settings.database_url, shutdown.clone()).await?);
    let (pientegra, background): (Arc<dyn PientegraApi>, Arc<dyn PientegraApi>) = match pientegra {
        Some(swapped) => (swapped.clone(), swapped),
        None => {
            let client =
                HttpClient::new(settings.api_base.as_str(), settings.api_key.clone(), settings.pientegra_retry.clone())
                    .context("building the Pientegra client")?
                    .with_budget(budget.clone());
            (Arc::new(client.clone()), Arc::new(client.in_background()))
        }
    };
    let pgm = pgm::Facade::connect(&settings, storage.as_ref())?;
    let limits = settings.connections;
    Ok(AppState::new(Shared {
        limiter: ratelimit::RateLimiter::new(settings.rate_limit_per_minute),
        tokens: token::key(&settings.widget_token_secrets, settings.widget_token_max_lifetime),
        settings: Arc::new(settings),
        storage,
        pientegra,
        background,
        budget,
        hub: sse::Hub::new(limits.max_streams_per_user),
        metrics: Arc::default(),
        shutdown,
        pgm,
        framing: framing::FramingCheck::new().context("building the framing check's HTTP client")?,
        database_check: http::DatabaseCheck::default(),
    }))
}
