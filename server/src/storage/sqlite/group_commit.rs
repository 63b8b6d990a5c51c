//! Group commit for webhooks. SQLite has one writer, and a durable commit
//! (an fsync) costs more than applying a webhook, so webhooks are not each
//! given their own transaction: one task takes every webhook waiting, applies
//! them in one transaction, commits once, and only then answers them all.
//! Should any of them fail, the whole transaction rolls back and each is
//! applied again in a transaction of its own, so one bad webhook never costs
//! the others their commit. With one webhook waiting this is exactly one
//! transaction per webhook.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use anyhow::anyhow;
use futures::FutureExt;
use pientegra_shared::event::WebhookEvent;
use tokio::sync::{mpsc, oneshot};

use super::direct::Direct;
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
    pub(super) fn spawn(writer: Arc<Direct>) -> WebhookWriter {
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

async fn run(writer: Arc<Direct>, mut queue: mpsc::Receiver<Job>) {
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
async fn write_batch(writer: &Direct, batch: Vec<Job>) {
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
async fn commit(writer: &Direct, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>> {
    writer.write(|tx| apply_webhooks_in(tx, webhooks)).await
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::Utc;
    use pientegra_shared::Amount;
    use pientegra_shared::api::UserEvent;
    use pientegra_shared::event::{
        EventKind, IntentEvent, IntentSnapshot, WebhookEvent, WithdrawalEvent, WithdrawalSnapshot,
    };
    use pientegra_shared::status::IntentStatus;
    use pientegra_shared::wire::WithdrawalCreated;
    use uuid::Uuid;

    use super::super::SqliteStorage;
    use super::Outcome;
    use crate::ledger::BalanceModel;
    use crate::storage::{BalanceRow, InboxOutcome, NewDeposit, NewWithdrawal, Storage};

    fn approved(intent_id: Uuid) -> WebhookEvent {
        approved_for(intent_id, 1_000)
    }

    fn approved_for(intent_id: Uuid, minor: u64) -> WebhookEvent {
        WebhookEvent {
            event_id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            kind: EventKind::Intent {
                event: IntentEvent::Approved,
                intent: IntentSnapshot {
                    id: intent_id,
                    reference_no: "REF".into(),
                    external_user_id: "u".into(),
                    requested_amount: Amount::from_minor(minor),
                    amount: Amount::from_minor(minor),
                    currency: "TRY".into(),
                    status: IntentStatus::Approved,
                    rejected_reason: None,
                },
            },
        }
    }

    fn withdrawal(event: WithdrawalEvent, withdrawal_id: Uuid, minor: u64) -> WebhookEvent {
        WebhookEvent {
            event_id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            kind: EventKind::Withdrawal {
                event,
                withdrawal: WithdrawalSnapshot {
                    id: withdrawal_id,
                    reference_no: "W-REF".into(),
                    external_user_id: "u".into(),
                    amount: Amount::from_minor(minor),
                    currency: "TRY".into(),
                    status: event.status(),
                    rejected_reason: None,
                },
            },
        }
    }

    async fn storage_with_deposit(dir: &tempfile::TempDir, minor: u64) -> (SqliteStorage, Uuid) {
        let storage = SqliteStorage::connect(&format!("sqlite://{}", dir.path().join("db").display())).await.unwrap();
        let intent_id = record_deposit(&storage, minor).await;
        (storage, intent_id)
    }

    pub(in crate::storage::sqlite) async fn record_deposit(storage: &SqliteStorage, minor: u64) -> Uuid {
        let intent_id = Uuid::new_v4();
        let deposit = NewDeposit {
            intent_id,
            user_id: "u".into(),
            reference_no: "REF".into(),
            deposit_url: String::new(),
            requested_amount: Amount::from_minor(minor),
            amount: Amount::from_minor(minor),
            currency: "TRY".into(),
            expires_at: Utc::now(),
        };
        storage.record_deposit(deposit, None).await.unwrap();
        intent_id
    }

    /// Applies `events` as one batch: the writer is held until all are queued.
    async fn one_batch(storage: &SqliteStorage, events: &[WebhookEvent]) -> Vec<Outcome> {
        let held = storage.direct.hold().await;
        let applying = futures::future::join_all(events.iter().map(|e| storage.apply_webhook(e, b"{}")));
        let release = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
        };
        let (outcomes, ()) = tokio::join!(applying, release);
        outcomes
    }

    /// Events about the same deposit or withdrawal in one batch each see what
    /// the ones before them did: money moves once, in order, and the stream
    /// tells it in that order.
    #[tokio::test]
    async fn events_in_one_batch_see_the_ones_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, funding) = storage_with_deposit(&dir, 5_000).await;
        storage.apply_webhook(&approved_for(funding, 5_000), b"{}").await.unwrap();
        let request = NewWithdrawal {
            user_id: "u".into(),
            idempotency_key: "w-1".into(),
            amount: Amount::from_minor(2_000),
            currency: "TRY".into(),
            iban: "TR330006100519786457841326".into(),
            holder_name: "U".into(),
            balance_model: BalanceModel::PreReserve,
        };
        let reserved = storage.reserve_withdrawal(request).await.unwrap().unwrap().value;
        let withdrawal_id = Uuid::new_v4();
        let created = WithdrawalCreated {
            withdrawal_id,
            reference_no: "W-REF".into(),
            status: None,
            amount: None,
            currency: None,
        };
        storage.withdrawal_accepted(reserved.local_id, &created).await.unwrap();
        let deposit = record_deposit(&storage, 1_000).await;
        let seq_before = storage.last_event_seq("u").await.unwrap();

        let outcomes: Vec<InboxOutcome> = one_batch(
            &storage,
            &[
                approved(deposit),
                approved(deposit),
                withdrawal(WithdrawalEvent::Sent, withdrawal_id, 2_000),
                withdrawal(WithdrawalEvent::Returned, withdrawal_id, 2_000),
                withdrawal(WithdrawalEvent::Sent, withdrawal_id, 2_000),
            ],
        )
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().value)
        .collect();

        use InboxOutcome::{Applied, Stale};
        assert_eq!(outcomes, [Applied, Stale, Applied, Applied, Stale]);
        let balance = storage.balance("u").await.unwrap();
        let expected = BalanceRow { available: Amount::from_minor(6_000), reserved: Amount::ZERO };
        assert_eq!(balance, expected);
        assert_eq!(storage.ledger_sum("u").await.unwrap(), (6_000, 0));
        let events = storage.events_after("u", seq_before, 100).await.unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let (deposit, withdrawal, balance) =
            (UserEvent::DEPOSIT_UPDATED, UserEvent::WITHDRAWAL_UPDATED, UserEvent::BALANCE_UPDATED);
        assert_eq!(names, [deposit, balance, withdrawal, balance, withdrawal, balance]);
        // The balance events count the money as it moved: 4,000 after the credit, 4,000
        // after SENT (the reservation goes), 6,000 after RETURNED.
        let available: Vec<&str> = events.iter().filter(|e| e.name == balance).map(|e| e.data.as_str()).collect();
        assert!(available[0].contains("\"available\":\"4000\""), "{available:?}");
        assert!(available[2].contains("\"available\":\"6000\""), "{available:?}");
    }

    /// One webhook that fails inside a batch costs the others nothing.
    #[tokio::test]
    async fn a_failing_webhook_in_a_batch_leaves_the_others_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, first) = storage_with_deposit(&dir, 1_000).await;
        let mut intents = vec![first];
        for _ in 1..5 {
            intents.push(record_deposit(&storage, 1_000).await);
        }
        // A row this server cannot read makes the webhook about it fail.
        storage
            .direct
            .hold()
            .await
            .execute("UPDATE deposits SET status = 'BROKEN' WHERE intent_id = ?", [intents[2].to_string()])
            .unwrap();
        let events: Vec<WebhookEvent> = intents.iter().map(|&id| approved(id)).collect();

        let outcomes = one_batch(&storage, &events).await;

        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Ok(changed) => assert!(i != 2 && changed.value == InboxOutcome::Applied, "{i}: {changed:?}"),
                Err(e) => assert_eq!(i, 2, "{e:#}"),
            }
        }
        assert_eq!(storage.balance("u").await.unwrap().available, Amount::from_minor(4_000));
        // The failed one was not recorded, so Pientegra's retry is not taken for a duplicate.
        let inbox: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_inbox").fetch_one(storage.reads.sqlite()).await.unwrap();
        assert_eq!(inbox, 4);
    }
}
