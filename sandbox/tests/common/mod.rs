//! Test harness: a sandbox on port 0, an API client, a webhook receiver that
//! records what it gets, and polling with a timeout (never a blind sleep).

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use pientegra_sandbox::{Config, Sandbox};
use serde_json::{Value, json};
use tokio::time::Instant;

/// A config for fast tests: a generous rate limit and the retry schedule at 1/1000.
pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        rate_limit_per_minute: 100_000,
        retry_scale_ppm: 1_000,
        ..Config::default()
    }
}

/// A running sandbox plus a client for it.
pub struct Harness {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(test_config()).await
    }

    pub async fn with(config: Config) -> Harness {
        let sandbox = Sandbox::spawn(config).await.expect("the sandbox starts");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Harness { sandbox, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.api_base())
    }

    /// An authenticated External API request.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.api_url(path)).bearer_auth(self.sandbox.api_key())
    }

    /// `POST` a create with an explicit idempotency key.
    pub async fn create_with_key(&self, path: &str, key: &str, body: &Value) -> Reply {
        let response =
            self.api(reqwest::Method::POST, path).header("Idempotency-Key", key).json(body).send().await.unwrap();
        Reply::read(response).await
    }

    /// `POST` a create with a fresh idempotency key.
    pub async fn create(&self, path: &str, body: &Value) -> Reply {
        self.create_with_key(path, &uuid::Uuid::now_v7().to_string(), body).await
    }

    /// Creates a deposit of `amount` minor units; panics unless 201.
    pub async fn deposit(&self, amount: u64) -> Value {
        let reply =
            self.create("/external/deposits", &json!({"externalUserId": "user-1", "amount": amount.to_string()})).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json()
    }

    /// Creates a withdrawal of `amount` minor units; panics unless 201.
    pub async fn withdrawal(&self, amount: u64) -> Value {
        let reply = self.create("/external/withdrawals", &withdrawal_body(amount)).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json()
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.api(reqwest::Method::GET, path).send().await.unwrap()).await
    }

    /// A control call under `/sandbox/`.
    pub async fn control(&self, path: &str, body: Value) -> Reply {
        let response = self.http.post(self.url(path)).json(&body).send().await.unwrap();
        Reply::read(response).await
    }

    /// `PUT /sandbox/config`; panics unless 200.
    pub async fn configure(&self, body: Value) -> Value {
        let response = self.http.put(self.url("/sandbox/config")).json(&body).send().await.unwrap();
        let reply = Reply::read(response).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()
    }

    /// `GET /sandbox/state`.
    pub async fn state(&self) -> Value {
        self.http.get(self.url("/sandbox/state")).send().await.unwrap().json().await.unwrap()
    }

    /// Points webhooks at `url`; answers the webhook-config response.
    pub async fn set_webhook(&self, url: &str, rotate: bool) -> Value {
        let response = self
            .api(reqwest::Method::PUT, "/external/site/webhook-config")
            .json(&json!({"webhookUrl": url, "rotateSecret": rotate}))
            .send()
            .await
            .unwrap();
        let reply = Reply::read(response).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()
    }

    /// The events listing's record of one event.
    pub async fn event(&self, event_id: &str) -> Value {
        let page = self.get("/external/events?limit=100").await.json();
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["eventId"] == event_id)
            .cloned()
            .unwrap_or_else(|| panic!("event {event_id} not listed"))
    }

    /// Every event (newest first) from the events listing.
    pub async fn events(&self) -> Vec<Value> {
        let page = self.get("/external/events?limit=100").await.json();
        page["data"].as_array().unwrap().clone()
    }
}

pub fn withdrawal_body(amount: u64) -> Value {
    json!({
        "externalUserId": "user-1",
        "amount": amount.to_string(),
        "targetIban": "TR33 0006 1005 1978 6457 8413 26",
        "targetHolderName": "Ahmet Yılmaz",
    })
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Bytes,
    pub text: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply { status, headers, bytes, text }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error envelope with `status` and `code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"], code, "{}", self.text);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.text);
    }
}

/// Polls `check` every 10 ms until it answers `Some`, or panics after `timeout`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One webhook POST as the receiver got it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Delivery {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn event_id(&self) -> String {
        self.json()["eventId"].as_str().unwrap().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Verifies the signature against `secret` with the shared verifier.
    pub fn verifies_with(&self, secret: &str) -> bool {
        let now = chrono::Utc::now().timestamp_millis();
        pientegra_shared::signature::verify(self.header("pientegra-signature"), &self.body, &[secret], now).is_ok()
    }
}

#[derive(Default)]
struct ReceiverState {
    deliveries: Mutex<Vec<Delivery>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// A tiny webhook endpoint on port 0 that records every POST and answers a settable status.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState { status: AtomicU16::new(200), ..ReceiverState::default() });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
        });
        Receiver { url, state, shutdown }
    }

    /// The status every following POST gets.
    pub fn respond_with(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// How long the receiver takes to answer.
    pub fn delay(&self, delay: Duration) {
        self.state.delay_ms.store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// The POSTs of one event, in arrival order.
    pub fn deliveries_of(&self, event_id: &str) -> Vec<Delivery> {
        self.deliveries().into_iter().filter(|d| d.header("pientegra-event-id") == event_id).collect()
    }

    /// Waits until at least `n` POSTs arrived; answers them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        eventually(&format!("{n} webhook POSTs"), Duration::from_secs(10), async || {
            let got = self.deliveries();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    state.deliveries.lock().unwrap().push(Delivery { headers, body, at: Instant::now() });
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
}
