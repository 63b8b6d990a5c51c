//! Figure 1: durable, verified webhooks per second against the real server,
//! against a bare loop doing the least such a receiver can do.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use pientegra_shared::signature;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::report::{Row, Verdict};
use crate::stack::{self, Seeded, ServerProcess};
use crate::{Ctx, Figure};

const LEVELS: [usize; 3] = [1, 16, 64];
const ROUNDS: usize = 3;
/// Deposits seeded for each round (and for the warm-up). A round ends at its
/// time or when its share is used up, whichever comes first: its rate is
/// what it sent over the time it took either way, so a fast machine gives
/// shorter rounds, never a failed figure.
const PER_ROUND: usize = 30_000;
const SEEDED: usize = PER_ROUND * (LEVELS.len() * ROUNDS + 1);

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let round = if ctx.quick { Duration::from_millis(1_000) } else { Duration::from_secs(2) };

    let dir = tempfile::tempdir()?;
    let baseline_pool = baseline_database(&dir.path().join("baseline.db")).await?;
    let base_secret = pientegra_sandbox::config::DEFAULT_WEBHOOK_SECRET;
    baseline_round(&baseline_pool, base_secret, Duration::from_millis(300)).await?; // warm-up

    // The server: intent.approved webhooks crediting seeded deposits.
    let sandbox = stack::sandbox(50).await?;
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    let mut shares = Vec::new();
    for _ in 0..SEEDED / PER_ROUND {
        let share: Vec<Seeded> = (0..PER_ROUND).map(|i| Seeded::new(&format!("wh-{}", i % 1_000), 10_000)).collect();
        stack::seed_deposits(&db, &share).await?;
        shares.push(share);
    }
    let server = ServerProcess::serve(&ctx.server_bin, &sandbox, &db, &dir.path().join("server.log")).await?;
    let mut shares = shares.into_iter();
    let mut share = move || shares.next().context("every round has its own share of the seeded deposits");
    let secret = sandbox.webhook_secret().to_owned();
    let host = server.url.trim_start_matches("http://").to_owned();
    let mut sent = 0;
    let mut cut_short = 0;

    let result = async {
        // Warm-up at the middle level.
        load(&host, &secret, &share()?, 16, Duration::from_millis(500)).await?;
        let mut rows = Vec::new();
        let mut insert_shares = Vec::new();
        for c in LEVELS {
            let mut rates = Vec::new();
            let mut latencies = Vec::new();
            let mut base_rates = Vec::new();
            // Baseline and server rounds alternate, so both see the same disk and CPU noise.
            for _ in 0..ROUNDS {
                let (rate, insert_share) = baseline_round(&baseline_pool, base_secret, round).await?;
                base_rates.push(rate);
                insert_shares.push(insert_share);
                let (rate, mut lat) = load(&host, &secret, &share()?, c, round).await?;
                sent += lat.len();
                cut_short += usize::from(lat.len() == PER_ROUND);
                rates.push(rate);
                latencies.append(&mut lat);
            }
            let rate = stack::median(&mut rates);
            let baseline = stack::median(&mut base_rates);
            let s = stack::stats(&mut latencies);
            let ratio = rate / baseline;
            let verdict = if c == 64 { Verdict::of(ratio >= 1.0) } else { Verdict::Info };
            rows.push(Row {
                id: "1".into(),
                figure: format!("durable verified webhooks/s, concurrency {c}"),
                value: format!("{rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99),
                baseline: format!("{baseline:.0}/s (verify + 1-row durable insert loop)"),
                ratio: format!("{ratio:.2}x"),
                target: if c == 64 { "≥ 1.0x baseline".into() } else { "(info)".into() },
                verdict,
            });
        }
        anyhow::Ok((rows, stack::median(&mut insert_shares)))
    }
    .await;
    server.stop().await;
    sandbox.shutdown().await;
    baseline_pool.close().await;
    let (rows, insert_share) = result?;
    Ok(Figure {
        rows,
        notes: vec![format!(
            "#1: the server is `pientegra-server serve` (release, separate process, SQLite WAL + synchronous=FULL, \
             RUST_LOG=info) with {SEEDED} RESERVED deposits seeded for 1,000 users; each request is a freshly signed \
             `intent.approved` for a different deposit (so each one applies: status, ledger credit, two user events; \
             webhooks waiting together share one transaction (group commit), each 2xx after that commit). The senders \
             are one raw HTTP/1.1 client per connection, kept alive, every request encoded and signed before the \
             round's clock starts, so they take as little of the 2 CPUs the server shares with them as they can. Per level: \
             {ROUNDS} rounds, each of {round:?} or {PER_ROUND} webhooks, whichever ends first (rate = webhooks \
             answered / the round's time), median rate, p50/p99 over all rounds; {sent} were sent in the rounds, and \
             {cut_short} of the {} rounds ended at their count. The baseline is one process looping `signature::verify` + one \
             `INSERT` into a 3-column table with a durable commit (sqlx, WAL, synchronous=FULL, one connection), \
             on a runtime worker; its rounds alternate with the server's rounds of the same level (median of \
             {ROUNDS}), so both see the same disk noise. The insert + commit took {:.0}% of the baseline loop's time.",
            LEVELS.len() * ROUNDS,
            insert_share * 100.0
        )],
    })
}

async fn baseline_database(path: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    // The same pragmas as server/src/storage/sqlite/mod.rs.
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    sqlx::query("CREATE TABLE inbox (event_id TEXT PRIMARY KEY, body BLOB NOT NULL, received_at INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    Ok(pool)
}

/// Verify + insert for `time` on a runtime worker: the rate per second and
/// the share of the time spent in the insert and its commit.
async fn baseline_round(pool: &sqlx::SqlitePool, secret: &str, time: Duration) -> anyhow::Result<(f64, f64)> {
    let (pool, secret) = (pool.clone(), secret.to_owned());
    tokio::spawn(async move { baseline_loop(&pool, &secret, time).await }).await?
}

async fn baseline_loop(pool: &sqlx::SqlitePool, secret: &str, time: Duration) -> anyhow::Result<(f64, f64)> {
    let mut conn = pool.acquire().await?;
    let mut inserting = Duration::ZERO;
    let start = Instant::now();
    let mut done = 0u32;
    while start.elapsed() < time {
        let (event_id, body, now) = stack::verified_baseline_webhook(secret)?;
        let t0 = Instant::now();
        sqlx::query("INSERT INTO inbox (event_id, body, received_at) VALUES (?, ?, ?)")
            .bind(event_id)
            .bind(&body)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        inserting += t0.elapsed();
        done += 1;
    }
    let total = start.elapsed().as_secs_f64();
    Ok((f64::from(done) / total, inserting.as_secs_f64() / total))
}

/// `concurrency` senders, each on a kept-alive connection of its own, for
/// `time` or until a webhook has been sent for every deposit of `share`: the
/// rate of 2xx answers per second and each one's latency.
///
/// The senders are as light as a load generator can be, since they share the
/// machine with the server and the baseline loop does not: every request is
/// encoded and signed before the clock starts, and the answers are read by
/// hand, not by an HTTP client library.
pub(crate) async fn load(
    host: &str,
    secret: &str,
    share: &[Seeded],
    concurrency: usize,
    time: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(share.iter().map(|d| signed_request(host, secret, d)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let tcp = TcpStream::connect(host).await?;
        tcp.set_nodelay(true)?;
        connections.push(BufReader::new(tcp));
    }
    let start = Instant::now();
    let deadline = start + time;
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        let (requests, next) = (requests.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut answer = Answer::default();
            while Instant::now() < deadline {
                let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                let sent = Instant::now();
                answer.exchange(&mut connection, request).await?;
                latencies.push(sent.elapsed());
                answer.expect_applied()?;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.append(&mut done.context("sender task")??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let count = u32::try_from(all.len()).unwrap_or(u32::MAX);
    Ok((f64::from(count) / elapsed, all))
}

/// The webhook crediting `deposit`, whole as it goes on the wire, signed now.
fn signed_request(host: &str, secret: &str, deposit: &Seeded) -> Vec<u8> {
    let body = stack::approved_body(deposit);
    let signature = signature::sign(secret, Utc::now().timestamp_millis(), &body);
    let mut request = format!(
        "POST /webhooks/pientegra HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{}: {signature}\r\n\
         Content-Length: {}\r\n\r\n",
        signature::HEADER,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

/// The last answer read on a connection; its buffers are reused.
#[derive(Default)]
struct Answer {
    status: String,
    line: String,
    body: Vec<u8>,
}

impl Answer {
    /// Sends `request` and reads the answer up to the end of its body.
    async fn exchange(&mut self, connection: &mut BufReader<TcpStream>, request: &[u8]) -> anyhow::Result<()> {
        connection.get_mut().write_all(request).await?;
        let length = stack::read_head(connection, &mut self.status, &mut self.line).await?;
        self.body.resize(length, 0);
        connection.read_exact(&mut self.body).await?;
        Ok(())
    }

    /// Ok when the answer was a 2xx whose outcome is `applied`.
    fn expect_applied(&self) -> anyhow::Result<()> {
        let body = || String::from_utf8_lossy(&self.body);
        if !self.status.starts_with("HTTP/1.1 2") {
            bail!("webhook answered {}: {}", self.status.trim_end(), body());
        }
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        if json["outcome"] != "applied" {
            bail!("webhook outcome {}, expected applied", body());
        }
        Ok(())
    }
}
