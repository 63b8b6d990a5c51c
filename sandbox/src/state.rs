//! The handle every handler and background task shares.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use pientegra_shared::time::Timestamp;
use tokio::sync::Notify;

use crate::config::{Config, Settings};
use crate::hosted::TokenKey;
use crate::idempotency::Idempotency;
use crate::ratelimit::RateLimiter;
use crate::store::{Store, WebhookTarget};

/// Cheap to clone: one `Arc` around everything.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// Fixed for the sandbox's life: API key, tenant branding, ...
    pub config: Config,
    /// Where the sandbox is reachable, e.g. `http://127.0.0.1:8081` (no trailing slash).
    pub base_url: String,
    /// Signs and checks `depositUrl` tokens.
    pub token_key: TokenKey,
    /// Every record; see [`AppState::store`] and [`AppState::change`].
    pub store: Mutex<Store>,
    /// What `/sandbox/config` shows and changes.
    pub settings: Mutex<Settings>,
    /// The `Idempotency-Key`s in use.
    pub idempotency: Idempotency,
    /// The per-key request log of the rate limit.
    pub limiter: RateLimiter,
    /// Wakes the delivery worker: new events, a replay, a config change, a free slot.
    pub wake_delivery: Notify,
    /// Wakes the review timers: new deadlines.
    pub wake_review: Notify,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A fresh sandbox state for `config`, reachable at `base_url`.
    pub fn new(config: Config, base_url: String) -> AppState {
        let settings = Settings::from_config(&config);
        let webhook =
            WebhookTarget { url: config.webhook_url.clone(), secret: config.webhook_secret.clone(), rotated_at: now() };
        let store =
            Store::new(config.accounts, webhook, settings.auto_approve_ms.map(std::time::Duration::from_millis));
        AppState(Arc::new(Inner {
            token_key: TokenKey::generate(),
            base_url,
            store: Mutex::new(store),
            settings: Mutex::new(settings),
            idempotency: Idempotency::default(),
            limiter: RateLimiter::default(),
            wake_delivery: Notify::new(),
            wake_review: Notify::new(),
            config,
        }))
    }

    /// Reads the store. Never hold the guard across an `.await`.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.0.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the store, then wakes the background tasks: a change may have
    /// emitted an event or moved a deadline.
    pub fn change<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let result = f(&mut self.store());
        self.wake_delivery.notify_one();
        self.wake_review.notify_one();
        result
    }

    /// The live settings. Never hold the guard across an `.await`.
    pub fn settings(&self) -> MutexGuard<'_, Settings> {
        self.0.settings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Now, cut to whole milliseconds: what the wire shows is exactly what the
/// store compares, so a timestamp a client sends back means the same instant.
pub fn now() -> Timestamp {
    let now = Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
