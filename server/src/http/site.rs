//! The pages the server may serve beside its API: the built widget and demo
//! page (`--static-dir`), and the demo's configuration.

use std::path::Path;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use pientegra_shared::api::codes;
use serde::Serialize;
use tower_http::services::ServeDir;

use super::AppState;
use super::error::{ErrorAnswers, error_answers};
use crate::settings::Settings;

/// The page policy: scripts only from this origin (the wasm needs
/// `wasm-unsafe-eval`), API calls only to this origin, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
     object-src 'none'";

/// `GET /demo/config` in demo mode.
pub fn router(settings: &Settings) -> Router<AppState> {
    if settings.demo { Router::new().route("/demo/config", get(demo_config)) } else { Router::new() }
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(demo_config))]
pub(super) struct Api;

error_answers!(DemoErrors = ErrorAnswers::default().described(404, [(codes::NOT_FOUND, "no such route".to_owned())]));

/// What the demo page needs to know.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DemoConfig {
    /// Where the sandbox's console is, to approve the demo's deposits.
    #[schema(example = "http://127.0.0.1:8081/sandbox/console")]
    sandbox_console_url: String,
}

/// Demo mode only (elsewhere 404 `not_found`): where the sandbox console is.
#[utoipa::path(
    get, path = "/demo/config", operation_id = "demo_config", tag = "demo",
    responses((status = 200, description = "The demo's configuration", body = DemoConfig), DemoErrors),
)]
async fn demo_config(State(state): State<AppState>) -> Json<DemoConfig> {
    let origin = state.settings.api_base.origin().ascii_serialization();
    Json(DemoConfig { sandbox_console_url: format!("{origin}/sandbox/console") })
}

/// Files of `dir`, `index.html` for `/`.
pub fn static_files(dir: &Path) -> ServeDir {
    ServeDir::new(dir).append_index_html_on_directories(true)
}
