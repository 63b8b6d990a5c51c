//! Every HTTP call the widget makes to the companion server, in one place.
//!
//! The widget token travels as `Authorization: Bearer` on each call (and as a
//! query parameter on the SSE stream, which cannot carry headers). Creating a
//! deposit or a withdrawal carries an `Idempotency-Key` made before the first
//! attempt; every retry reuses it, so a retry can never create a second one.

use std::sync::Arc;

use pientegra_shared::api::{Account, ApiError, CreateDeposit, CreateWithdrawal, Deposit, Withdrawal, codes};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, Request, RequestInit, Response};

use crate::browser;

/// A request that has had no answer for this long is abandoned (and, for a
/// create call, retried with the same key).
const REQUEST_TIMEOUT_MS: u32 = 15_000;

/// Attempts of an idempotent create before the failure is shown.
const CREATE_ATTEMPTS: u32 = 5;

/// Pause before the first retry; doubled after each failed attempt.
const FIRST_RETRY_DELAY_MS: i32 = 600;

/// Where the companion server is and who the user is.
///
/// `Debug` leaves the token out: it is short-lived, but it is still a
/// credential and has no business in a console log.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    endpoint: Arc<str>,
    token: Arc<str>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).field("token", &"[redacted]").finish()
    }
}

/// Why a call did not give the record it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiFailure {
    /// No answer: offline, DNS, CORS refusal or timeout.
    Network,
    /// The server's error envelope, `{"error": code, "message"}`.
    Api { status: u16, code: String },
    /// An answer that is not what the API promises (a proxy page, a bad body).
    Unexpected { status: u16 },
}

impl ApiFailure {
    /// The stable code the widget explains in words.
    pub fn code(&self) -> &str {
        match self {
            ApiFailure::Network => "network",
            ApiFailure::Api { code, .. } => code,
            ApiFailure::Unexpected { .. } => "unexpected",
        }
    }

    /// Whether the same request, with the same idempotency key, may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiFailure::Network => true,
            ApiFailure::Api { status, code } => {
                matches!(
                    code.as_str(),
                    codes::IDEMPOTENCY_KEY_IN_FLIGHT
                        | codes::PROVIDER_UNAVAILABLE
                        | codes::PROVIDER_BUSY
                        | codes::RATE_LIMITED
                ) || matches!(status, 502..=504)
            }
            ApiFailure::Unexpected { status } => matches!(status, 0 | 502..=504),
        }
    }

    /// Whether the token is no longer accepted, so polling is pointless.
    pub fn is_auth(&self) -> bool {
        matches!(self, ApiFailure::Api { status: 401 | 403, .. })
    }

    /// Whether the record does not exist for this user.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiFailure::Api { status: 404, .. })
    }
}

impl Client {
    /// `endpoint` is the server's origin (a trailing slash is tolerated).
    pub fn new(endpoint: &str, token: &str) -> Client {
        Client { endpoint: endpoint.trim_end_matches('/').into(), token: token.into() }
    }

    /// The SSE stream's URL. `EventSource` cannot set headers, hence the query parameter.
    pub fn events_url(&self) -> String {
        let token = String::from(js_sys::encode_uri_component(&self.token));
        format!("{}/api/events?token={token}", self.endpoint)
    }

    /// `GET /api/account`: balance, deposits and withdrawals, newest first.
    pub async fn account(&self) -> Result<Account, ApiFailure> {
        self.send("GET", "/api/account", None, None).await
    }

    /// `GET /api/deposits/{intentId}`.
    pub async fn deposit(&self, intent_id: Uuid) -> Result<Deposit, ApiFailure> {
        self.send("GET", &format!("/api/deposits/{intent_id}"), None, None).await
    }

    /// `GET /api/withdrawals/{withdrawalId}`.
    pub async fn withdrawal(&self, withdrawal_id: Uuid) -> Result<Withdrawal, ApiFailure> {
        self.send("GET", &format!("/api/withdrawals/{withdrawal_id}"), None, None).await
    }

    /// `POST /api/deposits`, retried with the same key while the failure is transient.
    pub async fn create_deposit(&self, body: &CreateDeposit, key: &str) -> Result<Deposit, ApiFailure> {
        self.create("/api/deposits", body, key).await
    }

    /// `POST /api/withdrawals`, retried with the same key while the failure is transient.
    pub async fn create_withdrawal(&self, body: &CreateWithdrawal, key: &str) -> Result<Withdrawal, ApiFailure> {
        self.create("/api/withdrawals", body, key).await
    }

    async fn create<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        key: &str,
    ) -> Result<T, ApiFailure> {
        let body = serde_json::to_string(body).map_err(|_| ApiFailure::Unexpected { status: 0 })?;
        let mut delay = FIRST_RETRY_DELAY_MS;
        let mut attempt = 1;
        loop {
            match self.send("POST", path, Some(&body), Some(key)).await {
                Err(failure) if failure.is_transient() && attempt < CREATE_ATTEMPTS => {
                    browser::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<T, ApiFailure> {
        let (status, text) = self.fetch(method, path, body, idempotency_key).await.map_err(|_| ApiFailure::Network)?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|_| ApiFailure::Unexpected { status });
        }
        match serde_json::from_str::<ApiError>(&text) {
            Ok(envelope) => Err(ApiFailure::Api { status, code: envelope.error }),
            Err(_) => Err(ApiFailure::Unexpected { status }),
        }
    }

    /// One `fetch`; `Err` only when no response arrived.
    async fn fetch(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, String), JsValue> {
        let headers = Headers::new()?;
        headers.set("Accept", "application/json")?;
        headers.set("Authorization", &format!("Bearer {}", self.token))?;
        if let Some(key) = idempotency_key {
            headers.set("Idempotency-Key", key)?;
        }
        let init = RequestInit::new();
        init.set_method(method);
        if let Some(body) = body {
            headers.set("Content-Type", "application/json")?;
            init.set_body(&JsValue::from_str(body));
        }
        init.set_headers(&headers);
        init.set_signal(Some(&AbortSignal::timeout_with_u32(REQUEST_TIMEOUT_MS)));
        let request = Request::new_with_str_and_init(&format!("{}{path}", self.endpoint), &init)?;
        let response: Response =
            JsFuture::from(leptos::prelude::window().fetch_with_request(&request)).await?.dyn_into()?;
        let text = JsFuture::from(response.text()?).await?.as_string().unwrap_or_default();
        Ok((response.status(), text))
    }
}
