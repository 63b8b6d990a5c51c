//! The storm harness shared by the crash and chaos tests: a sandbox with
//! auto-approve, the `pientegra-server` binary as a process (killed with
//! SIGKILL and restarted when asked), a concurrent workload of deposits and
//! withdrawals with widget-like retries, then settlement and the invariants.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use pientegra_sandbox::{Config, Sandbox};
use pientegra_server::pientegra::{HttpClient, RetryPolicy};
use pientegra_server::reconcile::Reconciler;
use pientegra_server::sse::Hub;
use pientegra_server::token::TokenKey;
use pientegra_shared::ids::ExternalUserId;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

const BIN: &str = env!("CARGO_BIN_EXE_pientegra-server");
const TOKEN_SECRET: &str = "storm-token-secret-0123456789abcdef0123456789";
const IBAN: &str = "TR330006100519786457841326";

/// How big a storm.
#[derive(Clone, Debug)]
pub struct Plan {
    pub users: usize,
    pub deposits: usize,
    pub withdrawals: usize,
    /// SIGKILLs of the server during the storm.
    pub kills: usize,
    pub workers: usize,
    /// Sandbox fault injection (`faults` of `PUT /sandbox/config`).
    pub faults: Value,
    pub seed: u64,
}

impl Plan {
    /// Reads a size from the environment (full-size runs), else `default`.
    pub fn env(name: &str, default: usize) -> usize {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

/// What happened, for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub kills: usize,
    pub deposits_created: usize,
    pub withdrawals_created: usize,
    pub withdrawals_refused: usize,
    pub requests_retried: usize,
    pub deliveries: usize,
    pub delivery_attempts: u64,
    pub events_replayed: usize,
    pub elapsed: Duration,
}

struct ServerProcess {
    child: Child,
    port: u16,
    db: String,
    api_base: String,
    api_key: String,
    secret: String,
}

impl ServerProcess {
    async fn start(port: u16, db: &str, sandbox: &Sandbox) -> ServerProcess {
        let mut server = ServerProcess {
            child: spawn(port, db, sandbox),
            port,
            db: db.to_owned(),
            api_base: sandbox.api_base(),
            api_key: sandbox.api_key().to_owned(),
            secret: sandbox.webhook_secret().to_owned(),
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not come up");
    }

    /// SIGKILL, then start again on the same port and database.
    async fn kill_and_restart(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
        self.child = Command::new(BIN)
            .arg("serve")
            .envs(env(self.port, &self.db, &self.api_base, &self.api_key, &self.secret))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("server restarts");
        self.wait_healthy().await;
    }
}

fn env(port: u16, db: &str, api_base: &str, api_key: &str, secret: &str) -> Vec<(String, String)> {
    [
        ("PIENTEGRA_API_BASE", api_base),
        ("PIENTEGRA_API_KEY", api_key),
        ("PIENTEGRA_WEBHOOK_SECRET", secret),
        ("WIDGET_TOKEN_SECRET", TOKEN_SECRET),
        ("DATABASE_URL", db),
        ("BIND", &format!("127.0.0.1:{port}")),
        ("RATE_LIMIT_PER_MINUTE", "1000000"),
        // The storms call the sandbox far beyond Pientegra's real limit (the sandbox's is raised too).
        ("PIENTEGRA_CALLS_PER_MINUTE", "6000000"),
        ("PIENTEGRA_CALL_BURST", "1000000"),
        ("RECONCILE_INTERVAL", "0"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn spawn(port: u16, db: &str, sandbox: &Sandbox) -> Child {
    Command::new(BIN)
        .arg("serve")
        .envs(env(port, db, &sandbox.api_base(), sandbox.api_key(), sandbox.webhook_secret()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("server starts")
}

/// A tiny deterministic generator (the storm's randomness is reproducible by seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index in `0..n`.
    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("below n fits usize")
    }
}

#[derive(Clone, Debug)]
enum Task {
    Deposit { user: usize, amount: u64 },
    Withdrawal { user: usize, amount: u64 },
}

/// POSTs with one Idempotency-Key until a definite answer, like the widget.
async fn until_definite(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    retried: &AtomicUsize,
) -> (u16, Value) {
    let key = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let sent = http
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", &key)
            .json(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let transient =
                status >= 500 || status == 429 || (status == 409 && body["error"] == "idempotency_key_in_flight");
            if !transient {
                return (status, body);
            }
        }
        assert!(Instant::now() < deadline, "a request never got a definite answer: {url} {body}");
        retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn sandbox_state(http: &reqwest::Client, sandbox: &Sandbox) -> Value {
    http.get(format!("{}/sandbox/state", sandbox.base_url())).send().await.unwrap().json().await.unwrap()
}

/// Runs a storm and checks every invariant; panics on the first violation.
pub async fn storm(plan: Plan) -> Outcome {
    let started = Instant::now();
    let sandbox = Sandbox::spawn(Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        auto_approve_ms: Some(20),
        // 10 s .. 20 min scaled to 20 ms .. 2.4 s: a restart is shorter than the whole schedule.
        retry_scale_ppm: 2_000,
        rate_limit_per_minute: 10_000_000,
        accounts: plan.deposits + 50,
        ..Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("storm.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Arc::new(Mutex::new(ServerProcess::start(port, &db, &sandbox).await));
    http.put(format!("{}/external/site/webhook-config", sandbox.api_base()))
        .bearer_auth(sandbox.api_key())
        .json(&json!({"webhookUrl": format!("{base}/webhooks/pientegra"), "rotateSecret": false}))
        .send()
        .await
        .unwrap();
    http.put(format!("{}/sandbox/config", sandbox.base_url()))
        .json(&json!({"faults": plan.faults}))
        .send()
        .await
        .unwrap();

    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let users: Vec<String> = (0..plan.users).map(|i| format!("storm-user-{i:03}")).collect();
    let tokens: Vec<String> = users
        .iter()
        .map(|u| {
            key.mint(&ExternalUserId::parse(u).unwrap(), None, Utc::now(), Utc::now() + chrono::Duration::hours(2))
        })
        .collect();

    let mut rng = Rng(plan.seed | 1);
    let mut tasks: Vec<Task> = (0..plan.deposits)
        .map(|_| Task::Deposit { user: rng.index(plan.users), amount: 1_000 + rng.below(99_000) })
        .collect();
    // Withdrawals are spread through the second half of the storm, when money exists.
    for _ in 0..plan.withdrawals {
        let at = plan.deposits / 2 + rng.index(tasks.len() - plan.deposits / 2 + 1);
        tasks.insert(at, Task::Withdrawal { user: rng.index(plan.users), amount: 500 + rng.below(30_000) });
    }
    let queue = Arc::new(Mutex::new(tasks.into_iter().collect::<std::collections::VecDeque<_>>()));
    let retried = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(Mutex::new(Outcome::default()));

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.workers {
        let (queue, http, tokens, base, retried, created) =
            (queue.clone(), http.clone(), tokens.clone(), base.clone(), retried.clone(), created.clone());
        let sandbox_base = sandbox.base_url();
        workers.spawn(async move {
            loop {
                let Some(task) = queue.lock().await.pop_front() else { break };
                match task {
                    Task::Deposit { user, amount } => {
                        let body = json!({"amount": amount.to_string()});
                        let (status, answer) =
                            until_definite(&http, &format!("{base}/api/deposits"), &tokens[user], &body, &retried)
                                .await;
                        assert_eq!(status, 201, "deposit refused: {answer}");
                        created.lock().await.deposits_created += 1;
                        let id = answer["intentId"].as_str().unwrap().to_owned();
                        // The user presses "I made the payment" on the hosted page.
                        let confirm =
                            http.post(format!("{sandbox_base}/sandbox/intents/{id}/confirm")).send().await.unwrap();
                        assert!(confirm.status().is_success());
                    }
                    Task::Withdrawal { user, amount } => {
                        let body = json!({"amount": amount.to_string(), "iban": IBAN, "holderName": "Storm"});
                        let (status, answer) =
                            until_definite(&http, &format!("{base}/api/withdrawals"), &tokens[user], &body, &retried)
                                .await;
                        match status {
                            201 => created.lock().await.withdrawals_created += 1,
                            409 if answer["error"] == "insufficient_funds" => {
                                created.lock().await.withdrawals_refused += 1
                            }
                            _ => panic!("withdrawal: {status} {answer}"),
                        }
                    }
                }
            }
        });
    }

    let killer = {
        let server = server.clone();
        let kills = plan.kills;
        let seed = plan.seed;
        tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(31) | 1);
            for _ in 0..kills {
                tokio::time::sleep(Duration::from_millis(150 + rng.below(350))).await;
                server.lock().await.kill_and_restart().await;
            }
            kills
        })
    };
    while let Some(done) = workers.join_next().await {
        done.expect("a worker panicked");
    }
    let kills = killer.await.unwrap();

    // Settle: every review done, every delivery finished (DELIVERED or DEAD).
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = sandbox_state(&http, &sandbox).await;
        let busy_intents = state["intents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| matches!(i["status"].as_str(), Some("PENDING_REVIEW" | "RESERVED")));
        let busy_withdrawals = state["withdrawals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| matches!(w["status"].as_str(), Some("PENDING_REVIEW" | "APPROVED")));
        let busy_deliveries = state["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| matches!(d["deliveryStatus"].as_str(), Some("PENDING" | "FAILED")));
        if !busy_intents && !busy_withdrawals && !busy_deliveries {
            break;
        }
        assert!(Instant::now() < settle_deadline, "the sandbox never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The safety net: one reconciliation pass (replays DEAD deliveries, applies missed transitions).
    http.put(format!("{}/sandbox/config", sandbox.base_url()))
        .json(&json!({"faults": {"duplicateDeliveries": 0, "shuffleOrder": false, "failDeliveryPercent": 0,
                                  "apiErrorPercent": 0, "apiLatencyMs": 0, "deliveryDelayMs": 0}}))
        .send()
        .await
        .unwrap();
    let storage = pientegra_server::storage::connect(&db).await.unwrap();
    let client = HttpClient::new(
        &sandbox.api_base(),
        SecretString::from(sandbox.api_key().to_owned()),
        RetryPolicy::scaled_for_tests(),
    )
    .unwrap();
    let hub = Hub::default();
    let reconciler = Reconciler { storage: storage.as_ref(), pientegra: &client, hub: &hub };
    let now = Utc::now();
    let report =
        reconciler.run(now - chrono::Duration::hours(1), now + chrono::Duration::minutes(1), true).await.unwrap();
    let again =
        reconciler.run(now - chrono::Duration::hours(1), now + chrono::Duration::minutes(1), true).await.unwrap();
    assert_eq!(again.applied(), 0, "a second reconciliation applied something:\n{}", again.table());

    // Replayed deliveries land too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = sandbox_state(&http, &sandbox).await;
        if state["deliveries"].as_array().unwrap().iter().all(|d| d["deliveryStatus"] == "DELIVERED") {
            break;
        }
        assert!(Instant::now() < deadline, "replayed deliveries never all arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // ---- invariants -------------------------------------------------------------------
    let state = sandbox_state(&http, &sandbox).await;
    let mut expected: BTreeMap<String, i64> = users.iter().map(|u| (u.clone(), 0)).collect();
    let mut intents_per_user: HashMap<String, usize> = HashMap::new();
    let mut approved_ids = vec![];
    for intent in state["intents"].as_array().unwrap() {
        let user = intent["externalUserId"].as_str().unwrap().to_owned();
        *intents_per_user.entry(user.clone()).or_default() += 1;
        if intent["status"] == "APPROVED" {
            *expected.get_mut(&user).unwrap() += intent["amount"].as_str().unwrap().parse::<i64>().unwrap();
            approved_ids.push(intent["intentId"].as_str().unwrap().to_owned());
        }
    }
    for w in state["withdrawals"].as_array().unwrap() {
        let user = w["externalUserId"].as_str().unwrap().to_owned();
        let amount: i64 = w["amount"].as_str().unwrap().parse().unwrap();
        match w["status"].as_str().unwrap() {
            "SENT" => *expected.get_mut(&user).unwrap() -= amount,
            "REJECTED" | "RETURNED" => {}
            other => panic!("withdrawal left in {other}"),
        }
    }
    let outcome_counts = created.lock().await;
    assert_eq!(
        intents_per_user.values().sum::<usize>(),
        outcome_counts.deposits_created,
        "retries created extra intents at Pientegra"
    );
    assert_eq!(
        state["withdrawals"].as_array().unwrap().len(),
        outcome_counts.withdrawals_created,
        "retries created extra withdrawals"
    );

    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    for (user, want) in &expected {
        let balance = storage.balance(user).await.unwrap();
        let available = i64::try_from(balance.available.minor()).unwrap();
        assert_eq!((available, balance.reserved.minor()), (*want, 0), "{user}: ledger differs from Pientegra");
        assert_eq!(storage.ledger_sum(user).await.unwrap(), (*want, 0), "{user}: entries do not sum to the balance");
        let seqs: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM user_events WHERE user_id = ? ORDER BY seq")
            .bind(user)
            .fetch_all(&pool)
            .await
            .unwrap();
        for (i, (seq,)) in seqs.iter().enumerate() {
            assert_eq!(*seq, i64::try_from(i).unwrap() + 1, "{user}: SSE ids are not 1..n without reuse");
        }
    }
    for id in &approved_ids {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries WHERE business_key = ?")
            .bind(format!("intent.approved:{id}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "intent {id} credited {n} times");
    }
    let (submitting,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM withdrawals WHERE status = 'SUBMITTING'").fetch_one(&pool).await.unwrap();
    assert_eq!(submitting, 0, "withdrawals stuck reserved");

    let deliveries = state["deliveries"].as_array().unwrap();
    Outcome {
        kills,
        deposits_created: outcome_counts.deposits_created,
        withdrawals_created: outcome_counts.withdrawals_created,
        withdrawals_refused: outcome_counts.withdrawals_refused,
        requests_retried: retried.load(Ordering::Relaxed),
        deliveries: deliveries.len(),
        delivery_attempts: deliveries.iter().map(|d| d["attempts"].as_u64().unwrap_or(0)).sum(),
        events_replayed: report.events_replayed,
        elapsed: started.elapsed(),
    }
}
