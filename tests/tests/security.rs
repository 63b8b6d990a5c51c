//! Security promises checked from the outside: tokens scope every route, event
//! stream URLs carry short-lived tickets and never the widget token, served
//! pages carry their policies, and no secret ships in the widget.

use std::time::Duration;

use pientegra_server::token::{Claims, TICKET_TTL, TokenKey};
use pientegra_shared::api::StreamTicket;
use pientegra_shared::ids::ExternalUserId;
use pientegra_tests::sse::SseClient;
use pientegra_tests::{Options, Stack, TOKEN_SECRET, start_server};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

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
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let expired = key.mint(&owner_id, None, hour_ago, chrono::Utc::now() - chrono::Duration::seconds(5));
    let forged = TokenKey::new(SecretString::from("another-secret-0123456789abcdef0123456789".to_owned())).mint(
        &owner_id,
        None,
        chrono::Utc::now(),
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
        (Method::POST, "/api/stream-ticket".to_owned()),
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

/// `GET /api/events` with `?ticket=`, `?token=` or nothing, read as status and error body.
async fn open_events(stack: &Stack, query: &str) -> (StatusCode, Value) {
    let response = stack
        .http
        .get(format!("{}/api/events{query}", stack.server.url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status.is_success() {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

fn claims(user: &str, expires_at: chrono::DateTime<chrono::Utc>) -> Claims {
    Claims { user: ExternalUserId::parse(user).unwrap(), label: None, expires_at }
}

#[tokio::test]
async fn a_stream_ticket_opens_the_users_stream_and_nothing_else() {
    let stack = Stack::start().await;
    let alice = stack.token("alice").await;
    let before = chrono::Utc::now();
    let response =
        stack.http.post(format!("{}/api/stream-ticket", stack.server.url())).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let ticket: StreamTicket = response.json().await.unwrap();
    assert!(ticket.expires_at > before && ticket.expires_at <= chrono::Utc::now() + TICKET_TTL, "a minute long");
    assert!(!ticket.ticket.contains(alice.split('.').nth(2).unwrap()), "the token is not inside");

    // It opens alice's stream, whose opening frame is her balance.
    let mut stream = SseClient::connect_with_ticket(&stack.server.url(), &ticket.ticket, None).await.unwrap();
    let opening = stream.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(opening.event, "balance.updated");
    drop(stream);

    // A widget token in the URL is refused, valid or not, with a code that says what to do.
    for token in [alice.as_str(), "garbage"] {
        let (status, body) = open_events(&stack, &format!("?token={token}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "stream_ticket_required", "{body}");
    }
    let (status, body) = open_events(&stack, "").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

    // Expired, forged, spliced onto another user, or garbage: refused with a stable code.
    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let now = chrono::Utc::now();
    let expired = key.tickets().issue(&claims("alice", now + chrono::Duration::hours(1)), now - TICKET_TTL * 2);
    let forged = TokenKey::new(SecretString::from("another-secret-0123456789abcdef0123456789".to_owned()))
        .tickets()
        .issue(&claims("alice", now + chrono::Duration::hours(1)), now);
    let bobs = key.tickets().issue(&claims("bob", now + chrono::Duration::hours(1)), now).ticket;
    let spliced = format!("st1.{}.{}", bobs.split('.').nth(1).unwrap(), ticket.ticket.split('.').nth(2).unwrap());
    for (what, candidate, code) in [
        ("expired", expired.ticket.as_str(), "ticket_expired"),
        ("forged", forged.ticket.as_str(), "unauthorized"),
        ("spliced onto another user", spliced.as_str(), "unauthorized"),
        ("garbage", "st1.e30.AAAA", "unauthorized"),
    ] {
        let (status, body) = open_events(&stack, &format!("?ticket={candidate}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(body["error"], code, "{what}: {body}");
    }

    // A ticket is no bearer token: not on /api/events, nor anywhere else.
    for (method, path) in [
        (Method::GET, "/api/events"),
        (Method::GET, "/api/account"),
        (Method::POST, "/api/stream-ticket"),
        (Method::POST, "/api/deposits"),
    ] {
        let response = stack
            .http
            .request(method.clone(), format!("{}{path}", stack.server.url()))
            .bearer_auth(&ticket.ticket)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"amount": "10000"}))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{method} {path}: {body}");
    }
    assert_eq!(stack.balance(&alice).await, (0, 0), "nothing changed");
}

#[tokio::test]
async fn a_ticket_from_one_instance_opens_the_stream_on_another() {
    let stack = Stack::start().await;
    let other = start_server(&stack.settings, "127.0.0.1:0".parse().unwrap(), None).await;
    let token = stack.token("roaming").await;
    let ticket = stack.stream_ticket(&token).await;
    let mut stream = SseClient::connect_with_ticket(&other.url(), &ticket, None).await.unwrap();
    assert_eq!(stream.next(Duration::from_secs(5)).await.unwrap().event, "balance.updated");
    drop(stream);
    other.stop().await;
}

#[tokio::test]
async fn a_stream_outlives_its_ticket_and_ends_with_its_token() {
    let stack = Stack::start().await;
    let token = stack.token("long").await;
    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let claims = key.verify(&token, chrono::Utc::now()).unwrap();
    // A ticket with three seconds left.
    let ticket = key.tickets().issue(&claims, chrono::Utc::now() - TICKET_TTL + chrono::Duration::seconds(3));
    let mut stream = SseClient::connect_with_ticket(&stack.server.url(), &ticket.ticket, None).await.unwrap();
    stream.next(Duration::from_secs(5)).await.unwrap();
    let left = (ticket.expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(1_100)).await;
    let (status, body) = open_events(&stack, &format!("?ticket={}", ticket.ticket)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("ticket_expired")));
    // The stream it opened still delivers.
    stack.deposit(&token, "10000").await;
    let event = stream.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(event.event, "deposit.updated");

    // A stream ends when the widget token its ticket came from expires.
    let brief = key.mint(&claims.user, None, chrono::Utc::now(), chrono::Utc::now() + chrono::Duration::seconds(2));
    let ticket = stack.stream_ticket(&brief).await;
    let mut stream = SseClient::connect_with_ticket(&stack.server.url(), &ticket, None).await.unwrap();
    stream.next(Duration::from_secs(5)).await.unwrap();
    let ended = stream.next(Duration::from_secs(10)).await.unwrap_err();
    assert!(format!("{ended:#}").contains("ended"), "{ended:#}");
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
