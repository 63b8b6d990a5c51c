//! The reqwest implementation of [`PientegraApi`]: bearer auth, idempotency
//! keys, the contract's retry schedule, and the mapping of every answer to a
//! record or a [`PientegraError`].
//!
//! Every request is built once and cloned for each attempt, so a retry sends
//! the same URL, the same `Idempotency-Key` and the same body bytes: that is
//! what lets Pientegra recognise it as the same request and answer it from its
//! idempotency record instead of creating a second intent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use pientegra_shared::ids::IdempotencyKey;
use pientegra_shared::wire::{
    CreateDepositRequest, CreateWithdrawalRequest, DepositCreated, ErrorBody, EventRecord, EventsQuery, Intent,
    ListQuery, Page, ReplayAccepted, WebhookConfig, WebhookConfigRequest, Withdrawal, WithdrawalCreated, codes,
};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tracing::Instrument;
use uuid::Uuid;

use super::budget::{BudgetSettings, CallBudget, Priority};
use super::{PientegraApi, PientegraError};

/// The longest wait a `Retry-After` header can impose on one retry. A
/// misbehaving proxy asking for an hour must not park a user's request.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The largest 2xx body read; a full page of 100 records is far below it.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The largest error body read: only its code and message matter.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// The longest Pientegra error message carried into our own errors and logs.
const MAX_MESSAGE_CHARS: usize = 300;

/// When and how long to try a Pientegra call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait before each attempt; its length is the number of attempts
    /// (an empty list still makes one attempt).
    pub delays: Vec<Duration>,
    /// The limit on one attempt, from connecting to the last body byte.
    pub request_timeout: Duration,
    /// The limit on opening the connection of one attempt.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    /// The contract's recommended schedule: 0, 500, 1500, 4000, 10000 ms.
    fn default() -> RetryPolicy {
        RetryPolicy {
            delays: [0, 500, 1_500, 4_000, 10_000].into_iter().map(Duration::from_millis).collect(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// The default schedule a hundred times faster (0, 5, 15, 40, 100 ms), with
    /// short timeouts, so tests exercise every retry in well under a second.
    pub fn scaled_for_tests() -> RetryPolicy {
        RetryPolicy {
            delays: [0, 5, 15, 40, 100].into_iter().map(Duration::from_millis).collect(),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// The Pientegra client over HTTP. Cheap to clone: the connection pool and
/// the call budget are shared.
#[derive(Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    /// The API base without a trailing slash, e.g. `https://api.pientegra.com/api/v1`.
    base: String,
    api_key: SecretString,
    retry: RetryPolicy,
    budget: Arc<CallBudget>,
    /// Calls other than creates wait as background work (see [`HttpClient::in_background`]).
    background: bool,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("api_base", &self.base)
            .field("api_key", &"[redacted]")
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}

/// What one call needs besides the request itself.
struct CallOptions {
    /// The operation name, for logs.
    op: &'static str,
    /// Whether a 404 means "no such record" (a lookup by id) rather than a
    /// wrong route, which on a create or a listing is a refusal like any other.
    lookup: bool,
    /// Overrides the policy's attempt count (the readiness ping tries once).
    attempts: Option<usize>,
    /// Logged so a retried create can be matched with Pientegra's records.
    idempotency_key: Option<IdempotencyKey>,
    /// A create moves money: it goes first in the call budget.
    create: bool,
}

impl CallOptions {
    fn new(op: &'static str) -> CallOptions {
        CallOptions { op, lookup: false, attempts: None, idempotency_key: None, create: false }
    }

    /// A create with its idempotency key.
    fn create(op: &'static str, key: IdempotencyKey) -> CallOptions {
        CallOptions { idempotency_key: Some(key), create: true, ..CallOptions::new(op) }
    }
}

/// How one attempt ended.
enum Outcome {
    /// A definite answer: the 2xx body, or an error not worth retrying.
    Done(Result<Vec<u8>, PientegraError>),
    /// Worth another attempt.
    Retry {
        /// Status and code, or the transport failure; never a body.
        reason: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The error to report if this was the last attempt, when the answer
        /// was itself definite (503 `no_account_available`).
        last_answer: Option<PientegraError>,
    },
}

impl HttpClient {
    /// A client for the API at `api_base` (e.g. `http://127.0.0.1:8081/api/v1`).
    ///
    /// Fails on a base that is not an http(s) URL, on a key that cannot be
    /// sent in a header, or when the TLS stack cannot start. Redirects are
    /// never followed: an API that redirects is misconfigured, and following
    /// one could carry the bearer key to another host.
    pub fn new(api_base: &str, api_key: SecretString, retry: RetryPolicy) -> anyhow::Result<HttpClient> {
        // The errors never echo the value: a misplaced credential may be in it.
        let url = url::Url::parse(api_base).context("PIENTEGRA_API_BASE is not a URL")?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!("PIENTEGRA_API_BASE must be an http(s) URL with a host");
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            bail!("PIENTEGRA_API_BASE must have no query, fragment or user:password (the key is PIENTEGRA_API_KEY)");
        }
        if api_key.expose_secret().trim().is_empty() {
            bail!("PIENTEGRA_API_KEY is empty");
        }
        // Checked once here so a bad key fails at start, not on the first deposit.
        // The error deliberately does not echo the value.
        bearer(&api_key)
            .map_err(|_| anyhow::anyhow!("PIENTEGRA_API_KEY contains characters not allowed in an HTTP header"))?;

        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("pientegra-kit/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(retry.request_timeout)
            .connect_timeout(retry.connect_timeout)
            .build()
            .context("building the Pientegra HTTP client")?;

        // Until a server gives it its own, a client limits nothing: tools and
        // tests that build one get every call they ask for.
        let budget = Arc::new(CallBudget::local(BudgetSettings::unlimited(), Default::default()));
        Ok(HttpClient {
            http,
            base: api_base.trim_end_matches('/').to_owned(),
            api_key,
            retry,
            budget,
            background: false,
        })
    }

    /// The same client taking every attempt's slot from `budget`.
    pub fn with_budget(self, budget: Arc<CallBudget>) -> HttpClient {
        HttpClient { budget, ..self }
    }

    /// The same client (same pool, same budget) for background jobs: its
    /// lookups, listings and replays yield to the calls users wait for. Its
    /// creates (a withdrawal resubmitted) keep the creates' priority.
    pub fn in_background(&self) -> HttpClient {
        HttpClient { background: true, ..self.clone() }
    }

    /// The budget priority of a call.
    fn priority(&self, opts: &CallOptions) -> Priority {
        if opts.create {
            Priority::Create
        } else if self.background {
            Priority::Background
        } else {
            Priority::Lookup
        }
    }

    /// A request to `path` (relative to the base, starting with `/external/`) with the bearer key.
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, PientegraError> {
        let auth = bearer(&self.api_key)
            .map_err(|_| PientegraError::Protocol { reason: "the API key cannot be sent in a header".into() })?;
        Ok(self.http.request(method, format!("{}{path}", self.base)).header(header::AUTHORIZATION, auth))
    }

    /// A create: JSON body serialized once, `Idempotency-Key` attached.
    fn create<B: Serialize>(
        &self,
        path: &str,
        key: IdempotencyKey,
        body: &B,
    ) -> Result<RequestBuilder, PientegraError> {
        Ok(self
            .request(Method::POST, path)?
            .header("Idempotency-Key", key.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(encode(body)?))
    }

    /// Sends a request under the retry policy and reads a 2xx body as `T`.
    async fn execute<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        opts: CallOptions,
    ) -> Result<T, PientegraError> {
        let template = builder.build().map_err(|e| PientegraError::Protocol {
            reason: format!("could not build the request: {}", e.without_url()),
        })?;
        let span = tracing::debug_span!(
            "pientegra",
            op = opts.op,
            method = %template.method(),
            path = %template.url().path(),
            idempotency_key = tracing::field::Empty,
        );
        if let Some(key) = opts.idempotency_key {
            span.record("idempotency_key", tracing::field::display(key));
        }
        async move {
            let body = self.attempts(&template, &opts).await?;
            serde_json::from_slice(&body)
                .map_err(|e| PientegraError::Protocol { reason: format!("unexpected response body: {e}") })
        }
        .instrument(span)
        .await
    }

    /// The retry loop: the body of the first definite 2xx, or why there was none.
    async fn attempts(&self, template: &reqwest::Request, opts: &CallOptions) -> Result<Vec<u8>, PientegraError> {
        let attempts = opts.attempts.unwrap_or(self.retry.delays.len()).max(1);
        let priority = self.priority(opts);
        let mut wait = self.retry.delays.first().copied().unwrap_or_default();
        let mut attempt = 1;
        loop {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            match self.budget.acquire(priority).await {
                Ok(()) => {}
                Err(not_sent) if attempt == 1 => return Err(not_sent),
                // An earlier attempt may have reached Pientegra: the outcome is unknown, not "not sent".
                Err(not_sent) => {
                    return Err(PientegraError::Unavailable {
                        reason: format!("{} attempt(s) failed, then the retry was held back: {not_sent}", attempt - 1),
                    });
                }
            }
            // A body set from bytes is buffered, so cloning never fails; the
            // clone carries the very same bytes and headers.
            let request = template
                .try_clone()
                .ok_or_else(|| PientegraError::Protocol { reason: "the request body cannot be replayed".into() })?;
            tracing::debug!(attempt, attempts, "calling Pientegra");
            let outcome = match self.http.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let outcome = classify(response, opts.lookup).await;
                    self.budget.record(is_an_answer(status, &outcome));
                    outcome
                }
                Err(e) => {
                    self.budget.record(false);
                    Outcome::Retry { reason: describe_transport(&e), retry_after: None, last_answer: None }
                }
            };
            match outcome {
                Outcome::Done(result) => return result,
                Outcome::Retry { reason, last_answer, .. } if attempt >= attempts => {
                    tracing::warn!(attempt, attempts, %reason, "Pientegra call gave up");
                    return Err(last_answer.unwrap_or_else(|| PientegraError::Unavailable {
                        reason: format!("{attempts} attempt(s) failed, the last with: {reason}"),
                    }));
                }
                Outcome::Retry { reason, retry_after, .. } => {
                    let scheduled = self.retry.delays.get(attempt).copied().unwrap_or_default();
                    wait = scheduled.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
                    tracing::warn!(
                        attempt,
                        attempts,
                        %reason,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "retrying Pientegra call"
                    );
                    attempt += 1;
                }
            }
        }
    }
}

/// Whether Pientegra answered with our key, as readiness counts it: any
/// definite answer but a 401 (the key is wrong); of the answers worth a
/// retry, only those Pientegra itself decided (no free receiving account, the
/// same key in flight), not a timeout, a 429 or a server failure.
fn is_an_answer(status: StatusCode, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Done(_) => status != StatusCode::UNAUTHORIZED,
        Outcome::Retry { last_answer, .. } => last_answer.is_some() || status == StatusCode::CONFLICT,
    }
}

/// Sorts one HTTP answer into a result or a reason to retry.
async fn classify(response: reqwest::Response, lookup: bool) -> Outcome {
    let status = response.status();
    if status.is_success() {
        tracing::debug!(status = status.as_u16(), "Pientegra answered");
        return match read_capped(response, MAX_BODY_BYTES).await {
            Ok((body, false)) => Outcome::Done(Ok(body)),
            Ok((_, true)) => Outcome::Done(Err(PientegraError::Protocol {
                reason: format!("response body larger than {MAX_BODY_BYTES} bytes"),
            })),
            // The answer was cut off: ask again, the idempotency record replays it.
            Err(e) => Outcome::Retry {
                reason: format!("HTTP {}, then {}", status.as_u16(), describe_transport(&e)),
                retry_after: None,
                last_answer: None,
            },
        };
    }
    if status.is_redirection() {
        return Outcome::Done(Err(PientegraError::Protocol {
            reason: format!("redirected with HTTP {}; is PIENTEGRA_API_BASE the API's own address?", status.as_u16()),
        }));
    }

    let retry_after = retry_after(response.headers());
    let (code, message) = error_envelope(status, response).await;
    let reason = format!("HTTP {} {code}", status.as_u16());
    let refused = |code: String, message: String| PientegraError::Refused { status: status.as_u16(), code, message };
    match status.as_u16() {
        404 if lookup => Outcome::Done(Err(PientegraError::NotFound)),
        409 if code == codes::DUPLICATE_IDEMPOTENCY_KEY => Outcome::Retry { reason, retry_after, last_answer: None },
        // Pientegra had no account to reserve: nothing was created, so once the
        // retries are spent this is a definite (if temporary) refusal.
        503 if code == codes::NO_ACCOUNT_AVAILABLE => {
            Outcome::Retry { reason, retry_after, last_answer: Some(refused(code, message)) }
        }
        408 | 429 | 500..=599 => Outcome::Retry { reason, retry_after, last_answer: None },
        401 => {
            // Not the user's fault and not transient: the partner's key is wrong,
            // revoked or rotated. Said loudly here because the widget only ever
            // sees "provider unavailable".
            tracing::error!(%code, "Pientegra rejected the API key; check PIENTEGRA_API_KEY");
            Outcome::Done(Err(refused(code, message)))
        }
        400..=499 => {
            tracing::debug!(status = status.as_u16(), %code, "Pientegra refused the request");
            Outcome::Done(Err(refused(code, message)))
        }
        other => Outcome::Done(Err(PientegraError::Protocol { reason: format!("unexpected HTTP status {other}") })),
    }
}

/// The `error` code and `message` of a non-2xx answer. A body that is not the
/// contract's envelope (a proxy's HTML page, say) yields `http_<status>` and a
/// trimmed excerpt of its text.
async fn error_envelope(status: StatusCode, response: reqwest::Response) -> (String, String) {
    // A body that breaks off is treated as empty: the status alone still decides.
    let body = read_capped(response, MAX_ERROR_BODY_BYTES).await.map(|(body, _)| body).unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(envelope) => (envelope.error, clip(&envelope.message)),
        Err(_) => {
            let text = String::from_utf8_lossy(&body);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let message = if text.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                clip(&text)
            };
            (format!("http_{}", status.as_u16()), message)
        }
    }
}

/// Reads a body up to `limit` bytes; the flag says whether it was longer.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len().saturating_add(chunk.len()) > limit {
            let room = limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// `Retry-After` in whole seconds, as the contract sends it; an HTTP date or
/// anything else unreadable is ignored and the schedule alone decides.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A transport failure in words, without the URL (the span already names the path).
fn describe_transport(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response broke off"
    } else {
        "transport error"
    };
    // The causes tell "connection refused" from a DNS or TLS failure.
    let mut text = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Bearer <key>` as a header value marked sensitive, so hyper never prints it.
fn bearer(api_key: &SecretString) -> Result<HeaderValue, header::InvalidHeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", api_key.expose_secret()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Serializes a request body once; the same bytes go out on every attempt.
fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, PientegraError> {
    serde_json::to_vec(body)
        .map_err(|e| PientegraError::Protocol { reason: format!("could not encode the request body: {e}") })
}

/// Cuts a message to [`MAX_MESSAGE_CHARS`] characters.
fn clip(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

#[async_trait::async_trait]
impl PientegraApi for HttpClient {
    async fn create_deposit(
        &self,
        key: IdempotencyKey,
        req: &CreateDepositRequest,
    ) -> Result<DepositCreated, PientegraError> {
        let request = self.create("/external/deposits", key, req)?;
        self.execute(request, CallOptions::create("create_deposit", key)).await
    }

    async fn create_withdrawal(
        &self,
        key: IdempotencyKey,
        req: &CreateWithdrawalRequest,
    ) -> Result<WithdrawalCreated, PientegraError> {
        let request = self.create("/external/withdrawals", key, req)?;
        self.execute(request, CallOptions::create("create_withdrawal", key)).await
    }

    async fn get_intent(&self, id: Uuid) -> Result<Intent, PientegraError> {
        let request = self.request(Method::GET, &format!("/external/intents/{id}"))?;
        let opts = CallOptions { lookup: true, ..CallOptions::new("get_intent") };
        self.execute(request, opts).await
    }

    async fn get_withdrawal(&self, id: Uuid) -> Result<Withdrawal, PientegraError> {
        let request = self.request(Method::GET, &format!("/external/withdrawals/{id}"))?;
        let opts = CallOptions { lookup: true, ..CallOptions::new("get_withdrawal") };
        self.execute(request, opts).await
    }

    async fn list_intents(&self, query: &ListQuery) -> Result<Page<Intent>, PientegraError> {
        let request = self.request(Method::GET, "/external/intents")?.query(query);
        self.execute(request, CallOptions::new("list_intents")).await
    }

    async fn list_withdrawals(&self, query: &ListQuery) -> Result<Page<Withdrawal>, PientegraError> {
        let request = self.request(Method::GET, "/external/withdrawals")?.query(query);
        self.execute(request, CallOptions::new("list_withdrawals")).await
    }

    async fn list_events(&self, query: &EventsQuery) -> Result<Page<EventRecord>, PientegraError> {
        let request = self.request(Method::GET, "/external/events")?.query(query);
        self.execute(request, CallOptions::new("list_events")).await
    }

    async fn replay_event(&self, event_id: Uuid) -> Result<ReplayAccepted, PientegraError> {
        let path = format!("/external/events/{event_id}/replay");
        let request = self.request(Method::POST, &path)?;
        let opts = CallOptions { lookup: true, ..CallOptions::new("replay_event") };
        self.execute(request, opts).await
    }

    async fn set_webhook_config(&self, req: &WebhookConfigRequest) -> Result<WebhookConfig, PientegraError> {
        let request = self
            .request(Method::PUT, "/external/site/webhook-config")?
            .header(header::CONTENT_TYPE, "application/json")
            .body(encode(req)?);
        self.execute(request, CallOptions::new("set_webhook_config")).await
    }

    async fn ping(&self) -> Result<(), PientegraError> {
        let query = ListQuery { limit: Some(1), ..ListQuery::default() };
        let request = self.request(Method::GET, "/external/intents")?.query(&query);
        // One attempt: the check wants the current state, and runs again anyway.
        let opts = CallOptions { attempts: Some(1), ..CallOptions::new("ping") };
        self.execute::<IgnoredAny>(request, opts).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_contracts() {
        let policy = RetryPolicy::default();
        let ms: Vec<u128> = policy.delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 500, 1_500, 4_000, 10_000]);
        assert_eq!(policy.request_timeout, Duration::from_secs(10));
        assert_eq!(policy.connect_timeout, Duration::from_secs(3));
        assert_eq!(RetryPolicy::scaled_for_tests().delays.len(), 5);
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn long_messages_are_clipped_on_a_character_boundary() {
        let long = "ş".repeat(MAX_MESSAGE_CHARS + 10);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn bad_bases_and_keys_fail_at_start_without_echoing_the_key() {
        let key = || SecretString::from("sk_test_demo_secret");
        assert!(HttpClient::new("ftp://x/api", key(), RetryPolicy::default()).is_err());
        assert!(HttpClient::new("not a url", key(), RetryPolicy::default()).is_err());
        for misplaced in ["http://h/api?key=sk_live_leak", "http://user:sk_live_leak@h/api"] {
            let err = HttpClient::new(misplaced, key(), RetryPolicy::default()).unwrap_err();
            assert!(!format!("{err:#}").contains("leak"), "{err:#}");
        }
        assert!(HttpClient::new("http://h/api", SecretString::from(" "), RetryPolicy::default()).is_err());
        let err = HttpClient::new("http://h/api", SecretString::from("sk_test_bad\nsecret"), RetryPolicy::default())
            .unwrap_err();
        assert!(!format!("{err:#}").contains("secret"), "{err:#}");
        let client = HttpClient::new("http://h/api/v1/", key(), RetryPolicy::default()).unwrap();
        assert_eq!(client.base, "http://h/api/v1");
    }
}
