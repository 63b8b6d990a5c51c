//! Group commit for webhooks. SQLite has one writer, and a durable commit
//! (an fsync) costs more than applying a webhook, so webhooks are not each
//! given their own transaction: one task takes every webhook waiting, applies
//! each under its own savepoint in one transaction, commits once, and only
//! then answers them all. A webhook that fails rolls back to its savepoint
//! and gets its error; the others still commit. With one webhook waiting this
//! is exactly one transaction per webhook, as before.

use anyhow::anyhow;
use pientegra_shared::event::WebhookEvent;
use sqlx::{Connection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::apply_webhook_in;
use crate::storage::{Changed, InboxOutcome, Result};

/// At most this many webhooks share one commit.
const MAX_BATCH: usize = 256;
/// Webhooks waiting beyond this make their senders wait too.
const QUEUE: usize = 1024;

type Outcome = Result<Changed<InboxOutcome>>;

struct Job {
    event: WebhookEvent,
    body: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

/// The handle to the task that writes webhooks.
pub(super) struct WebhookWriter {
    jobs: mpsc::Sender<Job>,
}

impl WebhookWriter {
    /// Starts the task; it stops when the handle is dropped.
    pub(super) fn spawn(writer: SqlitePool) -> WebhookWriter {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, queue));
        WebhookWriter { jobs }
    }

    /// Applies one webhook; returns once the transaction holding it is durable.
    pub(super) async fn apply(&self, event: &WebhookEvent, body: &[u8]) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let job = Job { event: event.clone(), body: body.to_vec(), reply };
        self.jobs.send(job).await.map_err(|_| anyhow!("the webhook writer has stopped"))?;
        answer.await.map_err(|_| anyhow!("the webhook writer stopped before committing"))?
    }
}

async fn run(writer: SqlitePool, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes = match commit(&writer, &batch).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Nothing of the batch is stored: every sender gets a 500 and Pientegra retries.
                let why = format!("{e:#}");
                batch.iter().map(|_| Err(anyhow!("committing a batch of webhooks: {why}"))).collect()
            }
        };
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            // The sender may have gone (its client hung up): the webhook stays applied.
            let _ = job.reply.send(outcome);
        }
    }
}

/// Applies every job of `batch`, each under its own savepoint, then commits once.
async fn commit(writer: &SqlitePool, batch: &[Job]) -> Result<Vec<Outcome>> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let mut savepoint = tx.begin().await?;
        let outcome = apply_webhook_in(&mut savepoint, &job.event, &job.body).await;
        if outcome.is_ok() {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}
