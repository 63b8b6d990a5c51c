//! The Mia-Platform PGM facade's use cases. A payment is a deposit intent
//! whose money is held in the order's own ledger account; a refund is a
//! withdrawal from that account to the customer's IBAN, at most what is left
//! of the payment.

use anyhow::Context;
use pientegra_shared::ids::{ExternalUserId, HolderName, UserLabel};
use pientegra_shared::status::IntentStatus;
use pientegra_shared::wire::{CreateDepositRequest, DEFAULT_CURRENCY};
use pientegra_shared::{Amount, Iban, Locale};
use uuid::Uuid;

use super::deposits::new_deposit;
use super::{DepositError, Deposits, WithdrawalError, WithdrawalRequest, Withdrawals};
use crate::ledger;
use crate::metrics::Metrics;
use crate::pgm::{self, Action, Facade, PgmPayment, PgmStatus, StatusObject};
use crate::storage::{Storage, WithdrawalRecord, WithdrawalState};

/// Refunds of payments in different buckets run concurrently.
const REFUND_LOCKS: u128 = 64;

/// The facade's payments and refunds, and their status.
pub struct Orders<'a> {
    pub(super) facade: &'a Facade,
    pub(super) deposits: Deposits<'a>,
    pub(super) withdrawals: Withdrawals<'a>,
}

/// A shop's order to take a payment.
pub struct PaymentOrder<'r> {
    /// The shop's id of the order: the same id again is the same payment.
    pub shop_transaction_id: &'r str,
    pub customer: ExternalUserId,
    pub label: Option<UserLabel>,
    pub amount: Amount,
    pub currency: String,
}

/// Where a payment stands once asked for.
#[derive(Debug, PartialEq)]
pub enum PayOutcome {
    /// The customer pays by bank transfer on Pientegra's page.
    Redirect { payment_id: Uuid, deposit_url: String, reference_no: String },
    /// The order is paid already.
    Paid { payment_id: Uuid },
    /// The order's payment ended unpaid, in this Pientegra status.
    Ended { payment_id: Uuid, status: IntentStatus },
}

/// Why a payment was not started.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("shopTransactionId was already used for a payment with another amount or externalUserId")]
    Reused,
    /// Reconciliation recorded the order's intent as an ordinary deposit of
    /// the customer: paid, it would credit the wallet, so it is never offered.
    #[error(
        "this shopTransactionId's Pientegra intent was recorded outside the facade and cannot be paid through it; \
         pay the order under a new shopTransactionId"
    )]
    RecordedElsewhere,
    #[error(transparent)]
    Deposit(#[from] DepositError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A shop's order to refund (part of) a payment.
pub struct RefundOrder {
    pub payment_id: Uuid,
    /// All that is left of the payment when absent.
    pub amount: Option<Amount>,
    /// The customer's account the refund is paid out to, or what is wrong
    /// with it (answered only once the payment is known to be refundable).
    pub payout: Result<Payout, PayoutFault>,
}

/// Where a refund is paid out.
pub struct Payout {
    pub iban: Iban,
    pub holder: HolderName,
}

/// Why a refund has no account to be paid out to.
#[derive(Debug, thiserror::Error)]
pub enum PayoutFault {
    #[error(
        "Pientegra cannot reverse a bank-transfer deposit: a refund is paid out to the customer's bank account, \
         so providerData.targetIban and providerData.targetHolderName are required"
    )]
    Missing,
    /// The account given is not valid: what is wrong.
    #[error("{0}")]
    Malformed(String),
}

/// A refund on its way.
#[derive(Debug)]
pub struct RefundOutcome {
    /// The refund's `paymentId`.
    pub refund_id: Uuid,
    /// The Pientegra withdrawal that pays it out.
    pub withdrawal_id: Uuid,
    pub status: PgmStatus,
    pub withdrawal: WithdrawalRecord,
}

/// Why a refund was not made.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no such paymentId")]
    UnknownPayment,
    #[error("paymentId names a refund; refund the payment itself")]
    NotAPayment,
    #[error(transparent)]
    Payout(#[from] PayoutFault),
    #[error("only an ACCEPTED payment can be refunded; this one is {} (Pientegra {})", .status.as_str(), .pientegra.as_str())]
    NotAccepted { status: PgmStatus, pientegra: IntentStatus },
    #[error("another refund of this payment is in progress; retry")]
    InProgress,
    /// Nothing was reserved.
    #[error("amount exceeds what is left to refund of this payment: {} minor units", .left.minor())]
    ExceedsLeft { left: Amount },
    #[error("insufficient funds: {} of this payment is left to refund", .available.format(Locale::En))]
    InsufficientFunds { available: Amount },
    /// Sending the refund's withdrawal failed.
    #[error(transparent)]
    Withdrawal(WithdrawalError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why there is no status to answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no such paymentId")]
    UnknownPayment,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Orders<'_> {
    fn storage(&self) -> &dyn Storage {
        self.deposits.records.storage()
    }

    /// Starts the payment of an order, or answers the one it has: the same
    /// shopTransactionId never makes a second intent.
    pub async fn pay(&self, order: PaymentOrder<'_>) -> Result<PayOutcome, PayError> {
        let customer = order.customer.as_str();
        if let Some(existing) = self.facade.store.by_shop_transaction(order.shop_transaction_id).await? {
            return self.repeated_pay(&existing, order.amount, customer).await;
        }
        // The key is derived from the shop's id: a retry gets the same intent back.
        let request = CreateDepositRequest {
            external_user_id: order.customer.clone(),
            external_user_label: order.label,
            amount: order.amount,
            currency: Some(order.currency.clone()),
        };
        let created = self.deposits.open(pgm::pay_key(order.shop_transaction_id), &request).await?;
        // The payment is the order's money, held in a ledger account of its own:
        // no widget token can name it, so the customer can never withdraw it.
        let account = ledger::order_account(created.intent_id, customer);
        let deposit = self.deposits.records.record_deposit(new_deposit(&created, &account), None).await?;
        if deposit.user_id != account {
            // Reconciliation recorded this intent as an ordinary deposit of the
            // customer between its creation and this request (or a crash between
            // them). The customer has not been sent to pay it; it expires unpaid.
            tracing::error!(intent_id = %created.intent_id, "a PGM payment's intent is recorded in another ledger account; not offered");
            return Err(PayError::RecordedElsewhere);
        }
        Metrics::inc(&self.deposits.metrics.deposits_created);
        let payment = self
            .facade
            .store
            .insert(&PgmPayment {
                payment_id: created.intent_id,
                action: Action::Payment,
                shop_transaction_id: order.shop_transaction_id.to_owned(),
                refund_of: None,
                external_user_id: customer.to_owned(),
                amount: order.amount,
                currency: order.currency,
                created_at: chrono::Utc::now(),
                last_notified_status: None,
            })
            .await?;
        if payment.payment_id != created.intent_id {
            // A concurrent request for the same shop transaction won; answer its payment.
            return self.repeated_pay(&payment, order.amount, customer).await;
        }
        tracing::info!(intent_id = %created.intent_id, "PGM payment created");
        Ok(PayOutcome::Redirect {
            payment_id: payment.payment_id,
            deposit_url: created.deposit_url,
            reference_no: created.reference_no,
        })
    }

    /// The same shopTransactionId again: the same payment, never a second intent.
    async fn repeated_pay(
        &self,
        existing: &PgmPayment,
        amount: Amount,
        customer: &str,
    ) -> Result<PayOutcome, PayError> {
        if existing.amount != amount || existing.external_user_id != customer {
            return Err(PayError::Reused);
        }
        let payment_id = existing.payment_id;
        let deposit = self.storage().deposit(payment_id).await?.context("a PGM payment without its deposit")?;
        Ok(match pgm::payment_status(deposit.status) {
            PgmStatus::Pending => PayOutcome::Redirect {
                payment_id,
                deposit_url: deposit.deposit_url,
                reference_no: deposit.reference_no,
            },
            PgmStatus::Accepted => PayOutcome::Paid { payment_id },
            PgmStatus::Failed => PayOutcome::Ended { payment_id, status: deposit.status },
        })
    }

    /// Refunds (part of) an accepted payment: a withdrawal from the account the
    /// payment credited, paid out to the customer, of at most what is left.
    pub async fn refund(&self, order: RefundOrder) -> Result<RefundOutcome, RefundError> {
        let payment_id = order.payment_id;
        let payment = self.facade.store.payment(payment_id).await?.ok_or(RefundError::UnknownPayment)?;
        if payment.action != Action::Payment {
            return Err(RefundError::NotAPayment);
        }
        let payout = order.payout?;
        let deposit = self.storage().deposit(payment_id).await?.context("a PGM payment without its deposit")?;
        if deposit.status != IntentStatus::Approved {
            let status = pgm::payment_status(deposit.status);
            return Err(RefundError::NotAccepted { status, pientegra: deposit.status });
        }
        let paid = deposit.credited_amount.unwrap_or(deposit.amount);
        let amount = order.amount.unwrap_or(paid);
        let key = pgm::refund_key(payment_id, amount).to_string();
        // A refund draws on the account the payment credited: the order's own
        // (payments recorded before orders had accounts credited the customer's wallet).
        let account = deposit.user_id;
        // One refund of a payment at a time (across instances too), so two
        // concurrent refunds cannot both pass the "left to refund" check. A fixed
        // set of lock names: refunds are rare, and the set of locks stays bounded.
        let bucket = payment_id.as_u128() % REFUND_LOCKS;
        let Some(_lock) = self.storage().try_lock(&format!("pgm-refund:{bucket}")).await? else {
            return Err(RefundError::InProgress);
        };
        // A retry of this very refund skips the check and settles the same withdrawal.
        if self.storage().withdrawal_by_key(&account, &key).await?.is_none() {
            let left = self.left_to_refund(payment_id, paid).await?;
            if amount > left {
                return Err(RefundError::ExceedsLeft { left });
            }
        }
        let request = WithdrawalRequest { account, key, amount, iban: payout.iban, holder: payout.holder };
        let reserved = self.withdrawals.reserve(request).await.map_err(|err| match err {
            WithdrawalError::InsufficientFunds { available } => RefundError::InsufficientFunds { available },
            other => RefundError::Withdrawal(other),
        })?;
        let withdrawal = self.withdrawals.submit(reserved).await.map_err(RefundError::Withdrawal)?;
        let (WithdrawalState::Known(_), Some(withdrawal_id)) = (withdrawal.state, withdrawal.withdrawal_id) else {
            return Err(anyhow::anyhow!("an accepted withdrawal without its id").into());
        };
        let stored = self
            .facade
            .store
            .insert(&PgmPayment {
                payment_id: withdrawal_id,
                action: Action::Refund,
                shop_transaction_id: payment.shop_transaction_id,
                refund_of: Some(payment_id),
                external_user_id: payment.external_user_id,
                amount,
                currency: DEFAULT_CURRENCY.to_owned(),
                created_at: chrono::Utc::now(),
                last_notified_status: None,
            })
            .await?;
        let status = pgm::refund_status(withdrawal.state);
        Ok(RefundOutcome { refund_id: stored.payment_id, withdrawal_id, status, withdrawal })
    }

    /// What is left of `paid` after the payment's refunds that have not failed.
    async fn left_to_refund(&self, payment_id: Uuid, paid: Amount) -> anyhow::Result<Amount> {
        let mut refunded = Amount::ZERO;
        for earlier in self.facade.store.refunds_of(payment_id).await? {
            let failed = self
                .storage()
                .withdrawal(earlier.payment_id)
                .await?
                .is_some_and(|w| pgm::refund_status(w.state) == PgmStatus::Failed);
            if !failed {
                refunded = refunded.checked_add(earlier.amount).unwrap_or(Amount::MAX);
            }
        }
        Ok(paid.checked_sub(refunded).unwrap_or(Amount::ZERO))
    }

    /// The status of a payment or refund, a status not final yet looked up
    /// live at Pientegra.
    pub async fn status(&self, payment_id: Uuid) -> Result<StatusObject, LookupError> {
        let payment = self.facade.store.payment(payment_id).await?.ok_or(LookupError::UnknownPayment)?;
        Ok(pgm::status_of(self.storage(), self.deposits.pientegra, &payment, true).await?)
    }

    /// As [`Orders::status`], and the status is queued for the shop's callback.
    pub async fn check(&self, payment_id: Uuid) -> Result<StatusObject, LookupError> {
        let object = self.status(payment_id).await?;
        self.facade.notify_shop(&object).await?;
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::service::testing::World;
    use crate::storage::BalanceRow;

    #[tokio::test]
    async fn a_refund_above_what_was_paid_is_refused_and_moves_nothing() {
        let world = World::new().await;
        let payment_id = Uuid::new_v4();
        let account = ledger::order_account(payment_id, "customer-42");
        let paid = Amount::from_minor(15_000);
        world.credit(&account, payment_id, paid).await;
        let orders = world.state.orders().expect("the facade is on");
        orders
            .facade
            .store
            .insert(&PgmPayment {
                payment_id,
                action: Action::Payment,
                shop_transaction_id: "order-1".into(),
                refund_of: None,
                external_user_id: "customer-42".into(),
                amount: paid,
                currency: DEFAULT_CURRENCY.into(),
                created_at: chrono::Utc::now(),
                last_notified_status: None,
            })
            .await
            .expect("the payment is stored");
        let payout = Payout {
            iban: Iban::parse("TR330006100519786457841326").expect("a valid IBAN"),
            holder: HolderName::parse("Ayşe Yılmaz").expect("a valid name"),
        };
        let too_much = Amount::from_minor(15_001);
        let order = RefundOrder { payment_id, amount: Some(too_much), payout: Ok(payout) };

        let err = orders.refund(order).await.expect_err("refused");
        assert!(matches!(err, RefundError::ExceedsLeft { left } if left == paid), "{err:?}");
        assert_eq!(world.pientegra.withdrawals.load(Ordering::SeqCst), 0, "nothing is sent to Pientegra");
        let storage = &world.state.storage;
        assert_eq!(
            storage.balance(&account).await.expect("a balance"),
            BalanceRow { available: paid, reserved: Amount::ZERO }
        );
        let key = pgm::refund_key(payment_id, too_much).to_string();
        assert!(storage.withdrawal_by_key(&account, &key).await.expect("a read").is_none(), "nothing is reserved");
        assert!(orders.facade.store.refunds_of(payment_id).await.expect("a read").is_empty());
    }
}
