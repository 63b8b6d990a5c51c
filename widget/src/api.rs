//! Every HTTP call the widget makes to the companion server, in one place.
//!
//! The widget token travels as `Authorization: Bearer` on each call and in no
//! URL: the SSE stream, which cannot carry headers, opens with a stream ticket
//! fetched just before (`POST /api/stream-ticket`, good for a minute and for
//! that stream only), so proxies' access logs never hold the token. Creating a
//! deposit or a withdrawal carries an `Idempotency-Key` made before the first
//! attempt; every retry reuses it, so a retry can never create a second one.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Weak};

use js_sys::{Array, JSON, Object, Reflect};
use pientegra_shared::Amount;
use pientegra_shared::api::codes;
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
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
/// Every client of one server and token on the page shares one token cell,
/// so a fresh token handed to any widget ([`Client::set_token`]) is the one
/// all of them (and their shared event stream) use from then on. Two clients
/// are equal when they share that cell.
///
/// `Debug` leaves the token out: it is short-lived, but it is still a
/// credential and has no business in a console log.
#[derive(Clone)]
pub struct Client {
    endpoint: Arc<str>,
    token: TokenCell,
}

/// One token shared by clients. A `Mutex` only because Leptos cleanups must
/// be `Send`: the page has one thread.
type TokenCell = Arc<Mutex<Arc<str>>>;
type TokenRef = Weak<Mutex<Arc<str>>>;

impl PartialEq for Client {
    fn eq(&self, other: &Client) -> bool {
        self.endpoint == other.endpoint && Arc::ptr_eq(&self.token, &other.token)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint).field("token", &"[redacted]").finish()
    }
}

impl Eq for Client {}

thread_local! {
    /// The token cells in use on the page, by server: how a widget mounted
    /// with a token another widget already holds joins its cell.
    static TOKENS: RefCell<Vec<(Arc<str>, TokenRef)>> = const { RefCell::new(Vec::new()) };
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
        let endpoint: Arc<str> = endpoint.trim_end_matches('/').into();
        let token = TOKENS.with_borrow_mut(|cells| {
            cells.retain(|(_, cell)| cell.strong_count() > 0);
            let shared = cells.iter().filter(|(e, _)| *e == endpoint).filter_map(|(_, cell)| cell.upgrade());
            let found = shared.into_iter().find(|cell| &**lock(cell) == token);
            found.unwrap_or_else(|| {
                let cell = Arc::new(Mutex::new(Arc::from(token)));
                cells.push((endpoint.clone(), Arc::downgrade(&cell)));
                cell
            })
        });
        Client { endpoint, token }
    }

    /// Replaces the token of every widget sharing this client's (a fresh
    /// token for the same user: nothing else changes).
    pub fn set_token(&self, token: &str) {
        *lock(&self.token) = token.into();
    }

    /// The server's origin, as given (without a trailing slash).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The token's `sub` claim (the user it speaks for), read without
    /// checking the signature: only to tell whether two tokens speak for the
    /// same user. A `sub` beyond ASCII comes out as its UTF-8 bytes, one
    /// character each: the same for the same user. `None` if unreadable.
    pub fn subject(&self) -> Option<String> {
        let token = lock(&self.token).clone();
        let payload = token.split('.').nth(1)?;
        let mut base64: String = payload.replace('-', "+").replace('_', "/");
        while base64.len() % 4 != 0 {
            base64.push('=');
        }
        let json = leptos::prelude::window().atob(&base64).ok()?;
        Json::parse(&json)?.string("sub").filter(|sub| !sub.is_empty())
    }

    /// `POST /api/stream-ticket`: what opens the SSE stream in the next minute.
    pub async fn stream_ticket(&self) -> Result<String, ApiFailure> {
        read(self.send("POST", "/api/stream-ticket", None, None).await, |json| json.string("ticket"))
    }

    /// The SSE stream's URL: `EventSource` cannot set headers, hence the ticket
    /// in the query, and `lastEventId` to resume after the last event received
    /// (the browser's own `Last-Event-ID` only follows its own reconnects).
    pub fn events_url(&self, ticket: &str, last_event_id: Option<&str>) -> String {
        let ticket = String::from(js_sys::encode_uri_component(ticket));
        let mut url = format!("{}/api/events?ticket={ticket}", self.endpoint);
        if let Some(id) = last_event_id {
            url.push_str("&lastEventId=");
            url.push_str(&String::from(js_sys::encode_uri_component(id)));
        }
        url
    }

    /// `GET /api/account`: balance, deposits and withdrawals, newest first.
    pub async fn account(&self) -> Result<Account, ApiFailure> {
        read(self.send("GET", "/api/account", None, None).await, Account::read)
    }

    /// `GET /api/deposits/{intentId}`.
    pub async fn deposit(&self, intent_id: &str) -> Result<Deposit, ApiFailure> {
        read(self.send("GET", &format!("/api/deposits/{intent_id}"), None, None).await, Deposit::read)
    }

    /// `GET /api/withdrawals/{withdrawalId}`.
    pub async fn withdrawal(&self, withdrawal_id: &str) -> Result<Withdrawal, ApiFailure> {
        read(self.send("GET", &format!("/api/withdrawals/{withdrawal_id}"), None, None).await, Withdrawal::read)
    }

    /// `POST /api/deposits`, retried with the same key while the failure is
    /// transient: the deposit, and whether its hosted page may be framed here.
    pub async fn create_deposit(&self, amount: Amount, key: &str) -> Result<(Deposit, Framing), ApiFailure> {
        let body = json_body(&[("amount", &amount.to_string())]);
        read(self.create("/api/deposits", &body, key).await, |json| Some((Deposit::read(json)?, Framing::read(json))))
    }

    /// `POST /api/withdrawals`, retried with the same key while the failure is transient.
    pub async fn create_withdrawal(&self, request: &NewWithdrawal, key: &str) -> Result<Withdrawal, ApiFailure> {
        let amount = request.amount.to_string();
        let body = json_body(&[("amount", &amount), ("iban", &request.iban), ("holderName", &request.holder_name)]);
        read(self.create("/api/withdrawals", &body, key).await, Withdrawal::read)
    }

    async fn create(&self, path: &str, body: &str, key: &str) -> Result<Answer, ApiFailure> {
        let mut delay = FIRST_RETRY_DELAY_MS;
        let mut attempt = 1;
        loop {
            match self.send("POST", path, Some(body), Some(key)).await {
                Err(failure) if failure.is_transient() && attempt < CREATE_ATTEMPTS => {
                    browser::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// One call; a 2xx answer comes back as its JSON object, read by the caller.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, ApiFailure> {
        let (status, text) = self.fetch(method, path, body, idempotency_key).await.map_err(|_| ApiFailure::Network)?;
        let json = Json::parse(&text);
        if (200..300).contains(&status) {
            return json.map(|json| Answer { status, json }).ok_or(ApiFailure::Unexpected { status });
        }
        // The error envelope: `{"error": code, "message": text}`.
        let code = json.filter(|e| e.string("message").is_some()).and_then(|e| e.string("error"));
        match code {
            Some(code) => Err(ApiFailure::Api { status, code }),
            None => Err(ApiFailure::Unexpected { status }),
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
        let token = lock(&self.token).clone();
        headers.set("Authorization", &format!("Bearer {token}"))?;
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

/// The token in a cell; a poisoned lock (a panic elsewhere) still holds a token.
fn lock(cell: &Mutex<Arc<str>>) -> std::sync::MutexGuard<'_, Arc<str>> {
    cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A successful answer: its status and its JSON object.
struct Answer {
    status: u16,
    json: Json,
}

/// The record in a successful answer; `Unexpected` if it is not one.
fn read<T>(answer: Result<Answer, ApiFailure>, record: fn(&Json) -> Option<T>) -> Result<T, ApiFailure> {
    let Answer { status, json } = answer?;
    record(&json).ok_or(ApiFailure::Unexpected { status })
}

/// A JSON object of string fields, e.g. `{"amount":"150000"}`, with every
/// value escaped by the browser's own `JSON.stringify`.
fn json_body(fields: &[(&str, &str)]) -> String {
    let object = Object::new();
    for (name, value) in fields {
        let _ = Reflect::set(&object, &JsValue::from_str(name), &JsValue::from_str(value));
    }
    JSON::stringify(&object).map(String::from).unwrap_or_default()
}

/// A withdrawal request as the form validated it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWithdrawal {
    pub amount: Amount,
    /// Electronic form: uppercase, no spaces.
    pub iban: String,
    pub holder_name: String,
}

// The server's answers (`docs/server.md`, "HTTP API"), read
// with the browser's JSON parser rather than serde: the widget needs a few
// fields of a few records, and a general deserializer would be most of the
// wasm it ships. A record missing a field the widget uses is `None`, the same
// "unexpected answer" serde would have reported; unknown fields are ignored.
// Times are kept as milliseconds since the epoch, all the widget compares or shows.

/// A deposit as the user sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Deposit {
    pub intent_id: String,
    pub reference_no: String,
    pub deposit_url: String,
    pub amount: Amount,
    pub expires_at_ms: i64,
    pub status: IntentStatus,
    pub rejected_reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Whether the hosted deposit page may be shown in an iframe on this page,
/// as the server found out from the page's own headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Framing {
    pub allowed: bool,
    /// Why not: `frame_ancestors`, `x_frame_options` or `unknown`.
    pub reason: Option<String>,
}

impl Framing {
    /// The deposit answer's `framing`; a server that does not say is taken as "not allowed".
    fn read(json: &Json) -> Framing {
        let framing = json.object("framing");
        let allowed = framing.as_ref().is_some_and(|f| f.field("allowed").as_bool() == Some(true));
        let reason = framing.as_ref().and_then(|f| f.string("reason"));
        Framing { allowed, reason: if allowed { None } else { reason.or_else(|| Some("unknown".to_owned())) } }
    }
}

/// A withdrawal as the user sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Withdrawal {
    pub withdrawal_id: String,
    pub reference_no: String,
    pub amount: Amount,
    pub status: WithdrawalStatus,
    /// The target IBAN with all but the country, check digits and last four masked.
    pub iban_masked: String,
    pub rejected_reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The user's balance. `available` can be withdrawn; `reserved` is held for pending withdrawals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    pub available: Amount,
    pub reserved: Amount,
}

/// `GET /api/account`.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub external_user_id: String,
    pub balance: Balance,
    /// Newest first.
    pub deposits: Vec<Deposit>,
    /// Newest first.
    pub withdrawals: Vec<Withdrawal>,
}

/// One event of the user's SSE stream; `name()` is the SSE `event:` field.
#[derive(Clone, Debug, PartialEq)]
pub enum UserEvent {
    Deposit(Deposit),
    Withdrawal(Withdrawal),
    Balance(Balance),
}

/// The SSE event names, as the server sends them.
pub const EVENT_NAMES: [&str; 3] = [
    pientegra_shared::api::UserEvent::DEPOSIT_UPDATED,
    pientegra_shared::api::UserEvent::WITHDRAWAL_UPDATED,
    pientegra_shared::api::UserEvent::BALANCE_UPDATED,
];

impl UserEvent {
    /// The SSE event name.
    #[cfg(feature = "demo")]
    pub fn name(&self) -> &'static str {
        match self {
            UserEvent::Deposit(_) => EVENT_NAMES[0],
            UserEvent::Withdrawal(_) => EVENT_NAMES[1],
            UserEvent::Balance(_) => EVENT_NAMES[2],
        }
    }

    /// Rebuilds an event from its SSE name and JSON data; `None` for an
    /// unknown name, `Some(None)` for data that is not such a record.
    pub fn from_sse(name: &str, data: &str) -> Option<Option<UserEvent>> {
        let json = Json::parse(data);
        let json = json.as_ref();
        Some(match name {
            n if n == EVENT_NAMES[0] => json.and_then(Deposit::read).map(UserEvent::Deposit),
            n if n == EVENT_NAMES[1] => json.and_then(Withdrawal::read).map(UserEvent::Withdrawal),
            n if n == EVENT_NAMES[2] => json.and_then(Balance::read).map(UserEvent::Balance),
            _ => return None,
        })
    }
}

impl Deposit {
    fn read(json: &Json) -> Option<Deposit> {
        Some(Deposit {
            intent_id: json.string("intentId")?,
            reference_no: json.string("referenceNo")?,
            deposit_url: json.string("depositUrl")?,
            amount: json.amount("amount")?,
            expires_at_ms: json.time("expiresAt")?,
            status: IntentStatus::parse(&json.string("status")?)?,
            rejected_reason: json.optional_string("rejectedReason")?,
            created_at_ms: json.time("createdAt")?,
            updated_at_ms: json.time("updatedAt")?,
        })
    }
}

impl Withdrawal {
    fn read(json: &Json) -> Option<Withdrawal> {
        Some(Withdrawal {
            withdrawal_id: json.string("withdrawalId")?,
            reference_no: json.string("referenceNo")?,
            amount: json.amount("amount")?,
            status: WithdrawalStatus::parse(&json.string("status")?)?,
            iban_masked: json.string("ibanMasked")?,
            rejected_reason: json.optional_string("rejectedReason")?,
            created_at_ms: json.time("createdAt")?,
            updated_at_ms: json.time("updatedAt")?,
        })
    }
}

impl Balance {
    fn read(json: &Json) -> Option<Balance> {
        Some(Balance { available: json.amount("available")?, reserved: json.amount("reserved")? })
    }
}

impl Account {
    fn read(json: &Json) -> Option<Account> {
        Some(Account {
            external_user_id: json.string("externalUserId")?,
            balance: Balance::read(&json.object("balance")?)?,
            deposits: json.list("deposits", Deposit::read)?,
            withdrawals: json.list("withdrawals", Withdrawal::read)?,
        })
    }
}

/// A parsed JSON object, read a field at a time.
struct Json(JsValue);

impl Json {
    /// `None` unless `text` is a JSON object.
    fn parse(text: &str) -> Option<Json> {
        JSON::parse(text).ok().and_then(Json::object_value)
    }

    fn object_value(value: JsValue) -> Option<Json> {
        (value.is_object() && !Array::is_array(&value)).then_some(Json(value))
    }

    fn field(&self, name: &str) -> JsValue {
        Reflect::get(&self.0, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.field(name).as_string()
    }

    /// `Some(None)` when absent or null, `None` when it is not a string.
    fn optional_string(&self, name: &str) -> Option<Option<String>> {
        let value = self.field(name);
        if value.is_null() || value.is_undefined() { Some(None) } else { value.as_string().map(Some) }
    }

    /// An amount on the wire: minor units as a string of digits.
    fn amount(&self, name: &str) -> Option<Amount> {
        Amount::parse_wire(&self.string(name)?).ok()
    }

    /// An ISO 8601 time, as milliseconds since the epoch.
    #[allow(clippy::cast_possible_truncation)] // Date.parse gives an integral number of ms well within i64.
    fn time(&self, name: &str) -> Option<i64> {
        let ms = js_sys::Date::parse(&self.string(name)?);
        (!ms.is_nan()).then_some(ms as i64)
    }

    fn object(&self, name: &str) -> Option<Json> {
        Json::object_value(self.field(name))
    }

    fn list<T>(&self, name: &str, read: fn(&Json) -> Option<T>) -> Option<Vec<T>> {
        let array = self.field(name).dyn_into::<Array>().ok()?;
        array.iter().map(|item| Json::object_value(item).as_ref().and_then(read)).collect()
    }
}
