//! Figures 10, 11 and 12: the PostgreSQL path of the reference deployment
//! (`deploy/nginx/pientegra.conf` in front of two `pientegra-server`
//! instances on one PostgreSQL schema), each against a baseline of the same run.
//!
//! Needs nginx and `PIENTEGRA_TEST_POSTGRES_URL` (the PostgreSQL the tests use;
//! the figures get a schema of their own, dropped afterwards).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use pientegra_testkit::{nginx, postgres};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::report::{Row, Verdict};
use crate::stack::{self, Seeded, ServerProcess};
use crate::{Ctx, Figure};

const INSTANCES: usize = 2;
const CONCURRENCY: usize = 64;
const ROUNDS: usize = 3;
/// Deposits seeded for each webhook round (and the warm-up); a round ends at
/// its time or when its share is used up.
const PER_ROUND: usize = 15_000;
const IDLE: usize = 10_000;
const LIVE_USER: &str = "scale-live";

/// The deployment the three figures share.
struct Deployment {
    sandbox: pientegra_sandbox::Sandbox,
    instances: Vec<ServerProcess>,
    nginx: nginx::Nginx,
    schema: postgres::Schema,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    if nginx::binary().is_none() {
        bail!("nginx is not installed (apt-get install nginx)");
    }
    let schema = postgres::Schema::create().await.context("PIENTEGRA_TEST_POSTGRES_URL is not set")?;
    let samples = if ctx.quick { 100 } else { 1_000 };
    let warmup = 30;
    let round = if ctx.quick { Duration::from_millis(1_000) } else { Duration::from_secs(2) };
    let dir = tempfile::tempdir()?;

    // Migrations first (by the server's own code), then the seeded deposits.
    drop(pientegra_server::storage::connect(&schema.url).await?);
    let shares: Vec<Vec<Seeded>> = (0..=ROUNDS)
        .map(|_| (0..PER_ROUND).map(|i| Seeded::new(&format!("pgwh-{}", i % 1_000), 10_000)).collect())
        .collect();
    let live: Vec<Seeded> = (0..4 * (samples + warmup)).map(|_| Seeded::new(LIVE_USER, 10_000)).collect();
    for share in shares.iter().chain([&live]) {
        seed_deposits(&schema.url, share).await?;
    }

    let sandbox = stack::sandbox(4 * (samples + warmup) + 10).await?;
    let mut instances = Vec::new();
    for i in 0..INSTANCES {
        let log = dir.path().join(format!("server-{i}.log"));
        instances.push(ServerProcess::serve_on(&ctx.server_bin, &sandbox, &schema.url, &log, &[]).await?);
    }
    let ports: Vec<u16> =
        instances.iter().map(|s| s.url.rsplit(':').next().unwrap_or_default().parse()).collect::<Result<_, _>>()?;
    let nginx = nginx::Nginx::start(&ports).await.context("nginx")?;
    let deployment = Deployment { sandbox, instances, nginx, schema };

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let result = async {
        let (row, note) = webhooks(&deployment, shares, round).await?;
        rows.push(row);
        notes.push(note);
        let (row, note) = cross_instance_frames(&deployment, &live, samples, warmup).await?;
        rows.push(row);
        notes.push(note);
        checkpoint(&deployment.schema.url).await?;
        let (row, note) = deposits(&deployment, samples, warmup).await?;
        rows.push(row);
        notes.push(note);
        anyhow::Ok(())
    }
    .await;
    let Deployment { sandbox, instances, nginx, schema } = deployment;
    drop(nginx);
    for instance in instances {
        instance.stop().await;
    }
    sandbox.shutdown().await;
    drop(schema);
    result?;
    Ok(Figure { rows, notes })
}

/// Figure 10: webhooks/s through nginx to the instances at concurrency 64,
/// against a loop verifying a signature and committing a one-row insert on
/// the same PostgreSQL.
async fn webhooks(d: &Deployment, shares: Vec<Vec<Seeded>>, round: Duration) -> anyhow::Result<(Row, String)> {
    let secret = d.sandbox.webhook_secret().to_owned();
    let host = d.nginx.url().trim_start_matches("http://").to_owned();
    let baseline = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&d.schema.url).await?;
    sqlx::query(
        "CREATE TABLE bench_inbox (event_id TEXT PRIMARY KEY, body BYTEA NOT NULL, received_at BIGINT NOT NULL)",
    )
    .execute(&baseline)
    .await?;
    let base_secret = pientegra_sandbox::config::DEFAULT_WEBHOOK_SECRET;
    baseline_loop(&baseline, base_secret, Duration::from_millis(300)).await?;
    let mut shares = shares.into_iter();
    let mut share = move || shares.next().context("every round has its own share of the seeded deposits");
    crate::webhooks::load(&host, &secret, &share()?, 16, Duration::from_millis(500)).await?;
    let (mut rates, mut base_rates, mut latencies) = (Vec::new(), Vec::new(), Vec::new());
    let mut sent = 0;
    for _ in 0..ROUNDS {
        base_rates.push(baseline_loop(&baseline, base_secret, round).await?);
        let (rate, mut lat) = crate::webhooks::load(&host, &secret, &share()?, CONCURRENCY, round).await?;
        sent += lat.len();
        rates.push(rate);
        latencies.append(&mut lat);
    }
    baseline.close().await;
    let (rate, base) = (stack::median(&mut rates), stack::median(&mut base_rates));
    let s = stack::stats(&mut latencies);
    let ratio = rate / base;
    let row = Row {
        id: "10".into(),
        figure: format!(
            "PostgreSQL: durable verified webhooks/s through nginx to {INSTANCES} instances, concurrency {CONCURRENCY}"
        ),
        value: format!("{rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99),
        baseline: format!("{base:.0}/s (verify + 1-row insert committed on the same PostgreSQL)"),
        ratio: format!("{ratio:.2}x"),
        target: "≥ 1.0x baseline".into(),
        verdict: Verdict::of(ratio >= 1.0),
    };
    let note = format!(
        "#10: the reference nginx configuration (deploy/nginx/pientegra.conf, paths and ports substituted) in front of \
         {INSTANCES} `pientegra-server serve` processes (release, RUST_LOG=info) on one PostgreSQL schema of the \
         machine's server (default synchronous_commit = on), {} RESERVED deposits seeded per round for 1,000 users; \
         each request a freshly signed `intent.approved` for a different deposit (status, ledger credit, two user \
         events, NOTIFY; the webhooks an instance holds at once share one transaction). The senders are figure 1's: {CONCURRENCY} raw HTTP/1.1 \
         connections to nginx, kept alive, requests signed before the clock starts. {ROUNDS} rounds of {round:?} \
         (or {PER_ROUND} webhooks), alternating with the baseline's rounds; median rate, p50/p99 over the {sent} \
         webhooks of all rounds. Baseline: one connection looping `signature::verify` + one autocommitted INSERT \
         into a 3-column table on the same PostgreSQL.",
        PER_ROUND
    );
    Ok((row, note))
}

/// Verify + one autocommitted insert for `time`: the rate per second.
async fn baseline_loop(pool: &sqlx::PgPool, secret: &str, time: Duration) -> anyhow::Result<f64> {
    let (pool, secret) = (pool.clone(), secret.to_owned());
    tokio::spawn(async move {
        let mut conn = pool.acquire().await?;
        let start = Instant::now();
        let mut done = 0u32;
        while start.elapsed() < time {
            let (event_id, body, now) = stack::verified_baseline_webhook(&secret)?;
            sqlx::query("INSERT INTO bench_inbox (event_id, body, received_at) VALUES ($1, $2, $3)")
                .bind(event_id)
                .bind(&body)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            done += 1;
        }
        anyhow::Ok(f64::from(done) / start.elapsed().as_secs_f64())
    })
    .await?
}

/// Figure 11: a webhook to one instance until the frame it causes on a
/// stream held by the other, with 10,000 idle streams spread over both.
async fn cross_instance_frames(
    d: &Deployment,
    live: &[Seeded],
    samples: usize,
    warmup: usize,
) -> anyhow::Result<(Row, String)> {
    let secret = d.sandbox.webhook_secret();
    let (a, b) = (&d.instances[0].url, &d.instances[1].url);
    let http = reqwest::Client::new();
    let (frames_tx, mut frames) = mpsc::unbounded_channel();
    let mut stream =
        crate::sse::open_stream(b.trim_start_matches("http://"), &stack::stream_ticket(LIVE_USER)?).await?;
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            if line.trim_end() == "event: deposit.updated" && frames_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let mut chunks = live.chunks(samples + warmup);
    let mut next = || chunks.next().context("seeded deposits for every series");
    let result = async {
        let mut quiet = series(&http, a, secret, next()?, warmup, &mut frames).await?;
        let budget = IDLE.min(stack::soft_open_file_limit().saturating_sub(500));
        let opened_at = Instant::now();
        let mut idle = Vec::new();
        for (i, instance) in d.instances.iter().enumerate() {
            let share = budget / INSTANCES + usize::from(i < budget % INSTANCES);
            idle.extend(crate::sse::open_idle(instance.url.trim_start_matches("http://"), share).await?);
        }
        let open_secs = opened_at.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut loaded = series(&http, a, secret, next()?, warmup, &mut frames).await?;
        let mut same = series(&http, b, secret, next()?, warmup, &mut frames).await?;
        let opened = idle.len();
        drop(idle);
        anyhow::Ok((stack::stats(&mut quiet), stack::stats(&mut loaded), stack::stats(&mut same), opened, open_secs))
    }
    .await;
    reader.abort();
    let (quiet, loaded, same, opened, open_secs) = result?;
    let row = Row {
        id: "11".into(),
        figure: format!("PostgreSQL: webhook to one instance → SSE frame on the other, {opened} idle streams open"),
        value: format!("p50 {:.2} ms, p99 {:.2} ms", loaded.p50, loaded.p99),
        baseline: format!(
            "no idle streams: p50 {:.2} ms, p99 {:.2} ms; webhook and stream on one instance, with the idle streams: \
             p50 {:.2} ms, p99 {:.2} ms",
            quiet.p50, quiet.p99, same.p50, same.p99
        ),
        ratio: format!("{:.2}x (p99 over no idle streams)", loaded.p99 / quiet.p99),
        target: "p99 ≤ 10 ms".into(),
        verdict: if opened == IDLE { Verdict::of(loaded.p99 <= 10.0) } else { Verdict::NotMeasured },
    };
    let note = format!(
        "#11: the deployment of #10. One stream of user `{LIVE_USER}` held on instance B (directly, raw HTTP/1.1); \
         each sample POSTs a signed `intent.approved` for one of the user's seeded deposits straight to instance A \
         and times until B's stream delivers its `deposit.updated` frame (A commits and NOTIFYs; B's LISTEN wakes the \
         stream, which reads the event from PostgreSQL). {warmup} warm-up then {samples} sequential samples: first \
         with no idle streams (baseline), then with {opened} idle streams of other users spread evenly over both \
         instances (opened in {open_secs:.1} s), then with the webhooks sent to B itself (same instance)."
    );
    Ok((row, note))
}

/// `warmup` webhooks of `chunk` to `server`, then the rest, each timed to its frame.
async fn series(
    http: &reqwest::Client,
    server: &str,
    secret: &str,
    chunk: &[Seeded],
    warmup: usize,
    frames: &mut mpsc::UnboundedReceiver<Instant>,
) -> anyhow::Result<Vec<Duration>> {
    crate::sse::timed(http, server, secret, &chunk[..warmup], frames).await?;
    crate::sse::timed(http, server, secret, &chunk[warmup..], frames).await
}

/// Writes every page the figures before changed to disk, and waits for it.
/// Figure 10 leaves tens of thousands of changed rows, and a checkpoint
/// writing them out while figure 12 runs puts its own writes and fsyncs in
/// the way of the deposits' commits: without this, #12 measured the disk
/// catching up with #10 as much as the deposit path.
async fn checkpoint(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CHECKPOINT")
        .execute(&mut conn)
        .await
        .context("CHECKPOINT (the bench's PostgreSQL role must be a superuser)")?;
    Ok(())
}

/// Figure 12: `POST /api/deposits` through nginx, over the same call made
/// straight to the sandbox.
async fn deposits(d: &Deployment, samples: usize, warmup: usize) -> anyhow::Result<(Row, String)> {
    let through = format!("{}/api/deposits", d.nginx.url());
    let (mut proxied, mut straight) = paired(d, samples, warmup, |_| through.clone()).await?;
    // The same again with each request sent to an instance itself, in a run
    // of its own: interleaved with the first, it would keep the instances
    // busier than the first alone does, and change what that measures.
    let (mut unproxied, _) =
        paired(d, samples, warmup, |i| format!("{}/api/deposits", d.instances[i % INSTANCES].url)).await?;
    let (s, u, b) = (stack::stats(&mut proxied), stack::stats(&mut unproxied), stack::stats(&mut straight));
    let overhead = s.p99 - b.p99;
    let row = Row {
        id: "12".into(),
        figure: format!("PostgreSQL: POST /api/deposits through nginx to {INSTANCES} instances"),
        value: format!("p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99),
        baseline: format!(
            "direct POST /external/deposits: p50 {:.2} ms, p99 {:.2} ms; straight to the instances, no nginx: \
             p50 {:.2} ms, p99 {:.2} ms",
            b.p50, b.p99, u.p50, u.p99
        ),
        ratio: format!("overhead p50 {:+.2} ms, p99 {overhead:+.2} ms", s.p50 - b.p50),
        target: "p99 overhead ≤ 2 ms".into(),
        verdict: Verdict::of(overhead <= 2.0),
    };
    let note = format!(
        "#12: the deployment of #10, after a CHECKPOINT that writes out what #10 changed. Sequential requests, \
         {warmup} warm-up then {samples} of each, alternating a \
         request through nginx (widget token, fresh Idempotency-Key, 10 users round robin; the instance nginx picks \
         claims the key, spends its call-budget slot in hand, calls the in-process sandbox and records the deposit in \
         PostgreSQL) and the same call made \
         straight to the sandbox. Overhead = percentile through nginx − direct percentile. Then the same run with \
         the requests sent straight to the instances in turn, bypassing nginx: what nginx adds is the difference."
    );
    Ok((row, note))
}

/// `warmup` then `samples` deposits POSTed to `url(i)`, each followed by the
/// same call made straight to the sandbox: both series' times.
async fn paired(
    d: &Deployment,
    samples: usize,
    warmup: usize,
    url: impl Fn(usize) -> String,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let http = reqwest::Client::new();
    let tokens: Vec<String> = (0..10).map(|i| stack::token(&format!("pgdep-{i}"))).collect::<Result<_, _>>()?;
    let direct = format!("{}/external/deposits", d.sandbox.api_base());
    let (mut served, mut straight) = (Vec::new(), Vec::new());
    for i in 0..warmup + samples {
        let request = http.post(url(i)).bearer_auth(&tokens[i % tokens.len()]).json(&json!({"amount": "150000"}));
        let took = crate::deposits::timed(request, "POST /api/deposits").await?;
        let body = json!({"externalUserId": format!("pgdep-{}", i % 10), "amount": "150000"});
        let request = http.post(&direct).bearer_auth(d.sandbox.api_key()).json(&body);
        let direct_took = crate::deposits::timed(request, "POST /external/deposits").await?;
        if i >= warmup {
            served.push(took);
            straight.push(direct_took);
        }
    }
    Ok((served, straight))
}

/// Inserts RESERVED deposits as `record_deposit` would, in one transaction.
async fn seed_deposits(url: &str, deposits: &[Seeded]) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await?;
    let mut tx = pool.begin().await?;
    let now = Utc::now().timestamp_millis();
    for d in deposits {
        sqlx::query(
            "INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                                   status, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, '', $4, $5, 'TRY', 'RESERVED', $6, $7, $7)",
        )
        .bind(d.intent_id.to_string())
        .bind(&d.user)
        .bind(&d.reference_no)
        .bind(i64::try_from(d.requested)?)
        .bind(i64::try_from(d.amount)?)
        .bind(now + 1_800_000)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}
