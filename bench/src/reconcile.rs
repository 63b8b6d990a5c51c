//! Figure 5: one reconciliation pass over a window of 100,000 intents whose
//! local records all match, against only listing them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use futures::TryStreamExt;
use pientegra_server::pientegra::{HttpClient, RetryPolicy};
use pientegra_server::reconcile::Reconciler;
use pientegra_shared::wire::{DepositCreated, Intent, ListQuery};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Mutex;

use crate::report::{Row, Verdict};
use crate::stack::{self, Seeded};
use crate::{Ctx, Figure};

const INTENTS: usize = 100_000;
/// Seeding stops here and the pass is measured on what was seeded (then scaled).
const SEED_BUDGET: Duration = Duration::from_secs(420);

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let wanted = if ctx.quick { 20_000 } else { INTENTS };
    let runs = if ctx.quick { 1 } else { 3 };
    let dir = tempfile::tempdir()?;
    let sandbox = stack::sandbox(wanted + 10).await?;
    let window_from = Utc::now() - chrono::Duration::minutes(1);

    let seeding = Instant::now();
    let seeded = seed_sandbox(&sandbox, wanted).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let n = seeded.len();
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    stack::seed_deposits(&db, &seeded).await?;
    let window_to = Utc::now() + chrono::Duration::minutes(1);

    let storage = pientegra_server::storage::connect(&format!("sqlite://{}", db.display())).await?;
    let client =
        HttpClient::new(&sandbox.api_base(), SecretString::from(sandbox.api_key().to_owned()), RetryPolicy::default())?;
    let hub = pientegra_server::sse::Hub::default();
    let reconciler = Reconciler { storage: storage.as_ref(), pientegra: &client, hub: &hub };
    let query = ListQuery {
        created_from: Some(window_from),
        created_to: Some(window_to),
        limit: Some(100),
        ..ListQuery::default()
    };

    // Warm-up: one listing.
    let listed: Vec<Intent> = pientegra_server::pientegra::all_intents(&client, query.clone()).try_collect().await?;
    if listed.len() != n {
        bail!("the listing returned {} intents, {n} were seeded", listed.len());
    }
    let mut list_secs = Vec::new();
    let mut pass_secs = Vec::new();
    let mut findings = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let count =
            pientegra_server::pientegra::all_intents(&client, query.clone()).try_collect::<Vec<Intent>>().await?.len();
        list_secs.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(count == n, "listing returned {count}");

        let t0 = Instant::now();
        let report = reconciler.run(window_from, window_to, true).await?;
        pass_secs.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(report.intents_checked == n, "the pass checked {} intents", report.intents_checked);
        findings = report.findings.len();
    }
    sandbox.shutdown().await;
    let list = stack::median(&mut list_secs);
    let pass = stack::median(&mut pass_secs);
    let scale = INTENTS as f64 / n as f64;
    let (value, baseline, verdict_secs) = if n == INTENTS {
        (format!("{pass:.2} s ({findings} findings)"), format!("list only: {list:.2} s"), pass)
    } else {
        (
            format!("{:.2} s extrapolated ({pass:.2} s for {n} intents, {findings} findings)", pass * scale),
            format!("list only: {:.2} s extrapolated ({list:.2} s for {n})", list * scale),
            pass * scale,
        )
    };
    Ok(Figure {
        rows: vec![Row {
            id: "5".into(),
            figure: format!("reconcile {INTENTS} matching intents, one window"),
            value,
            baseline,
            ratio: format!("{:.2}x", pass / list),
            target: "≤ 10 s total".into(),
            verdict: Verdict::of(verdict_secs <= 10.0),
        }],
        notes: vec![format!(
            "#5: {n} deposit intents created through the sandbox's External API (`POST /external/deposits`, 32 at a \
             time, rate limit raised) in {seed_secs:.1} s{}; the same {n} RESERVED deposits written to the server's \
             SQLite database in one transaction. Then `Reconciler::run(window, apply=true)` in process (HTTP client \
             to the in-process sandbox, pages of 100) against `pientegra::all_intents` over the same window alone; \
             median of {runs} run(s) each, after one warm-up listing.{}",
            if n < wanted { format!(" (stopped at the {SEED_BUDGET:?} seeding budget)") } else { String::new() },
            if n == INTENTS { String::new() } else { format!(" Times for {INTENTS} are scaled linearly from {n}.") }
        )],
    })
}

/// Creates `count` intents through the External API, 32 at a time, within [`SEED_BUDGET`].
async fn seed_sandbox(sandbox: &pientegra_sandbox::Sandbox, count: usize) -> anyhow::Result<Vec<Seeded>> {
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let deadline = Instant::now() + SEED_BUDGET;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, next, out) = (http.clone(), next.clone(), out.clone());
        let (url, key) = (format!("{}/external/deposits", sandbox.api_base()), sandbox.api_key().to_owned());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() > deadline {
                    return anyhow::Ok(());
                }
                let user = format!("rec-{}", i % 5_000);
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                    .json(&json!({"externalUserId": user, "amount": "150000"}))
                    .send()
                    .await?;
                let status = response.status();
                if !status.is_success() {
                    bail!("seeding: POST /external/deposits answered {status}: {}", response.text().await?);
                }
                let created: DepositCreated = response.json().await.context("seeding: deposit body")?;
                out.lock().await.push(Seeded {
                    intent_id: created.intent_id,
                    user,
                    reference_no: created.reference_no,
                    requested: created.requested_amount.minor(),
                    amount: created.amount.minor(),
                });
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("seeding task")??;
    }
    let seeded = std::mem::take(&mut *out.lock().await);
    Ok(seeded)
}
