//! Group commit for webhooks. SQLite has one writer, and a durable commit
//! (an fsync) costs more than applying a webhook, so webhooks are not each
//! given their own transaction: one task takes every webhook waiting, applies
//! them in one transaction, commits once, and only then answers them all.
//! Should any of them fail, the whole transaction rolls back and each is
//! applied again in a transaction of its own, so one bad webhook never costs
//! the others their commit. With one webhook waiting this is exactly one
//! transaction per webhook.

use std::panic::AssertUnwindSafe;

use anyhow::anyhow;
use futures::FutureExt;
use pientegra_shared::event::WebhookEvent;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{Webhook, apply_webhooks_in};
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
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Should a bug panic inside a batch, its transaction rolls back, its
        // senders get an error (Pientegra retries) and the writer goes on.
        if AssertUnwindSafe(write_batch(&writer, batch)).catch_unwind().await.is_err() {
            tracing::error!("a batch of webhooks panicked; none of it was stored");
        }
    }
}

/// Applies and commits `batch`, then answers each job.
async fn write_batch(writer: &SqlitePool, batch: Vec<Job>) {
    let webhooks: Vec<Webhook<'_>> = batch.iter().map(|job| (&job.event, job.body.as_slice())).collect();
    let outcomes = match commit(writer, &webhooks).await {
        Ok(changes) => changes.into_iter().map(Ok).collect(),
        Err(e) if webhooks.len() == 1 => vec![Err(e)],
        // Rare (a storage error): find which one fails, commit the others.
        Err(_) => {
            let mut outcomes = Vec::with_capacity(webhooks.len());
            for webhook in &webhooks {
                outcomes.push(commit(writer, std::slice::from_ref(webhook)).await.map(|mut one| one.remove(0)));
            }
            outcomes
        }
    };
    drop(webhooks);
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        // The sender may have gone (its client hung up): the webhook stays applied.
        let _ = job.reply.send(outcome);
    }
}

/// Applies `webhooks` in one transaction and commits it.
async fn commit(writer: &SqlitePool, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>> {
    let mut tx = writer.begin().await?;
    let changes = apply_webhooks_in(&mut tx, webhooks).await?;
    tx.commit().await?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use pientegra_shared::Amount;
    use pientegra_shared::event::{EventKind, IntentEvent, IntentSnapshot, WebhookEvent};
    use pientegra_shared::status::IntentStatus;
    use uuid::Uuid;

    use super::super::SqliteStorage;
    use crate::storage::{InboxOutcome, NewDeposit, Storage};

    fn approved(intent_id: Uuid) -> WebhookEvent {
        WebhookEvent {
            event_id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            kind: EventKind::Intent {
                event: IntentEvent::Approved,
                intent: IntentSnapshot {
                    id: intent_id,
                    reference_no: "REF".into(),
                    external_user_id: "u".into(),
                    requested_amount: Amount::from_minor(1_000),
                    amount: Amount::from_minor(1_000),
                    currency: "TRY".into(),
                    status: IntentStatus::Approved,
                    rejected_reason: None,
                },
            },
        }
    }

    /// One webhook that fails inside a batch costs the others nothing.
    #[tokio::test]
    async fn a_failing_webhook_in_a_batch_leaves_the_others_committed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::connect(&format!("sqlite://{}", dir.path().join("db").display())).await.unwrap();
        let mut intents = Vec::new();
        for _ in 0..5 {
            let intent_id = Uuid::new_v4();
            let deposit = NewDeposit {
                intent_id,
                user_id: "u".into(),
                reference_no: "REF".into(),
                deposit_url: String::new(),
                requested_amount: Amount::from_minor(1_000),
                amount: Amount::from_minor(1_000),
                currency: "TRY".into(),
                expires_at: Utc::now(),
            };
            storage.record_deposit(deposit, None).await.unwrap();
            intents.push(intent_id);
        }
        // A row this server cannot read makes the webhook about it fail.
        sqlx::query("UPDATE deposits SET status = 'BROKEN' WHERE intent_id = ?")
            .bind(intents[2].to_string())
            .execute(&storage.writer)
            .await
            .unwrap();
        let events: Vec<WebhookEvent> = intents.iter().map(|&id| approved(id)).collect();

        // Hold the writer, so the webhooks queue up and go in together.
        let held = storage.writer.acquire().await.unwrap();
        let applying = futures::future::join_all(events.iter().map(|e| storage.apply_webhook(e, b"{}")));
        let release = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
        };
        let (outcomes, ()) = tokio::join!(applying, release);

        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Ok(changed) => assert!(i != 2 && changed.value == InboxOutcome::Applied, "{i}: {changed:?}"),
                Err(e) => assert_eq!(i, 2, "{e:#}"),
            }
        }
        assert_eq!(storage.balance("u").await.unwrap().available, Amount::from_minor(4_000));
        // The failed one was not recorded, so Pientegra's retry is not taken for a duplicate.
        let inbox: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_inbox").fetch_one(&storage.reader).await.unwrap();
        assert_eq!(inbox, 4);
    }
}
