//! Background jobs: each an idempotent step plus a loop with a named delay,
//! ending on shutdown.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::http::AppState;

/// How often withdrawals with an unknown submission outcome are submitted again.
const RESUBMIT_EVERY: Duration = Duration::from_secs(15);

/// Starts every job; the handle completes once all have stopped.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(RESUBMIT_EVERY) => resubmit_withdrawals(&state).await,
            }
        }
    })
}

/// One pass: every SUBMITTING withdrawal is submitted again with its own key,
/// which Pientegra answers idempotently.
async fn resubmit_withdrawals(state: &AppState) {
    let pending = match state.storage.submitting_withdrawals().await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "listing submitting withdrawals");
            return;
        }
    };
    for record in pending {
        let local_id = record.local_id;
        if let Err(err) = crate::http::submit_withdrawal(state, record).await {
            tracing::warn!(%local_id, code = err.code, "withdrawal resubmission did not settle");
        }
    }
}
