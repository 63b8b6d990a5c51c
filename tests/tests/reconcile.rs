//! Reconciliation: with webhooks lost for a window, one pass makes every
//! balance equal to what Pientegra's listings say; a second pass applies
//! nothing; late webhooks change nothing.

use std::time::Duration;

use pientegra_server::pientegra::{HttpClient, RetryPolicy};
use pientegra_server::reconcile::{Category, Reconciler, Report};
use pientegra_server::sse::Hub;
use pientegra_tests::{Options, Stack, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn reconcile(stack: &Stack, apply: bool) -> Report {
    let storage = pientegra_server::storage::connect(&stack.settings.database_url).await.unwrap();
    let client = HttpClient::new(
        stack.settings.api_base.as_str(),
        stack.settings.api_key.clone(),
        RetryPolicy::scaled_for_tests(),
    )
    .unwrap();
    let hub = Hub::default();
    let now = chrono::Utc::now();
    let reconciler = Reconciler { storage: storage.as_ref(), pientegra: &client, hub: &hub };
    reconciler.run(now - chrono::Duration::hours(1), now + chrono::Duration::minutes(1), apply).await.unwrap()
}

async fn deliveries(stack: &Stack) -> Vec<Value> {
    let state = stack.sandbox_state().await;
    state["deliveries"].as_array().unwrap().clone()
}

async fn one_pass_recovers_a_window_of_lost_webhooks_and_a_second_applies_nothing(options: Options) {
    let stack = Stack::with(options).await;
    let ayse = stack.token("ayse").await;
    let mehmet = stack.token("mehmet").await;
    stack.funded(&ayse, "50000").await; // credited the normal way, before the outage
    let (_, w) = stack
        .post_json(
            &ayse,
            "/api/withdrawals",
            &uuid::Uuid::new_v4().to_string(),
            json!({
                "amount": "20000", "iban": "TR330006100519786457841326", "holderName": "Ayşe"
            }),
        )
        .await;
    let withdrawal_id = w["withdrawalId"].as_str().unwrap().to_owned();

    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let mut expected = (30_000u64, 0u64);
    for (token, amount) in [(&ayse, "10000"), (&ayse, "25000"), (&mehmet, "7000"), (&mehmet, "3000")] {
        let deposit = stack.deposit(token, amount).await;
        stack.pay_and_approve(deposit.intent_id).await;
        if token == &ayse {
            expected.0 += deposit.amount.minor();
        } else {
            expected.1 += deposit.amount.minor();
        }
    }
    let rejected = stack.deposit(&mehmet, "9000").await;
    stack.control(&format!("intents/{}/confirm", rejected.intent_id), json!({})).await;
    stack.control(&format!("intents/{}/reject", rejected.intent_id), json!({"reason": "no transfer"})).await;
    stack.control(&format!("withdrawals/{withdrawal_id}/approve"), json!({})).await;
    stack.control(&format!("withdrawals/{withdrawal_id}/send"), json!({})).await;
    assert_eq!(stack.balance(&ayse).await, (30_000, 20_000), "nothing arrived during the outage");

    let dry = reconcile(&stack, false).await;
    assert_eq!(dry.applied(), 0);
    assert_eq!(dry.count(Category::StatusBehind), 6, "{}", dry.table());

    let first = reconcile(&stack, true).await;
    println!("{}", first.table());
    assert_eq!(first.applied(), 6, "{}", first.table());
    assert_eq!(stack.balance(&ayse).await, (expected.0, 0));
    assert_eq!(stack.balance(&mehmet).await, (expected.1, 0));
    let (_, r) = stack.get_json(&mehmet, &format!("/api/deposits/{}", rejected.intent_id)).await;
    assert_eq!(r["status"], "REJECTED");

    let second = reconcile(&stack, true).await;
    assert_eq!(second.applied(), 0, "{}", second.table());
    assert!(second.findings.is_empty(), "{}", second.table());

    // The webhooks come back late: every one is acknowledged and changes nothing.
    stack.sandbox_config(json!({"webhooksEnabled": true})).await;
    wait_for(WAIT, || async { deliveries(&stack).await.iter().all(|d| d["deliveryStatus"] == "DELIVERED") })
        .await
        .expect("late deliveries acknowledged");
    assert_eq!(stack.balance(&ayse).await, (expected.0, 0));
    assert_eq!(stack.balance(&mehmet).await, (expected.1, 0));
}

async fn dead_deliveries_are_replayed_and_credit_once(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("zeynep").await;
    // Deliveries go to a port where nothing listens until every attempt has failed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    stack
        .http
        .put(format!("{}/external/site/webhook-config", stack.sandbox.api_base()))
        .bearer_auth(stack.sandbox.api_key())
        .json(&json!({"webhookUrl": format!("http://{dead}/webhooks/pientegra"), "rotateSecret": false}))
        .send()
        .await
        .unwrap();
    let mut intents = vec![];
    for amount in ["11000", "22000", "33000"] {
        let deposit = stack.deposit(&token, amount).await;
        stack.pay_and_approve(deposit.intent_id).await;
        intents.push(deposit.intent_id);
    }
    wait_for(Duration::from_secs(30), || async {
        let all = deliveries(&stack).await;
        all.len() == 3 && all.iter().all(|d| d["deliveryStatus"] == "DEAD")
    })
    .await
    .expect("deliveries die");
    assert_eq!(stack.balance(&token).await, (0, 0));

    stack.point_webhooks_at_server().await;
    let report = reconcile(&stack, true).await;
    assert_eq!(report.events_replayed, 3, "{}", report.table());
    assert_eq!(stack.balance(&token).await, (66_000, 0));
    wait_for(WAIT, || async { deliveries(&stack).await.iter().all(|d| d["deliveryStatus"] == "DELIVERED") })
        .await
        .expect("replayed deliveries arrive");
    assert_eq!(stack.balance(&token).await, (66_000, 0));
}

async fn an_intent_missing_locally_is_recorded_and_credited(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("lost").await;
    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let id = stack.create_intent_directly("lost", "4500").await.intent_id;
    stack.pay_and_approve(id).await;
    let report = reconcile(&stack, true).await;
    assert_eq!(report.count(Category::MissingLocally), 1, "{}", report.table());
    assert_eq!(stack.balance(&token).await, (4_500, 0));
    assert!(reconcile(&stack, true).await.findings.is_empty());
}

pientegra_tests::on_each_database!(
    one_pass_recovers_a_window_of_lost_webhooks_and_a_second_applies_nothing,
    dead_deliveries_are_replayed_and_credit_once,
    an_intent_missing_locally_is_recorded_and_credited,
);
