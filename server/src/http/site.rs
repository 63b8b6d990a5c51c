//! The pages the server may serve beside its API: the built widget and demo
//! page (`--static-dir`), and the demo's configuration.

use std::path::Path;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::services::ServeDir;

use super::AppState;
use crate::settings::Settings;

/// The page policy: scripts only from this origin (the wasm needs
/// `wasm-unsafe-eval`), API calls only to this origin, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
     object-src 'none'";

/// `GET /demo/config` in demo mode: where the sandbox console is.
pub fn router(settings: &Settings) -> Router<AppState> {
    if !settings.demo {
        return Router::new();
    }
    let console = format!("{}/sandbox/console", settings.api_base.origin().ascii_serialization());
    Router::new().route("/demo/config", get(move || async move { Json(json!({ "sandboxConsoleUrl": console })) }))
}

/// Files of `dir`, `index.html` for `/`.
pub fn static_files(dir: &Path) -> ServeDir {
    ServeDir::new(dir).append_index_html_on_directories(true)
}
