//! Failure paths that need Pientegra to misbehave in a precise way: a
//! `PientegraApi` wrapper (the trait exists for this) scripts the outcome of
//! withdrawal creation while everything else goes to the real sandbox.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pientegra_server::pientegra::{HttpClient, PientegraApi, PientegraError, RetryPolicy};
use pientegra_shared::ids::IdempotencyKey;
use pientegra_shared::wire::*;
use pientegra_tests::{Options, Stack, post_webhook, wait_for};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

/// What the next `create_withdrawal` does.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Pientegra refuses (a definite 4xx).
    Refuse,
    /// The call reaches Pientegra, but the answer is lost (a timeout after the fact).
    LoseAnswer,
}

struct Scripted {
    real: HttpClient,
    script: Mutex<VecDeque<Script>>,
}

#[async_trait::async_trait]
impl PientegraApi for Scripted {
    async fn create_deposit(
        &self,
        key: IdempotencyKey,
        req: &CreateDepositRequest,
    ) -> Result<DepositCreated, PientegraError> {
        self.real.create_deposit(key, req).await
    }
    async fn create_withdrawal(
        &self,
        key: IdempotencyKey,
        req: &CreateWithdrawalRequest,
    ) -> Result<WithdrawalCreated, PientegraError> {
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(Script::Refuse) => Err(PientegraError::Refused {
                status: 400,
                code: "validation_failed".into(),
                message: "targetIban is blocked".into(),
            }),
            Some(Script::LoseAnswer) => {
                self.real.create_withdrawal(key, req).await?;
                Err(PientegraError::Unavailable { reason: "timed out".into() })
            }
            None => self.real.create_withdrawal(key, req).await,
        }
    }
    async fn get_intent(&self, id: Uuid) -> Result<Intent, PientegraError> {
        self.real.get_intent(id).await
    }
    async fn get_withdrawal(&self, id: Uuid) -> Result<Withdrawal, PientegraError> {
        self.real.get_withdrawal(id).await
    }
    async fn list_intents(&self, q: &ListQuery) -> Result<Page<Intent>, PientegraError> {
        self.real.list_intents(q).await
    }
    async fn list_withdrawals(&self, q: &ListQuery) -> Result<Page<Withdrawal>, PientegraError> {
        self.real.list_withdrawals(q).await
    }
    async fn list_events(&self, q: &EventsQuery) -> Result<Page<EventRecord>, PientegraError> {
        self.real.list_events(q).await
    }
    async fn replay_event(&self, id: Uuid) -> Result<ReplayAccepted, PientegraError> {
        self.real.replay_event(id).await
    }
    async fn set_webhook_config(&self, req: &WebhookConfigRequest) -> Result<WebhookConfig, PientegraError> {
        self.real.set_webhook_config(req).await
    }
    async fn ping(&self) -> Result<(), PientegraError> {
        self.real.ping().await
    }
}

async fn scripted_stack(options: Options, script: &[Script]) -> Stack {
    // The sandbox must exist before the client that points at it, so start once
    // to learn its address, then swap the client in on a restart.
    let mut stack = Stack::with(options).await;
    let real = HttpClient::new(
        stack.settings.api_base.as_str(),
        stack.settings.api_key.clone(),
        RetryPolicy::scaled_for_tests(),
    )
    .unwrap();
    let scripted: Arc<dyn PientegraApi> =
        Arc::new(Scripted { real, script: Mutex::new(script.iter().copied().collect()) });
    stack.options = Options { pientegra: Some(scripted), ..stack.options.clone() };
    stack.restart_server().await;
    stack
}

const IBAN: &str = "TR330006100519786457841326";

async fn a_definite_refusal_releases_the_reservation(options: Options) {
    let stack = scripted_stack(options, &[Script::Refuse]).await;
    let token = stack.token("refused").await;
    stack.funded(&token, "50000").await;
    let key = Uuid::new_v4().to_string();
    let body = json!({"amount": "20000", "iban": IBAN, "holderName": "Refused"});
    let (status, answer) = stack.post_json(&token, "/api/withdrawals", &key, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(stack.balance(&token).await, (50_000, 0));
    // The refusal is final for this key: replayed, not retried.
    let (again, _) = stack.post_json(&token, "/api/withdrawals", &key, body).await;
    assert_eq!(again, StatusCode::BAD_REQUEST);
    assert_eq!(stack.balance(&token).await, (50_000, 0));
}

async fn an_unknown_outcome_keeps_the_reservation_until_a_retry_settles_it(options: Options) {
    let stack = scripted_stack(options, &[Script::LoseAnswer]).await;
    let token = stack.token("unknown").await;
    stack.funded(&token, "50000").await;
    let key = Uuid::new_v4().to_string();
    let body = json!({"amount": "20000", "iban": IBAN, "holderName": "Unknown"});
    let (status, answer) = stack.post_json(&token, "/api/withdrawals", &key, body.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "provider_unavailable");
    assert_eq!(stack.balance(&token).await, (30_000, 20_000));
    // The widget retries with the same key: the same Pientegra withdrawal, reserved once.
    let (status, created) = stack.post_json(&token, "/api/withdrawals", &key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(stack.balance(&token).await, (30_000, 20_000));
    let state = stack.sandbox_state().await;
    assert_eq!(state["withdrawals"].as_array().unwrap().len(), 1, "one withdrawal at Pientegra");
    assert_eq!(state["withdrawals"][0]["withdrawalId"], created["withdrawalId"]);
}

/// Pientegra's `503 no_account_available` creates nothing, so once the
/// client's retries are spent it is a 503 to retry with the same key, not a
/// final answer the key would replay.
async fn no_free_receiving_account_is_a_busy_answer_the_same_key_retries(options: Options) {
    let stack = Stack::with(Options { sandbox_accounts: Some(1), ..options }).await;
    let first = stack.deposit(&stack.token("first").await, "10000").await;
    let token = stack.token("second").await;
    let key = Uuid::new_v4().to_string();
    let response = stack
        .http
        .post(format!("{}/api/deposits", stack.server.url()))
        .bearer_auth(&token)
        .header("Idempotency-Key", &key)
        .json(&json!({"amount": "20000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let busy: serde_json::Value = response.json().await.unwrap();
    assert_eq!(busy["error"], "provider_busy", "{busy}");
    stack.control(&format!("intents/{}/expire", first.intent_id), json!({})).await;
    let (status, created) = stack.post_json(&token, "/api/deposits", &key, json!({"amount": "20000"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(stack.sandbox_state().await["intents"].as_array().unwrap().len(), 2);
}

/// Pientegra refusing the partner's API key is nothing a user can fix: the
/// browser gets `provider_unavailable` without Pientegra's words, a withdrawal
/// stays reserved, and the same keys go through once the server has the right
/// API key.
async fn a_refused_api_key_reads_as_unavailable_and_settles_nothing(options: Options) {
    let mut stack = Stack::with(options).await;
    let client = |key: secrecy::SecretString| -> Arc<dyn PientegraApi> {
        Arc::new(HttpClient::new(stack.settings.api_base.as_str(), key, RetryPolicy::scaled_for_tests()).unwrap())
    };
    let (revoked, right) = (client("sk_test_revoked".to_owned().into()), client(stack.settings.api_key.clone()));
    let token = stack.token("keyless").await;
    stack.funded(&token, "50000").await;
    stack.options = Options { pientegra: Some(revoked), ..stack.options.clone() };
    stack.restart_server().await;
    let deposit = (Uuid::new_v4().to_string(), json!({"amount": "10000"}));
    let withdrawal = (Uuid::new_v4().to_string(), json!({"amount": "20000", "iban": IBAN, "holderName": "Keyless"}));
    for (path, (key, body)) in [("/api/deposits", &deposit), ("/api/withdrawals", &withdrawal)] {
        let (status, answer) = stack.post_json(&token, path, key, body.clone()).await;
        let code = &answer["error"];
        assert_eq!((status, code), (StatusCode::SERVICE_UNAVAILABLE, &json!("provider_unavailable")), "{answer}");
        assert!(!answer["message"].as_str().unwrap().to_lowercase().contains("api key"), "{answer}");
    }
    assert_eq!(stack.balance(&token).await, (30_000, 20_000));
    stack.options = Options { pientegra: Some(right), ..stack.options.clone() };
    stack.restart_server().await;
    for (path, (key, body)) in [("/api/deposits", &deposit), ("/api/withdrawals", &withdrawal)] {
        let (status, created) = stack.post_json(&token, path, key, body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    assert_eq!(stack.balance(&token).await, (30_000, 20_000));
    assert_eq!(stack.sandbox_state().await["withdrawals"].as_array().unwrap().len(), 1);
}

async fn a_webhook_for_an_unknown_intent_is_kept_and_applied_when_the_intent_appears(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("orphan").await;
    // Create the intent straight at Pientegra, as if our server crashed before recording it.
    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let created = stack.create_intent_directly("orphan", "7000").await;
    stack.pay_and_approve(created.intent_id).await;
    let event = pientegra_shared::event::WebhookEvent {
        event_id: Uuid::now_v7(),
        occurred_at: chrono::Utc::now(),
        kind: pientegra_shared::event::EventKind::Intent {
            event: pientegra_shared::event::IntentEvent::Approved,
            intent: pientegra_shared::event::IntentSnapshot {
                id: created.intent_id,
                reference_no: created.reference_no.clone(),
                external_user_id: "orphan".into(),
                requested_amount: created.requested_amount,
                amount: created.amount,
                currency: "TRY".into(),
                status: pientegra_shared::status::IntentStatus::Approved,
                rejected_reason: None,
            },
        },
    };
    let now = chrono::Utc::now().timestamp_millis();
    let status =
        post_webhook(&stack.http, &stack.server.url(), stack.sandbox.webhook_secret(), now, &event.to_body()).await;
    assert!(status.is_success());
    assert_eq!(stack.balance(&token).await, (0, 0), "not credited before the intent is known");
    // An unknown event type is acknowledged and changes nothing.
    let unknown = format!(
        r#"{{"eventId":"{}","eventType":"intent.teleported","occurredAt":"2026-01-01T00:00:00.000Z","intent":{{}}}}"#,
        Uuid::now_v7()
    );
    assert!(
        post_webhook(&stack.http, &stack.server.url(), stack.sandbox.webhook_secret(), now, unknown.as_bytes())
            .await
            .is_success()
    );

    // The server learns of the intent (the user retried; Pientegra answers idempotently).
    let record = pientegra_server::storage::connect(&stack.settings.database_url).await.unwrap();
    record
        .record_deposit(
            pientegra_server::storage::NewDeposit {
                intent_id: created.intent_id,
                user_id: "orphan".into(),
                reference_no: created.reference_no,
                deposit_url: created.deposit_url,
                requested_amount: created.requested_amount,
                amount: created.amount,
                currency: created.currency,
                expires_at: created.expires_at,
            },
            None,
        )
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), || async { stack.balance(&token).await == (7_000, 0) }).await.unwrap();
}

async fn money_moving_endpoints_are_rate_limited_per_user(options: Options) {
    let stack = Stack::with(Options { rate_limit_per_minute: 3, ..options }).await;
    let token = stack.token("hasty").await;
    let other = stack.token("calm").await;
    for _ in 0..3 {
        assert_eq!(stack.post_deposit(&token, "10000").await.0, StatusCode::CREATED);
    }
    let response = stack
        .http
        .post(format!("{}/api/deposits", stack.server.url()))
        .bearer_auth(&token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"amount": "10000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Three a minute: the next one is earned 20 s after the first, not at a window's end.
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "Retry-After: {retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(stack.post_deposit(&other, "10000").await.0, StatusCode::CREATED);
}

async fn oversized_bodies_get_413(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("big").await;
    let huge = "x".repeat(100 * 1024);
    let (status, body) =
        stack.post_json(&token, "/api/deposits", &Uuid::new_v4().to_string(), json!({"amount": huge})).await;
    assert_eq!((status, &body["error"]), (StatusCode::PAYLOAD_TOO_LARGE, &json!("payload_too_large")), "{body}");
    let webhook = stack
        .http
        .post(format!("{}/webhooks/pientegra", stack.server.url()))
        .header("Pientegra-Signature", "t=1,v1=00")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = webhook.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(stack.balance(&token).await, (0, 0));
}

/// What axum would refuse in plain text comes in the kit's envelope with a
/// stable code, like every other refusal.
async fn malformed_requests_get_the_kits_envelope(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("malformed").await;
    let server = stack.server.url();
    let wrong_method = stack.http.get(format!("{server}/api/deposits")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.headers()["allow"].to_str().unwrap().contains("POST"), "{:?}", wrong_method.headers());
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    let wrong_method = stack.http.delete(format!("{server}/api/events")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json::<serde_json::Value>().await.unwrap()["error"], "method_not_allowed");
    let ticket = stack.stream_ticket(&token).await;
    let bad_query =
        stack.http.get(format!("{server}/api/events?ticket={ticket}&lastEventId=abc")).send().await.unwrap();
    assert_eq!(bad_query.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = bad_query.json().await.unwrap();
    assert_eq!(body["error"], "validation_failed");
    assert!(body["message"].as_str().unwrap().contains("lastEventId"), "{body}");
}

async fn the_sse_stream_says_how_to_reconnect_and_ends_on_shutdown(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("streamer").await;
    let ticket = stack.stream_ticket(&token).await;
    let response = stack.http.get(format!("{}/api/events?ticket={ticket}", stack.server.url())).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.bytes_stream();
    use futures::StreamExt;
    let first = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("retry:"), "{first}");
    let stopped = tokio::time::timeout(Duration::from_secs(5), stack.server.stop()).await;
    assert!(stopped.is_ok(), "graceful shutdown waited on an open stream");
}

pientegra_tests::on_each_database!(
    a_definite_refusal_releases_the_reservation,
    an_unknown_outcome_keeps_the_reservation_until_a_retry_settles_it,
    no_free_receiving_account_is_a_busy_answer_the_same_key_retries,
    a_refused_api_key_reads_as_unavailable_and_settles_nothing,
    a_webhook_for_an_unknown_intent_is_kept_and_applied_when_the_intent_appears,
    money_moving_endpoints_are_rate_limited_per_user,
    oversized_bodies_get_413,
    malformed_requests_get_the_kits_envelope,
    the_sse_stream_says_how_to_reconnect_and_ends_on_shutdown,
);
