//! The webhook delivery worker: POSTs each event's body, signed, to the site's
//! webhook URL, and retries on the (scalable) schedule until a 2xx or DEAD.
//!
//! One loop hands due attempts to tasks, at most `max_concurrent_deliveries`
//! at once, so a slow receiver holds up only its own attempts (each capped by
//! the per-attempt timeout), and a burst of events cannot open unbounded
//! connections. Every outcome is written back through the store, which
//! schedules the retry.

use std::sync::Arc;
use std::time::Duration;

use http::header;
use pientegra_shared::signature;
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::{AppState, now};
use crate::store::{Attempt, Outcome};

/// How long the loop sleeps when nothing is scheduled (a wake-up comes sooner).
const IDLE: Duration = Duration::from_secs(3600);

/// Runs until `shutdown`; in-flight attempts are abandoned then.
pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        // A redirect is a failed delivery: following it would send the signed
        // body somewhere the site never configured.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(state.config.delivery_timeout)
        .user_agent(concat!("pientegra-sandbox/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let slots = Arc::new(Semaphore::new(state.config.max_concurrent_deliveries));
    let tasks = TaskTracker::new();
    loop {
        let next = dispatch(&state, &client, &slots, &tasks, &shutdown);
        let wake_at = next.unwrap_or_else(|| Instant::now() + IDLE);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = state.wake_delivery.notified() => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Starts every attempt that is due and has a free slot; answers when the
/// next one is due. With no free slot it answers `None`: a finishing attempt
/// wakes the loop.
fn dispatch(
    state: &AppState,
    client: &reqwest::Client,
    slots: &Arc<Semaphore>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Instant> {
    let (enabled, shuffle) = {
        let settings = state.settings();
        (settings.webhooks_enabled, settings.faults.shuffle_order)
    };
    let free = slots.available_permits();
    if !enabled || free == 0 {
        return None;
    }
    let (mut due, next) = state.store().take_due_attempts(Instant::now(), free);
    if shuffle {
        due.shuffle(&mut rand::thread_rng());
    }
    for attempt in due {
        let slot = slots.clone().try_acquire_owned().expect("no more attempts than free slots");
        tasks.spawn(attempt_task(state.clone(), client.clone(), attempt, slot, shutdown.clone()));
    }
    next
}

async fn attempt_task(
    state: AppState,
    client: reqwest::Client,
    attempt: Attempt,
    _slot: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let outcome = tokio::select! {
        () = shutdown.cancelled() => return,
        outcome = try_once(&state, &client, &attempt) => outcome,
    };
    match &outcome {
        Outcome::Delivered { status } => {
            tracing::info!(event_id = %attempt.event_id, attempt = attempt.number, status, "webhook delivered");
        }
        Outcome::Failed { status, error } => {
            tracing::info!(event_id = %attempt.event_id, attempt = attempt.number, ?status, ?error, "webhook attempt failed");
        }
    }
    let delivered = matches!(outcome, Outcome::Delivered { .. });
    let scale = state.settings().retry_scale;
    state.change(|store| store.finish_attempt(&attempt, outcome, now(), Instant::now(), scale));
    if delivered {
        let copies = state.settings().faults.duplicate_deliveries;
        for _ in 0..copies {
            // Each duplicate is signed anew, as a real re-delivery would be.
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = post(&client, &attempt) => {}
            }
        }
    }
}

/// One attempt, after the injected delay and unless an injected failure says otherwise.
async fn try_once(state: &AppState, client: &reqwest::Client, attempt: &Attempt) -> Outcome {
    let delay = Duration::from_millis(state.settings().faults.delivery_delay_ms);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let injected = {
        let mut settings = state.settings();
        let faults = &mut settings.faults;
        if faults.fail_next_deliveries > 0 {
            faults.fail_next_deliveries -= 1;
            true
        } else {
            faults.fail_delivery_percent > 0 && rand::thread_rng().gen_range(0..100) < faults.fail_delivery_percent
        }
    };
    if injected {
        return Outcome::Failed { status: None, error: Some("injected failure".to_owned()) };
    }
    post(client, attempt).await
}

/// POSTs the body bytes with a fresh `t` and signature under the attempt's secret.
async fn post(client: &reqwest::Client, attempt: &Attempt) -> Outcome {
    let t = chrono::Utc::now().timestamp_millis();
    let response = client
        .post(&attempt.url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(signature::HEADER, signature::sign(&attempt.secret, t, &attempt.body))
        .header("Pientegra-Event-Id", attempt.event_id.to_string())
        .header("Pientegra-Event-Type", attempt.event_type)
        .header("Pientegra-Delivery-Attempt", attempt.number.to_string())
        .body(attempt.body.to_vec())
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() => Outcome::Delivered { status: response.status().as_u16() },
        Ok(response) => {
            let status = response.status();
            let error =
                if status.is_redirection() { "redirect not followed".to_owned() } else { format!("HTTP {status}") };
            Outcome::Failed { status: Some(status.as_u16()), error: Some(error) }
        }
        Err(error) if error.is_timeout() => Outcome::Failed { status: None, error: Some("timed out".to_owned()) },
        Err(error) => {
            // Without the URL: the listing shows this to the site, which knows its URL.
            let error = error.without_url();
            let cause = std::error::Error::source(&error).map(|c| format!(": {c}")).unwrap_or_default();
            Outcome::Failed { status: None, error: Some(format!("{error}{cause}")) }
        }
    }
}
