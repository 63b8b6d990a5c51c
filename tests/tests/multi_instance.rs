//! Two companion servers on one PostgreSQL schema, as behind a load balancer:
//! changes committed by one reach SSE streams on the other, a webhook both
//! receive at once credits once, reservations never overdraw, and the
//! cluster-wide lock is exclusive. PostgreSQL only: skipped without
//! `PIENTEGRA_TEST_POSTGRES_URL`.

use std::time::Duration;

use pientegra_server::storage::{Audit, Audited};
use pientegra_tests::sse::SseClient;
use pientegra_tests::{Options, Server, Stack, post_webhook, start_server, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const IBAN: &str = "TR330006100519786457841326";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stack whose server (instance A) receives the sandbox's webhooks, and a
/// second instance B on the same database; `None` when PostgreSQL is not configured.
async fn two_instances() -> Option<(Stack, Server)> {
    let options = Options::postgres().await?;
    let stack = Stack::with(options).await;
    let b = start_server(&stack.settings, "127.0.0.1:0".parse().expect("addr"), None).await;
    Some((stack, b))
}

async fn withdraw_at(stack: &Stack, server: &str, token: &str, amount: &str) -> (StatusCode, Value) {
    let response = stack
        .http
        .post(format!("{server}/api/withdrawals"))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"amount": amount, "iban": IBAN, "holderName": "Two Instances"}))
        .send()
        .await
        .expect("POST");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_webhook_received_by_one_instance_reaches_a_stream_on_the_other() {
    let Some((stack, b)) = two_instances().await else { return };
    let token = stack.token("cross").await;
    let mut on_b = SseClient::connect(&b.url(), &token, None).await.unwrap();
    assert_eq!(on_b.next(WAIT).await.unwrap().event, "balance.updated");

    // Created through A, approved by a webhook delivered to A.
    let deposit = stack.deposit(&token, "15000").await;
    stack.pay_and_approve(deposit.intent_id).await;

    let created = on_b.until(WAIT, |e| e.event == "deposit.updated").await.expect("creation relayed to B");
    assert_eq!(created.json()["intentId"], deposit.intent_id.to_string());
    on_b.until(WAIT, |e| e.event == "deposit.updated" && e.json()["status"] == "APPROVED")
        .await
        .expect("approval relayed to B");
    let balance = on_b.until(WAIT, |e| e.event == "balance.updated").await.unwrap();
    assert_eq!(balance.json()["available"], "15000");
    // Sequence numbers are the user's, whichever instance wrote them: strictly increasing.
    let seqs: Vec<i64> = on_b.seen.iter().filter_map(|e| e.seq()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    b.stop().await;
}

#[tokio::test]
async fn one_webhook_posted_to_both_instances_at_once_credits_once() {
    let Some((stack, b)) = two_instances().await else { return };
    let token = stack.token("racer").await;
    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let secret = stack.sandbox.webhook_secret().to_owned();
    let (a, b_url) = (stack.server.url(), b.url());
    let mut total = 0;
    for round in 0..20u64 {
        let amount = 1_000 + round;
        let deposit = stack.deposit(&token, &amount.to_string()).await;
        stack.pay_and_approve(deposit.intent_id).await;
        let body = stack.delivered_event_body("intent.approved", deposit.intent_id).await;
        let (to_a, to_b) = tokio::join!(
            post_webhook(&stack.http, &a, &secret, now_ms(), &body),
            post_webhook(&stack.http, &b_url, &secret, now_ms(), &body),
        );
        assert!(to_a.is_success() && to_b.is_success(), "round {round}: {to_a} {to_b}");
        total += amount;
        assert_eq!(stack.balance(&token).await, (total, 0), "round {round}");
    }
    let storage = Audited::connect(&stack.settings.database_url).await.unwrap();
    let ledger = storage.ledger_sum("racer").await.unwrap();
    assert_eq!(ledger, (i64::try_from(total).unwrap(), 0), "one ledger entry per intent");
    b.stop().await;
}

#[tokio::test]
async fn last_event_id_replays_on_the_other_instance() {
    let Some((stack, b)) = two_instances().await else { return };
    let token = stack.token("roamer").await;
    let deposit = stack.deposit(&token, "25000").await;
    let mut on_a = stack.events(&token, Some(0)).await;
    let created = on_a.until(WAIT, |e| e.event == "deposit.updated").await.unwrap();
    let last_seen = created.seq().unwrap();
    drop(on_a);

    // While the browser is away, the approval lands on A.
    stack.pay_and_approve(deposit.intent_id).await;
    wait_for(WAIT, || async { stack.balance(&token).await.0 == 25_000 }).await.unwrap();

    // The load balancer sends the reconnect to B.
    let mut on_b = SseClient::connect(&b.url(), &token, Some(last_seen)).await.unwrap();
    let approved =
        on_b.until(WAIT, |e| e.event == "deposit.updated" && e.json()["status"] == "APPROVED").await.unwrap();
    assert_eq!(approved.seq(), Some(last_seen + 1), "nothing skipped, nothing repeated");
    let balance = on_b.next(WAIT).await.unwrap();
    assert_eq!((balance.event.as_str(), balance.seq()), ("balance.updated", Some(last_seen + 2)));
    b.stop().await;
}

#[tokio::test]
async fn the_named_lock_is_exclusive_across_instances() {
    let Some(options) = Options::postgres().await else { return };
    let pientegra_tests::Database::Postgres(schema) = &options.database else { unreachable!() };
    // Two storages are two pools, so two database sessions, as two instances have.
    let a = pientegra_server::storage::connect(&schema.url).await.unwrap();
    let b = pientegra_server::storage::connect(&schema.url).await.unwrap();

    let held = a.try_lock("reconcile").await.unwrap().expect("a free lock is taken");
    assert!(b.try_lock("reconcile").await.unwrap().is_none(), "B must not take A's lock");
    assert!(a.try_lock("reconcile").await.unwrap().is_none(), "not even A's other sessions");
    let other = b.try_lock("another-job").await.unwrap().expect("other names are independent");
    drop(other);

    drop(held);
    // The session ends a moment after the drop: wait for it, with a deadline.
    let deadline = tokio::time::Instant::now() + WAIT;
    let _taken = loop {
        if let Some(lock) = b.try_lock("reconcile").await.unwrap() {
            break lock;
        }
        assert!(tokio::time::Instant::now() < deadline, "B takes the lock once A dropped it");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(a.try_lock("reconcile").await.unwrap().is_none(), "now B holds it");
}

#[tokio::test]
async fn twenty_concurrent_withdrawals_across_two_instances_never_overdraw() {
    let Some((stack, b)) = two_instances().await else { return };
    let token = stack.token("splitter").await;
    stack.funded(&token, "100000").await;
    let (a_url, b_url) = (stack.server.url(), b.url());
    let attempts = (0..20).map(|i| withdraw_at(&stack, if i % 2 == 0 { &a_url } else { &b_url }, &token, "10000"));
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let refused =
        results.iter().filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"] == "insufficient_funds").count();
    assert_eq!((created, refused), (10, 10), "{results:?}");
    assert_eq!(stack.balance(&token).await, (0, 100_000));
    let storage = Audited::connect(&stack.settings.database_url).await.unwrap();
    assert_eq!(storage.ledger_sum("splitter").await.unwrap(), (0, 100_000));
    b.stop().await;
}
