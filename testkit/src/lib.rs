//! What the server's process tests (`server/tests/harness`), the end-to-end
//! tests (`pientegra-tests`) and the benchmarks share to run the kit as it is
//! deployed: nginx from the reference configuration in `deploy/`, a fresh
//! PostgreSQL schema per test, a client for the event stream, and a headless
//! Chromium for the demo page.
//!
//! It does not depend on `pientegra-server`, so the server's own tests can use it.

pub mod browser;
pub mod nginx;
pub mod postgres;
pub mod sse;

/// The sandbox's whole state (`GET /sandbox/state`; `sandbox` is its base URL).
pub async fn sandbox_state(http: &reqwest::Client, sandbox: &str) -> serde_json::Value {
    let response = http.get(format!("{sandbox}/sandbox/state")).send().await.expect("sandbox state");
    response.json().await.expect("sandbox state body")
}

/// Changes the sandbox's settings (`PUT /sandbox/config` with `update`; `sandbox` is its base URL).
pub async fn sandbox_config(http: &reqwest::Client, sandbox: &str, update: &serde_json::Value) {
    let response = http.put(format!("{sandbox}/sandbox/config")).json(update).send().await.expect("sandbox config");
    assert!(response.status().is_success(), "sandbox config: {}", response.status());
}
