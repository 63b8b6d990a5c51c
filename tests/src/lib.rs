//! The end-to-end harness: a real sandbox and a real companion server on
//! loopback sockets (port 0), a fresh database per test (a SQLite file, or a
//! PostgreSQL schema when `PIENTEGRA_TEST_POSTGRES_URL` is set), and small
//! clients for the widget API, the sandbox controls and the SSE stream.

pub mod browser;
pub mod partner;

pub use pientegra_testkit::sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use pientegra_sandbox::{Config as SandboxConfig, Sandbox};
use pientegra_server::ledger::BalanceModel;
use pientegra_server::pientegra::{BudgetSettings, PientegraApi, RetryPolicy};
use pientegra_server::settings::{ConnectionLimits, PgmSettings, Settings};
use pientegra_shared::api;
use pientegra_testkit::postgres::Schema;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token secret every test server uses.
pub const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef0123456789";

/// The admin token every test server uses (at least 32 bytes, as `serve` demands).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123";

/// The database of a test's servers.
#[derive(Clone, Default)]
pub enum Database {
    /// A fresh SQLite file in a temporary folder (the `dir` of [`settings_for`]).
    #[default]
    Sqlite,
    /// A fresh schema, dropped when the last clone of the options goes.
    Postgres(Arc<Schema>),
}

impl Database {
    /// A fresh PostgreSQL schema on the server of `PIENTEGRA_TEST_POSTGRES_URL`.
    /// Without the variable the test is skipped (`None`, with a line saying so),
    /// unless `CI=true`, where a missing database is a failure.
    pub async fn postgres() -> Option<Database> {
        Some(Database::Postgres(Arc::new(Schema::create().await?)))
    }
}

/// Runs each named `async fn(Options)` as a test on every database: the
/// module `sqlite` holds one `#[tokio::test]` per function on SQLite, the
/// module `postgres` one on a fresh PostgreSQL schema (skipped without
/// `PIENTEGRA_TEST_POSTGRES_URL`). Test bodies start from the `Options` they
/// are given.
#[macro_export]
macro_rules! on_each_database {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Options::default()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(options) = $crate::Options::postgres().await {
                        super::$test(options).await
                    }
                }
            )*
        }
    };
}

/// How a test wants its stack.
#[derive(Clone)]
pub struct Options {
    pub balance_model: BalanceModel,
    pub deposit_url_hosts: Option<Vec<String>>,
    pub allowed_origins: Vec<String>,
    pub rate_limit_per_minute: u32,
    /// The server's budget of calls to Pientegra (unlimited unless a test is about it).
    pub pientegra_budget: BudgetSettings,
    /// Replaces the HTTP client to Pientegra (for failure tests).
    pub pientegra: Option<Arc<dyn PientegraApi>>,
    pub database: Database,
    /// Turns the Mia-Platform PGM facade on.
    pub pgm: Option<PgmSettings>,
    /// Serves the built widget and demo page (browser tests).
    pub static_dir: Option<std::path::PathBuf>,
    /// Serves a partner bundle at `/widget/v1/`.
    pub widget_dir: Option<std::path::PathBuf>,
    /// The sandbox's `frame-ancestors` for its hosted page (its default `'none'` when `None`).
    pub frame_ancestors: Option<String>,
    /// `WIDGET_TOKEN_SECRET`'s secrets, newest first (by default [`TOKEN_SECRET`] alone).
    pub token_secrets: Vec<String>,
    /// The sandbox's receiving accounts (its default when `None`).
    pub sandbox_accounts: Option<usize>,
}

impl Options {
    /// The default options on a fresh PostgreSQL schema; `None` when the test must skip (see [`Database::postgres`]).
    pub async fn postgres() -> Option<Options> {
        Some(Options { database: Database::postgres().await?, ..Options::default() })
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            balance_model: BalanceModel::PreReserve,
            deposit_url_hosts: None,
            allowed_origins: vec!["http://partner.test".into()],
            rate_limit_per_minute: 1_000,
            pientegra_budget: BudgetSettings::unlimited(),
            pientegra: None,
            database: Database::Sqlite,
            pgm: None,
            static_dir: None,
            widget_dir: None,
            frame_ancestors: None,
            token_secrets: vec![TOKEN_SECRET.to_owned()],
            sandbox_accounts: None,
        }
    }
}

/// A running companion server.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; waits until the server has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Sandbox + server + a database that outlives server restarts.
pub struct Stack {
    pub sandbox: Sandbox,
    pub server: Server,
    pub http: reqwest::Client,
    pub options: Options,
    pub settings: Settings,
    _dir: tempfile::TempDir,
}

/// Settings of a test server for `sandbox`, with its database in `dir` (SQLite)
/// or the schema of `options.database` (PostgreSQL).
pub fn settings_for(sandbox: &Sandbox, dir: &std::path::Path, options: &Options) -> Settings {
    let api_base: url::Url = sandbox.api_base().parse().expect("sandbox URL");
    Settings {
        deposit_url_hosts: options
            .deposit_url_hosts
            .clone()
            .unwrap_or_else(|| vec![api_base.host_str().unwrap_or_default().to_owned()]),
        api_base,
        api_key: SecretString::from(sandbox.api_key().to_owned()),
        webhook_secrets: vec![SecretString::from(sandbox.webhook_secret().to_owned())],
        database_url: match &options.database {
            Database::Sqlite => format!("sqlite://{}", dir.join("kit.db").display()),
            Database::Postgres(schema) => schema.url.clone(),
        }
        .into(),
        widget_token_secrets: options.token_secrets.iter().cloned().map(SecretString::from).collect(),
        widget_token_max_lifetime: std::time::Duration::from_secs(24 * 3600),
        allowed_origins: options.allowed_origins.clone(),
        bind: "127.0.0.1:0".parse().expect("addr"),
        balance_model: options.balance_model,
        reconcile_interval: None,
        admin_token: Some(SecretString::from(ADMIN_TOKEN.to_owned())),
        demo: true,
        rate_limit_per_minute: options.rate_limit_per_minute,
        pientegra_budget: options.pientegra_budget,
        pientegra_retry: RetryPolicy::scaled_for_tests(),
        static_dir: options.static_dir.clone(),
        widget_dir: options.widget_dir.clone(),
        pgm: options.pgm.clone(),
        connections: ConnectionLimits::default(),
    }
}

/// A sandbox tuned for tests: fast retries, no rate limit in the way.
pub async fn sandbox() -> Sandbox {
    sandbox_for(&Options::default()).await
}

/// A sandbox tuned for tests, with the hosted page `options` asks for.
pub async fn sandbox_for(options: &Options) -> Sandbox {
    let defaults = SandboxConfig::default();
    Sandbox::spawn(SandboxConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        retry_scale_ppm: 1_000,
        rate_limit_per_minute: 100_000,
        frame_ancestors: options.frame_ancestors.clone().unwrap_or(defaults.frame_ancestors.clone()),
        accounts: options.sandbox_accounts.unwrap_or(defaults.accounts),
        ..defaults
    })
    .await
    .expect("sandbox starts")
}

/// Starts a server on `addr` (port 0 for any).
pub async fn start_server(settings: &Settings, addr: SocketAddr, pientegra: Option<Arc<dyn PientegraApi>>) -> Server {
    let listener = bind_retrying(addr).await;
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    let swapped = pientegra.is_some();
    let task = tokio::spawn(pientegra_server::run_with(listener, settings.clone(), pientegra, shutdown.clone()));
    let server = Server { addr, shutdown, task };
    wait_for(Duration::from_secs(10), || async {
        reqwest::get(format!("{}/healthz", server.url())).await.is_ok_and(|r| r.status().is_success())
    })
    .await
    .expect("server answers /healthz");
    if !swapped {
        // Ready once its check at start has had the sandbox's answer, so that
        // check never takes a fault a test injects for the calls that follow.
        wait_for(Duration::from_secs(10), || async {
            reqwest::get(format!("{}/readyz", server.url())).await.is_ok_and(|r| r.status().is_success())
        })
        .await
        .expect("server answers /readyz");
    }
    server
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    // Re-binding the port of a server that just stopped can briefly fail.
    for _ in 0..50 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr}");
}

/// A widget token for `user` from a demo-mode server at `server` (`POST /api/session`).
pub async fn demo_token(http: &reqwest::Client, server: &str, user: &str) -> String {
    let session: api::Session = http
        .post(format!("{server}/api/session"))
        .json(&json!({"externalUserId": user}))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("session body");
    session.token
}

impl Stack {
    /// A fresh stack with default options.
    pub async fn start() -> Stack {
        Stack::with(Options::default()).await
    }

    /// A fresh stack.
    pub async fn with(options: Options) -> Stack {
        let sandbox = sandbox_for(&options).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = settings_for(&sandbox, dir.path(), &options);
        let server = start_server(&settings, "127.0.0.1:0".parse().expect("addr"), options.pientegra.clone()).await;
        let stack = Stack { sandbox, server, http: reqwest::Client::new(), options, settings, _dir: dir };
        stack.point_webhooks_at_server().await;
        stack
    }

    /// Tells the sandbox to deliver webhooks to this server.
    pub async fn point_webhooks_at_server(&self) {
        self.point_webhooks_at(&self.server.url()).await;
    }

    /// Tells the sandbox to deliver webhooks to `base` (a proxy in front of the servers).
    pub async fn point_webhooks_at(&self, base: &str) {
        let response = self
            .http
            .put(format!("{}/external/site/webhook-config", self.sandbox.api_base()))
            .bearer_auth(self.sandbox.api_key())
            .json(&json!({"webhookUrl": format!("{base}/webhooks/pientegra"), "rotateSecret": false}))
            .send()
            .await
            .expect("webhook config");
        assert!(response.status().is_success(), "webhook config: {}", response.status());
    }

    /// Stops the server and starts a new one on the same address and database.
    pub async fn restart_server(&mut self) {
        let addr = self.server.addr;
        let old = std::mem::replace(&mut self.server, placeholder_server());
        old.stop().await;
        self.server = start_server(&self.settings, addr, self.options.pientegra.clone()).await;
    }

    /// Stops the server without starting another (see [`Stack::start_again`]).
    pub async fn stop_server(&mut self) {
        let old = std::mem::replace(&mut self.server, placeholder_server());
        old.stop().await;
    }

    /// Starts the server again on its old address and database.
    pub async fn start_again(&mut self, addr: SocketAddr) {
        self.server = start_server(&self.settings, addr, self.options.pientegra.clone()).await;
    }

    /// A widget token for `user` (through the demo session endpoint).
    pub async fn token(&self, user: &str) -> String {
        demo_token(&self.http, &self.server.url(), user).await
    }

    /// `POST /api/deposits` with a fresh key; returns status and JSON body.
    pub async fn post_deposit(&self, token: &str, amount: &str) -> (StatusCode, Value) {
        self.post_json(token, "/api/deposits", &uuid::Uuid::new_v4().to_string(), json!({"amount": amount})).await
    }

    /// A created deposit (panics otherwise).
    pub async fn deposit(&self, token: &str, amount: &str) -> api::Deposit {
        let (status, body) = self.post_deposit(token, amount).await;
        assert_eq!(status, StatusCode::CREATED, "deposit: {body}");
        serde_json::from_value(body).expect("deposit body")
    }

    /// POSTs JSON with a bearer token and an Idempotency-Key.
    pub async fn post_json(&self, token: &str, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.server.url()))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs JSON with a bearer token.
    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response =
            self.http.get(format!("{}{path}", self.server.url())).bearer_auth(token).send().await.expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The user's account.
    pub async fn account(&self, token: &str) -> api::Account {
        let (status, body) = self.get_json(token, "/api/account").await;
        assert_eq!(status, StatusCode::OK, "account: {body}");
        serde_json::from_value(body).expect("account body")
    }

    /// `(available, reserved)` in minor units.
    pub async fn balance(&self, token: &str) -> (u64, u64) {
        let b = self.account(token).await.balance;
        (b.available.minor(), b.reserved.minor())
    }

    /// POSTs a sandbox control action, e.g. `intents/{id}/approve`.
    pub async fn control(&self, action: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/sandbox/{action}", self.sandbox.base_url()))
            .json(&body)
            .send()
            .await
            .expect("sandbox control");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "sandbox {action}: {status} {body}");
        body
    }

    /// Everything the sandbox holds (`GET /sandbox/state`): intents, withdrawals, deliveries.
    pub async fn sandbox_state(&self) -> Value {
        pientegra_testkit::sandbox_state(&self.http, &self.sandbox.base_url()).await
    }

    /// Changes the sandbox's settings (`PUT /sandbox/config`).
    pub async fn sandbox_config(&self, update: Value) {
        pientegra_testkit::sandbox_config(&self.http, &self.sandbox.base_url(), &update).await;
    }

    /// Creates a deposit intent straight at Pientegra, bypassing the server (as
    /// if the server crashed before recording it).
    pub async fn create_intent_directly(&self, user: &str, amount: &str) -> pientegra_shared::wire::DepositCreated {
        self.http
            .post(format!("{}/external/deposits", self.sandbox.api_base()))
            .bearer_auth(self.sandbox.api_key())
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"externalUserId": user, "amount": amount}))
            .send()
            .await
            .expect("sandbox create")
            .json()
            .await
            .expect("sandbox create body")
    }

    /// Confirms and approves an intent in the sandbox.
    pub async fn pay_and_approve(&self, intent_id: uuid::Uuid) {
        self.control(&format!("intents/{intent_id}/confirm"), json!({})).await;
        self.control(&format!("intents/{intent_id}/approve"), json!({})).await;
    }

    /// Deposits `amount` for the user and waits until it is credited.
    pub async fn funded(&self, token: &str, amount: &str) {
        let before = self.balance(token).await.0;
        let deposit = self.deposit(token, amount).await;
        self.pay_and_approve(deposit.intent_id).await;
        let want = before + deposit.amount.minor();
        wait_for(Duration::from_secs(10), || async { self.balance(token).await.0 == want })
            .await
            .expect("deposit credited");
    }

    /// The sandbox's recorded `event_type` event about an intent or withdrawal,
    /// as the webhook body it delivers (to post it again, or elsewhere).
    pub async fn delivered_event_body(&self, event_type: &str, subject: uuid::Uuid) -> Vec<u8> {
        let page: Value = self
            .http
            .get(format!("{}/external/events", self.sandbox.api_base()))
            .bearer_auth(self.sandbox.api_key())
            .query(&[("eventType", event_type), ("limit", "100")])
            .send()
            .await
            .expect("sandbox events")
            .json()
            .await
            .expect("sandbox events body");
        let item = page["data"]
            .as_array()
            .expect("event list")
            .iter()
            .find(|e| {
                let p = &e["payload"];
                p["intent"]["id"] == subject.to_string() || p["withdrawal"]["id"] == subject.to_string()
            })
            .unwrap_or_else(|| panic!("no {event_type} event for {subject}"))
            .clone();
        let mut body = item["payload"].as_object().expect("payload").clone();
        body.insert("eventId".into(), item["eventId"].clone());
        body.insert("eventType".into(), item["eventType"].clone());
        body.insert("occurredAt".into(), item["occurredAt"].clone());
        serde_json::to_vec(&body).expect("JSON")
    }

    /// A stream ticket for the holder of `token` (`POST /api/stream-ticket`).
    pub async fn stream_ticket(&self, token: &str) -> String {
        sse::stream_ticket(&self.server.url(), token).await.expect("stream ticket")
    }

    /// Opens the user's SSE stream.
    pub async fn events(&self, token: &str, last_event_id: Option<i64>) -> sse::SseClient {
        sse::SseClient::connect(&self.server.url(), token, last_event_id).await.expect("SSE connects")
    }
}

fn placeholder_server() -> Server {
    Server {
        addr: "127.0.0.1:9".parse().expect("addr"),
        shutdown: CancellationToken::new(),
        task: tokio::spawn(async { Ok(()) }),
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Signs and POSTs a webhook body to the server, as Pientegra would.
pub async fn post_webhook(http: &reqwest::Client, server: &str, secret: &str, t_ms: i64, body: &[u8]) -> StatusCode {
    http.post(format!("{server}/webhooks/pientegra"))
        .header("Content-Type", "application/json")
        .header("Pientegra-Signature", pientegra_shared::signature::sign(secret, t_ms, body))
        .body(body.to_vec())
        .send()
        .await
        .map(|r| r.status())
        .context("webhook POST")
        .expect("webhook reaches the server")
}
