//! Life cycles: the hosted deposit page, the expiry timer, auto-approve, the
//! control surface and its refusals, the live config, the console, shutdown.

mod common;

use std::time::Duration;

use common::{Harness, Reply, eventually, test_config};
use pientegra_sandbox::{Config, Sandbox};
use serde_json::{Value, json};

/// Fetches a hosted page.
async fn page(h: &Harness, url: &str) -> Reply {
    Reply::read(h.http.get(url).send().await.unwrap()).await
}

/// The `data-status` of the page's `#state` element.
fn page_status(reply: &Reply) -> String {
    let start = reply.text.find("id=\"state\" data-status=\"").expect("a #state element") + 24;
    reply.text[start..].split('"').next().unwrap().to_owned()
}

/// The text content of the element with `id`.
fn element_text(reply: &Reply, id: &str) -> Option<String> {
    let start = reply.text.find(&format!("id=\"{id}\""))?;
    let after_tag = start + reply.text[start..].find('>')? + 1;
    Some(reply.text[after_tag..].split('<').next()?.to_owned())
}

async fn status_of(h: &Harness, intent_id: &str) -> String {
    h.get(&format!("/external/intents/{intent_id}")).await.json()["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_hosted_page_shows_the_transfer_and_takes_the_confirmation() {
    let h = Harness::with(Config {
        tenant_name: "Acme <Wallet>".to_owned(),
        tenant_color: "#0a7".to_owned(),
        ..test_config()
    })
    .await;
    let deposit = h.deposit(100_050).await;
    let url = deposit["depositUrl"].as_str().unwrap().to_owned();
    let intent_id = deposit["intentId"].as_str().unwrap().to_owned();
    let state = h.state().await;
    let account = &state["intents"][0];

    let reply = page(&h, &url).await;
    assert_eq!(reply.status, 200);
    assert_eq!(page_status(&reply), "RESERVED");
    assert_eq!(element_text(&reply, "amount").unwrap(), "1.000,50 ₺");
    assert_eq!(element_text(&reply, "holder").unwrap(), html_escape(account["accountHolder"].as_str().unwrap()));
    let iban = account["accountIban"].as_str().unwrap();
    let grouped = element_text(&reply, "iban").unwrap();
    assert_eq!(grouped.replace(' ', ""), iban);
    assert_eq!(&grouped[..4], &iban[..4]);
    assert_eq!(&grouped[4..5], " ");
    assert_eq!(element_text(&reply, "reference").unwrap(), deposit["referenceNo"].as_str().unwrap());
    let countdown = element_text(&reply, "countdown").unwrap();
    assert!(countdown == "30:00" || countdown == "29:59", "{countdown}");
    assert!(reply.text.contains("id=\"confirm\""));
    assert!(reply.text.contains("Acme &lt;Wallet&gt;"), "the tenant name is escaped");
    assert!(reply.text.contains("--accent: #0a7"));

    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    let csp = reply.header("content-security-policy").unwrap();
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(reply.text.contains(&format!("<script nonce=\"{nonce}\">")), "the countdown runs under the CSP nonce");
    assert!(!csp.contains("unsafe-inline"));

    // POST, then redirect back to the page (POST/redirect/GET).
    let confirm = h.http.post(format!("{url}/confirm")).send().await.unwrap();
    assert_eq!(confirm.status(), 303);
    assert_eq!(confirm.headers()["location"], url.as_str());
    assert_eq!(status_of(&h, &intent_id).await, "PENDING_REVIEW");
    let reply = page(&h, &url).await;
    assert_eq!(page_status(&reply), "PENDING_REVIEW");
    assert!(reply.text.contains("We are checking your transfer"));
    assert!(!reply.text.contains("id=\"confirm\""));
    // Confirming again changes nothing.
    assert_eq!(h.http.post(format!("{url}/confirm")).send().await.unwrap().status(), 303);
    assert_eq!(status_of(&h, &intent_id).await, "PENDING_REVIEW");

    h.control(&format!("/sandbox/intents/{intent_id}/approve"), json!({})).await;
    let reply = page(&h, &url).await;
    assert_eq!(page_status(&reply), "APPROVED");
    assert!(reply.text.contains("approved"));

    let other = h.deposit(5_000).await;
    let other_id = other["intentId"].as_str().unwrap();
    h.control(&format!("/sandbox/intents/{other_id}/confirm"), json!({})).await;
    h.control(&format!("/sandbox/intents/{other_id}/reject"), json!({"reason": "no <transfer>"})).await;
    let reply = page(&h, other["depositUrl"].as_str().unwrap()).await;
    assert_eq!(page_status(&reply), "REJECTED");
    assert!(reply.text.contains("no &lt;transfer&gt;"));
}

/// The `frame-ancestors` value of a page's CSP.
fn frame_ancestors(reply: &Reply) -> String {
    let csp = reply.header("content-security-policy").expect("a CSP");
    let directive = csp.split(';').map(str::trim).find(|d| d.starts_with("frame-ancestors ")).expect("frame-ancestors");
    directive["frame-ancestors ".len()..].to_owned()
}

#[tokio::test]
async fn by_default_no_page_may_frame_the_hosted_page_or_the_console() {
    let h = Harness::start().await;
    let url = h.deposit(1000).await["depositUrl"].as_str().unwrap().to_owned();
    for page_url in [url.clone(), h.url("/d/not-a-token"), h.url("/sandbox/console")] {
        let reply = page(&h, &page_url).await;
        assert_eq!(frame_ancestors(&reply), "'none'", "{page_url}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{page_url}");
    }
    // What a HEAD of the page says, which is what the companion server reads.
    let head = h.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    // The live config changes it.
    assert_eq!(
        h.configure(json!({"frameAncestors": "https://partner.example"})).await["frameAncestors"],
        "https://partner.example"
    );
    let reply = page(&h, &url).await;
    assert_eq!(frame_ancestors(&reply), "https://partner.example");
    assert_eq!(reply.header("x-frame-options"), None);
}

#[tokio::test]
async fn the_hosted_page_lets_the_configured_pages_frame_it_and_works_inside_the_frame() {
    let ancestors = "'self' http://127.0.0.1:5173 https://*.partner.example";
    let h = Harness::with(Config { frame_ancestors: ancestors.to_owned(), ..test_config() }).await;
    let deposit = h.deposit(1000).await;
    let url = deposit["depositUrl"].as_str().unwrap().to_owned();
    let reply = page(&h, &url).await;
    assert_eq!(frame_ancestors(&reply), ancestors);
    assert_eq!(reply.header("x-frame-options"), None, "X-Frame-Options would forbid what the CSP allows");
    // In a frame the page needs no cookie, and its form posts to its own origin and comes back to it.
    assert_eq!(reply.header("set-cookie"), None);
    assert!(reply.header("content-security-policy").unwrap().contains("form-action 'self'"));
    let token = url.rsplit('/').next().unwrap();
    assert!(reply.text.contains(&format!("action=\"{token}/confirm\"")), "a relative form action");
    let confirm = h.http.post(format!("{url}/confirm")).send().await.unwrap();
    assert_eq!(confirm.status(), 303);
    assert_eq!(confirm.headers()["location"], url.as_str());
    assert_eq!(confirm.headers().get("set-cookie"), None);
    // The console still refuses every frame.
    let console = page(&h, &h.url("/sandbox/console")).await;
    assert_eq!(frame_ancestors(&console), "'none'");
    assert_eq!(console.header("x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn a_frame_ancestors_value_that_would_end_its_directive_is_refused_at_start() {
    for bad in ["https://a.example; script-src *", "https://a.example, frame-ancestors *", ""] {
        let error = Sandbox::spawn(Config { frame_ancestors: bad.to_owned(), ..test_config() }).await.err();
        assert!(error.is_some_and(|e| e.to_string().contains("frame_ancestors")), "{bad:?}");
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[tokio::test]
async fn bad_and_forged_links_get_a_clear_404_page() {
    let h = Harness::start().await;
    let deposit = h.deposit(1000).await;
    let url = deposit["depositUrl"].as_str().unwrap();
    let token = url.rsplit('/').next().unwrap();
    let (header_and_claims, signature) = token.rsplit_once('.').unwrap();
    let mut forged_signature: Vec<char> = signature.chars().collect();
    forged_signature[3] = if forged_signature[3] == 'a' { 'b' } else { 'a' };
    let forged_signature: String = forged_signature.into_iter().collect();
    // Another intent's claims under this signature.
    let other = h.deposit(1000).await;
    let other_token = other["depositUrl"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (other_claims, _) = other_token.rsplit_once('.').unwrap();
    for bad in [
        format!("{header_and_claims}.{forged_signature}"),
        format!("{other_claims}.{signature}"),
        "garbage".to_owned(),
        "a.b.c".to_owned(),
    ] {
        let reply = page(&h, &h.url(&format!("/d/{bad}"))).await;
        assert_eq!(reply.status, 404, "{bad}");
        assert!(reply.text.contains("This payment link is not valid"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let confirm = h.http.post(h.url(&format!("/d/{bad}/confirm"))).send().await.unwrap();
        assert_eq!(confirm.status(), 404);
    }
    assert_eq!(status_of(&h, deposit["intentId"].as_str().unwrap()).await, "RESERVED");
}

#[tokio::test]
async fn an_unconfirmed_intent_expires_at_its_time_and_the_page_says_so() {
    let h = Harness::with(Config { accounts: 1, ..test_config() }).await;
    let settings = h.configure(json!({"intentTtlMs": 300})).await;
    assert_eq!(settings["intentTtlMs"], 300);
    let deposit = h.deposit(1000).await;
    let id = deposit["intentId"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&h, &id).await, "RESERVED");
    eventually("the expiry", Duration::from_secs(5), async || {
        (status_of(&h, &id).await == "AUTO_CANCELLED").then_some(())
    })
    .await;
    let events = h.events().await;
    assert_eq!(events[0]["eventType"], "intent.auto_cancelled");
    assert_eq!(events[0]["payload"]["intent"]["status"], "AUTO_CANCELLED");
    // The account went back to the pool.
    assert_eq!(h.state().await["freeAccounts"], 1);

    let reply = page(&h, deposit["depositUrl"].as_str().unwrap()).await;
    assert_eq!(reply.status, 410);
    assert_eq!(page_status(&reply), "AUTO_CANCELLED");
    assert!(reply.text.contains("This deposit has expired"));
    assert!(reply.text.contains("start a new deposit"));
    assert!(!reply.text.contains("id=\"confirm\""));
    // A late confirmation does nothing.
    h.http.post(format!("{}/confirm", deposit["depositUrl"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(status_of(&h, &id).await, "AUTO_CANCELLED");

    // Funds that arrive anyway: LATE_ARRIVAL, then review.
    let late = h.control(&format!("/sandbox/intents/{id}/late-arrival"), json!({})).await;
    assert_eq!(late.json()["status"], "LATE_ARRIVAL");
    assert_eq!(page_status(&page(&h, deposit["depositUrl"].as_str().unwrap()).await), "LATE_ARRIVAL");
    let approved = h.control(&format!("/sandbox/intents/{id}/approve"), json!({})).await.json();
    assert_eq!(approved["status"], "APPROVED");
    assert!(approved["approvedAt"].is_string());
    let types: Vec<Value> = h.events().await.iter().map(|e| e["eventType"].clone()).collect();
    assert_eq!(types, ["intent.approved", "intent.late_arrival", "intent.auto_cancelled"]);
}

#[tokio::test]
async fn auto_approve_reviews_deposits_and_pays_out_withdrawals() {
    let h = Harness::with(Config { auto_approve_ms: Some(50), ..test_config() }).await;
    let deposit = h.deposit(1000).await;
    let id = deposit["intentId"].as_str().unwrap().to_owned();
    // Nothing happens to an intent the user has not confirmed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status_of(&h, &id).await, "RESERVED");
    h.http.post(format!("{}/confirm", deposit["depositUrl"].as_str().unwrap())).send().await.unwrap();
    eventually("the approval", Duration::from_secs(5), async || (status_of(&h, &id).await == "APPROVED").then_some(()))
        .await;

    let withdrawal = h.withdrawal(2000).await;
    let wid = withdrawal["withdrawalId"].as_str().unwrap().to_owned();
    let sent = eventually("the payout", Duration::from_secs(5), async || {
        let w = h.get(&format!("/external/withdrawals/{wid}")).await.json();
        (w["status"] == "SENT").then_some(w)
    })
    .await;
    assert!(sent["sentAt"].is_string());
    let types: Vec<Value> = h.events().await.iter().map(|e| e["eventType"].clone()).collect();
    assert_eq!(types, ["withdrawal.sent", "withdrawal.approved", "withdrawal.created", "intent.approved"]);

    // Back to manual: a new review waits.
    let settings = h.configure(json!({"autoApproveMs": null})).await;
    assert_eq!(settings["autoApproveMs"], Value::Null);
    let manual = h.withdrawal(3000).await["withdrawalId"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.get(&format!("/external/withdrawals/{manual}")).await.json()["status"], "PENDING_REVIEW");
    // Switching it on applies to what is already waiting.
    h.configure(json!({"autoApproveMs": 10})).await;
    eventually("the late policy", Duration::from_secs(5), async || {
        (h.get(&format!("/external/withdrawals/{manual}")).await.json()["status"] == "SENT").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_control_surface_drives_intents_and_refuses_illegal_steps() {
    let h = Harness::start().await;
    let id = h.deposit(10_000).await["intentId"].as_str().unwrap().to_owned();
    let act = |action: &str, body: Value| {
        let path = format!("/sandbox/intents/{id}/{action}");
        let h = &h;
        async move { h.control(&path, body).await }
    };
    act("approve", json!({})).await.assert_error(409, "invalid_state");
    act("late-arrival", json!({})).await.assert_error(409, "invalid_state");
    let confirmed = act("confirm", json!({})).await;
    assert_eq!(confirmed.status, 200);
    assert_eq!(confirmed.json()["status"], "PENDING_REVIEW");
    assert!(confirmed.json()["depositUrl"].is_string());
    act("confirm", json!({})).await.assert_error(409, "invalid_state");
    act("expire", json!({})).await.assert_error(409, "invalid_state");
    act("approve", json!({"amount": 50})).await.assert_error(400, "amount_below_min");
    act("approve", json!({"amount": "1.5"})).await.assert_error(400, "validation_failed");
    act("reject", json!({"reason": 5})).await.assert_error(400, "validation_failed");
    let rejected = act("reject", json!({"reason": "sender name differs"})).await.json();
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["rejectedReason"], "sender name differs");
    assert!(rejected["rejectedAt"].is_string());
    act("approve", json!({})).await.assert_error(409, "invalid_state");
    act("dance", json!({})).await.assert_error(404, "not_found");

    let unknown = uuid::Uuid::now_v7();
    h.control(&format!("/sandbox/intents/{unknown}/confirm"), json!({})).await.assert_error(404, "not_found");
    h.control("/sandbox/intents/nope/confirm", json!({})).await.assert_error(404, "not_found");
    h.control(&format!("/sandbox/withdrawals/{unknown}/approve"), json!({})).await.assert_error(404, "not_found");
    // The lookup agrees with the control answers.
    let intent = h.get(&format!("/external/intents/{id}")).await.json();
    assert_eq!(intent["status"], "REJECTED");
    assert_eq!(intent["rejectedReason"], "sender name differs");
}

#[tokio::test]
async fn withdrawals_move_through_review_payout_and_return() {
    let h = Harness::start().await;
    let id = h.withdrawal(5000).await["withdrawalId"].as_str().unwrap().to_owned();
    let act = |action: &str, body: Value| {
        let path = format!("/sandbox/withdrawals/{id}/{action}");
        let h = &h;
        async move { h.control(&path, body).await }
    };
    act("send", json!({})).await.assert_error(409, "invalid_state");
    act("return", json!({})).await.assert_error(409, "invalid_state");
    assert_eq!(act("approve", json!({})).await.json()["status"], "APPROVED");
    act("approve", json!({})).await.assert_error(409, "invalid_state");
    let sent = act("send", json!({})).await.json();
    assert_eq!(sent["status"], "SENT");
    assert!(sent["sentAt"].is_string() && sent["approvedAt"].is_string());
    act("reject", json!({})).await.assert_error(409, "invalid_state");
    let returned = act("return", json!({})).await.json();
    assert_eq!(returned["status"], "RETURNED");
    assert!(returned["returnedAt"].is_string());
    act("return", json!({})).await.assert_error(409, "invalid_state");
    act("fly", json!({})).await.assert_error(404, "not_found");

    // An approved withdrawal can still be rejected.
    let other = h.withdrawal(6000).await["withdrawalId"].as_str().unwrap().to_owned();
    h.control(&format!("/sandbox/withdrawals/{other}/approve"), json!({})).await;
    let rejected = h.control(&format!("/sandbox/withdrawals/{other}/reject"), json!({"reason": "limit"})).await.json();
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["rejectedReason"], "limit");
    h.control(&format!("/sandbox/withdrawals/{other}/send"), json!({})).await.assert_error(409, "invalid_state");

    let types: Vec<Value> = h.events().await.iter().map(|e| e["eventType"].clone()).collect();
    assert_eq!(
        types,
        [
            "withdrawal.rejected",
            "withdrawal.approved",
            "withdrawal.created",
            "withdrawal.returned",
            "withdrawal.sent",
            "withdrawal.approved",
            "withdrawal.created"
        ]
    );
}

#[tokio::test]
async fn the_config_answers_its_documented_shape_and_takes_partial_updates() {
    let h = Harness::with(Config { retry_scale_ppm: 1_000_000, ..test_config() }).await;
    let config: Value = h.http.get(h.url("/sandbox/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        config,
        json!({"autoApproveMs": null, "retryScale": "1", "rateLimitPerMinute": 100_000, "intentTtlMs": 1_800_000,
               "webhooksEnabled": true, "frameAncestors": "'none'",
               "faults": {"duplicateDeliveries": 0, "shuffleOrder": false, "deliveryDelayMs": 0, "failNextDeliveries": 0,
                          "failDeliveryPercent": 0, "apiErrorsNext": 0, "apiErrorPercent": 0, "apiLatencyMs": 0, "apiLatencyNext": 0}})
    );
    let updated = h.configure(json!({"retryScale": "0.001", "faults": {"shuffleOrder": true}})).await;
    assert_eq!(updated["retryScale"], "0.001");
    assert_eq!(updated["faults"]["shuffleOrder"], true);
    assert_eq!(updated["faults"]["deliveryDelayMs"], 0);
    assert_eq!(updated["rateLimitPerMinute"], 100_000);
    for bad in [
        json!({"retryScale": "fast"}),
        json!({"retryScale": "0.0000001"}),
        json!({"rateLimitPerMinute": 0}),
        json!({"faults": {"failDeliveryPercent": 101}}),
        json!({"frameAncestors": "https://a.example; script-src *"}),
        json!({"faults": {"nonsense": 1}}),
        json!({"colour": "red"}),
    ] {
        let response = h.http.put(h.url("/sandbox/config")).json(&bad).send().await.unwrap();
        Reply::read(response).await.assert_error(400, "validation_failed");
    }
    // A refused update changed nothing.
    let config: Value = h.http.get(h.url("/sandbox/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["retryScale"], "0.001");
}

#[tokio::test]
async fn the_console_lists_everything_with_its_actions() {
    let h = Harness::start().await;
    let deposit = h.deposit(1000).await;
    let withdrawal = h.withdrawal(2000).await;
    let reply = page(&h, &h.url("/sandbox/console")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains(deposit["referenceNo"].as_str().unwrap()));
    assert!(reply.text.contains(withdrawal["referenceNo"].as_str().unwrap()));
    let intent_id = deposit["intentId"].as_str().unwrap();
    assert!(reply.text.contains(&format!("/sandbox/intents/{intent_id}/confirm")));
    assert!(reply.text.contains(&format!("/sandbox/intents/{intent_id}/expire")));
    assert!(!reply.text.contains(&format!("/sandbox/intents/{intent_id}/approve")));
    assert!(reply.text.contains("withdrawal.created"));
    assert!(reply.text.contains("http-equiv=\"refresh\""));
    // The root leads to the console.
    let root = h.http.get(h.url("/")).send().await.unwrap();
    assert_eq!(root.headers()["location"], "/sandbox/console");
}

#[tokio::test]
async fn shutdown_stops_the_server_and_its_workers_promptly() {
    let sandbox = Sandbox::spawn(Config { webhook_url: Some("http://127.0.0.1:9/never".to_owned()), ..test_config() })
        .await
        .unwrap();
    let base = sandbox.base_url();
    assert_eq!(base, format!("http://{}", sandbox.addr()));
    assert_eq!(sandbox.api_base(), format!("{base}/api/v1"));
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{base}/sandbox/config")).send().await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(5), sandbox.shutdown()).await.expect("shutdown is prompt");
    assert!(client.get(format!("{base}/sandbox/config")).send().await.is_err());
}

#[tokio::test]
async fn a_public_url_is_the_base_of_deposit_links() {
    let h = Harness::with(Config { public_url: Some("https://pay.tenant.example/".to_owned()), ..test_config() }).await;
    assert_eq!(h.sandbox.base_url(), "https://pay.tenant.example");
    // Talk to it on its real address.
    let response = h
        .http
        .post(format!("http://{}/api/v1/external/deposits", h.sandbox.addr()))
        .bearer_auth(h.sandbox.api_key())
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .json(&json!({"externalUserId": "u", "amount": 1000}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["depositUrl"].as_str().unwrap().starts_with("https://pay.tenant.example/d/"));
}
