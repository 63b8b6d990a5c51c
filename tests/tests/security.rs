//! Security promises checked from the outside: tokens scope every route, served
//! pages carry their policies, and no secret ships in the widget.

use std::time::Duration;

use pientegra_server::token::TokenKey;
use pientegra_shared::ids::ExternalUserId;
use pientegra_tests::{Options, Stack, TOKEN_SECRET, start_server};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;

#[tokio::test]
async fn every_api_route_refuses_foreign_expired_and_forged_tokens() {
    let stack = Stack::start().await;
    let owner = stack.token("owner").await;
    stack.funded(&owner, "50000").await;
    let deposit = stack.deposit(&owner, "10000").await;
    let (_, w) = stack
        .post_json(
            &owner,
            "/api/withdrawals",
            &uuid::Uuid::new_v4().to_string(),
            json!({
                "amount": "10000", "iban": "TR330006100519786457841326", "holderName": "Owner"
            }),
        )
        .await;
    let withdrawal_id = w["withdrawalId"].as_str().unwrap().to_owned();

    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let owner_id = ExternalUserId::parse("owner").unwrap();
    let expired = key.mint(&owner_id, None, chrono::Utc::now() - chrono::Duration::seconds(5));
    let forged = TokenKey::new(SecretString::from("another-secret-0123456789abcdef0123456789".to_owned())).mint(
        &owner_id,
        None,
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    let mut tampered = owner.clone();
    tampered.pop();
    tampered.push(if owner.ends_with('A') { 'B' } else { 'A' });
    let stranger = stack.token("stranger").await;

    let routes = [
        (Method::GET, "/api/account".to_owned()),
        (Method::GET, format!("/api/deposits/{}", deposit.intent_id)),
        (Method::GET, format!("/api/withdrawals/{withdrawal_id}")),
        (Method::GET, "/api/events".to_owned()),
        (Method::POST, "/api/deposits".to_owned()),
        (Method::POST, "/api/withdrawals".to_owned()),
    ];
    for (method, path) in &routes {
        for (who, token, want) in [
            ("expired", expired.as_str(), StatusCode::UNAUTHORIZED),
            ("forged", forged.as_str(), StatusCode::UNAUTHORIZED),
            ("tampered", tampered.as_str(), StatusCode::UNAUTHORIZED),
            ("missing", "", StatusCode::UNAUTHORIZED),
        ] {
            let mut request = stack.http.request(method.clone(), format!("{}{path}", stack.server.url()));
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            let response = request
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"amount": "10000"}))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), want, "{who} token on {method} {path}");
        }
    }
    // Another user's valid token sees none of the owner's records.
    for path in [format!("/api/deposits/{}", deposit.intent_id), format!("/api/withdrawals/{withdrawal_id}")] {
        let (status, _) = stack.get_json(&stranger, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let account = stack.account(&stranger).await;
    assert!(account.deposits.is_empty() && account.withdrawals.is_empty());
    assert_eq!(stack.balance(&owner).await, (40_000, 10_000), "nothing changed for the owner");
}

#[tokio::test]
async fn served_pages_carry_csp_frame_ancestors_and_referrer_policy() {
    let stack = Stack::with(Options::default()).await;
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<!doctype html><title>t</title>").unwrap();
    let mut settings = stack.settings.clone();
    settings.static_dir = Some(site.path().to_path_buf());
    let server = start_server(&settings, "127.0.0.1:0".parse().unwrap(), None).await;
    let page = reqwest::get(format!("{}/", server.url())).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("'unsafe-eval'") || csp.contains("'wasm-unsafe-eval'"));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    server.stop().await;
}

#[test]
fn the_built_widget_ships_no_secret() {
    let dist = std::env::var("PIENTEGRA_DIST")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist"));
    if !dist.join("index.html").exists() {
        assert!(std::env::var("CI").is_err(), "CI=true but the widget was not built into {}", dist.display());
        eprintln!("skipped: no built widget in {} (cargo xtask test builds it)", dist.display());
        return;
    }
    let sandbox = pientegra_sandbox::Config::default();
    let needles =
        ["sk_test_", "sk_live_", "whsec_", sandbox.api_key.as_str(), sandbox.webhook_secret.as_str(), TOKEN_SECRET];
    let mut scanned = 0;
    let mut stack = vec![dist.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for needle in needles {
                assert!(!text.contains(needle), "{} contains {needle:?}", path.display());
            }
            scanned += 1;
        }
    }
    assert!(scanned >= 3, "only {scanned} files in {}", dist.display());
}

#[tokio::test]
async fn a_signed_webhook_with_an_absurd_amount_credits_nothing() {
    let stack = Stack::start().await;
    let token = stack.token("absurd").await;
    let deposit = stack.deposit(&token, "10000").await;
    let event = pientegra_shared::event::WebhookEvent {
        event_id: uuid::Uuid::now_v7(),
        occurred_at: chrono::Utc::now(),
        kind: pientegra_shared::event::EventKind::Intent {
            event: pientegra_shared::event::IntentEvent::Approved,
            intent: pientegra_shared::event::IntentSnapshot {
                id: deposit.intent_id,
                reference_no: deposit.reference_no.clone(),
                external_user_id: "absurd".into(),
                requested_amount: deposit.requested_amount,
                amount: pientegra_shared::Amount::from_minor(u64::MAX),
                currency: "TRY".into(),
                status: pientegra_shared::status::IntentStatus::Approved,
                rejected_reason: None,
            },
        },
    };
    let now = chrono::Utc::now().timestamp_millis();
    let status = pientegra_tests::post_webhook(
        &stack.http,
        &stack.server.url(),
        stack.sandbox.webhook_secret(),
        now,
        &event.to_body(),
    )
    .await;
    assert!(status.is_success(), "acknowledged, so Pientegra does not retry it forever");
    assert_eq!(stack.balance(&token).await, (0, 0));
}
