//! Figure 4: `POST /api/deposits` through the server against the same call
//! made straight to the sandbox (what the server adds on top of Pientegra),
//! and the floor under it: one durable commit alone on the same disk.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::report::{Row, Verdict};
use crate::stack::{self, ServerProcess};
use crate::{Ctx, Figure};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let samples = if ctx.quick { 100 } else { 1000 };
    let warmup = 30;
    let dir = tempfile::tempdir()?;
    // Every deposit holds a receiving account until it expires.
    let sandbox = stack::sandbox(2 * (samples + warmup) + 10).await?;
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    let server = ServerProcess::serve(&ctx.server_bin, &sandbox, &db, &dir.path().join("server.log")).await?;
    let floor = Floor::open(&dir.path().join("floor.db"))?;
    let result = measure(&server.url, &sandbox, &floor, samples, warmup).await;
    server.stop().await;
    sandbox.shutdown().await;
    let (mut via_server, mut direct, mut commits) = result?;
    let s = stack::stats(&mut via_server);
    let d = stack::stats(&mut direct);
    let c = stack::stats(&mut commits);
    let overhead_p99 = s.p99 - d.p99;
    Ok(Figure {
        rows: vec![Row {
            id: "4".into(),
            figure: "POST /api/deposits latency".into(),
            value: format!("p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99),
            baseline: format!(
                "direct POST /external/deposits: p50 {:.2} ms, p99 {:.2} ms; a durable 1-row commit alone: p50 {:.2} \
                 ms, p99 {:.2} ms",
                d.p50, d.p99, c.p50, c.p99
            ),
            ratio: format!("overhead p50 {:+.2} ms, p99 {overhead_p99:+.2} ms", s.p50 - d.p50),
            target: "p99 overhead ≤ 1 ms".into(),
            verdict: Verdict::of(overhead_p99 <= 1.0),
        }],
        notes: vec![format!(
            "#4: sequential requests, {warmup} warm-up then {samples} of each, alternating a server request (widget \
             token, fresh Idempotency-Key, amount 1,500.00 TRY, 10 users round robin; the server claims the key in \
             memory, calls the in-process sandbox, then records the deposit and its answer in one durable SQLite \
             commit) and a direct sandbox \
             request with the same body shape, and after each pair one durable commit of a 1-row insert on a scratch \
             SQLite file in the same directory (rusqlite in the bench's thread, WAL, synchronous=FULL: the least a \
             durable deposit record can cost on this disk), so all three see the same machine noise. Overhead = \
             server percentile − direct percentile."
        )],
    })
}

async fn measure(
    server: &str,
    sandbox: &pientegra_sandbox::Sandbox,
    floor: &Floor,
    samples: usize,
    warmup: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
    let http = reqwest::Client::new();
    let tokens: Vec<String> = (0..10).map(|i| stack::token(&format!("dep-{i}"))).collect::<Result<_, _>>()?;
    let mut via_server = Vec::new();
    let mut direct = Vec::new();
    let mut commits = Vec::new();
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        let response = http
            .post(format!("{server}/api/deposits"))
            .bearer_auth(&tokens[i % tokens.len()])
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"amount": "150000"}))
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let server_took = t0.elapsed();
        if status.as_u16() != 201 {
            bail!("POST /api/deposits answered {status}");
        }

        let t0 = Instant::now();
        let response = http
            .post(format!("{}/external/deposits", sandbox.api_base()))
            .bearer_auth(sandbox.api_key())
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"externalUserId": format!("dep-{}", i % 10), "amount": "150000"}))
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let direct_took = t0.elapsed();
        if !status.is_success() {
            bail!("POST /external/deposits answered {status}");
        }
        let commit_took = floor.commit(i)?;
        if i >= warmup {
            via_server.push(server_took);
            direct.push(direct_took);
            commits.push(commit_took);
        }
    }
    Ok((via_server, direct, commits))
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
