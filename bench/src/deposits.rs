//! Figure 4: `POST /api/deposits` through the server against the same call
//! made straight to the sandbox (what the server adds on top of Pientegra),
//! and two floors under it: the same call through a bare proxy process (what
//! any server in between adds) and one durable commit alone on the same disk.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::proxy::ProxyProcess;
use crate::report::{Row, Verdict};
use crate::stack::{self, ServerProcess};
use crate::{Ctx, Figure};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let samples = if ctx.quick { 100 } else { 1000 };
    let warmup = 30;
    let dir = tempfile::tempdir()?;
    // Every deposit holds a receiving account until it expires.
    let sandbox = stack::sandbox(3 * (samples + warmup) + 10).await?;
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    let server = ServerProcess::serve(&ctx.server_bin, &sandbox, &db, &dir.path().join("server.log")).await?;
    let proxy = ProxyProcess::start(&std::env::current_exe()?, &sandbox).await?;
    let floor = Floor::open(&dir.path().join("floor.db"))?;
    let targets = Targets { server: &server.url, proxy: &proxy.url, sandbox: &sandbox };
    let result = measure(&targets, &floor, samples, warmup).await;
    proxy.stop().await;
    server.stop().await;
    sandbox.shutdown().await;
    let mut timings = result?;
    let s = stack::stats(&mut timings.server);
    let d = stack::stats(&mut timings.direct);
    let p = stack::stats(&mut timings.proxy);
    let c = stack::stats(&mut timings.commits);
    let overhead_p99 = s.p99 - d.p99;
    Ok(Figure {
        rows: vec![Row {
            id: "4".into(),
            figure: "POST /api/deposits latency".into(),
            value: format!("p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99),
            baseline: format!(
                "direct POST /external/deposits: p50 {:.2} ms, p99 {:.2} ms; through a bare proxy: p50 {:.2} ms, p99 \
                 {:.2} ms; a durable 1-row commit alone: p50 {:.2} ms, p99 {:.2} ms",
                d.p50, d.p99, p.p50, p.p99, c.p50, c.p99
            ),
            ratio: format!(
                "overhead p50 {:+.2} ms, p99 {overhead_p99:+.2} ms (the bare proxy's: p50 {:+.2} ms, p99 {:+.2} ms)",
                s.p50 - d.p50,
                p.p50 - d.p50,
                p.p99 - d.p99
            ),
            target: "p99 overhead ≤ 1 ms".into(),
            verdict: Verdict::of(overhead_p99 <= 1.0),
        }],
        notes: vec![format!(
            "#4: sequential requests, {warmup} warm-up then {samples} of each, alternating a server request (widget \
             token, fresh Idempotency-Key, amount 1,500.00 TRY, 10 users round robin; the server claims the key in \
             memory, calls the in-process sandbox, then records the deposit and its answer in one durable SQLite \
             commit), a direct sandbox request with the same body shape, the same request through a bare proxy \
             (`pientegra-bench proxy`, a separate process: axum takes the body and reqwest passes it on to the \
             sandbox, with no token, JSON, claim or database: what any server in between adds on this machine), and \
             one durable commit of a 1-row insert on a scratch SQLite file in the same directory (rusqlite in the \
             bench's thread, WAL, synchronous=FULL: the least a durable deposit record can cost on this disk), so \
             all four see the same machine noise. Overhead = server percentile − direct percentile."
        )],
    })
}

/// Where figure 4 sends its requests.
struct Targets<'a> {
    server: &'a str,
    proxy: &'a str,
    sandbox: &'a pientegra_sandbox::Sandbox,
}

/// Each sample's time, by path.
struct Timings {
    server: Vec<Duration>,
    direct: Vec<Duration>,
    proxy: Vec<Duration>,
    commits: Vec<Duration>,
}

async fn measure(targets: &Targets<'_>, floor: &Floor, samples: usize, warmup: usize) -> anyhow::Result<Timings> {
    let http = reqwest::Client::new();
    let tokens: Vec<String> = (0..10).map(|i| stack::token(&format!("dep-{i}"))).collect::<Result<_, _>>()?;
    let server_url = format!("{}/api/deposits", targets.server);
    let direct_url = format!("{}/external/deposits", targets.sandbox.api_base());
    let proxy_url = format!("{}/api/deposits", targets.proxy);
    let mut timings = Timings { server: Vec::new(), direct: Vec::new(), proxy: Vec::new(), commits: Vec::new() };
    for i in 0..warmup + samples {
        let server = http.post(&server_url).bearer_auth(&tokens[i % tokens.len()]).json(&json!({"amount": "150000"}));
        let server_took = timed(server, "POST /api/deposits").await?;
        let body = json!({"externalUserId": format!("dep-{}", i % 10), "amount": "150000"});
        let direct = http.post(&direct_url).bearer_auth(targets.sandbox.api_key()).json(&body);
        let direct_took = timed(direct, "POST /external/deposits").await?;
        let proxied = http.post(&proxy_url).json(&body);
        let proxy_took = timed(proxied, "POST /external/deposits through the proxy").await?;
        let commit_took = floor.commit(i)?;
        if i >= warmup {
            timings.server.push(server_took);
            timings.direct.push(direct_took);
            timings.proxy.push(proxy_took);
            timings.commits.push(commit_took);
        }
    }
    Ok(timings)
}

/// Sends `request` with a fresh Idempotency-Key and times it to the last byte of a 201.
pub(crate) async fn timed(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Duration> {
    let request = request.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    let t0 = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let _ = response.bytes().await?;
    let took = t0.elapsed();
    if status.as_u16() != 201 {
        bail!("{what} answered {status}");
    }
    Ok(took)
}

/// 100 bytes, about the text of a deposit row.
const ROW_DATA: &str =
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

/// A scratch SQLite file with the server's durability settings.
struct Floor(rusqlite::Connection);

impl Floor {
    fn open(file: &std::path::Path) -> anyhow::Result<Floor> {
        let conn = rusqlite::Connection::open(file)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute("CREATE TABLE rows (n INTEGER NOT NULL, data TEXT NOT NULL)", [])?;
        Ok(Floor(conn))
    }

    /// One row in one durable transaction, timed.
    fn commit(&self, n: usize) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        self.0.execute_batch("BEGIN IMMEDIATE")?;
        self.0.prepare_cached("INSERT INTO rows VALUES (?, ?)")?.execute(rusqlite::params![n, ROW_DATA])?;
        self.0.execute_batch("COMMIT")?;
        Ok(t0.elapsed())
    }
}
