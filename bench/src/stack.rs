//! What every figure needs: an in-process sandbox, the companion server as a
//! separate release process (so its RSS is its own and it has its own cores'
//! worth of scheduling), a seeded SQLite database, tokens and signed webhooks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use pientegra_sandbox::{Config as SandboxConfig, Sandbox};
use pientegra_server::token::{Claims, TokenKey};
use pientegra_shared::ids::ExternalUserId;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use uuid::Uuid;

/// The token secret of every bench server.
pub const TOKEN_SECRET: &str = "bench-token-secret-0123456789abcdef0123456789";

/// A sandbox with no rate limit in the way and a receiving-account pool of `accounts`.
pub async fn sandbox(accounts: usize) -> anyhow::Result<Sandbox> {
    Sandbox::spawn(SandboxConfig {
        bind: "127.0.0.1:0".parse()?,
        rate_limit_per_minute: 100_000_000,
        accounts,
        retry_scale_ppm: 1_000,
        ..SandboxConfig::default()
    })
    .await
}

/// A loopback port free right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `pientegra-server serve` running as a child process.
pub struct ServerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub url: String,
}

impl ServerProcess {
    /// Starts `bin serve` against `sandbox` with its database at `db` and waits for `/healthz`.
    pub async fn serve(bin: &Path, sandbox: &Sandbox, db: &Path, log: &Path) -> anyhow::Result<ServerProcess> {
        ServerProcess::serve_with(bin, sandbox, db, log, &[]).await
    }

    /// [`ServerProcess::serve`] with more settings, as environment variables.
    pub async fn serve_with(
        bin: &Path,
        sandbox: &Sandbox,
        db: &Path,
        log: &Path,
        settings: &[(&str, &std::ffi::OsStr)],
    ) -> anyhow::Result<ServerProcess> {
        ServerProcess::serve_on(bin, sandbox, &format!("sqlite://{}", db.display()), log, settings).await
    }

    /// [`ServerProcess::serve_with`] on any `DATABASE_URL` (a PostgreSQL one too).
    pub async fn serve_on(
        bin: &Path,
        sandbox: &Sandbox,
        database_url: &str,
        log: &Path,
        settings: &[(&str, &std::ffi::OsStr)],
    ) -> anyhow::Result<ServerProcess> {
        if !bin.exists() {
            bail!("{} does not exist: build it with `cargo build --release -p pientegra-server`", bin.display());
        }
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = tokio::process::Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PIENTEGRA_API_BASE", sandbox.api_base())
            .env("PIENTEGRA_API_KEY", sandbox.api_key())
            .env("PIENTEGRA_WEBHOOK_SECRET", sandbox.webhook_secret())
            .env("DATABASE_URL", database_url)
            .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("RECONCILE_INTERVAL", "0")
            .env("RATE_LIMIT_PER_MINUTE", "1000000")
            .env("PIENTEGRA_CALLS_PER_MINUTE", "6000000")
            .env("PIENTEGRA_CALL_BURST", "1000000")
            // The production default: one info line per webhook and request.
            .env("RUST_LOG", "info")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let server = ServerProcess { child, pid, url };
        if !healthy_within(&server.url, Duration::from_secs(30)).await {
            bail!("the server did not answer /healthz within 30 s (log: {})", log.display());
        }
        Ok(server)
    }

    /// Resident set size, KiB, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
        line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS number")
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Whether `{base}/healthz` answers 2xx before `within` is over (asked every 50 ms).
pub async fn healthy_within(base: &str, within: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads an HTTP/1.1 answer's status line into `status` and its headers up
/// to the blank line after them (`line` is scratch space): its
/// Content-Length, 0 when it has none.
pub async fn read_head(
    reader: &mut (impl AsyncBufRead + Unpin),
    status: &mut String,
    line: &mut String,
) -> anyhow::Result<usize> {
    status.clear();
    if reader.read_line(status).await? == 0 {
        bail!("the server closed the connection");
    }
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 {
            bail!("the server closed the connection during the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(length);
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().context("Content-Length")?;
            }
        }
    }
}

/// A widget token for `user`, valid for two hours.
pub fn token(user: &str) -> anyhow::Result<String> {
    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let user = ExternalUserId::parse(user).map_err(|e| anyhow::anyhow!("user id {user}: {e}"))?;
    let now = Utc::now();
    Ok(key.mint(&user, None, now, now + chrono::Duration::hours(2)))
}

/// A stream ticket for `user` (what `POST /api/stream-ticket` answers for a
/// two-hour token), minted here so the figures time the streams, not the tickets.
pub fn stream_ticket(user: &str) -> anyhow::Result<String> {
    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let user = ExternalUserId::parse(user).map_err(|e| anyhow::anyhow!("user id {user}: {e}"))?;
    let now = Utc::now();
    let claims = Claims { user, label: None, expires_at: now + chrono::Duration::hours(2) };
    Ok(key.tickets().issue(&claims, now).ticket)
}

/// A deposit the server knows as RESERVED (seeded straight into its database).
#[derive(Clone, Debug)]
pub struct Seeded {
    pub intent_id: Uuid,
    pub user: String,
    pub reference_no: String,
    pub requested: u64,
    pub amount: u64,
}

impl Seeded {
    pub fn new(user: &str, amount: u64) -> Seeded {
        let intent_id = Uuid::new_v4();
        let reference_no = format!("BN{}", &intent_id.simple().to_string()[..10]);
        Seeded { intent_id, user: user.to_owned(), reference_no, requested: amount, amount }
    }
}

/// The path of a fresh database file in `dir`, migrated by the server's own code.
pub async fn fresh_database(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let storage = pientegra_server::storage::connect(&format!("sqlite://{}", path.display())).await?;
    drop(storage);
    Ok(path)
}

/// Inserts RESERVED deposits as `record_deposit` would, in one transaction
/// (seeding is not what is measured; one durable commit per row would take minutes).
pub async fn seed_deposits(db: &Path, deposits: &[Seeded]) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let mut tx = pool.begin().await?;
    let now = Utc::now().timestamp_millis();
    for d in deposits {
        let requested = i64::try_from(d.requested)?;
        let amount = i64::try_from(d.amount)?;
        sqlx::query(
            "INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                                   status, expires_at, created_at, updated_at)
             VALUES (?, ?, ?, '', ?, ?, 'TRY', 'RESERVED', ?, ?, ?)",
        )
        .bind(d.intent_id.to_string())
        .bind(&d.user)
        .bind(&d.reference_no)
        .bind(requested)
        .bind(amount)
        .bind(now + 1_800_000)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

/// A baseline loop's work for one webhook before its commit: a fresh
/// `intent.approved` body, signed as the sender would and verified as a
/// receiver does. Returns the event's key, the body and the time it was signed.
pub fn verified_baseline_webhook(secret: &str) -> anyhow::Result<(String, Vec<u8>, i64)> {
    let seeded = Seeded::new("baseline", 10_000);
    let body = approved_body(&seeded);
    let now = Utc::now().timestamp_millis();
    let header = pientegra_shared::signature::sign(secret, now, &body);
    pientegra_shared::signature::verify(&header, &body, &[secret], now)
        .map_err(|e| anyhow::anyhow!("baseline verify: {e}"))?;
    Ok((seeded.intent_id.to_string(), body, now))
}

/// The body of an `intent.approved` webhook crediting `d` in full.
pub fn approved_body(d: &Seeded) -> Vec<u8> {
    let body = json!({
        "eventId": Uuid::new_v4(),
        "eventType": "intent.approved",
        "occurredAt": pientegra_shared::time::format(&Utc::now()),
        "intent": {
            "id": d.intent_id,
            "referenceNo": d.reference_no,
            "externalUserId": d.user,
            "requestedAmount": d.requested.to_string(),
            "amount": d.amount.to_string(),
            "currency": "TRY",
            "status": "APPROVED",
        }
    });
    serde_json::to_vec(&body).expect("JSON")
}

/// POSTs a freshly signed webhook; Ok(outcome) on a 2xx.
pub async fn post_webhook(http: &reqwest::Client, server: &str, secret: &str, body: Vec<u8>) -> anyhow::Result<String> {
    let signature = pientegra_shared::signature::sign(secret, Utc::now().timestamp_millis(), &body);
    let response = http
        .post(format!("{server}/webhooks/pientegra"))
        .header("Content-Type", "application/json")
        .header(pientegra_shared::signature::HEADER, signature)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let json: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("webhook answered {status}: {json}");
    }
    Ok(json["outcome"].as_str().unwrap_or_default().to_owned())
}

/// Latency statistics over a sample, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
}

/// Nearest-rank percentiles of `samples`.
pub fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let pick = |q: usize| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        // Nearest rank: ceil(q/100 * n), 1-based.
        let rank = (q * samples.len()).div_ceil(100).max(1);
        samples[rank - 1].as_secs_f64() * 1e3
    };
    Stats { p50: pick(50), p99: pick(99) }
}

/// The median of a few repeated figures.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() { f64::NAN } else { values[values.len() / 2] }
}

/// The soft limit on open files (`RLIMIT_NOFILE`) of this process, which the
/// bench's server children inherit; 1024 when it cannot be read.
pub fn soft_open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1024)
}
