//! The review simulation's clock: RESERVED intents expire at `expiresAt`, and
//! with auto-approve on, reviews happen by themselves after the configured
//! delay (an intent is approved; a withdrawal is approved, then sent).
//!
//! One loop around one idempotent step ([`crate::store::Store::run_timers`]):
//! it does what is due, then sleeps until the next deadline or until a change
//! wakes it (a new intent, a new policy), whichever comes first.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, now};

/// How long the loop sleeps when nothing is scheduled (a wake-up comes sooner).
const IDLE: Duration = Duration::from_secs(3600);

/// Runs until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    loop {
        let next = state.store().run_timers(now(), Instant::now());
        // Expiring and approving emit events. Not `state.change`: that would
        // also wake this loop, which would then spin.
        state.wake_delivery.notify_one();
        let wake_at = next.unwrap_or_else(|| Instant::now() + IDLE);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = state.wake_review.notified() => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}
