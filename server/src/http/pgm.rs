//! The Mia-Platform Payment Gateway Manager facade under `/v3/pientegra` (being written).

use axum::Router;

use super::AppState;
use crate::settings::Settings;

/// The facade's routes; none unless `PGM_FACADE_TOKEN` is set.
pub fn router(_settings: &Settings) -> Router<AppState> {
    Router::new()
}
