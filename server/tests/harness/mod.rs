//! The storm harness shared by the crash, chaos and scale-out tests: a sandbox
//! with auto-approve, the `pientegra-server` binary as one or more processes
//! (killed with SIGKILL and restarted when asked, one at a time) on SQLite or
//! a fresh PostgreSQL schema, optionally nginx in front (the reference
//! configuration of `deploy/`), a concurrent workload of deposits and
//! withdrawals with widget-like retries, PostgreSQL sessions terminated when
//! asked, event streams followed through it all, then settlement and the
//! invariants.

#![allow(dead_code)]

pub mod cluster;

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
use pientegra_server::storage::{Audit, Audited};
use pientegra_server::token::TokenKey;
use pientegra_shared::ids::ExternalUserId;
use pientegra_testkit::{nginx, postgres, sse};
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
    /// Server processes on the one database (more than one needs `postgres`).
    pub instances: usize,
    /// On a fresh PostgreSQL schema instead of a SQLite file.
    pub postgres: bool,
    /// Through nginx: the workload, the event streams and the webhooks.
    pub nginx: bool,
    /// Rounds of `pg_terminate_backend` on every session of the servers.
    pub db_faults: usize,
    /// Users whose event stream is followed through the storm, resuming with
    /// `Last-Event-ID` whenever it breaks.
    pub watchers: usize,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            users: 10,
            deposits: 150,
            withdrawals: 30,
            kills: 0,
            workers: 8,
            faults: json!({}),
            seed: 1,
            instances: 1,
            postgres: false,
            nginx: false,
            db_faults: 0,
            watchers: 0,
        }
    }
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
    /// PostgreSQL sessions ended by `pg_terminate_backend`.
    pub sessions_terminated: usize,
    /// Times a followed event stream broke and was opened again.
    pub stream_resumes: usize,
    /// Events the followed streams received.
    pub events_streamed: usize,
    pub elapsed: Duration,
}

struct ServerProcess {
    child: Child,
    port: u16,
    /// The environment it runs with, again on each restart.
    env: Vec<(String, String)>,
}

impl ServerProcess {
    async fn start(port: u16, db: &str, sandbox: &Sandbox) -> ServerProcess {
        ServerProcess::start_with(port, db, sandbox, &[]).await
    }

    /// Starts with `extra` variables on top of the storm's environment.
    async fn start_with(port: u16, db: &str, sandbox: &Sandbox, extra: &[(&str, String)]) -> ServerProcess {
        let mut env = env(port, db, sandbox);
        env.extend(extra.iter().map(|(name, value)| ((*name).to_owned(), value.clone())));
        let mut server = ServerProcess { child: spawn(&env), port, env };
        server.wait_healthy().await;
        server
    }

    /// Waits for `/healthz`. A server that exits on its way up (its database
    /// dropped the connection during start) is started again, as the
    /// reference systemd unit's `Restart=always` does.
    async fn wait_healthy(&mut self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Ok(Some(_exited)) = self.child.try_wait() {
                self.child = spawn(&self.env);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not come up");
    }

    /// SIGKILL, then start again on the same port and database.
    async fn kill_and_restart(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
        self.child = spawn(&self.env);
        self.wait_healthy().await;
    }
}

fn env(port: u16, db: &str, sandbox: &Sandbox) -> Vec<(String, String)> {
    [
        ("PIENTEGRA_API_BASE", sandbox.api_base().as_str()),
        ("PIENTEGRA_API_KEY", sandbox.api_key()),
        ("PIENTEGRA_WEBHOOK_SECRET", sandbox.webhook_secret()),
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

fn spawn(env: &[(String, String)]) -> Child {
    Command::new(BIN)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k, v)))
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

/// The storm's database: a SQLite file, or a PostgreSQL schema of its own.
enum Db {
    Sqlite { url: String, _dir: tempfile::TempDir },
    Postgres(postgres::Schema),
}

impl Db {
    /// `None` when PostgreSQL is asked for and not configured (see [`postgres::Schema::create`]).
    async fn for_plan(plan: &Plan) -> Option<Db> {
        if plan.postgres {
            return Some(Db::Postgres(postgres::Schema::create().await?));
        }
        assert!(plan.instances == 1, "several instances share a PostgreSQL database, not a SQLite file");
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("storm.db").display());
        Some(Db::Sqlite { url, _dir: dir })
    }

    fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } => url,
            Db::Postgres(schema) => &schema.url,
        }
    }

    /// A connection pool for the invariants' queries.
    async fn checker(&self) -> Checker {
        match self {
            Db::Sqlite { url, .. } => Checker::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap()),
            Db::Postgres(schema) => Checker::Postgres(sqlx::PgPool::connect(&schema.url).await.unwrap()),
        }
    }
}

/// The invariants' queries, on either database.
enum Checker {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Checker {
    /// The user's event sequence numbers, in order.
    async fn seqs(&self, user: &str) -> Vec<i64> {
        const SQL: &str = "SELECT seq FROM user_events WHERE user_id = {} ORDER BY seq";
        match self {
            Checker::Sqlite(pool) => {
                sqlx::query_scalar(&SQL.replace("{}", "?")).bind(user).fetch_all(pool).await.unwrap()
            }
            Checker::Postgres(pool) => {
                sqlx::query_scalar(&SQL.replace("{}", "$1")).bind(user).fetch_all(pool).await.unwrap()
            }
        }
    }

    /// `SELECT COUNT(*) FROM {from_where}`, with `{}` in it standing for the one parameter.
    async fn count(&self, from_where: &str, param: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {from_where}");
        match self {
            Checker::Sqlite(pool) => {
                sqlx::query_scalar(&sql.replace("{}", "?")).bind(param).fetch_one(pool).await.unwrap()
            }
            Checker::Postgres(pool) => {
                sqlx::query_scalar(&sql.replace("{}", "$1")).bind(param).fetch_one(pool).await.unwrap()
            }
        }
    }
}

/// What one followed event stream saw.
#[derive(Debug, Default)]
struct Followed {
    /// The ids received, in order, across every resumption.
    ids: Vec<i64>,
    /// Streams opened after the first.
    resumes: usize,
}

/// Follows the user's event stream at `base` from the start (`Last-Event-ID: 0`)
/// until `stop`, resuming with the last id received whenever the stream breaks.
async fn follow(base: String, token: String, seen: Arc<Mutex<Followed>>, stop: tokio_util::sync::CancellationToken) {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap();
    let mut first = true;
    while !stop.is_cancelled() {
        let last = seen.lock().await.ids.last().copied().unwrap_or(0);
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = sse::SseClient::connect_bearer(&http, &base, &token, Some(last)) => connected,
        };
        if let Ok(mut stream) = connected {
            if !first {
                seen.lock().await.resumes += 1;
            }
            first = false;
            loop {
                // The server's keep-alive comments come every 15 s: a stream
                // silent for longer is dead.
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = stream.next(Duration::from_secs(20)) => next,
                };
                let Ok(event) = next else { break };
                if let Some(seq) = event.seq() {
                    seen.lock().await.ids.push(seq);
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Runs a storm and checks every invariant; panics on the first violation.
pub async fn storm(plan: Plan) -> Outcome {
    storm_cluster(plan).await.expect("a storm on SQLite without nginx always runs")
}

/// Runs a storm and checks every invariant; panics on the first violation.
/// `None` when the plan needs PostgreSQL or nginx and the machine lacks it
/// (a failure when `CI=true`).
pub async fn storm_cluster(plan: Plan) -> Option<Outcome> {
    let started = Instant::now();
    assert!(plan.kills == 0 || plan.instances >= 1);
    if plan.nginx {
        nginx::binary()?;
    }
    let db = Db::for_plan(&plan).await?;
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
    let ports: Vec<u16> = (0..plan.instances).map(|_| nginx::free_port()).collect();
    let mut servers = vec![];
    for port in &ports {
        servers.push(Arc::new(Mutex::new(ServerProcess::start(*port, db.url(), &sandbox).await)));
    }
    let proxy = if plan.nginx { Some(nginx::Nginx::start(&ports).await?) } else { None };
    let base = proxy.as_ref().map_or_else(|| format!("http://127.0.0.1:{}", ports[0]), nginx::Nginx::url);
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

    let stop_following = tokio_util::sync::CancellationToken::new();
    let followed: Vec<Arc<Mutex<Followed>>> =
        (0..plan.watchers.min(plan.users)).map(|_| Arc::new(Mutex::new(Followed::default()))).collect();
    for (i, seen) in followed.iter().enumerate() {
        tokio::spawn(follow(base.clone(), tokens[i].clone(), seen.clone(), stop_following.clone()));
    }

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

    // One instance at a time: it is killed and restarted before the next
    // kill, so with two or more instances one always serves.
    let killer = {
        let servers = servers.clone();
        let kills = plan.kills;
        let seed = plan.seed;
        tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(31) | 1);
            for _ in 0..kills {
                tokio::time::sleep(Duration::from_millis(150 + rng.below(350))).await;
                let victim = rng.index(servers.len());
                servers[victim].lock().await.kill_and_restart().await;
            }
            kills
        })
    };
    let db_faults = async {
        let Db::Postgres(schema) = &db else { return 0 };
        let mut rng = Rng(plan.seed.wrapping_mul(17) | 1);
        let mut ended = 0;
        for _ in 0..plan.db_faults {
            tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
            ended += schema.terminate_connections().await;
        }
        ended
    };
    let drain = async {
        while let Some(done) = workers.join_next().await {
            done.expect("a worker panicked");
        }
    };
    let ((), sessions_terminated) = tokio::join!(drain, db_faults);
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
    let storage = Audited::connect(db.url()).await.unwrap();
    let client = HttpClient::new(
        &sandbox.api_base(),
        SecretString::from(sandbox.api_key().to_owned()),
        RetryPolicy::scaled_for_tests(),
    )
    .unwrap();
    let hub = Hub::default();
    let reconciler = Reconciler { storage: &*storage, pientegra: &client, hub: &hub };
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

    let checker = db.checker().await;
    let mut all_seqs = HashMap::new();
    for (user, want) in &expected {
        let balance = storage.balance(user).await.unwrap();
        let available = i64::try_from(balance.available.minor()).unwrap();
        assert_eq!((available, balance.reserved.minor()), (*want, 0), "{user}: ledger differs from Pientegra");
        assert_eq!(storage.ledger_sum(user).await.unwrap(), (*want, 0), "{user}: entries do not sum to the balance");
        let seqs = checker.seqs(user).await;
        for (i, seq) in seqs.iter().enumerate() {
            assert_eq!(*seq, i64::try_from(i).unwrap() + 1, "{user}: SSE ids are not 1..n without reuse");
        }
        all_seqs.insert(user.clone(), seqs);
    }
    for id in &approved_ids {
        let n = checker.count("ledger_entries WHERE business_key = {}", &format!("intent.approved:{id}")).await;
        assert_eq!(n, 1, "intent {id} credited {n} times");
    }
    let submitting = checker.count("withdrawals WHERE status = {}", "SUBMITTING").await;
    assert_eq!(submitting, 0, "withdrawals stuck reserved");

    // Every followed stream received every event of its user exactly once,
    // in order, across every break and resumption.
    let (mut stream_resumes, mut events_streamed) = (0, 0);
    for (i, seen) in followed.iter().enumerate() {
        let want = &all_seqs[&users[i]];
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().await.ids.len() < want.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = seen.lock().await;
        assert_eq!(&seen.ids, want, "{}: the followed stream's ids differ from the stored events", users[i]);
        stream_resumes += seen.resumes;
        events_streamed += seen.ids.len();
    }
    stop_following.cancel();

    let deliveries = state["deliveries"].as_array().unwrap();
    for server in &servers {
        server.lock().await.child.start_kill().ok();
    }
    drop(proxy);
    Some(Outcome {
        kills,
        deposits_created: outcome_counts.deposits_created,
        withdrawals_created: outcome_counts.withdrawals_created,
        withdrawals_refused: outcome_counts.withdrawals_refused,
        requests_retried: retried.load(Ordering::Relaxed),
        deliveries: deliveries.len(),
        delivery_attempts: deliveries.iter().map(|d| d["attempts"].as_u64().unwrap_or(0)).sum(),
        events_replayed: report.events_replayed,
        sessions_terminated,
        stream_resumes,
        events_streamed,
        elapsed: started.elapsed(),
    })
}
