//! The reference deployment under test: two instances on one PostgreSQL
//! schema behind nginx (`deploy/nginx/pientegra.conf`), the sandbox
//! delivering webhooks to nginx. The money flows with their event streams read
//! through nginx, a stream on one instance fed by webhooks nginx gave the
//! other, the demo page in a real browser through nginx, and the storms
//! through nginx with instances SIGKILLed and the database's sessions
//! terminated.
//!
//! Skipped without `PIENTEGRA_TEST_POSTGRES_URL` or nginx, or for the browser
//! test without Chromium or the built demo (failures when `CI=true`). Reduced size here; `cargo xtask scaleout` runs the storms at
//! full size.

mod harness;

use std::time::Duration;

use harness::cluster::Cluster;
use harness::{Plan, storm_cluster};
use pientegra_testkit::browser::{self, Browser, deposit_through_popup, newest_at, status_is, text_contains};
use pientegra_testkit::sse::{SseClient, stream_ticket};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);
const IBAN: &str = "TR330006100519786457841326";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_and_withdrawals_through_nginx_stream_every_change_and_log_no_ticket() {
    let Some(cluster) = Cluster::start(2).await else { return };
    let token = cluster.token("through-nginx");
    let ticket = stream_ticket(&cluster.url(), &token).await.expect("a stream ticket through nginx");
    let mut events = SseClient::connect_with_ticket(&cluster.url(), &ticket, None).await.expect("SSE through nginx");
    let opening = events.next(WAIT).await.expect("the opening balance arrives through nginx");
    assert_eq!((opening.event.as_str(), opening.json()["available"].as_str()), ("balance.updated", Some("0")));

    // Deposit: created through nginx, paid and approved at Pientegra, whose
    // webhooks reach an instance through nginx.
    let (status, deposit) = cluster.post(&token, "/api/deposits", json!({"amount": "50000"})).await;
    assert_eq!(status, 201, "{deposit}");
    let intent = deposit["intentId"].as_str().unwrap().to_owned();
    cluster.control(&format!("intents/{intent}/confirm")).await;
    cluster.control(&format!("intents/{intent}/approve")).await;
    let approved = events
        .until(WAIT, |e| e.event == "deposit.updated" && e.json()["status"] == "APPROVED")
        .await
        .expect("the approval streams through nginx");
    assert_eq!(approved.json()["intentId"], intent.as_str());
    let credited = events.until(WAIT, |e| e.event == "balance.updated").await.unwrap();
    assert_eq!(credited.json()["available"], "50000");

    // Withdrawal: reserved at once, sent by Pientegra, final.
    let (status, withdrawal) = cluster
        .post(&token, "/api/withdrawals", json!({"amount": "20000", "iban": IBAN, "holderName": "Nginx User"}))
        .await;
    assert_eq!(status, 201, "{withdrawal}");
    let reserved = events.until(WAIT, |e| e.event == "balance.updated").await.unwrap();
    assert_eq!(
        (reserved.json()["available"].as_str(), reserved.json()["reserved"].as_str()),
        (Some("30000"), Some("20000"))
    );
    let id = withdrawal["withdrawalId"].as_str().unwrap().to_owned();
    cluster.control(&format!("withdrawals/{id}/approve")).await;
    cluster.control(&format!("withdrawals/{id}/send")).await;
    events
        .until(WAIT, |e| e.event == "withdrawal.updated" && e.json()["status"] == "SENT")
        .await
        .expect("the withdrawal's end streams through nginx");
    let settled = events.until(WAIT, |e| e.json()["reserved"] == "0" && e.event == "balance.updated").await.unwrap();
    assert_eq!(settled.json()["available"], "30000");
    let seqs: Vec<i64> = events.seen.iter().filter_map(|e| e.seq()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "ids contiguous: {seqs:?}");

    // The stream's URL carried a ticket: nginx logged the path, not the query.
    // A request is logged when it ends: close the stream, then wait for its line.
    drop(events);
    let deadline = tokio::time::Instant::now() + WAIT;
    let log = loop {
        let log = cluster.nginx.access_log();
        if log.contains("GET /api/events") || tokio::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(log.contains("GET /api/events"), "the stream is in the access log:\n{log}");
    assert!(log.contains("POST /webhooks/pientegra "), "webhooks went through nginx:\n{log}");
    assert!(!log.contains(&ticket) && !log.contains("ticket="), "a stream ticket reached the access log:\n{log}");
    assert!(!log.contains('?'), "a query string reached the access log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_instance_receives_what_webhooks_sent_to_the_other_caused() {
    let Some(cluster) = Cluster::start(2).await else { return };
    let token = cluster.token("cross-instance");
    let mut on = [
        cluster.stream(&cluster.instance_url(0), &token, Some(0)).await,
        cluster.stream(&cluster.instance_url(1), &token, Some(0)).await,
    ];
    // Rounds until each instance has alone received every webhook of a round
    // whose approval the other instance's stream delivered. nginx picks the
    // instance; rounds are bounded so a proxy that never spreads fails.
    let mut proven = [false, false];
    let mut total = 0u64;
    for round in 0..30u64 {
        let before = cluster.webhook_instances().len();
        let amount = 1_000 + round;
        let (status, deposit) = cluster.post(&token, "/api/deposits", json!({"amount": amount.to_string()})).await;
        assert_eq!(status, 201, "{deposit}");
        let intent = deposit["intentId"].as_str().unwrap().to_owned();
        cluster.control(&format!("intents/{intent}/confirm")).await;
        cluster.control(&format!("intents/{intent}/approve")).await;
        total += amount;
        let want = total.to_string();
        for stream in &mut on {
            let balance = stream
                .until(WAIT, |e| e.event == "balance.updated" && e.json()["available"].as_str() == Some(want.as_str()))
                .await
                .unwrap_or_else(|e| panic!("round {round}: the credit never reached a stream: {e}"));
            assert!(balance.seq().is_some());
        }
        // Every webhook of the round is logged once its response is sent;
        // the credit above came from the approval's.
        cluster.webhooks_logged().await;
        let receivers: Vec<usize> = cluster.webhook_instances()[before..].to_vec();
        assert!(!receivers.is_empty(), "round {round}: no webhook went through nginx");
        if receivers.iter().all(|&i| i == receivers[0]) {
            // Only instance receivers[0] received this round's webhooks: the
            // other instance's stream got the credit through the database.
            proven[receivers[0]] = true;
        }
        if proven == [true, true] {
            break;
        }
        // Shift nginx's round robin so consecutive rounds do not repeat it.
        for _ in 0..=(round % 2) {
            let _ = cluster.http.get(format!("{}/healthz", cluster.url())).send().await;
        }
    }
    assert_eq!(proven, [true, true], "nginx never sent a whole round's webhooks to each instance");
    for stream in &on {
        let seqs: Vec<i64> = stream.seen.iter().filter_map(|e| e.seq()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "ids contiguous on every instance: {seqs:?}");
    }
}

/// A deposit whose instance is SIGKILLed while Pientegra answers it: the
/// client's retry with the same key, sent to the other instance, runs at once
/// (the dead instance's claim is taken over), where it would otherwise be
/// answered `idempotency_key_in_flight` until the claim's lease ends (90 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_off_by_its_instance_dying_is_taken_over_by_another_at_once() {
    let Some(mut cluster) = Cluster::start(2).await else { return };
    let token = cluster.token("cut-off");
    let key = uuid::Uuid::new_v4().to_string();
    let http = cluster.http.clone();
    let post = |base: String| {
        let request = http
            .post(format!("{base}/api/deposits"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&json!({"amount": "70000"}));
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            reqwest::Result::Ok((status, response.json::<serde_json::Value>().await.unwrap_or_default()))
        }
    };
    // Pientegra answers the next call after 5 s: the instance dies waiting for it.
    let slow_next = json!({"faults": {"apiLatencyMs": 5_000, "apiLatencyNext": 1}});
    pientegra_testkit::sandbox_config(&cluster.http, &cluster.sandbox.base_url(), &slow_next).await;
    let cut_off = tokio::spawn(post(cluster.instance_url(0)));
    let db = sqlx::PgPool::connect(&cluster.schema.url).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM idempotency WHERE key = $1")
        .bind(&key)
        .fetch_one(&db)
        .await
        .unwrap()
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "instance 0 never claimed the key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.kill_and_restart(0).await;
    assert!(cut_off.await.unwrap().is_err(), "the killed instance answered");

    // Retried on the other instance until a definite answer: within half the
    // lease, so a claim left to its lease fails this test.
    let lease_half = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut retries = 0;
    let (status, deposit) = loop {
        let (status, body) = post(cluster.instance_url(1)).await.expect("instance 1 answers");
        let transient = status >= 500 || body["error"] == "idempotency_key_in_flight";
        if !transient || tokio::time::Instant::now() > lease_half {
            break (status, body);
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 201, "{deposit} after {retries} retries");
    // One intent at Pientegra, one deposit here.
    let state = pientegra_testkit::sandbox_state(&cluster.http, &cluster.sandbox.base_url()).await;
    let intents: Vec<&serde_json::Value> =
        state["intents"].as_array().unwrap().iter().filter(|i| i["externalUserId"] == "cut-off").collect();
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(deposit["intentId"], intents[0]["intentId"]);
    let deposits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deposits WHERE user_id = 'cut-off'").fetch_one(&db).await.unwrap();
    assert_eq!(deposits, 1);
}

/// The storm's plan for the scale-out runs: sizes from `SCALEOUT_*` (full size through `cargo xtask scaleout`).
fn plan(kills: usize, db_faults: usize, seed: usize) -> Plan {
    Plan {
        users: Plan::env("SCALEOUT_USERS", 8),
        deposits: Plan::env("SCALEOUT_DEPOSITS", 100),
        withdrawals: Plan::env("SCALEOUT_WITHDRAWALS", 20),
        kills,
        workers: Plan::env("SCALEOUT_WORKERS", 8),
        seed: Plan::env("SCALEOUT_SEED", seed) as u64,
        instances: Plan::env("SCALEOUT_INSTANCES", 2),
        postgres: true,
        nginx: true,
        db_faults,
        watchers: Plan::env("SCALEOUT_WATCHERS", 3),
        ..Plan::default()
    }
}

/// What nginx's access log must show of the demo: the page, the widget's
/// code, the API calls, the event stream, and Pientegra's webhooks.
const DEMO_THROUGH_NGINX: [&str; 7] = [
    "\"GET / ",
    ".wasm ",
    "\"POST /api/session ",
    "\"POST /api/stream-ticket ",
    "\"GET /api/events ",
    "\"POST /api/deposits ",
    "\"POST /webhooks/pientegra ",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_deposit_on_the_demo_behind_nginx_is_approved_and_shown_live() {
    if !browser::available() {
        return;
    }
    let Some(cluster) = Cluster::serving_the_demo(2).await else { return };
    let origin = cluster.url();
    let browser = Browser::start().await.unwrap();
    browser.client.goto(&format!("{origin}/?user=ayse&locale=tr&mode=popup")).await.unwrap();
    browser.until("the deposit button", browser::BUTTON_READY).await.unwrap();
    browser.until("the stream live through nginx", browser::LINK_LIVE).await.unwrap();
    deposit_through_popup(&browser, "1.500,00", "1.500,00").await;
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest_at(&cluster.sandbox.base_url(), "intents", "ayse").await;
    assert_eq!(intent["amount"], "150000", "typed 1.500,00 in tr is 150000 kuruş");
    assert!(!browser.text("balance").await.unwrap().contains("1.500,00"));
    // The webhook goes to nginx, which picks an instance; the page's stream is
    // held by whichever instance nginx gave it.
    cluster.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap())).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    browser.until("the new balance", &text_contains("balance", "1.500,00 ₺")).await.unwrap();
    // Polling logs no events: the approval in the event log came by the stream.
    browser.until("the approval in the event log", browser::APPROVAL_LOGGED).await.unwrap();
    // The page, its scripts, the wasm and every API call came from nginx's origin.
    let loaded = browser
        .client
        .execute("return performance.getEntriesByType('resource').map(e => e.name);", vec![])
        .await
        .unwrap();
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    assert!(loaded.iter().any(|url| url.ends_with(".wasm")), "the widget's wasm was loaded: {loaded:?}");
    assert!(loaded.iter().all(|url| url.starts_with(&format!("{origin}/"))), "a request bypassed nginx: {loaded:?}");
    browser.screenshot("nginx-popup-approved-tr").await.unwrap();
    browser.close().await;

    // nginx logs a request when it ends: the stream's line comes once the browser is gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cluster.nginx.access_log().contains("\"GET /api/events ") {
        assert!(tokio::time::Instant::now() < deadline, "no event stream in nginx's access log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = cluster.nginx.access_log();
    for request in DEMO_THROUGH_NGINX {
        assert!(log.contains(request), "no {request} in nginx's access log:\n{log}");
    }
    for upstream in cluster.upstreams() {
        assert!(log.contains(&format!("\"{upstream}\"")), "nginx sent nothing to {upstream}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_killed_behind_nginx_lose_nothing_and_credit_nothing_twice() {
    let plan = plan(Plan::env("SCALEOUT_KILLS", 6), 0, 20_261_206);
    let Some(outcome) = storm_cluster(plan.clone()).await else { return };
    println!("scale-out crash storm {plan:?}\n  -> {outcome:?}");
    assert!(outcome.kills >= plan.kills);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_sessions_terminated_mid_storm_lose_nothing_and_streams_resume() {
    let plan = plan(Plan::env("SCALEOUT_KILLS_WITH_DB_FAULTS", 0), Plan::env("SCALEOUT_DB_FAULTS", 8), 41);
    let Some(outcome) = storm_cluster(plan.clone()).await else { return };
    println!("scale-out database-fault storm {plan:?}\n  -> {outcome:?}");
    assert!(outcome.sessions_terminated > 0, "no session was terminated: {outcome:?}");
}
