//! The Pientegra HTTP client against a scripted mock Pientegra on a real
//! socket: headers, idempotent retries, `Retry-After`, refusals, timeouts,
//! pagination, and that the API key never leaks into Debug or Display.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use pientegra_server::pientegra::{HttpClient, PientegraApi, PientegraError, RetryPolicy, all_intents};
use pientegra_shared::Amount;
use pientegra_shared::ids::{ExternalUserId, IdempotencyKey};
use pientegra_shared::wire::{CreateDepositRequest, ListQuery};
use secrecy::SecretString;
use uuid::Uuid;

/// The key every test client uses; no output may ever contain its secret part.
const API_KEY: &str = "sk_test_demo_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr";
const SECRET_PART: &str = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr";

const KEY: &str = "0192f1c4-8b7e-7c3a-9f1e-2b7d8c9a0e11";

const DEPOSIT_CREATED: &str = r#"{"intentId":"01927b3c-9c1f-7a3a-9c4f-8a3e1f8b1c00",
    "referenceNo":"5MDLZBFDY7","depositUrl":"https://pay.tenant.example/d/tok",
    "requestedAmount":"100000","amount":"100000","currency":"TRY",
    "expiresAt":"2026-04-28T12:30:00.000Z","somethingNew":{"a":1}}"#;

/// One request as the mock saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of one query parameter, percent-decoded.
    fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// The mock's script: the n-th request (0-based) and what it carried →
/// the answer, or `None` to never answer.
type Script = dyn Fn(usize, &Seen) -> Option<Response> + Send + Sync;

#[derive(Clone)]
struct MockState {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
}

/// A mock Pientegra on 127.0.0.1:0, serving every path through `script`.
struct Mock {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    async fn start(script: impl Fn(usize, &Seen) -> Option<Response> + Send + Sync + 'static) -> Mock {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = MockState { seen: seen.clone(), script: Arc::new(script) };
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Mock { addr, seen }
    }

    fn base(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    fn client(&self, retry: RetryPolicy) -> HttpClient {
        HttpClient::new(&self.base(), SecretString::from(API_KEY), retry).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(State(state): State<MockState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        at: Instant::now(),
    };
    let answer = {
        let mut all = state.seen.lock().unwrap();
        all.push(seen.clone());
        (state.script)(all.len() - 1, &seen)
    };
    match answer {
        Some(response) => response,
        None => std::future::pending().await,
    }
}

fn json(status: u16, body: &str) -> Option<Response> {
    Some(
        (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(body.to_owned()),
        )
            .into_response(),
    )
}

fn error(status: u16, code: &str) -> Option<Response> {
    json(status, &format!(r#"{{"error":"{code}","message":"the {code} message"}}"#))
}

fn deposit_request() -> CreateDepositRequest {
    CreateDepositRequest {
        external_user_id: ExternalUserId::parse("user-12345").unwrap(),
        external_user_label: None,
        amount: Amount::from_minor(100_000),
        currency: Some("TRY".into()),
    }
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse(KEY).unwrap()
}

fn intent_json(n: u128) -> String {
    format!(
        r#"{{"intentId":"{}","referenceNo":"R{n}","status":"APPROVED","requestedAmount":"100",
            "amount":"100","currency":"TRY"}}"#,
        Uuid::from_u128(n)
    )
}

#[tokio::test]
async fn create_deposit_accepts_201_and_200_and_sends_bearer_key_and_body() {
    for status in [201, 200] {
        let mock = Mock::start(move |_, _| json(status, DEPOSIT_CREATED)).await;
        let client = mock.client(RetryPolicy::scaled_for_tests());

        let created = client.create_deposit(key(), &deposit_request()).await.unwrap();

        assert_eq!(created.reference_no, "5MDLZBFDY7");
        assert_eq!(created.amount, Amount::from_minor(100_000));
        let seen = mock.seen();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/v1/external/deposits");
        assert_eq!(request.header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
        assert_eq!(request.header("idempotency-key"), Some(KEY));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, serde_json::json!({"externalUserId":"user-12345","amount":"100000","currency":"TRY"}));
    }
}

#[tokio::test]
async fn two_5xx_then_201_is_one_success_with_the_same_key_and_bytes() {
    let mock = Mock::start(|n, _| if n < 2 { error(502, "bad_gateway") } else { json(201, DEPOSIT_CREATED) }).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let created = client.create_deposit(key(), &deposit_request()).await.unwrap();

    assert_eq!(created.intent_id.to_string(), "01927b3c-9c1f-7a3a-9c4f-8a3e1f8b1c00");
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    for retry in &seen[1..] {
        assert_eq!(retry.header("idempotency-key"), Some(KEY));
        assert_eq!(retry.body, seen[0].body, "a retry must send identical body bytes");
        assert_eq!(retry.header("authorization"), seen[0].header("authorization"));
    }
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let mock = Mock::start(|n, _| {
        if n == 0 {
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "1"), (header::CONTENT_TYPE, "application/json")],
                    r#"{"error":"rate_limited","message":"slow down"}"#,
                )
                    .into_response(),
            )
        } else {
            json(201, DEPOSIT_CREATED)
        }
    })
    .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    client.create_deposit(key(), &deposit_request()).await.unwrap();

    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    // The schedule alone would retry after 5 ms; Retry-After asks for 1 s. The
    // mock stamps each request on arrival, so the gap is at least the wait
    // (50 ms of slack for clock granularity; no upper bound, which could flake).
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_millis(950), "retried after only {gap:?}");
}

#[tokio::test]
async fn duplicate_idempotency_key_409_is_retried_until_it_clears() {
    let mock =
        Mock::start(|n, _| if n == 0 { error(409, "duplicate_idempotency_key") } else { json(201, DEPOSIT_CREATED) })
            .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    client.create_deposit(key(), &deposit_request()).await.unwrap();

    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("idempotency-key"), Some(KEY));
    assert_eq!(seen[1].body, seen[0].body);
}

#[tokio::test]
async fn amount_below_min_is_a_refusal_passed_to_the_widget_without_retry() {
    let mock = Mock::start(|_, _| error(400, "amount_below_min")).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    match &err {
        PientegraError::Refused { status, code, message } => {
            assert_eq!(*status, 400);
            assert_eq!(code, "amount_below_min");
            assert_eq!(message, "the amount_below_min message");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(err.kit_code(), "amount_below_min");
    assert!(err.is_definite_refusal());
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_refused_without_retry() {
    let mock = Mock::start(|_, _| error(409, "idempotency_key_reuse_with_different_body")).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    assert!(matches!(&err, PientegraError::Refused { status: 409, .. }), "{err:?}");
    assert_eq!(err.kit_code(), "provider_rejected");
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn a_rejected_api_key_is_not_retried_and_reads_as_provider_unavailable() {
    let mock = Mock::start(|_, _| error(401, "unauthorized")).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    assert_eq!(err.kit_code(), "provider_unavailable");
    // Not a judgement of the request: it goes through once the key is right.
    assert!(!err.is_definite_refusal());
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn a_refusal_not_in_pientegras_envelope_reads_as_unavailable_and_settles_nothing() {
    let mock =
        Mock::start(|_, _| Some((StatusCode::FORBIDDEN, "<html><body>Forbidden by WAF</body></html>").into_response()))
            .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.get_intent(Uuid::from_u128(1)).await.unwrap_err();

    match &err {
        PientegraError::Refused { status: 403, code, message } => {
            assert_eq!(code, "http_403");
            assert!(message.contains("Forbidden by WAF"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A firewall's page is not Pientegra's judgement of the request: a
    // withdrawal whose earlier attempt may have reached Pientegra stays reserved.
    assert_eq!(err.kit_code(), "provider_unavailable");
    assert!(!err.is_definite_refusal());
}

#[tokio::test]
async fn five_hundreds_forever_are_unavailable_after_every_attempt() {
    let mock = Mock::start(|_, _| error(500, "internal_error")).await;
    let policy = RetryPolicy::scaled_for_tests();
    let client = mock.client(policy.clone());

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    assert!(matches!(err, PientegraError::Unavailable { .. }), "{err:?}");
    assert!(!err.is_definite_refusal());
    assert_eq!(err.kit_code(), "provider_unavailable");
    assert_eq!(mock.seen().len(), policy.delays.len());
}

#[tokio::test]
async fn no_account_available_after_every_retry_reads_as_provider_busy() {
    let mock = Mock::start(|_, _| error(503, "no_account_available")).await;
    let policy = RetryPolicy::scaled_for_tests();
    let client = mock.client(policy.clone());

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    assert_eq!(err.kit_code(), "provider_busy");
    // Nothing was free at that moment: the same request may go through later.
    assert!(!err.is_definite_refusal());
    assert_eq!(mock.seen().len(), policy.delays.len());
}

#[tokio::test]
async fn a_mock_that_never_answers_times_out_as_unavailable() {
    let mock = Mock::start(|_, _| None).await;
    let policy = RetryPolicy {
        delays: vec![Duration::ZERO, Duration::from_millis(5)],
        request_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
    };
    let client = mock.client(policy);

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    match &err {
        PientegraError::Unavailable { reason } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(!err.is_definite_refusal());
    assert_eq!(mock.seen().len(), 2);
}

#[tokio::test]
async fn an_unknown_id_is_not_found() {
    let mock = Mock::start(|_, _| error(404, "not_found")).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.get_intent(Uuid::from_u128(7)).await.unwrap_err();

    assert!(matches!(err, PientegraError::NotFound), "{err:?}");
    assert_eq!(err.kit_code(), "not_found");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/api/v1/external/intents/{}", Uuid::from_u128(7)));
}

#[tokio::test]
async fn a_redirect_is_a_protocol_error_and_is_not_followed() {
    let mock =
        Mock::start(|_, _| Some((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/elsewhere")]).into_response()))
            .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.get_withdrawal(Uuid::from_u128(1)).await.unwrap_err();

    assert!(matches!(err, PientegraError::Protocol { .. }), "{err:?}");
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn an_unreadable_2xx_body_is_a_protocol_error_not_a_refusal() {
    let mock = Mock::start(|_, _| json(201, r#"{"intentId":"not-a-uuid"}"#)).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    let err = client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    assert!(matches!(err, PientegraError::Protocol { .. }), "{err:?}");
    assert!(!err.is_definite_refusal());
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn listing_follows_next_cursor_across_three_pages_until_null() {
    // Opaque cursors with characters that must survive URL encoding untouched.
    const FIRST: &str = "eyJ0IjoiMjAyNi0wNC0yOCJ9+/=&x?y";
    const SECOND: &str = "second page ş%20";
    let mock = Mock::start(|_, seen| match seen.param("cursor").as_deref() {
        None => json(200, &format!(r#"{{"data":[{},{}],"nextCursor":"{FIRST}"}}"#, intent_json(1), intent_json(2))),
        Some(FIRST) => json(200, &format!(r#"{{"data":[{}],"nextCursor":"{SECOND}"}}"#, intent_json(3))),
        Some(SECOND) => json(200, &format!(r#"{{"data":[{}],"nextCursor":null}}"#, intent_json(4))),
        Some(_) => error(400, "validation_failed"),
    })
    .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());
    let query = ListQuery { status: Some("APPROVED,REJECTED".into()), limit: Some(2), ..ListQuery::default() };

    let intents: Vec<_> = all_intents(&client, query).try_collect().await.unwrap();

    let refs: Vec<_> = intents.iter().map(|i| i.reference_no.as_str()).collect();
    assert_eq!(refs, ["R1", "R2", "R3", "R4"]);
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    let cursors: Vec<_> = seen.iter().map(|s| s.param("cursor")).collect();
    assert_eq!(cursors, [None, Some(FIRST.to_owned()), Some(SECOND.to_owned())]);
    for request in &seen {
        assert_eq!(request.path, "/api/v1/external/intents");
        assert_eq!(request.param("status").as_deref(), Some("APPROVED,REJECTED"));
        assert_eq!(request.param("limit").as_deref(), Some("2"));
    }
}

#[tokio::test]
async fn ping_asks_for_one_intent_once() {
    let mock = Mock::start(|_, _| error(500, "internal_error")).await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    assert!(client.ping().await.is_err());

    let seen = mock.seen();
    assert_eq!(seen.len(), 1, "a readiness probe must not sit through retries");
    assert_eq!(seen[0].param("limit").as_deref(), Some("1"));

    let ok = Mock::start(|_, _| json(200, r#"{"data":[],"nextCursor":null}"#)).await;
    ok.client(RetryPolicy::scaled_for_tests()).ping().await.unwrap();
}

#[tokio::test]
async fn the_api_key_never_appears_in_debug_or_display() {
    // The looked-up id picks the answer, so one mock produces every error variant.
    let mock = Mock::start(|_, seen| {
        let id: Uuid = seen.path.rsplit('/').next().unwrap().parse().unwrap();
        match id.as_u128() {
            1 => error(400, "validation_failed"),
            2 => error(404, "not_found"),
            3 => json(200, "not json"),
            4 => error(401, "unauthorized"),
            _ => error(500, "internal_error"),
        }
    })
    .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());
    let mut shown = vec![format!("{client:?}"), format!("{client:#?}")];

    let mut errors = Vec::new();
    for id in 1..=5 {
        errors.push(client.get_intent(Uuid::from_u128(id)).await.unwrap_err());
    }
    // A transport failure: nothing listens on a port that was just freed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = HttpClient::new(
        &format!("http://{closed}/api/v1"),
        SecretString::from(API_KEY),
        RetryPolicy::scaled_for_tests(),
    )
    .unwrap();
    errors.push(unreachable.create_deposit(key(), &deposit_request()).await.unwrap_err());

    let variants: Vec<_> =
        errors.iter().map(|e| format!("{e:?}").split([' ', '{']).next().unwrap().to_owned()).collect();
    for expected in ["Refused", "NotFound", "Protocol", "Unavailable"] {
        assert!(variants.iter().any(|v| v == expected), "no {expected} among {variants:?}");
    }
    for err in &errors {
        shown.push(format!("{err}"));
        shown.push(format!("{err:?}"));
    }
    for text in &shown {
        assert!(!text.contains(SECRET_PART), "the API key leaked: {text}");
    }
}

/// Log lines captured from every thread of a test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_attempts_and_statuses_but_never_the_key_or_bodies() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so a thread-local default sees every log.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mock = Mock::start(|n, _| match n {
        0 => error(503, "internal_error"),
        1 => json(201, DEPOSIT_CREATED),
        _ => error(401, "unauthorized"),
    })
    .await;
    let client = mock.client(RetryPolicy::scaled_for_tests());

    client.create_deposit(key(), &deposit_request()).await.unwrap();
    client.create_deposit(key(), &deposit_request()).await.unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying Pientegra call"), "{logs}");
    assert!(logs.contains("HTTP 503"), "{logs}");
    assert!(logs.contains("check PIENTEGRA_API_KEY"), "{logs}");
    assert!(logs.contains(KEY), "the idempotency key helps match a retry: {logs}");
    assert!(!logs.contains(SECRET_PART), "the API key leaked into the logs: {logs}");
    assert!(!logs.contains("user-12345"), "a request body leaked into the logs: {logs}");
    assert!(!logs.contains("5MDLZBFDY7"), "a response body leaked into the logs: {logs}");
}
