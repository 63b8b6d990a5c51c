//! The PGM facade's payments and shop notifications (being written).

use crate::http::AppState;

/// Delivers pending shop notifications until shutdown.
pub async fn notifier(state: AppState) {
    state.shutdown.cancelled().await;
}
