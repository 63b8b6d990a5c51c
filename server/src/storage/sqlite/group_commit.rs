//! SQLite's side of [group commit](crate::storage::group_commit): a batch is
//! one write transaction on the writer connection.

use async_trait::async_trait;

use super::apply_webhooks_in;
use super::direct::Direct;
use crate::storage::group_commit::{CommitWebhooks, Webhook};
use crate::storage::{Changed, InboxOutcome, Result};

#[async_trait]
impl CommitWebhooks for Direct {
    async fn commit(&self, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>> {
        self.write(|tx| apply_webhooks_in(tx, webhooks)).await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use pientegra_shared::Amount;
    use pientegra_shared::event::WebhookEvent;
    use uuid::Uuid;

    use super::super::SqliteStorage;
    use crate::storage::testing::{self, approved, record_deposit};
    use crate::storage::{Changed, InboxOutcome, Ledger, Result};

    async fn storage_with_deposit(dir: &tempfile::TempDir, minor: u64) -> (SqliteStorage, Uuid) {
        let storage = SqliteStorage::connect(&format!("sqlite://{}", dir.path().join("db").display())).await.unwrap();
        let intent_id = record_deposit(&storage, minor).await;
        (storage, intent_id)
    }

    /// Applies `events` as one batch: the writer is held until all are queued.
    async fn one_batch(storage: &SqliteStorage, events: &[WebhookEvent]) -> Vec<Result<Changed<InboxOutcome>>> {
        let held = storage.direct.hold().await;
        let applying = futures::future::join_all(events.iter().map(|e| storage.apply_webhook(e, b"{}")));
        let release = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
        };
        let (outcomes, ()) = tokio::join!(applying, release);
        outcomes
    }

    #[tokio::test]
    async fn events_in_one_batch_see_the_ones_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::connect(&format!("sqlite://{}", dir.path().join("db").display())).await.unwrap();
        testing::events_in_one_batch_see_the_ones_before_them(&storage, |events| async {
            let events = events;
            one_batch(&storage, &events).await
        })
        .await;
    }

    #[tokio::test]
    async fn a_recorded_deposit_is_stored_with_its_event_and_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::connect(&format!("sqlite://{}", dir.path().join("db").display())).await.unwrap();
        testing::a_recorded_deposit_is_stored_with_its_event_and_its_answer(&storage).await;
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
