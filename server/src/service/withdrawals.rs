//! Withdrawals: the amount is reserved from the account (one transaction),
//! then the withdrawal is sent to Pientegra, which pays it out after review.

use pientegra_shared::ids::{ExternalUserId, HolderName};
use pientegra_shared::wire::{CreateWithdrawalRequest, DEFAULT_CURRENCY};
use pientegra_shared::{Amount, Iban, Locale};

use super::Records;
use crate::ledger::BalanceModel;
use crate::metrics::Metrics;
use crate::pientegra::{PientegraApi, PientegraError};
use crate::storage::{NewWithdrawal, WithdrawalRecord, WithdrawalState};

/// Reserves withdrawals and sends them to Pientegra.
pub struct Withdrawals<'a> {
    pub(super) records: Records<'a>,
    pub(super) pientegra: &'a dyn PientegraApi,
    pub(super) metrics: &'a Metrics,
    pub(super) balance_model: BalanceModel,
}

/// A withdrawal, as asked for.
pub struct WithdrawalRequest {
    /// The ledger account it draws on: a user's wallet, or a PGM order's account.
    pub account: String,
    /// The same key of the same account again is the same withdrawal.
    pub key: String,
    pub amount: Amount,
    pub iban: Iban,
    pub holder: HolderName,
}

/// Why a withdrawal was not made.
#[derive(Debug, thiserror::Error)]
pub enum WithdrawalError {
    /// The account cannot cover the amount; nothing was reserved.
    #[error("insufficient funds: {} available", .available.format(Locale::En))]
    InsufficientFunds { available: Amount },
    /// Pientegra refused this withdrawal when it was first sent; its reason.
    #[error("{reason}")]
    Refused { reason: String },
    /// Pientegra refused it now (the reservation is released), or gave no
    /// definite answer (the reservation stays until a resubmission settles it).
    #[error(transparent)]
    Provider(#[from] PientegraError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Withdrawals<'_> {
    /// Reserves the amount, then sends the withdrawal to Pientegra.
    pub async fn request(&self, request: WithdrawalRequest) -> Result<WithdrawalRecord, WithdrawalError> {
        let reserved = self.reserve(request).await?;
        self.submit(reserved).await
    }

    /// Checks the balance and reserves the amount (or, final-debit, checks it
    /// against pending withdrawals), recording the withdrawal as SUBMITTING.
    /// A request seen before returns its existing record.
    pub async fn reserve(&self, request: WithdrawalRequest) -> Result<WithdrawalRecord, WithdrawalError> {
        let reserved = self
            .records
            .reserve_withdrawal(NewWithdrawal {
                user_id: request.account,
                idempotency_key: request.key,
                amount: request.amount,
                currency: DEFAULT_CURRENCY.to_owned(),
                iban: request.iban.as_str().to_owned(),
                holder_name: request.holder.as_str().to_owned(),
                balance_model: self.balance_model,
            })
            .await?;
        reserved.map_err(|short| WithdrawalError::InsufficientFunds { available: short.available })
    }

    /// Sends a reserved withdrawal to Pientegra (again, if its first outcome
    /// was unknown) with the key derived from its local id, and records the
    /// answer. A withdrawal Pientegra already answered is not sent again.
    pub async fn submit(&self, record: WithdrawalRecord) -> Result<WithdrawalRecord, WithdrawalError> {
        match record.state {
            WithdrawalState::Known(_) => return Ok(record),
            WithdrawalState::Refused => {
                let reason =
                    record.rejected_reason.unwrap_or_else(|| "the payment provider refused this withdrawal".into());
                return Err(WithdrawalError::Refused { reason });
            }
            WithdrawalState::Submitting => {}
        }
        let key = super::derived_key("withdrawal", &record.local_id.to_string());
        match self.pientegra.create_withdrawal(key, &sent_request(&record)?).await {
            Ok(created) => {
                let accepted = self.records.withdrawal_accepted(record.local_id, &created).await?;
                Metrics::inc(&self.metrics.withdrawals_created);
                Ok(accepted)
            }
            Err(err) if err.is_definite_refusal() => {
                let reason = err.refusal().unwrap_or_else(|| err.to_string());
                self.records.withdrawal_refused(record.local_id, &reason).await?;
                Err(err.into())
            }
            // Unknown outcome: the reservation stays; a retry with the same key, or the
            // background resolver, submits again with the same Pientegra key.
            Err(err) => Err(err.into()),
        }
    }
}

/// What Pientegra is sent for a reserved withdrawal.
fn sent_request(record: &WithdrawalRecord) -> anyhow::Result<CreateWithdrawalRequest> {
    Ok(CreateWithdrawalRequest {
        // A PGM refund draws on its order's account; Pientegra knows it by the customer.
        external_user_id: ExternalUserId::parse(crate::ledger::pientegra_user(&record.user_id))
            .map_err(|e| anyhow::anyhow!("stored user id: {e}"))?,
        external_user_label: None,
        amount: record.amount,
        currency: Some(record.currency.clone()),
        target_iban: Iban::parse(&record.iban).map_err(|e| anyhow::anyhow!("stored IBAN: {e}"))?,
        target_holder_name: HolderName::parse(&record.holder_name)
            .map_err(|e| anyhow::anyhow!("stored holder: {e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use pientegra_shared::ids::HolderName;
    use pientegra_shared::{Amount, Iban};
    use uuid::Uuid;

    use super::*;
    use crate::service::testing::{REFUSAL, World};
    use crate::storage::BalanceRow;

    fn request(amount: u64) -> WithdrawalRequest {
        WithdrawalRequest {
            account: "ayse".into(),
            key: Uuid::new_v4().to_string(),
            amount: Amount::from_minor(amount),
            iban: Iban::parse("TR330006100519786457841326").expect("a valid IBAN"),
            holder: HolderName::parse("Ayşe Yılmaz").expect("a valid name"),
        }
    }

    #[tokio::test]
    async fn a_withdrawal_beyond_the_balance_reserves_nothing_and_sends_nothing() {
        let world = World::new().await;
        world.credit("ayse", Uuid::new_v4(), Amount::from_minor(1_000)).await;
        let err = world.state.withdrawals().request(request(2_000)).await.expect_err("refused");
        assert!(
            matches!(err, WithdrawalError::InsufficientFunds { available } if available == Amount::from_minor(1_000)),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "insufficient funds: ₺10.00 available");
        assert_eq!(world.pientegra.withdrawals.load(Ordering::SeqCst), 0);
        let balance = world.state.storage.balance("ayse").await.expect("a balance");
        assert_eq!(balance, BalanceRow { available: Amount::from_minor(1_000), reserved: Amount::ZERO });
    }

    #[tokio::test]
    async fn a_refused_withdrawal_gives_the_reservation_back_wakes_the_user_and_is_never_sent_again() {
        let world = World::new().await;
        world.credit("ayse", Uuid::new_v4(), Amount::from_minor(10_000)).await;
        let stream = world.state.hub.subscribe("ayse");
        let asked = request(4_000);
        let key = asked.key.clone();
        let err = world.state.withdrawals().request(asked).await.expect_err("refused");
        assert!(matches!(err, WithdrawalError::Provider(PientegraError::Refused { .. })), "{err:?}");
        assert!(stream.wake.has_changed().expect("the hub is alive"), "the user's stream wakes");
        let balance = world.state.storage.balance("ayse").await.expect("a balance");
        assert_eq!(balance, BalanceRow { available: Amount::from_minor(10_000), reserved: Amount::ZERO });

        let record = world.state.storage.withdrawal_by_key("ayse", &key).await.expect("a read").expect("the record");
        let reason = format!("Pientegra refused the request: {REFUSAL}");
        assert_eq!((record.state, record.rejected_reason.as_deref()), (WithdrawalState::Refused, Some(&*reason)));
        let again = world.state.withdrawals().submit(record).await.expect_err("still refused");
        assert!(matches!(&again, WithdrawalError::Refused { reason: kept } if *kept == reason), "{again:?}");
        assert_eq!(world.pientegra.withdrawals.load(Ordering::SeqCst), 1, "sent once");
    }
}
