//! A faithful, self-contained local stand-in for the Pientegra payment API
//! (`docs/pientegra-contract.md`): the External API under `/api/v1`, the hosted
//! deposit page, review simulation, signed webhook delivery with retries,
//! events and replay, and fault injection, all in memory.
//!
//! [`run`] serves it on a listener until a shutdown token fires; [`Sandbox`]
//! does the same on a background task for tests. Everything else is reached
//! over HTTP, including the test controls under `/sandbox/`.

mod accounts;
mod api;
pub mod cli;
pub mod config;
mod console;
mod control;
mod delivery;
mod error;
mod hosted;
mod html;
mod idempotency;
mod ratelimit;
mod review;
mod state;
mod store;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::error::ApiError;
use crate::state::AppState;

/// Serves the sandbox on `listener` until `shutdown` fires; the background
/// workers (webhook delivery, review timers) stop with it.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let addr = listener.local_addr().context("reading the listener's address")?;
    let state = AppState::new(config.clone(), config.base_url(addr));
    // A child token, so a serving error stops our workers without cancelling the caller's token.
    let stop = shutdown.child_token();
    let workers = TaskTracker::new();
    workers.spawn(review::run(state.clone(), stop.clone()));
    let delivery = workers.spawn(delivery::run(state.clone(), stop.clone()));
    workers.close();

    tracing::info!(%addr, base_url = %state.base_url, "sandbox listening");
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .await
        .context("serving HTTP");
    stop.cancel();
    workers.wait().await;
    delivery.await.context("the delivery worker panicked")??;
    served
}

/// Every route: the External API, the hosted page, the controls.
fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", api::router(state.clone()))
        .merge(hosted::router())
        .merge(control::router())
        .route("/", get(|| async { Redirect::to("/sandbox/console") }))
        .fallback(|| async { ApiError::NotFound("no such page".to_owned()) })
        .with_state(state)
}

/// A sandbox running on a background task; for tests and embedding.
/// Dropping it stops the sandbox too (without waiting).
pub struct Sandbox {
    addr: SocketAddr,
    base_url: String,
    api_key: String,
    webhook_secret: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Sandbox {
    /// Binds `config.bind` (port 0 picks a free port) and serves; returns once listening.
    pub async fn spawn(config: Config) -> anyhow::Result<Sandbox> {
        config.validate()?;
        let listener = TcpListener::bind(config.bind).await.with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let base_url = config.base_url(addr);
        let api_key = config.api_key.clone();
        let webhook_secret = config.webhook_secret.clone();
        let task = tokio::spawn(run(listener, config, shutdown.clone()));
        Ok(Sandbox { addr, base_url, api_key, webhook_secret, shutdown, task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`, or the configured public URL.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The External API's base: [`Sandbox::base_url`] + `/api/v1`.
    pub fn api_base(&self) -> String {
        format!("{}/api/v1", self.base_url)
    }

    /// The API key the sandbox accepts.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The webhook secret the sandbox started with (a rotation over HTTP answers the new one).
    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the sandbox and waits until it has stopped.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(error = format!("{error:#}"), "the sandbox stopped with an error"),
                Err(error) => tracing::error!(%error, "the sandbox task panicked"),
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
