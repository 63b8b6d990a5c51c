//! Webhooks: the signed deliveries, the retry schedule, DEAD and replay, the
//! events listing, secret rotation, the webhook config, and delivery faults.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Harness, Receiver, Reply, eventually, test_config};
use pientegra_sandbox::Config;
use pientegra_shared::event::{EventKind, WebhookEvent, WithdrawalEvent};
use reqwest::Method;
use serde_json::{Value, json};

/// Waits until the events listing shows `event_id` with `status`; answers the record.
async fn wait_for_status(h: &Harness, event_id: &str, status: &str) -> Value {
    eventually(&format!("{event_id} to be {status}"), Duration::from_secs(15), async || {
        let event = h.event(event_id).await;
        (event["deliveryStatus"] == status).then_some(event)
    })
    .await
}

#[tokio::test]
async fn every_delivery_is_signed_with_the_site_secret_and_carries_the_headers() {
    let h = Harness::start().await;
    let receiver = Receiver::start().await;
    let config = h.set_webhook(&receiver.url, true).await;
    let secret = config["webhookSecret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() == 6 + 43, "{secret}");
    assert_ne!(secret, h.sandbox.webhook_secret());

    let created = h.withdrawal(250_000).await;
    let got = receiver.wait_for(1).await;
    let delivery = &got[0];
    assert!(delivery.verifies_with(&secret), "signed with the current secret");
    assert!(!delivery.verifies_with(h.sandbox.webhook_secret()));
    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(delivery.header("pientegra-event-type"), "withdrawal.created");
    assert_eq!(delivery.header("pientegra-delivery-attempt"), "1");
    assert_eq!(delivery.header("pientegra-event-id"), delivery.event_id());

    let event = WebhookEvent::parse(&delivery.body).unwrap();
    let EventKind::Withdrawal { event: kind, withdrawal } = event.kind else { panic!("a withdrawal event") };
    assert_eq!(kind, WithdrawalEvent::Created);
    assert_eq!(withdrawal.id.to_string(), created["withdrawalId"].as_str().unwrap());
    assert_eq!(withdrawal.reference_no, created["referenceNo"].as_str().unwrap());
    assert_eq!(withdrawal.amount.minor(), 250_000);
    assert_eq!(withdrawal.external_user_id, "user-1");

    let record = wait_for_status(&h, &delivery.event_id(), "DELIVERED").await;
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["lastResponseStatus"], 200);
    assert_eq!(record["lastError"], Value::Null);
    assert!(record["deliveredAt"].is_string());
    // The payload is the body minus the envelope fields.
    let mut body = delivery.json();
    let body_object = body.as_object_mut().unwrap();
    for field in ["eventId", "eventType", "occurredAt"] {
        assert_eq!(body_object.remove(field).unwrap(), record[field]);
    }
    assert_eq!(Value::Object(body_object.clone()), record["payload"]);
}

#[tokio::test]
async fn intent_events_have_the_documented_shape() {
    let h = Harness::start().await;
    let receiver = Receiver::start().await;
    let secret = h.set_webhook(&receiver.url, true).await["webhookSecret"].as_str().unwrap().to_owned();
    let deposit = h.deposit(100_000).await;
    let id = deposit["intentId"].as_str().unwrap();
    h.control(&format!("/sandbox/intents/{id}/confirm"), json!({})).await;
    // Approved with a different transferred amount: the event carries it.
    let approved = h.control(&format!("/sandbox/intents/{id}/approve"), json!({"amount": "99000"})).await.json();
    assert_eq!(approved["amount"], "99000");
    assert_eq!(approved["requestedAmount"], "100000");

    let got = receiver.wait_for(1).await;
    assert!(got[0].verifies_with(&secret));
    let body = got[0].json();
    let keys: HashSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["eventId", "eventType", "occurredAt", "intent"]));
    assert_eq!(body["eventType"], "intent.approved");
    let occurred = body["occurredAt"].as_str().unwrap();
    assert!(occurred.ends_with('Z') && occurred.len() == 24);
    assert_eq!(
        body["intent"],
        json!({"id": id, "referenceNo": deposit["referenceNo"], "externalUserId": "user-1",
               "requestedAmount": "100000", "amount": "99000", "currency": "TRY", "status": "APPROVED"})
    );

    // Rejections add the reason.
    let other = h.deposit(5_000).await;
    let other_id = other["intentId"].as_str().unwrap();
    h.control(&format!("/sandbox/intents/{other_id}/confirm"), json!({})).await;
    h.control(&format!("/sandbox/intents/{other_id}/reject"), json!({"reason": "amount mismatch"})).await;
    let got = receiver.wait_for(2).await;
    let rejected = got.iter().map(|d| d.json()).find(|b| b["eventType"] == "intent.rejected").unwrap();
    assert_eq!(rejected["intent"]["status"], "REJECTED");
    assert_eq!(rejected["intent"]["rejectedReason"], "amount mismatch");
}

#[tokio::test]
async fn the_events_listing_filters_and_pages() {
    let h = Harness::start().await;
    // No webhook URL: everything stays PENDING, which is what we list.
    let w1 = h.withdrawal(1000).await["withdrawalId"].as_str().unwrap().to_owned();
    let w2 = h.withdrawal(2000).await["withdrawalId"].as_str().unwrap().to_owned();
    h.control(&format!("/sandbox/withdrawals/{w1}/approve"), json!({})).await;
    h.control(&format!("/sandbox/withdrawals/{w1}/send"), json!({})).await;
    h.control(&format!("/sandbox/withdrawals/{w2}/reject"), json!({})).await;
    let d = h.deposit(1000).await["intentId"].as_str().unwrap().to_owned();
    h.control(&format!("/sandbox/intents/{d}/expire"), json!({})).await;

    let all = h.events().await;
    let types: Vec<&str> = all.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "intent.auto_cancelled",
            "withdrawal.rejected",
            "withdrawal.sent",
            "withdrawal.approved",
            "withdrawal.created",
            "withdrawal.created"
        ]
    );
    assert!(all.iter().all(|e| e["deliveryStatus"] == "PENDING" && e["attempts"] == 0));
    for field in [
        "eventId",
        "eventType",
        "occurredAt",
        "deliveryStatus",
        "attempts",
        "lastResponseStatus",
        "lastError",
        "deliveredAt",
        "payload",
    ] {
        assert!(all[0].get(field).is_some(), "{field} missing");
    }
    assert_eq!(all[1]["payload"]["withdrawal"]["rejectedReason"], "Rejected by the sandbox operator");

    let created = h.get("/external/events?eventType=withdrawal.created").await.json();
    assert_eq!(created["data"].as_array().unwrap().len(), 2);
    let two_types = h.get("/external/events?eventType=withdrawal.sent,intent.auto_cancelled").await.json();
    assert_eq!(two_types["data"].as_array().unwrap().len(), 2);
    let pending = h.get("/external/events?deliveryStatus=PENDING,DEAD").await.json();
    assert_eq!(pending["data"].as_array().unwrap().len(), 6);
    let delivered = h.get("/external/events?deliveryStatus=DELIVERED").await.json();
    assert_eq!(delivered["data"], json!([]));
    let from = all[2]["occurredAt"].as_str().unwrap();
    let recent = h.get(&format!("/external/events?createdFrom={from}")).await.json();
    assert!(recent["data"].as_array().unwrap().len() >= 3);
    let to = all[5]["occurredAt"].as_str().unwrap();
    let none = h.get(&format!("/external/events?createdTo={to}")).await.json();
    assert_eq!(none["data"], json!([]));

    let mut seen = Vec::new();
    let mut path = "/external/events?limit=4".to_owned();
    loop {
        let page = h.get(&path).await.json();
        seen.extend(page["data"].as_array().unwrap().iter().map(|e| e["eventId"].clone()));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/external/events?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|e| e["eventId"].clone()).collect::<Vec<_>>());

    for bad in ["eventType=intent.paid", "deliveryStatus=SENT", "limit=0", "limit=500", "cursor=xyz", "createdFrom=now"]
    {
        h.get(&format!("/external/events?{bad}")).await.assert_error(400, "validation_failed");
    }
}

#[tokio::test]
async fn replaying_a_pending_or_unknown_event_is_refused() {
    let h = Harness::start().await;
    h.withdrawal(1000).await;
    let event_id = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    let replay = |id: String| {
        let request = h.api(Method::POST, &format!("/external/events/{id}/replay"));
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    replay(event_id.clone()).await.assert_error(409, "invalid_state");
    replay(uuid::Uuid::now_v7().to_string()).await.assert_error(404, "not_found");
    replay("nope".to_owned()).await.assert_error(404, "not_found");
    let unauthenticated = h.http.post(h.api_url(&format!("/external/events/{event_id}/replay"))).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn events_wait_pending_until_a_url_is_set_and_webhooks_are_enabled() {
    let h = Harness::start().await;
    let receiver = Receiver::start().await;
    h.withdrawal(1000).await;
    h.configure(json!({"webhooksEnabled": false})).await;
    h.set_webhook(&receiver.url, false).await;
    h.withdrawal(2000).await;
    // Nothing may arrive while disabled; a generous look (the worker is fast when enabled).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.deliveries().is_empty());
    assert!(h.events().await.iter().all(|e| e["deliveryStatus"] == "PENDING"));
    h.configure(json!({"webhooksEnabled": true})).await;
    let got = receiver.wait_for(2).await;
    // The configured secret is in force: no rotation was asked for.
    assert!(got.iter().all(|d| d.verifies_with(h.sandbox.webhook_secret())));
    for event in h.events().await {
        wait_for_status(&h, event["eventId"].as_str().unwrap(), "DELIVERED").await;
    }
}

#[tokio::test]
async fn a_failing_receiver_exhausts_the_scaled_schedule_then_a_replay_delivers() {
    let h = Harness::start().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let secret = h.set_webhook(&receiver.url, true).await["webhookSecret"].as_str().unwrap().to_owned();
    h.withdrawal(1000).await;
    let event_id = h.events().await[0]["eventId"].as_str().unwrap().to_owned();

    let failed = wait_for_status(&h, &event_id, "FAILED").await;
    assert_eq!(failed["lastResponseStatus"], 500);
    assert_eq!(failed["lastError"], "HTTP 500 Internal Server Error");
    // Replaying a FAILED event is allowed (it just restarts the run); here we let it die.
    let dead = wait_for_status(&h, &event_id, "DEAD").await;
    assert_eq!(dead["attempts"], 8);
    assert_eq!(dead["deliveredAt"], Value::Null);
    let attempts = receiver.deliveries_of(&event_id);
    assert_eq!(attempts.len(), 8);
    let numbers: Vec<&str> = attempts.iter().map(|d| d.header("pientegra-delivery-attempt")).collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    // Retries wait at least the scaled schedule: 10 s … 20 min at 1/1000.
    let schedule_ms = [10, 30, 60, 120, 300, 600, 1200];
    for (pair, wait) in attempts.windows(2).zip(schedule_ms) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(wait), "gap {gap:?} < {wait} ms");
    }
    // Every attempt: the same bytes, a valid signature with the same secret, a fresh t.
    assert!(attempts.iter().all(|d| d.body == attempts[0].body && d.verifies_with(&secret)));
    let signatures: HashSet<&str> = attempts.iter().map(|d| d.header("pientegra-signature")).collect();
    assert_eq!(signatures.len(), 8);

    receiver.respond_with(204);
    let reply =
        Reply::read(h.api(Method::POST, &format!("/external/events/{event_id}/replay")).send().await.unwrap()).await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.json(), json!({"eventId": event_id, "deliveryStatus": "PENDING"}));
    let delivered = wait_for_status(&h, &event_id, "DELIVERED").await;
    assert_eq!(delivered["attempts"], 9);
    assert_eq!(delivered["lastResponseStatus"], 204);
    let replayed = receiver.deliveries_of(&event_id).pop().unwrap();
    assert_eq!(replayed.body, attempts[0].body);
    assert_eq!(replayed.header("pientegra-delivery-attempt"), "9");
    assert!(replayed.verifies_with(&secret));

    // A DELIVERED event can be replayed too: it is sent again.
    let reply =
        Reply::read(h.api(Method::POST, &format!("/external/events/{event_id}/replay")).send().await.unwrap()).await;
    assert_eq!(reply.status, 202);
    eventually("the second replay", Duration::from_secs(5), async || {
        (receiver.deliveries_of(&event_id).len() == 10).then_some(())
    })
    .await;
    wait_for_status(&h, &event_id, "DELIVERED").await;
}

#[tokio::test]
async fn redirects_and_timeouts_are_failures() {
    let h = Harness::with(Config { delivery_timeout: Duration::from_millis(300), ..test_config() }).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(302);
    h.set_webhook(&receiver.url, false).await;
    h.withdrawal(1000).await;
    let event_id = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    let failed = wait_for_status(&h, &event_id, "FAILED").await;
    assert_eq!(failed["lastResponseStatus"], 302);
    assert_eq!(failed["lastError"], "redirect not followed");

    // Slow first, then successful: no attempt can slip through quickly in between.
    receiver.delay(Duration::from_secs(2));
    receiver.respond_with(200);
    let timed_out = eventually("a timed-out attempt", Duration::from_secs(10), async || {
        let event = h.event(&event_id).await;
        (event["lastError"] == "timed out").then_some(event)
    })
    .await;
    assert_eq!(timed_out["deliveryStatus"], "FAILED");
    assert_eq!(timed_out["lastResponseStatus"], Value::Null);
    receiver.delay(Duration::ZERO);
    wait_for_status(&h, &event_id, "DELIVERED").await;
}

#[tokio::test]
async fn a_started_delivery_keeps_its_secret_across_a_rotation() {
    let h = Harness::start().await;
    h.configure(json!({"retryScale": "0.01"})).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503);
    let old = h.set_webhook(&receiver.url, true).await["webhookSecret"].as_str().unwrap().to_owned();
    h.withdrawal(1000).await;
    let first_event = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    receiver.wait_for(1).await;

    let rotated = h.set_webhook(&receiver.url, true).await;
    let new = rotated["webhookSecret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["rotatedAt"].is_string());
    receiver.respond_with(200);
    wait_for_status(&h, &first_event, "DELIVERED").await;
    let first = receiver.deliveries_of(&first_event);
    assert!(first.len() >= 2);
    assert!(first.iter().all(|d| d.verifies_with(&old) && !d.verifies_with(&new)), "retries keep the first secret");

    h.withdrawal(2000).await;
    let second_event = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    wait_for_status(&h, &second_event, "DELIVERED").await;
    let second = receiver.deliveries_of(&second_event);
    assert!(
        second.iter().all(|d| d.verifies_with(&new) && !d.verifies_with(&old)),
        "new deliveries use the new secret"
    );

    // A replay is a new delivery: it uses the secret in force now.
    let reply =
        Reply::read(h.api(Method::POST, &format!("/external/events/{first_event}/replay")).send().await.unwrap()).await;
    assert_eq!(reply.status, 202);
    let replayed = eventually("the replay", Duration::from_secs(5), async || {
        let all = receiver.deliveries_of(&first_event);
        (all.len() > first.len()).then(|| all.last().cloned()).flatten()
    })
    .await;
    assert!(replayed.verifies_with(&new));
}

#[tokio::test]
async fn the_webhook_config_checks_urls_and_shows_a_secret_only_when_rotated() {
    let h = Harness::start().await;
    let put = |body: Value| {
        let request = h.api(Method::PUT, "/external/site/webhook-config").json(&body);
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    for bad in [
        json!({"webhookUrl": "http://example.com/hook"}),
        json!({"webhookUrl": "ftp://127.0.0.1/hook"}),
        json!({"webhookUrl": "not a url"}),
        json!({"webhookUrl": 7}),
        json!({}),
        json!({"webhookUrl": "https://example.com/hook", "rotateSecret": "yes"}),
    ] {
        put(bad).await.assert_error(400, "validation_failed");
    }
    let kept = put(json!({"webhookUrl": "https://example.com/hook", "rotateSecret": false})).await;
    assert_eq!(kept.status, 200);
    let kept = kept.json();
    assert_eq!(kept["webhookUrl"], "https://example.com/hook");
    assert_eq!(kept["webhookSecret"], Value::Null);
    assert!(kept["rotatedAt"].is_string());
    let rotated = put(json!({"webhookUrl": "http://localhost:9/hook"})).await.json();
    assert!(rotated["webhookSecret"].as_str().unwrap().starts_with("whsec_"));
    assert!(rotated["rotatedAt"].as_str().unwrap() >= kept["rotatedAt"].as_str().unwrap());
    let unauthenticated = h
        .http
        .put(h.api_url("/external/site/webhook-config"))
        .json(&json!({"webhookUrl": "https://example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn injected_delivery_faults_duplicate_fail_and_delay() {
    let h = Harness::start().await;
    let receiver = Receiver::start().await;
    let secret = h.set_webhook(&receiver.url, true).await["webhookSecret"].as_str().unwrap().to_owned();

    // Duplicates: each delivered event arrives 1 + N times, each copy signed anew.
    h.configure(json!({"faults": {"duplicateDeliveries": 2}})).await;
    h.withdrawal(1000).await;
    let event_id = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    let copies = eventually("three copies", Duration::from_secs(5), async || {
        let got = receiver.deliveries_of(&event_id);
        (got.len() == 3).then_some(got)
    })
    .await;
    assert!(copies.iter().all(|d| d.body == copies[0].body && d.verifies_with(&secret)));
    assert_eq!(wait_for_status(&h, &event_id, "DELIVERED").await["attempts"], 1);

    // The next N attempts fail without being sent.
    h.configure(json!({"faults": {"duplicateDeliveries": 0, "failNextDeliveries": 2}})).await;
    h.withdrawal(2000).await;
    let event_id = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    let delivered = wait_for_status(&h, &event_id, "DELIVERED").await;
    assert_eq!(delivered["attempts"], 3);
    let got = receiver.deliveries_of(&event_id);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("pientegra-delivery-attempt"), "3");

    h.configure(json!({"faults": {"failDeliveryPercent": 100}})).await;
    h.withdrawal(3000).await;
    let event_id = h.events().await[0]["eventId"].as_str().unwrap().to_owned();
    let failed = wait_for_status(&h, &event_id, "FAILED").await;
    assert_eq!(failed["lastError"], "injected failure");
    assert_eq!(failed["lastResponseStatus"], Value::Null);
    h.configure(json!({"faults": {"failDeliveryPercent": 0}})).await;
    wait_for_status(&h, &event_id, "DELIVERED").await;

    // Shuffled and delayed deliveries still all arrive, each once.
    h.configure(json!({"faults": {"shuffleOrder": true, "deliveryDelayMs": 50}})).await;
    let before = receiver.deliveries().len();
    for amount in [1000, 2000, 3000, 4000, 5000] {
        h.withdrawal(amount).await;
    }
    let got = receiver.wait_for(before + 5).await;
    let ids: HashSet<String> = got[before..].iter().map(|d| d.event_id()).collect();
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn deliveries_run_concurrently_so_a_slow_receiver_does_not_block_the_rest() {
    let h = Harness::start().await;
    let receiver = Receiver::start().await;
    receiver.delay(Duration::from_millis(500));
    h.set_webhook(&receiver.url, false).await;
    let started = tokio::time::Instant::now();
    for amount in [1000, 2000, 3000, 4000] {
        h.withdrawal(amount).await;
    }
    let events = h.events().await;
    for event in &events {
        wait_for_status(&h, event["eventId"].as_str().unwrap(), "DELIVERED").await;
    }
    // One after another would take 2 s.
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
}
