//! The companion server against the sandbox, over real HTTP: deposits,
//! withdrawals, webhooks, SSE, isolation and failure handling.

use std::time::Duration;

use pientegra_shared::event::{EventKind, WebhookEvent};
use pientegra_shared::status::IntentStatus;
use pientegra_tests::{Options, Stack, post_webhook, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn a_deposit_is_credited_once_and_pushed_over_sse(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("ayse").await;
    let mut events = stack.events(&token, None).await;
    let opening = events.next(WAIT).await.unwrap();
    assert_eq!(opening.event, "balance.updated");

    let deposit = stack.deposit(&token, "150000").await;
    assert_eq!(deposit.status, IntentStatus::Reserved);
    assert!(deposit.deposit_url.starts_with(&stack.sandbox.base_url()));
    stack.pay_and_approve(deposit.intent_id).await;

    let approved = events
        .until(WAIT, |e| e.event == "deposit.updated" && e.json()["status"] == "APPROVED")
        .await
        .expect("approval streamed");
    assert_eq!(approved.json()["intentId"], deposit.intent_id.to_string());
    let balance = events.until(WAIT, |e| e.event == "balance.updated").await.unwrap();
    assert_eq!(balance.json()["available"], "150000");
    assert_eq!(stack.balance(&token).await, (150_000, 0));
    let account = stack.account(&token).await;
    assert_eq!(account.deposits[0].status, IntentStatus::Approved);
}

async fn a_rejected_deposit_credits_nothing(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("mehmet").await;
    let deposit = stack.deposit(&token, "50000").await;
    stack.control(&format!("intents/{}/confirm", deposit.intent_id), json!({})).await;
    stack.control(&format!("intents/{}/reject", deposit.intent_id), json!({"reason": "no transfer found"})).await;
    wait_for(WAIT, || async {
        stack.get_json(&token, &format!("/api/deposits/{}", deposit.intent_id)).await.1["status"] == "REJECTED"
    })
    .await
    .unwrap();
    let (_, body) = stack.get_json(&token, &format!("/api/deposits/{}", deposit.intent_id)).await;
    assert_eq!(body["rejectedReason"], "no transfer found");
    assert_eq!(stack.balance(&token).await, (0, 0));
}

async fn the_approved_amount_is_credited_not_the_requested_one(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("can").await;
    let deposit = stack.deposit(&token, "100000").await;
    stack.control(&format!("intents/{}/confirm", deposit.intent_id), json!({})).await;
    stack.control(&format!("intents/{}/approve", deposit.intent_id), json!({"amount": "99000"})).await;
    wait_for(WAIT, || async { stack.balance(&token).await.0 == 99_000 }).await.unwrap();
}

async fn one_webhook_delivered_three_times_concurrently_credits_once(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("zeynep").await;
    // Webhooks off, so only our three copies arrive.
    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let deposit = stack.deposit(&token, "20000").await;
    stack.pay_and_approve(deposit.intent_id).await;
    let body = stack.delivered_event_body("intent.approved", deposit.intent_id).await;
    let server = stack.server.url();
    let secret = stack.sandbox.webhook_secret().to_owned();
    let sends = (0..3).map(|_| post_webhook(&stack.http, &server, &secret, now_ms(), &body));
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    assert_eq!(stack.balance(&token).await, (20_000, 0));
    // A fourth, later copy changes nothing either.
    assert!(post_webhook(&stack.http, &server, &secret, now_ms(), &body).await.is_success());
    assert_eq!(stack.balance(&token).await, (20_000, 0));
}

/// Webhooks arriving together share commits (SQLite's group commit): each
/// still gets its own outcome, and a copy in the same batch as its original is
/// a duplicate, not a second credit.
async fn many_webhooks_at_once_each_get_their_outcome_and_credit_once(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("ece").await;
    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let mut bodies = Vec::new();
    for i in 1..=16u64 {
        let deposit = stack.deposit(&token, &(i * 1_000).to_string()).await;
        stack.pay_and_approve(deposit.intent_id).await;
        bodies.push(stack.delivered_event_body("intent.approved", deposit.intent_id).await);
    }
    let (server, secret) = (stack.server.url(), stack.sandbox.webhook_secret().to_owned());
    let send = |body: &Vec<u8>| {
        let request = stack
            .http
            .post(format!("{server}/webhooks/pientegra"))
            .header("Pientegra-Signature", pientegra_shared::signature::sign(&secret, now_ms(), body))
            .body(body.clone());
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()["outcome"].as_str().unwrap().to_owned()
        }
    };
    // Every body twice, all at once.
    let outcomes = futures::future::join_all(bodies.iter().chain(&bodies).map(send)).await;
    let count = |outcome: &str| outcomes.iter().filter(|o| *o == outcome).count();
    assert_eq!((count("applied"), count("duplicate")), (16, 16), "{outcomes:?}");
    assert_eq!(stack.balance(&token).await, ((1..=16).sum::<u64>() * 1_000, 0));
}

async fn sandbox_duplicate_deliveries_credit_once(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("deniz").await;
    stack.sandbox_config(json!({"faults": {"duplicateDeliveries": 3, "shuffleOrder": true}})).await;
    let deposit = stack.deposit(&token, "30000").await;
    stack.pay_and_approve(deposit.intent_id).await;
    wait_for(WAIT, || async { stack.balance(&token).await.0 == 30_000 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the extra copies land
    assert_eq!(stack.balance(&token).await, (30_000, 0));
}

fn forged_variants(secret: &str, body: &[u8]) -> Vec<(&'static str, Option<String>, Vec<u8>)> {
    let now = now_ms();
    let sign = |t: i64, b: &[u8]| pientegra_shared::signature::sign(secret, t, b);
    let mut tampered = body.to_vec();
    let pos = tampered.iter().position(|&b| b == b'0').unwrap();
    tampered[pos] = b'9';
    vec![
        ("tampered body", Some(sign(now, body)), tampered),
        ("stale", Some(sign(now - 6 * 60_000, body)), body.to_vec()),
        ("future", Some(sign(now + 6 * 60_000, body)), body.to_vec()),
        ("unsigned", None, body.to_vec()),
        ("wrong secret", Some(pientegra_shared::signature::sign("whsec_wrong", now, body)), body.to_vec()),
        ("empty v1", Some(format!("t={now},v1=")), body.to_vec()),
    ]
}

async fn forged_webhooks_are_refused_and_change_nothing(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("ali").await;
    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let deposit = stack.deposit(&token, "40000").await;
    stack.pay_and_approve(deposit.intent_id).await;
    let body = stack.delivered_event_body("intent.approved", deposit.intent_id).await;
    for (what, header, payload) in forged_variants(stack.sandbox.webhook_secret(), &body) {
        let mut request = stack.http.post(format!("{}/webhooks/pientegra", stack.server.url())).body(payload);
        if let Some(header) = header {
            request = request.header("Pientegra-Signature", header);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(stack.balance(&token).await, (0, 0), "{what}");
    }
    let (_, deposit_now) = stack.get_json(&token, &format!("/api/deposits/{}", deposit.intent_id)).await;
    assert_eq!(deposit_now["status"], "RESERVED");
}

async fn withdrawal_events_out_of_order_settle_correctly(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("ece").await;
    stack.funded(&token, "100000").await;
    let (status, w) = stack
        .post_json(
            &token,
            "/api/withdrawals",
            &uuid::Uuid::new_v4().to_string(),
            json!({
                "amount": "40000", "iban": "TR33 0006 1005 1978 6457 8413 26", "holderName": "Ece Yılmaz"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    assert_eq!(stack.balance(&token).await, (60_000, 40_000));
    let id = w["withdrawalId"].as_str().unwrap().to_owned();

    stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    stack.control(&format!("withdrawals/{id}/approve"), json!({})).await;
    stack.control(&format!("withdrawals/{id}/send"), json!({})).await;
    stack.control(&format!("withdrawals/{id}/return"), json!({})).await;
    let wid: uuid::Uuid = id.parse().unwrap();
    let sent = stack.delivered_event_body("withdrawal.sent", wid).await;
    let returned = stack.delivered_event_body("withdrawal.returned", wid).await;
    let secret = stack.sandbox.webhook_secret().to_owned();
    // The return arrives first: the debit is finalized and the money credited back.
    assert!(post_webhook(&stack.http, &stack.server.url(), &secret, now_ms(), &returned).await.is_success());
    assert_eq!(stack.balance(&token).await, (100_000, 0));
    // The late `sent` changes nothing.
    assert!(post_webhook(&stack.http, &stack.server.url(), &secret, now_ms(), &sent).await.is_success());
    assert_eq!(stack.balance(&token).await, (100_000, 0));
    let (_, view) = stack.get_json(&token, &format!("/api/withdrawals/{id}")).await;
    assert_eq!(view["status"], "RETURNED");
    assert!(WebhookEvent::parse(&sent).is_ok_and(|e| matches!(e.kind, EventKind::Withdrawal { .. })));
}

async fn a_rejected_withdrawal_releases_the_reservation(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("emre").await;
    stack.funded(&token, "50000").await;
    let (_, w) = stack
        .post_json(
            &token,
            "/api/withdrawals",
            &uuid::Uuid::new_v4().to_string(),
            json!({
                "amount": "50000", "iban": "TR330006100519786457841326", "holderName": "Emre"
            }),
        )
        .await;
    assert_eq!(stack.balance(&token).await, (0, 50_000));
    let id = w["withdrawalId"].as_str().unwrap();
    stack.control(&format!("withdrawals/{id}/reject"), json!({"reason": "name mismatch"})).await;
    wait_for(WAIT, || async { stack.balance(&token).await == (50_000, 0) }).await.unwrap();
}

async fn final_debit_moves_money_only_when_sent(options: Options) {
    let stack =
        Stack::with(Options { balance_model: pientegra_server::ledger::BalanceModel::FinalDebit, ..options }).await;
    let token = stack.token("selin").await;
    stack.funded(&token, "50000").await;
    let body = json!({"amount": "30000", "iban": "TR330006100519786457841326", "holderName": "Selin"});
    let (status, w) =
        stack.post_json(&token, "/api/withdrawals", &uuid::Uuid::new_v4().to_string(), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(stack.balance(&token).await, (50_000, 0));
    // The pending 300.00 counts against a second request.
    let (status, err) = stack.post_json(&token, "/api/withdrawals", &uuid::Uuid::new_v4().to_string(), body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"], "insufficient_funds");
    let id = w["withdrawalId"].as_str().unwrap();
    stack.control(&format!("withdrawals/{id}/approve"), json!({})).await;
    stack.control(&format!("withdrawals/{id}/send"), json!({})).await;
    wait_for(WAIT, || async { stack.balance(&token).await == (20_000, 0) }).await.unwrap();
}

async fn twenty_concurrent_withdrawals_never_overdraw(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("burak").await;
    stack.funded(&token, "100000").await;
    let keys: Vec<String> = (0..20).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let attempts = keys.iter().map(|key| {
        stack.post_json(
            &token,
            "/api/withdrawals",
            key,
            json!({
                "amount": "10000", "iban": "TR330006100519786457841326", "holderName": "Burak"
            }),
        )
    });
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let refused =
        results.iter().filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"] == "insufficient_funds").count();
    assert_eq!((created, refused), (10, 10), "{results:?}");
    assert_eq!(stack.balance(&token).await, (0, 100_000));
}

async fn pientegra_failing_twice_still_yields_exactly_one_intent(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("okan").await;
    stack.sandbox_config(json!({"faults": {"apiErrorsNext": 2}})).await;
    let deposit = stack.deposit(&token, "12345").await;
    let page: Value = stack
        .http
        .get(format!("{}/external/intents", stack.sandbox.api_base()))
        .bearer_auth(stack.sandbox.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine: Vec<_> = page["data"].as_array().unwrap().iter().filter(|i| i["externalUserId"] == "okan").collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["intentId"], deposit.intent_id.to_string());
}

async fn idempotency_follows_the_ietf_draft(options: Options) {
    let mut stack = Stack::with(options).await;
    let token = stack.token("idem").await;
    let url = format!("{}/api/deposits", stack.server.url());
    let missing = stack.http.post(&url).bearer_auth(&token).json(&json!({"amount": "10000"})).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "missing_idempotency_key");

    let key = uuid::Uuid::new_v4().to_string();
    let (first_status, first) = stack.post_json(&token, "/api/deposits", &key, json!({"amount": "10000"})).await;
    assert_eq!(first_status, StatusCode::CREATED);
    let replay = |stack: &Stack| {
        let request = stack.http.post(&url).bearer_auth(&token).header("Idempotency-Key", &key);
        let first = first.clone();
        async move {
            let replay = request.json(&json!({"amount": "10000"})).send().await.unwrap();
            assert_eq!(replay.status(), StatusCode::CREATED);
            assert_eq!(replay.headers()["idempotency-replayed"], "true");
            assert_eq!(replay.json::<Value>().await.unwrap(), first);
        }
    };
    replay(&stack).await;
    let (other_status, other) = stack.post_json(&token, "/api/deposits", &key, json!({"amount": "20000"})).await;
    assert_eq!(other_status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other["error"], "idempotency_key_reused");
    assert_eq!(stack.account(&token).await.deposits.len(), 1);

    // The stored answer (written with the deposit, in one commit) outlives the process.
    stack.restart_server().await;
    replay(&stack).await;
    let (other_status, _) = stack.post_json(&token, "/api/deposits", &key, json!({"amount": "20000"})).await;
    assert_eq!(other_status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(stack.account(&token).await.deposits.len(), 1);
}

async fn the_same_key_in_flight_answers_409(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("slow").await;
    stack.sandbox_config(json!({"faults": {"apiLatencyMs": 800, "apiLatencyNext": 1}})).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"amount": "10000"});
    let (a, b) = tokio::join!(stack.post_json(&token, "/api/deposits", &key, body.clone()), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stack.post_json(&token, "/api/deposits", &key, body.clone()).await
    });
    assert_eq!(a.0, StatusCode::CREATED);
    assert_eq!(b.0, StatusCode::CONFLICT, "{}", b.1);
    assert_eq!(b.1["error"], "idempotency_key_in_flight");
}

async fn bad_input_gets_a_clear_code_and_changes_nothing(options: Options) {
    let stack = Stack::with(options).await;
    let token = stack.token("bad").await;
    let key = || uuid::Uuid::new_v4().to_string();
    let cases = [
        ("/api/deposits", json!({"amount": "99"}), "amount_below_min"),
        ("/api/deposits", json!({"amount": "100000001"}), "amount_above_max"),
        ("/api/deposits", json!({"amount": "1.5"}), "validation_failed"),
        ("/api/deposits", json!({"amount": -5}), "validation_failed"),
        ("/api/deposits", json!({"amount": "100", "currency": "EUR"}), "unsupported_currency"),
        ("/api/deposits", json!({}), "validation_failed"),
        (
            "/api/withdrawals",
            json!({"amount": "1000", "iban": "TR330006100519786457841327", "holderName": "X"}),
            "invalid_iban",
        ),
        (
            "/api/withdrawals",
            json!({"amount": "1000", "iban": "TR330006100519786457841326", "holderName": ""}),
            "validation_failed",
        ),
        (
            "/api/withdrawals",
            json!({"amount": "1000", "iban": "TR330006100519786457841326", "holderName": "X"}),
            "insufficient_funds",
        ),
    ];
    for (path, body, code) in cases {
        let (status, answer) = stack.post_json(&token, path, &key(), body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(answer["error"], code, "{body}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let bad_key = stack.post_json(&token, "/api/deposits", "not-a-uuid", json!({"amount": "1000"})).await;
    assert_eq!(bad_key.1["error"], "validation_failed");
    let account = stack.account(&token).await;
    assert!(account.deposits.is_empty() && account.withdrawals.is_empty());
    assert_eq!(stack.balance(&token).await, (0, 0));
}

async fn users_cannot_read_or_stream_each_other(options: Options) {
    let stack = Stack::with(options).await;
    let a = stack.token("user-a").await;
    let b = stack.token("user-b").await;
    let deposit_b = stack.deposit(&b, "10000").await;
    let (status, _) = stack.get_json(&a, &format!("/api/deposits/{}", deposit_b.intent_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(stack.account(&a).await.deposits.is_empty());

    let mut stream_a = stack.events(&a, None).await;
    let mut stream_b = stack.events(&b, Some(0)).await;
    stack.pay_and_approve(deposit_b.intent_id).await;
    stream_b.until(WAIT, |e| e.event == "balance.updated" && e.json()["available"] == "10000").await.unwrap();
    // A sees only its opening balance, never B's events, even replaying from 0.
    let opening = stream_a.next(WAIT).await.unwrap();
    assert_eq!(opening.json()["available"], "0");
    assert!(stream_a.next(Duration::from_millis(500)).await.is_err());
    let mut replay_a = stack.events(&a, Some(0)).await;
    assert!(replay_a.next(Duration::from_millis(500)).await.is_err());

    for bad in ["", "pk1.e30.AAAA", "garbage"] {
        let (status, body) = stack.get_json(bad, "/api/account").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
    }
}

async fn sse_reconnect_after_a_restart_replays_what_was_missed(options: Options) {
    let mut stack = Stack::with(options).await;
    let token = stack.token("restart").await;
    let deposit = stack.deposit(&token, "25000").await;
    let mut events = stack.events(&token, Some(0)).await;
    let created = events.until(WAIT, |e| e.event == "deposit.updated").await.unwrap();
    let last_seen = created.seq().unwrap();

    let addr = stack.server.addr;
    stack.stop_server().await;
    // While the server is down the approval happens; the sandbox keeps retrying the webhook.
    stack.pay_and_approve(deposit.intent_id).await;
    stack.start_again(addr).await;

    let mut resumed = stack.events(&token, Some(last_seen)).await;
    let approved =
        resumed.until(WAIT, |e| e.event == "deposit.updated" && e.json()["status"] == "APPROVED").await.unwrap();
    assert!(approved.seq().unwrap() > last_seen);
    assert_eq!(stack.balance(&token).await, (25_000, 0));
}

async fn a_deposit_url_outside_the_allow_list_never_reaches_the_browser(options: Options) {
    let stack = Stack::with(Options { deposit_url_hosts: Some(vec!["pay.example.com".into()]), ..options }).await;
    let token = stack.token("evil").await;
    let (status, body) = stack.post_deposit(&token, "10000").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "deposit_url_not_allowed");
    assert!(!body.to_string().contains("/d/"));
    assert!(stack.account(&token).await.deposits.is_empty());
}

async fn cors_allows_only_listed_origins(options: Options) {
    let stack = Stack::with(options).await;
    let preflight = |origin: &'static str| {
        stack
            .http
            .request(reqwest::Method::OPTIONS, format!("{}/api/deposits", stack.server.url()))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization,idempotency-key,content-type")
            .send()
    };
    let allowed = preflight("http://partner.test").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "http://partner.test");
    let refused = preflight("http://evil.test").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

async fn health_readiness_and_metrics_answer(options: Options) {
    let stack = Stack::with(options).await;
    let readyz = format!("{}/readyz", stack.server.url());
    // Ready once the background check (at start) has had Pientegra's answer.
    wait_for(WAIT, || async { stack.http.get(&readyz).send().await.unwrap().status() == StatusCode::OK })
        .await
        .expect("the server becomes ready");
    let ready: Value = stack.http.get(&readyz).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["pientegra"], "ok");
    assert!(ready["pientegraCheckedSecondsAgo"].as_u64().is_some(), "{ready}");
    let metrics = stack.http.get(format!("{}/metrics", stack.server.url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pientegra_webhooks_applied_total"));
    let admin = stack
        .http
        .get(format!("{}/admin/intents/{}", stack.server.url(), uuid::Uuid::nil()))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::UNAUTHORIZED);
}

pientegra_tests::on_each_database!(
    a_deposit_is_credited_once_and_pushed_over_sse,
    a_rejected_deposit_credits_nothing,
    the_approved_amount_is_credited_not_the_requested_one,
    one_webhook_delivered_three_times_concurrently_credits_once,
    many_webhooks_at_once_each_get_their_outcome_and_credit_once,
    sandbox_duplicate_deliveries_credit_once,
    forged_webhooks_are_refused_and_change_nothing,
    withdrawal_events_out_of_order_settle_correctly,
    a_rejected_withdrawal_releases_the_reservation,
    final_debit_moves_money_only_when_sent,
    twenty_concurrent_withdrawals_never_overdraw,
    pientegra_failing_twice_still_yields_exactly_one_intent,
    idempotency_follows_the_ietf_draft,
    the_same_key_in_flight_answers_409,
    bad_input_gets_a_clear_code_and_changes_nothing,
    users_cannot_read_or_stream_each_other,
    sse_reconnect_after_a_restart_replays_what_was_missed,
    a_deposit_url_outside_the_allow_list_never_reaches_the_browser,
    cors_allows_only_listed_origins,
    health_readiness_and_metrics_answer,
);

#[tokio::test]
async fn a_watched_deposit_shows_under_review_once_the_user_confirms() {
    let stack = Stack::start().await;
    let token = stack.token("watcher").await;
    let deposit = stack.deposit(&token, "15000").await;
    let mut events = stack.events(&token, None).await;
    stack.control(&format!("intents/{}/confirm", deposit.intent_id), json!({})).await;
    // No webhook exists for the confirmation: the server learns it by lookup.
    let review = events
        .until(Duration::from_secs(10), |e| e.event == "deposit.updated" && e.json()["status"] == "PENDING_REVIEW")
        .await
        .expect("under review streamed");
    assert_eq!(review.json()["intentId"], deposit.intent_id.to_string());
    assert_eq!(stack.balance(&token).await, (0, 0), "no money moves on a confirmation");
    stack.control(&format!("intents/{}/approve", deposit.intent_id), json!({})).await;
    events.until(WAIT, |e| e.event == "balance.updated" && e.json()["available"] == "15000").await.unwrap();
}

/// Sends `request` in `parts` (with a pause between them) over a raw
/// connection and returns it, for reading the answer.
async fn raw_request(stack: &Stack, parts: &[&str]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(stack.server.addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        socket.write_all(part.as_bytes()).await.unwrap();
    }
    socket
}

/// Reads from `socket` until `seen` holds `needle` (or the connection ends).
async fn read_until(socket: &mut tokio::net::TcpStream, needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match socket.read(&mut buf).await.unwrap() {
                0 => break,
                n => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, reading).await.unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"));
    String::from_utf8_lossy(&seen).into_owned()
}

async fn open_streams(stack: &Stack) -> u64 {
    let metrics = stack.http.get(format!("{}/metrics", stack.server.url())).send().await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("pientegra_sse_connections ")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Event streams are served beside hyper (lighter per connection): on the
/// wire they must be the same HTTP/1.1, with the router's headers, and a
/// client that leaves must be let go at once.
#[tokio::test]
async fn event_streams_are_plain_http_1_1_with_the_routers_headers() {
    let stack = Stack::start().await;
    let token = stack.token("wire").await;
    let ticket = stack.stream_ticket(&token).await;
    let request = format!("GET /api/events?ticket={ticket} HTTP/1.1\r\nHost: x\r\nOrigin: http://partner.test\r\n\r\n");
    let mut socket = raw_request(&stack, &[&request]).await;
    let answer = read_until(&mut socket, "event: balance.updated").await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200 ok\r\n"), "{answer}");
    for header in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "access-control-allow-origin: http://partner.test",
        "x-content-type-options: nosniff",
        "content-security-policy: ",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "connection: close",
        "date: ",
    ] {
        assert!(answer.contains(&format!("\r\n{header}")), "no {header:?} in {answer}");
    }
    assert!(answer.contains(r#"data: {"available":"0","#), "{answer}");
    assert_eq!(open_streams(&stack).await, 1);
    drop(socket);
    // Noticed at once, not at the next keep-alive comment 15 s later.
    wait_for(Duration::from_secs(3), || async { open_streams(&stack).await == 0 }).await.unwrap();

    // An HTTP/1.0 client knows no chunks: the frames come as they are, and end with the connection.
    let request = format!("GET /api/events?ticket={ticket} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut socket = raw_request(&stack, &[&request]).await;
    let answer = read_until(&mut socket, "event: balance.updated").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{answer}");
    let first_line = body.lines().next().unwrap_or_default();
    assert!(u64::from_str_radix(first_line.trim(), 16).is_err(), "a chunk size in {answer}");
    drop(socket);

    // Refused before any stream starts: a complete answer, then the connection closes.
    let mut socket = raw_request(&stack, &["GET /api/events?ticket=garbage HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    let answer = read_until(&mut socket, "\u{0}never").await;
    assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(answer.contains(&format!("content-length: {}\r\n", body.len())), "{answer}");
    assert_eq!(serde_json::from_str::<Value>(body).unwrap()["error"], "unauthorized");

    // A request line that arrives in pieces, and other paths, are hyper's, as before.
    let rest = format!("ents?ticket={ticket} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut socket = raw_request(&stack, &["GET /api/ev", &rest]).await;
    let answer = read_until(&mut socket, "event: balance.updated").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let mut socket = raw_request(&stack, &["GET /api/eventsX HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]).await;
    assert!(read_until(&mut socket, "\u{0}never").await.starts_with("HTTP/1.1 404 Not Found\r\n"));
}

/// A webhook without a well-formed signature header is answered as soon as
/// its head arrives: the server reads no body for it, nor waits for one.
#[tokio::test]
async fn a_webhook_without_a_well_formed_signature_header_is_refused_before_its_body() {
    let stack = Stack::start().await;
    for (header, code) in
        [("", "signature_missing"), ("Pientegra-Signature: v1=abc\r\n", "signature_missing_timestamp")]
    {
        let head = format!(
            "POST /webhooks/pientegra HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{header}\
             Content-Length: 60000\r\n\r\n"
        );
        // The head only: the 60,000 bytes it announces never come.
        let mut socket = raw_request(&stack, &[&head]).await;
        let answer = read_until(&mut socket, code).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}
