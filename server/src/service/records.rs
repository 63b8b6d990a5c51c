//! The storage's changes, each announced after its commit.

use pientegra_shared::event::WebhookEvent;
use pientegra_shared::wire::WithdrawalCreated;
use uuid::Uuid;

use crate::sse::Hub;
use crate::storage::{
    Changed, DepositRecord, DepositReply, InboxOutcome, InsufficientFunds, NewDeposit, NewWithdrawal, Storage,
    WithdrawalRecord,
};

/// The storage's writes, each followed by a wake-up of the streams of every
/// user it touched: a woken stream reads its new events from storage. The use
/// cases change records only through it, so none can commit a change and
/// leave a user's stream asleep until its next wake-up.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    storage: &'a dyn Storage,
    hub: &'a Hub,
}

impl<'a> Records<'a> {
    /// Writes to `storage`, waking the streams of `hub`.
    pub fn new(storage: &'a dyn Storage, hub: &'a Hub) -> Records<'a> {
        Records { storage, hub }
    }

    /// The storage, for reads.
    pub fn storage(&self) -> &'a dyn Storage {
        self.storage
    }

    /// Wakes the streams a committed change touched; its value.
    fn announce<T>(&self, changed: Changed<T>) -> T {
        self.hub.notify(&changed.touched);
        changed.value
    }

    /// Records a deposit Pientegra created (see [`Storage::record_deposit`]).
    pub async fn record_deposit(
        &self,
        deposit: NewDeposit,
        reply: Option<&DepositReply<'_>>,
    ) -> anyhow::Result<DepositRecord> {
        Ok(self.announce(self.storage.record_deposit(deposit, reply).await?))
    }

    /// Moves a RESERVED deposit to PENDING_REVIEW; whether anything changed.
    pub async fn note_under_review(&self, intent_id: Uuid) -> anyhow::Result<bool> {
        Ok(self.announce(self.storage.note_under_review(intent_id).await?))
    }

    /// Applies an event: a signed webhook, or one reconciliation made up.
    pub async fn apply_event(&self, event: &WebhookEvent, body: &[u8]) -> anyhow::Result<InboxOutcome> {
        Ok(self.announce(self.storage.apply_webhook(event, body).await?))
    }

    /// Reserves a withdrawal request, unless the balance is short.
    pub async fn reserve_withdrawal(
        &self,
        request: NewWithdrawal,
    ) -> anyhow::Result<Result<WithdrawalRecord, InsufficientFunds>> {
        Ok(self.storage.reserve_withdrawal(request).await?.map(|reserved| self.announce(reserved)))
    }

    /// Pientegra accepted a withdrawal.
    pub async fn withdrawal_accepted(
        &self,
        local_id: Uuid,
        created: &WithdrawalCreated,
    ) -> anyhow::Result<WithdrawalRecord> {
        Ok(self.announce(self.storage.withdrawal_accepted(local_id, created).await?))
    }

    /// Pientegra definitely refused a withdrawal: its reservation is released.
    pub async fn withdrawal_refused(&self, local_id: Uuid, reason: &str) -> anyhow::Result<WithdrawalRecord> {
        Ok(self.announce(self.storage.withdrawal_refused(local_id, reason).await?))
    }
}

#[cfg(test)]
mod tests {
    use pientegra_shared::Amount;
    use uuid::Uuid;

    use crate::service::testing::World;

    #[tokio::test]
    async fn a_committed_change_wakes_the_streams_of_the_users_it_touched() {
        let world = World::new().await;
        let hub = &world.state.hub;
        let (ayse, mehmet) = (hub.subscribe("ayse"), hub.subscribe("mehmet"));
        world.credit("ayse", Uuid::new_v4(), Amount::from_minor(15_000)).await;
        assert!(ayse.wake.has_changed().expect("the hub is alive"), "the credited user's stream wakes");
        assert!(!mehmet.wake.has_changed().expect("the hub is alive"), "nobody else's does");
    }
}
