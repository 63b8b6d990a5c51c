//! The External API's request side: auth, validation codes, idempotency,
//! lookups, listings and their pagination, the rate limit, API faults.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Harness, Reply, test_config, withdrawal_body};
use pientegra_sandbox::Config;
use reqwest::Method;
use serde_json::{Value, json};

fn deposit_body() -> Value {
    json!({"externalUserId": "user-1", "amount": "100000"})
}

#[tokio::test]
async fn missing_malformed_and_wrong_keys_are_unauthorized() {
    let h = Harness::start().await;
    let requests = [
        ("no header", None),
        ("basic scheme", Some(format!("Basic {}", h.sandbox.api_key()))),
        ("bearer without key", Some("Bearer".to_owned())),
        ("bearer empty", Some("Bearer ".to_owned())),
        ("wrong key", Some("Bearer sk_test_demo_wrong".to_owned())),
        ("key with a suffix", Some(format!("Bearer {}x", h.sandbox.api_key()))),
    ];
    for (what, header) in requests {
        for (method, path) in [(Method::GET, "/external/intents"), (Method::POST, "/external/deposits")] {
            let mut request = h
                .http
                .request(method.clone(), h.api_url(path))
                .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                .json(&deposit_body());
            if let Some(header) = &header {
                request = request.header("Authorization", header);
            }
            let reply = Reply::read(request.send().await.unwrap()).await;
            assert_eq!(reply.status, 401, "{what} {method} {path}");
            reply.assert_error(401, "unauthorized");
        }
    }
    // Nothing was created by the refused calls.
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 0);
    // The right key, in any case of the scheme, passes.
    let ok = h
        .http
        .get(h.api_url("/external/intents"))
        .header("Authorization", format!("bearer {}", h.sandbox.api_key()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_deposit_reserves_an_account_and_answers_the_documented_shape() {
    let h = Harness::start().await;
    let before = chrono::Utc::now();
    // Amounts may come as numbers too; answers always carry strings.
    let reply = h
        .create(
            "/external/deposits",
            &json!({"externalUserId": "user-12345", "externalUserLabel": "Ayşe", "amount": 100000}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let body = reply.json();
    let keys: HashSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from(["intentId", "referenceNo", "depositUrl", "requestedAmount", "amount", "currency", "expiresAt"])
    );
    let id = uuid::Uuid::parse_str(body["intentId"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let reference = body["referenceNo"].as_str().unwrap();
    assert_eq!(reference.len(), 10);
    assert!(reference.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{reference}");
    assert!(body["depositUrl"].as_str().unwrap().starts_with(&format!("{}/d/", h.sandbox.base_url())));
    assert_eq!(body["requestedAmount"], "100000");
    assert_eq!(body["amount"], "100000");
    assert_eq!(body["currency"], "TRY");
    let expires = body["expiresAt"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 24, "{expires}");
    let expires = pientegra_shared::time::parse(expires).unwrap();
    let ttl = expires - before;
    // expiresAt is truncated to milliseconds; `before` is not.
    assert!(
        ttl > chrono::Duration::minutes(30) - chrono::Duration::seconds(1) && ttl < chrono::Duration::minutes(31),
        "{ttl}"
    );

    let intent = h.get(&format!("/external/intents/{id}")).await.json();
    assert_eq!(intent["status"], "RESERVED");
    assert_eq!(intent["externalUserId"], "user-12345");
    assert_eq!(intent["referenceNo"], reference);
    assert_eq!(intent["approvedAt"], Value::Null);
    let state = h.state().await;
    assert_eq!(state["freeAccounts"], 49);
    let iban = state["intents"][0]["accountIban"].as_str().unwrap();
    assert!(pientegra_shared::Iban::parse(iban).is_ok());
}

#[tokio::test]
async fn a_withdrawal_is_created_pending_review() {
    let h = Harness::start().await;
    let body = h.withdrawal(250_000).await;
    assert_eq!(body["status"], "PENDING_REVIEW");
    assert_eq!(body["amount"], "250000");
    assert_eq!(body["currency"], "TRY");
    assert_eq!(body["referenceNo"].as_str().unwrap().len(), 10);
    let id = body["withdrawalId"].as_str().unwrap();
    let record = h.get(&format!("/external/withdrawals/{id}")).await.json();
    assert_eq!(record["status"], "PENDING_REVIEW");
    assert_eq!(record["externalUserId"], "user-1");
    // The IBAN is kept without the spaces it was sent with.
    assert_eq!(h.state().await["withdrawals"][0]["targetIban"], "TR330006100519786457841326");
}

#[tokio::test]
async fn every_validation_fault_has_its_own_code_and_names_its_field() {
    let h = Harness::start().await;
    let long = |n: usize| "x".repeat(n);
    let deposit = |patch: Value| {
        let mut body = deposit_body();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (deposit(json!({"externalUserId": null})), "validation_failed", Some("externalUserId")),
        (deposit(json!({"externalUserId": ""})), "validation_failed", Some("externalUserId")),
        (deposit(json!({"externalUserId": "   "})), "validation_failed", Some("externalUserId")),
        (deposit(json!({"externalUserId": 42})), "validation_failed", Some("externalUserId")),
        (deposit(json!({"externalUserId": long(129)})), "validation_failed", Some("externalUserId")),
        (deposit(json!({"externalUserLabel": long(129)})), "validation_failed", Some("externalUserLabel")),
        (deposit(json!({"externalUserLabel": 7})), "validation_failed", Some("externalUserLabel")),
        (deposit(json!({"amount": null})), "validation_failed", Some("amount")),
        (deposit(json!({"amount": 1.5})), "validation_failed", Some("amount")),
        (deposit(json!({"amount": "10.00"})), "validation_failed", Some("amount")),
        (deposit(json!({"amount": -100})), "validation_failed", Some("amount")),
        (deposit(json!({"amount": "abc"})), "validation_failed", Some("amount")),
        (deposit(json!({"amount": true})), "validation_failed", Some("amount")),
        (deposit(json!({"amount": 99})), "amount_below_min", Some("amount")),
        (deposit(json!({"amount": "0"})), "amount_below_min", Some("amount")),
        (deposit(json!({"amount": "100000001"})), "amount_above_max", Some("amount")),
        (deposit(json!({"currency": "USD"})), "unsupported_currency", Some("currency")),
        (deposit(json!({"currency": "try"})), "unsupported_currency", Some("currency")),
        (deposit(json!({"currency": 949})), "validation_failed", Some("currency")),
        (json!([1, 2]), "validation_failed", None),
        (json!("hello"), "validation_failed", None),
    ];
    for (body, code, field) in cases {
        let reply = h.create("/external/deposits", &body).await;
        reply.assert_error(400, code);
        let details = &reply.json()["details"];
        if let Some(field) = field {
            assert_eq!(details["field"], field, "{body}: {}", reply.text);
            assert!(reply.json()["message"].as_str().unwrap().contains(field), "{}", reply.text);
        }
    }
    // Malformed JSON.
    let reply = Reply::read(
        h.api(Method::POST, "/external/deposits")
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .header("Content-Type", "application/json")
            .body("{\"externalUserId\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_error(400, "validation_failed");

    // The edges that are allowed.
    for body in [
        deposit(json!({"amount": 100})),
        deposit(json!({"amount": "100000000"})),
        deposit(json!({"externalUserId": long(128), "externalUserLabel": long(128), "currency": "TRY"})),
        deposit(json!({"externalUserLabel": null, "currency": null})),
    ] {
        assert_eq!(h.create("/external/deposits", &body).await.status, 201, "{body}");
    }

    let withdrawal = |patch: Value| {
        let mut body = withdrawal_body(10_000);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (withdrawal(json!({"targetIban": null})), "validation_failed", "targetIban"),
        (withdrawal(json!({"targetIban": 5})), "validation_failed", "targetIban"),
        (withdrawal(json!({"targetIban": "TR330006100519786457841327"})), "invalid_iban", "targetIban"),
        (withdrawal(json!({"targetIban": "TR33000610051978645784132"})), "invalid_iban", "targetIban"),
        (withdrawal(json!({"targetIban": "not an iban"})), "invalid_iban", "targetIban"),
        (withdrawal(json!({"targetHolderName": null})), "validation_failed", "targetHolderName"),
        (withdrawal(json!({"targetHolderName": ""})), "validation_failed", "targetHolderName"),
        (withdrawal(json!({"targetHolderName": "ş".repeat(141)})), "validation_failed", "targetHolderName"),
        (withdrawal(json!({"amount": 99})), "amount_below_min", "amount"),
        (withdrawal(json!({"amount": 100_000_001})), "amount_above_max", "amount"),
        (withdrawal(json!({"currency": "EUR"})), "unsupported_currency", "currency"),
        (withdrawal(json!({"externalUserId": null})), "validation_failed", "externalUserId"),
    ];
    for (body, code, field) in cases {
        let reply = h.create("/external/withdrawals", &body).await;
        reply.assert_error(400, code);
        assert_eq!(reply.json()["details"]["field"], field, "{body}: {}", reply.text);
    }
    let ok = withdrawal(json!({"targetHolderName": "ş".repeat(140), "targetIban": "GB82WEST12345698765432"}));
    assert_eq!(h.create("/external/withdrawals", &ok).await.status, 201);
}

#[tokio::test]
async fn creates_need_a_uuid_idempotency_key() {
    let h = Harness::start().await;
    for path in ["/external/deposits", "/external/withdrawals"] {
        let body = if path.ends_with("deposits") { deposit_body() } else { withdrawal_body(10_000) };
        let reply = Reply::read(h.api(Method::POST, path).json(&body).send().await.unwrap()).await;
        reply.assert_error(400, "missing_idempotency_key");
        for bad in ["not-a-uuid", "0192f1c48b7e7c3a9f1e2b7d8c9a0e11", ""] {
            let reply = h.create_with_key(path, bad, &body).await;
            reply.assert_error(400, "validation_failed");
        }
    }
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_the_first_response() {
    let h = Harness::start().await;
    let key = uuid::Uuid::now_v7().to_string();
    let first = h.create_with_key("/external/deposits", &key, &deposit_body()).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotency-replayed"), None);
    // Same body, other key order and whitespace: the same request.
    let reordered: Value = serde_json::from_str(r#"{ "amount": "100000",  "externalUserId": "user-1" }"#).unwrap();
    let again = h.create_with_key("/external/deposits", &key, &reordered).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.bytes, first.bytes);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 1);

    let w_key = uuid::Uuid::now_v7().to_string();
    let first = h.create_with_key("/external/withdrawals", &w_key, &withdrawal_body(10_000)).await;
    let again = h.create_with_key("/external/withdrawals", &w_key, &withdrawal_body(10_000)).await;
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(first.bytes, again.bytes);
    assert_eq!(h.state().await["withdrawals"].as_array().unwrap().len(), 1);
    // Exactly one withdrawal.created event.
    assert_eq!(h.events().await.len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_conflicts() {
    let h = Harness::start().await;
    let key = uuid::Uuid::now_v7().to_string();
    assert_eq!(h.create_with_key("/external/deposits", &key, &deposit_body()).await.status, 201);
    let other = json!({"externalUserId": "user-1", "amount": "100001"});
    h.create_with_key("/external/deposits", &key, &other)
        .await
        .assert_error(409, "idempotency_key_reuse_with_different_body");
    // A number is a different body from a string, even for the same amount.
    let as_number = json!({"externalUserId": "user-1", "amount": 100000});
    h.create_with_key("/external/deposits", &key, &as_number)
        .await
        .assert_error(409, "idempotency_key_reuse_with_different_body");
    // The scope is per endpoint: the same key on withdrawals is a new request.
    assert_eq!(h.create_with_key("/external/withdrawals", &key, &withdrawal_body(100)).await.status, 201);
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_same_key_while_the_first_request_runs_is_a_duplicate() {
    let h = Harness::start().await;
    // The latency is spent inside the idempotent section, holding the key.
    h.configure(json!({"faults": {"apiLatencyMs": 1000}})).await;
    let key = uuid::Uuid::now_v7().to_string();
    let body = deposit_body();
    let (a, b) = tokio::join!(
        h.create_with_key("/external/deposits", &key, &body),
        h.create_with_key("/external/deposits", &key, &body)
    );
    let (winner, loser) = if a.status == 201 { (a, b) } else { (b, a) };
    assert_eq!(winner.status, 201, "{}", winner.text);
    loser.assert_error(409, "duplicate_idempotency_key");
    h.configure(json!({"faults": {"apiLatencyMs": 0}})).await;
    // Once the first finished, the retry gets its response.
    let retry = h.create_with_key("/external/deposits", &key, &body).await;
    assert_eq!(retry.bytes, winner.bytes);
    assert_eq!(retry.header("idempotency-replayed"), Some("true"));
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_pool_runs_out_and_refills_when_intents_end() {
    let h = Harness::with(Config { accounts: 3, ..test_config() }).await;
    let ids: Vec<String> = [h.deposit(1000).await, h.deposit(1000).await, h.deposit(1000).await]
        .iter()
        .map(|d| d["intentId"].as_str().unwrap().to_owned())
        .collect();
    let key = uuid::Uuid::now_v7().to_string();
    h.create_with_key("/external/deposits", &key, &deposit_body()).await.assert_error(503, "no_account_available");
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 3);

    // PENDING_REVIEW still holds the account.
    assert_eq!(h.control(&format!("/sandbox/intents/{}/confirm", ids[0]), json!({})).await.status, 200);
    h.create("/external/deposits", &deposit_body()).await.assert_error(503, "no_account_available");

    // APPROVED, REJECTED and AUTO_CANCELLED each give it back; a 5xx did not burn the key.
    assert_eq!(h.control(&format!("/sandbox/intents/{}/approve", ids[0]), json!({})).await.status, 200);
    assert_eq!(h.create_with_key("/external/deposits", &key, &deposit_body()).await.status, 201);
    h.create("/external/deposits", &deposit_body()).await.assert_error(503, "no_account_available");
    assert_eq!(h.control(&format!("/sandbox/intents/{}/confirm", ids[1]), json!({})).await.status, 200);
    assert_eq!(
        h.control(&format!("/sandbox/intents/{}/reject", ids[1]), json!({"reason": "no transfer"})).await.status,
        200
    );
    assert_eq!(h.create("/external/deposits", &deposit_body()).await.status, 201);
    assert_eq!(h.control(&format!("/sandbox/intents/{}/expire", ids[2]), json!({})).await.status, 200);
    assert_eq!(h.create("/external/deposits", &deposit_body()).await.status, 201);
    assert_eq!(h.state().await["freeAccounts"], 0);
}

#[tokio::test]
async fn lookups_answer_404_for_unknown_and_malformed_ids() {
    let h = Harness::start().await;
    for path in [
        format!("/external/intents/{}", uuid::Uuid::now_v7()),
        format!("/external/withdrawals/{}", uuid::Uuid::now_v7()),
        "/external/intents/not-a-uuid".to_owned(),
        "/external/withdrawals/123".to_owned(),
        "/external/nothing-here".to_owned(),
    ] {
        h.get(&path).await.assert_error(404, "not_found");
    }
    // A withdrawal id is not an intent id.
    let w = h.withdrawal(1000).await;
    h.get(&format!("/external/intents/{}", w["withdrawalId"].as_str().unwrap())).await.assert_error(404, "not_found");
}

/// Creates `n` deposits and answers their ids, oldest first.
async fn deposits(h: &Harness, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let d = h.deposit(10_000 + i as u64).await;
        ids.push(d["intentId"].as_str().unwrap().to_owned());
    }
    ids
}

fn ids_of(page: &Value, field: &str) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|i| i[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn intents_are_listed_newest_first_and_filtered() {
    let h = Harness::start().await;
    let ids = deposits(&h, 6).await;
    h.control(&format!("/sandbox/intents/{}/confirm", ids[1]), json!({})).await;
    h.control(&format!("/sandbox/intents/{}/confirm", ids[3]), json!({})).await;
    h.control(&format!("/sandbox/intents/{}/approve", ids[3]), json!({})).await;
    h.control(&format!("/sandbox/intents/{}/expire", ids[4]), json!({})).await;

    let page = h.get("/external/intents").await.json();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(ids_of(&page, "intentId"), newest_first);
    assert_eq!(page["nextCursor"], Value::Null);
    let first = &page["data"][0];
    for field in [
        "intentId",
        "referenceNo",
        "status",
        "requestedAmount",
        "amount",
        "currency",
        "approvedAt",
        "rejectedAt",
        "rejectedReason",
        "externalUserId",
        "createdAt",
        "expiresAt",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }

    let filtered = h.get("/external/intents?status=PENDING_REVIEW,APPROVED").await.json();
    assert_eq!(ids_of(&filtered, "intentId"), [ids[3].clone(), ids[1].clone()]);
    let cancelled = h.get("/external/intents?status=AUTO_CANCELLED").await.json();
    assert_eq!(ids_of(&cancelled, "intentId"), [ids[4].clone()]);

    // createdFrom is inclusive, createdTo exclusive.
    let created: Vec<String> =
        page["data"].as_array().unwrap().iter().rev().map(|i| i["createdAt"].as_str().unwrap().to_owned()).collect();
    let from = &created[2];
    let to = &created[4];
    let window = h.get(&format!("/external/intents?createdFrom={from}&createdTo={to}")).await.json();
    let window_ids = ids_of(&window, "intentId");
    for (id, at) in ids.iter().zip(&created) {
        let inside = at >= from && at < to;
        assert_eq!(window_ids.contains(id), inside, "{id} created at {at}, window [{from}, {to})");
    }
    let since = ids_of(&h.get(&format!("/external/intents?createdFrom={from}")).await.json(), "intentId");
    assert!(since.contains(&ids[2]), "createdFrom is inclusive");
    let until = ids_of(&h.get(&format!("/external/intents?createdTo={from}")).await.json(), "intentId");
    assert!(!until.contains(&ids[2]), "createdTo is exclusive");
    assert_eq!(since.len() + until.len(), ids.len());
    let future = h.get("/external/intents?createdFrom=2999-01-01T00:00:00.000Z").await.json();
    assert_eq!(future["data"], json!([]));
    let past = h.get("/external/intents?createdTo=2000-01-01T00:00:00.000Z").await.json();
    assert_eq!(past["data"], json!([]));

    // Limits and their bounds.
    let two = h.get("/external/intents?limit=2").await.json();
    assert_eq!(ids_of(&two, "intentId"), [ids[5].clone(), ids[4].clone()]);
    assert!(two["nextCursor"].is_string());
    assert_eq!(h.get("/external/intents?limit=1").await.status, 200);
    assert_eq!(h.get("/external/intents?limit=100").await.status, 200);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=ten",
        "status=APPROVED,PAID",
        "status=approved",
        "status=",
        "cursor=nope",
        "cursor=aTox",
        "createdFrom=yesterday",
        "createdTo=2026-13-01",
    ] {
        h.get(&format!("/external/intents?{bad}")).await.assert_error(400, "validation_failed");
    }
    // Another listing's cursor is not this one's.
    h.withdrawal(1000).await;
    h.withdrawal(1000).await;
    let w_page = h.get("/external/withdrawals?limit=1").await.json();
    let w_cursor = w_page["nextCursor"].as_str().unwrap();
    h.get(&format!("/external/intents?cursor={w_cursor}")).await.assert_error(400, "validation_failed");
}

#[tokio::test]
async fn withdrawals_are_listed_newest_first_and_filtered() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for amount in [1000, 2000, 3000, 4000] {
        ids.push(h.withdrawal(amount).await["withdrawalId"].as_str().unwrap().to_owned());
    }
    h.control(&format!("/sandbox/withdrawals/{}/approve", ids[0]), json!({})).await;
    h.control(&format!("/sandbox/withdrawals/{}/send", ids[0]), json!({})).await;
    h.control(&format!("/sandbox/withdrawals/{}/reject", ids[2]), json!({"reason": "name mismatch"})).await;

    let page = h.get("/external/withdrawals").await.json();
    assert_eq!(ids_of(&page, "withdrawalId"), ids.iter().rev().cloned().collect::<Vec<_>>());
    let item = &page["data"][3];
    for field in [
        "withdrawalId",
        "referenceNo",
        "status",
        "amount",
        "currency",
        "externalUserId",
        "createdAt",
        "sentAt",
        "rejectedAt",
        "returnedAt",
        "rejectedReason",
    ] {
        assert!(item.get(field).is_some(), "{field} missing: {item}");
    }
    assert_eq!(item["status"], "SENT");
    assert!(item["sentAt"].is_string());
    let rejected = h.get("/external/withdrawals?status=REJECTED").await.json();
    assert_eq!(ids_of(&rejected, "withdrawalId"), [ids[2].clone()]);
    assert_eq!(rejected["data"][0]["rejectedReason"], "name mismatch");
    h.get("/external/withdrawals?status=RESERVED").await.assert_error(400, "validation_failed");
    h.get("/external/withdrawals?limit=101").await.assert_error(400, "validation_failed");

    // Paging one at a time visits each exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/external/withdrawals?limit=1&cursor={c}"),
            None => "/external/withdrawals?limit=1".to_owned(),
        };
        let page = h.get(&path).await.json();
        seen.extend(ids_of(&page, "withdrawalId"));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().rev().cloned().collect::<Vec<_>>());
}

#[tokio::test]
async fn walking_pages_while_records_are_inserted_has_no_duplicates_or_gaps() {
    let h = Harness::with(Config { accounts: 200, ..test_config() }).await;
    let before = deposits(&h, 23).await;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/external/intents?limit=4&cursor={c}"),
            None => "/external/intents?limit=4".to_owned(),
        };
        let (page, _) = tokio::join!(h.get(&path), deposits(&h, 2));
        let page = page.json();
        seen.extend(ids_of(&page, "intentId"));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record came twice");
    for id in &before {
        assert!(unique.contains(id), "{id} was skipped");
    }
    // Among the records that existed before the walk, the order is newest first.
    let old: Vec<&String> = seen.iter().filter(|id| before.contains(id)).collect();
    assert_eq!(old, before.iter().rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn over_the_rate_limit_calls_get_429_with_retry_after() {
    let h = Harness::with(Config { rate_limit_per_minute: 5, ..test_config() }).await;
    for _ in 0..5 {
        assert_eq!(h.get("/external/intents").await.status, 200);
    }
    let reply = h.get("/external/intents").await;
    reply.assert_error(429, "rate_limited");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Creates count too, and a refused create does nothing.
    h.create("/external/deposits", &deposit_body()).await.assert_error(429, "rate_limited");
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 0);
    // Unauthenticated calls are refused before the limit is consulted.
    let reply = Reply::read(h.http.get(h.api_url("/external/intents")).send().await.unwrap()).await;
    reply.assert_error(401, "unauthorized");
    // The limit is live configuration.
    h.configure(json!({"rateLimitPerMinute": 100})).await;
    assert_eq!(h.get("/external/intents").await.status, 200);
}

#[tokio::test]
async fn injected_api_errors_answer_5xx_and_do_nothing() {
    let h = Harness::start().await;
    let settings = h.configure(json!({"faults": {"apiErrorsNext": 3}})).await;
    assert_eq!(settings["faults"]["apiErrorsNext"], 3);
    let key = uuid::Uuid::now_v7().to_string();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = h.create_with_key("/external/deposits", &key, &deposit_body()).await;
        assert!(reply.json()["error"].is_string());
        statuses.push(reply.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [500, 502, 503]);
    assert_eq!(h.state().await["intents"].as_array().unwrap().len(), 0);
    // The recommended retry, same key and body, now succeeds: the faults claimed nothing.
    let reply = h.create_with_key("/external/deposits", &key, &deposit_body()).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("idempotency-replayed"), None);

    h.configure(json!({"faults": {"apiErrorPercent": 100}})).await;
    assert!(h.get("/external/intents").await.status >= 500);
    h.configure(json!({"faults": {"apiErrorPercent": 0}})).await;
    assert_eq!(h.get("/external/intents").await.status, 200);
}

#[tokio::test]
async fn injected_latency_can_be_limited_to_the_next_calls() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"apiLatencyMs": 800, "apiLatencyNext": 1}})).await;
    let started = tokio::time::Instant::now();
    assert_eq!(h.get("/external/intents").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(800));
    let started = tokio::time::Instant::now();
    assert_eq!(h.get("/external/intents").await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(800));
    let config: Value = h.http.get(h.url("/sandbox/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["faults"]["apiLatencyMs"], 0);
    assert_eq!(config["faults"]["apiLatencyNext"], 0);
}
