//! The one budget of calls to Pientegra: readiness probes spend none of it,
//! and instances sharing a database share it, so a flood of deposits with the
//! confirmation watchers running never meets Pientegra's rate limit.

use std::time::{Duration, Instant};

use futures::StreamExt;
use pientegra_server::pientegra::BudgetSettings;
use pientegra_tests::sse::SseClient;
use pientegra_tests::{Options, Stack, start_server, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Pientegra's documented limit per API key.
const PIENTEGRA_LIMIT_PER_MINUTE: u64 = 60;

/// The sandbox's count of API calls: `(allowed, refused with 429)`.
async fn api_calls(stack: &Stack) -> (u64, u64) {
    let calls = &stack.sandbox_state().await["apiCalls"];
    (calls["allowed"].as_u64().expect("allowed"), calls["rateLimited"].as_u64().expect("rateLimited"))
}

async fn readiness(http: &reqwest::Client, server: &str) -> (StatusCode, Value) {
    let response = http.get(format!("{server}/readyz")).send().await.expect("GET /readyz");
    (response.status(), response.json().await.expect("readiness body"))
}

/// Readiness answers 200 once the check at start has had Pientegra's answer.
async fn wait_until_ready(http: &reqwest::Client, server: &str) {
    wait_for(Duration::from_secs(10), || async { readiness(http, server).await.0 == StatusCode::OK })
        .await
        .expect("the server becomes ready");
}

async fn a_thousand_readiness_probes_cost_at_most_one_pientegra_call(options: Options) {
    let stack = Stack::with(options).await;
    let server = stack.server.url();
    wait_until_ready(&stack.http, &server).await;
    let (before, _) = api_calls(&stack).await;
    let answers: Vec<(StatusCode, Value)> =
        futures::stream::iter(0..1_000).map(|_| readiness(&stack.http, &server)).buffer_unordered(50).collect().await;
    let (after, limited) = api_calls(&stack).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "every probe answers 200");
    assert_eq!(answers[0].1["pientegra"], "ok");
    assert!(after - before <= 1, "1,000 probes made {} Pientegra calls", after - before);
    assert_eq!(limited, 0);
}

async fn readiness_reports_pientegra_down_from_the_calls_that_fail(options: Options) {
    let stack = Stack::with(options).await;
    let server = stack.server.url();
    wait_until_ready(&stack.http, &server).await;
    // A deposit that meets Pientegra failing on every attempt is the latest contact.
    stack.sandbox_config(json!({"faults": {"apiErrorsNext": 5}})).await;
    let token = stack.token("unlucky").await;
    let (status, body) = stack.post_deposit(&token, "10000").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = readiness(&stack.http, &server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["pientegra"], "unavailable");
    assert_eq!(body["database"], "ok");
    // The background check that follows a failure brings readiness back.
    wait_for(Duration::from_secs(20), || async { readiness(&stack.http, &server).await.0 == StatusCode::OK })
        .await
        .expect("readiness recovers once Pientegra answers");
}

pientegra_tests::on_each_database!(
    a_thousand_readiness_probes_cost_at_most_one_pientegra_call,
    readiness_reports_pientegra_down_from_the_calls_that_fail,
);

/// Two instances on one PostgreSQL database with the default budget, the
/// sandbox at Pientegra's documented 60 calls a minute, a user watching a
/// deposit on each instance (so both confirmation watchers look deposits up),
/// and a flood of deposits at both: no call is refused with 429, and the calls
/// made fit one budget, not two.
#[tokio::test]
async fn two_instances_share_one_budget_and_a_flood_never_meets_the_rate_limit() {
    let Some(options) = Options::postgres().await else { return };
    let settings = BudgetSettings::default();
    let stack = Stack::with(Options { pientegra_budget: settings, ..options }).await;
    let b = start_server(&stack.settings, "127.0.0.1:0".parse().expect("addr"), None).await;
    let instances = [stack.server.url(), b.url()];
    stack.sandbox_config(json!({"rateLimitPerMinute": PIENTEGRA_LIMIT_PER_MINUTE})).await;

    let mut watching = Vec::new();
    for (i, server) in instances.iter().enumerate() {
        let token = stack.token(&format!("watcher-{i}")).await;
        let deposit = stack.deposit(&token, "10000").await;
        stack.control(&format!("intents/{}/confirm", deposit.intent_id), json!({})).await;
        let mut stream = SseClient::connect(server, &token, None).await.expect("stream");
        stream.next(Duration::from_secs(10)).await.expect("the opening balance");
        watching.push(stream);
    }

    let (before, _) = api_calls(&stack).await;
    let started = Instant::now();
    let flood = (0..80).map(|i| {
        let server = instances[i % 2].clone();
        let stack = &stack;
        async move {
            let token = stack.token(&format!("flood-{}", i % 10)).await;
            let response = stack
                .http
                .post(format!("{server}/api/deposits"))
                .bearer_auth(&token)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"amount": "10000"}))
                .send()
                .await
                .expect("POST");
            let status = response.status();
            let retry_after = response.headers().get("retry-after").is_some();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, retry_after, body)
        }
    });
    let answers: Vec<_> = futures::stream::iter(flood).buffer_unordered(40).collect().await;
    let elapsed = started.elapsed();
    let (after, limited) = api_calls(&stack).await;

    assert_eq!(limited, 0, "the sandbox refused calls with 429");
    let created = answers.iter().filter(|(s, ..)| *s == StatusCode::CREATED).count();
    let busy: Vec<_> = answers.iter().filter(|(s, ..)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(created > 0, "some deposits went through");
    assert_eq!(created + busy.len(), answers.len(), "every answer is 201 or 503: {answers:?}");
    assert!(!busy.is_empty(), "the flood was larger than the budget");
    assert!(busy.iter().all(|(_, retry_after, body)| *retry_after && body["error"] == "provider_busy"), "{busy:?}");
    // One GCRA over both instances admits at most burst + elapsed / interval calls.
    let interval = Duration::from_secs(60) / settings.per_minute;
    let slots = u64::try_from(elapsed.as_micros() / interval.as_micros()).expect("a short test");
    let bound = u64::from(settings.burst) + slots + 1;
    let made = after - before;
    assert!(made <= bound, "{made} calls in {elapsed:?}; one shared budget allows {bound}");
    drop(watching);
    b.stop().await;
}
