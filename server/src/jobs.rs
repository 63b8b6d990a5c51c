//! Background jobs: each an idempotent step plus a loop with a named delay,
//! all ending on shutdown.

use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use crate::reconcile::Reconciler;
use crate::state::AppState;

/// How often withdrawals with an unknown submission outcome are submitted again.
const RESUBMIT_EVERY: Duration = Duration::from_secs(15);
/// How often a watched deposit awaiting its transfer is looked up at Pientegra.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Lookups per watch pass: at most 30 a minute, half of Pientegra's documented 60.
const WATCH_LOOKUPS_PER_PASS: usize = 1;
/// How long to wait before listening again after the change relay failed.
const RELAY_RETRY: Duration = Duration::from_secs(2);
/// How often the Pientegra check looks whether readiness needs a fresh answer.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// A check is made when no call has answered for this long: one call a
/// minute at most on a quiet server, none on a busy one.
pub const CHECK_WHEN_QUIET_FOR: Duration = Duration::from_secs(60);
/// After a failed call, the next check comes this soon, so readiness recovers quickly.
const RECHECK_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// Starts every job; the returned set finishes once all have stopped.
pub fn spawn(state: AppState) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    jobs.spawn(every(state.clone(), RESUBMIT_EVERY, resubmit_withdrawals));
    jobs.spawn(watch_confirmations(state.clone()));
    jobs.spawn(check_pientegra(state.clone()));
    if let Some(interval) = state.settings.reconcile_interval {
        jobs.spawn(every(state.clone(), interval, move |state| async move { reconcile(state, interval).await }));
    }
    if state.settings.pgm.is_some() {
        jobs.spawn(crate::pgm::notifier(state.clone()));
    }
    jobs.spawn(relay(state));
    jobs
}

async fn every<F, Fut>(state: AppState, period: Duration, step: F)
where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(period) => step(state.clone()).await,
        }
    }
}

/// One pass: every SUBMITTING withdrawal is submitted again with its own key,
/// which Pientegra answers idempotently.
async fn resubmit_withdrawals(state: AppState) {
    let pending = match state.storage.submitting_withdrawals().await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "listing submitting withdrawals");
            return;
        }
    };
    for record in pending {
        let local_id = record.local_id;
        if let Err(err) = state.withdrawals().submit(record).await {
            tracing::warn!(%local_id, error = %err, "withdrawal resubmission did not settle");
        }
    }
}

/// Pientegra sends no event when the user presses "I made the payment", so a
/// user watching a RESERVED deposit (an open SSE stream) would not see it move to
/// "under review" until the approval. This loop looks such deposits up, the least
/// recently checked first, within a small share of the API rate limit.
async fn watch_confirmations(state: AppState) {
    let mut checked: std::collections::HashMap<uuid::Uuid, tokio::time::Instant> = Default::default();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let waiting = match state.storage.awaiting_transfer(200).await {
            Ok(waiting) => waiting,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "listing deposits awaiting transfer");
                continue;
            }
        };
        let mut watched: Vec<_> = waiting.into_iter().filter(|d| state.hub.is_watching(&d.user_id)).collect();
        watched.sort_by_key(|d| checked.get(&d.intent_id).copied());
        checked.retain(|id, _| watched.iter().any(|d| d.intent_id == *id));
        for deposit in watched.into_iter().take(WATCH_LOOKUPS_PER_PASS) {
            checked.insert(deposit.intent_id, tokio::time::Instant::now());
            match state.background.get_intent(deposit.intent_id).await {
                Ok(intent) if intent.status == pientegra_shared::status::IntentStatus::PendingReview => {
                    if let Err(err) = state.records().note_under_review(deposit.intent_id).await {
                        tracing::error!(error = format!("{err:#}"), "recording a confirmed transfer");
                    }
                }
                // Other moves arrive by webhook (or reconciliation), with their money.
                Ok(_) => {}
                Err(err) => tracing::warn!(intent_id = %deposit.intent_id, error = %err, "deposit lookup failed"),
            }
        }
    }
}

/// Keeps readiness informed without a call per probe: when no call to
/// Pientegra has answered lately (a quiet server), or the latest failed, one
/// background check is made within the call budget. At start, at once.
async fn check_pientegra(state: AppState) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
        wait = CHECK_EVERY;
        let due = match state.budget.contact() {
            None => true,
            Some(contact) if contact.answered => contact.at.elapsed() >= CHECK_WHEN_QUIET_FOR,
            Some(contact) => contact.at.elapsed() >= RECHECK_AFTER_FAILURE,
        };
        if due {
            // The client records the outcome in the budget, which is what readiness reads.
            if let Err(err) = state.background.ping().await {
                tracing::warn!(error = %err, "Pientegra check failed");
            }
        }
    }
}

/// One reconciliation pass over the last two periods (each window overlaps the
/// previous one), on one instance at a time.
async fn reconcile(state: AppState, interval: Duration) {
    let lock = match state.storage.try_lock("reconcile").await {
        Ok(Some(lock)) => lock,
        Ok(None) => return, // another instance is on it
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "taking the reconciliation lock");
            return;
        }
    };
    let to = Utc::now();
    let from = to - chrono::Duration::from_std(interval * 2).unwrap_or(chrono::Duration::hours(2));
    let reconciler =
        Reconciler { storage: state.storage.as_ref(), pientegra: state.background.as_ref(), hub: &state.hub };
    match reconciler.run(from, to, true).await {
        Ok(report) => tracing::info!(
            intents = report.intents_checked,
            withdrawals = report.withdrawals_checked,
            findings = report.findings.len(),
            applied = report.applied(),
            replayed = report.events_replayed,
            "reconciliation pass"
        ),
        Err(err) => tracing::error!(error = format!("{err:#}"), "reconciliation pass failed"),
    }
    drop(lock);
}

/// Wakes local SSE streams for changes other instances commit.
async fn relay(state: AppState) {
    while !state.shutdown.is_cancelled() {
        if let Err(err) = state.storage.relay_changes(state.hub.clone(), state.shutdown.clone()).await {
            tracing::error!(error = format!("{err:#}"), "change relay stopped; restarting");
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(RELAY_RETRY) => {}
            }
        } else {
            // Single-instance storage has nothing to relay.
            break;
        }
    }
}
