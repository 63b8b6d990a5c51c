//! Ledger rules, pure: which status change and which balance movements an
//! event implies. Storage runs the plan inside one transaction; the unique
//! business key of each movement is what makes a duplicate harmless.

use pientegra_shared::Amount;
use pientegra_shared::event::IntentEvent;
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use uuid::Uuid;

/// When a withdrawal leaves the user's available balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BalanceModel {
    /// Reserve at request, finalize on `withdrawal.sent`, release on `withdrawal.rejected`.
    #[default]
    PreReserve,
    /// Debit only on `withdrawal.sent`; requests are checked against pending ones.
    FinalDebit,
}

impl BalanceModel {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceModel::PreReserve => "pre-reserve",
            BalanceModel::FinalDebit => "final-debit",
        }
    }
}

impl std::str::FromStr for BalanceModel {
    type Err = ();
    fn from_str(s: &str) -> Result<BalanceModel, ()> {
        match s.trim() {
            "pre-reserve" => Ok(BalanceModel::PreReserve),
            "final-debit" => Ok(BalanceModel::FinalDebit),
            _ => Err(()),
        }
    }
}

/// A change to one user's balance, applied at most once per `business_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub business_key: String,
    pub available: i64,
    pub reserved: i64,
}

fn signed(amount: Amount) -> i64 {
    // Amounts are capped far below i64::MAX by the contract's range.
    i64::try_from(amount.minor()).expect("amount fits i64")
}

/// The credit of an approved deposit: `amount` from the webhook, never `requestedAmount`.
pub fn deposit_credit(intent_id: Uuid, amount: Amount) -> Movement {
    Movement { business_key: format!("intent.approved:{intent_id}"), available: signed(amount), reserved: 0 }
}

/// Prefix of the ledger accounts that hold the money of a Mia-Platform PGM
/// order. Widget tokens can never name such an account (`token::may_name`),
/// so no widget route reads, streams or withdraws it.
pub const ORDER_ACCOUNT_PREFIX: &str = "pgm-order:";

/// The ledger account that holds what the customer paid for one PGM order:
/// `pgm-order:<paymentId>:<externalUserId>`. Its deposit record and every
/// movement of the payment and its refunds belong to it, never to the
/// customer's wallet. The customer's id is part of the name because Pientegra
/// knows the order's intent and refunds by it (see [`pientegra_user`]); it can
/// never change for an order.
pub fn order_account(payment_id: Uuid, customer: &str) -> String {
    format!("{ORDER_ACCOUNT_PREFIX}{}:{customer}", payment_id.hyphenated())
}

/// Whether a ledger account id names a PGM order's account.
pub fn is_order_account(account: &str) -> bool {
    account.starts_with(ORDER_ACCOUNT_PREFIX)
}

/// The `externalUserId` Pientegra knows an account's records by: a wallet's
/// own id, or an order account's customer.
pub fn pientegra_user(account: &str) -> &str {
    account
        .strip_prefix(ORDER_ACCOUNT_PREFIX)
        .and_then(|rest| rest.get(36..))
        .and_then(|rest| rest.strip_prefix(':'))
        // A malformed order name stays itself: it then matches no webhook.
        .unwrap_or(account)
}

/// Why a webhook's snapshot must not touch the local record, if it must not:
/// it names another user than the one Pientegra knows the record's account by,
/// or an amount outside the contract's range (which could otherwise be
/// credited, or overflow the ledger).
pub fn refuse_snapshot(local_account: &str, event_user: &str, amount: Amount) -> Option<&'static str> {
    if pientegra_user(local_account) != event_user {
        return Some("the webhook names another user than the local record");
    }
    amount.check_range().err().map(|_| "the webhook amount is outside 100..=100000000")
}

/// What an intent event does to a local deposit in `current`; `None` when it does
/// not move the intent forward (a duplicate or a stale, reordered event).
pub fn plan_intent(current: IntentStatus, event: IntentEvent) -> Option<IntentStatus> {
    let next = event.status();
    current.can_advance_to(next).then_some(next)
}

/// The reservation taken when a withdrawal is requested (pre-reserve only).
pub fn withdrawal_reserve(local_id: Uuid, amount: Amount) -> Movement {
    Movement {
        business_key: format!("withdrawal.reserved:{local_id}"),
        available: -signed(amount),
        reserved: signed(amount),
    }
}

/// Gives a reservation back after Pientegra definitely refused the request.
pub fn withdrawal_release(local_id: Uuid, amount: Amount) -> Movement {
    Movement {
        business_key: format!("withdrawal.released:{local_id}"),
        available: signed(amount),
        reserved: -signed(amount),
    }
}

/// The movements of moving a withdrawal from `current` to `target`, including
/// the steps an out-of-order delivery skipped (`RETURNED` seen before `SENT`
/// still finalizes the debit first). `None` when `target` is not ahead.
pub fn plan_withdrawal(
    current: WithdrawalStatus,
    target: WithdrawalStatus,
    model: BalanceModel,
    withdrawal_id: Uuid,
    amount: Amount,
) -> Option<Vec<Movement>> {
    use WithdrawalStatus::{Rejected, Returned, Sent};
    if !current.can_advance_to(target) {
        return None;
    }
    let a = signed(amount);
    let key = |what: &str| format!("withdrawal.{what}:{withdrawal_id}");
    let mut moves = Vec::new();
    let passes_sent = matches!(target, Sent | Returned) && !matches!(current, Sent | Returned);
    if passes_sent {
        let (available, reserved) = match model {
            BalanceModel::PreReserve => (0, -a),
            BalanceModel::FinalDebit => (-a, 0),
        };
        moves.push(Movement { business_key: key("sent"), available, reserved });
    }
    if target == Returned {
        moves.push(Movement { business_key: key("returned"), available: a, reserved: 0 });
    }
    if target == Rejected && model == BalanceModel::PreReserve {
        moves.push(Movement { business_key: key("rejected"), available: a, reserved: -a });
    }
    Some(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use WithdrawalStatus::*;

    fn sum(moves: &[Movement]) -> (i64, i64) {
        moves.iter().fold((0, 0), |(a, r), m| (a + m.available, r + m.reserved))
    }

    #[test]
    fn an_order_account_is_known_to_pientegra_by_its_customer() {
        let id = Uuid::parse_str("01a1fcce-e986-7000-8000-000000000001").unwrap();
        let account = order_account(id, "ayse:42");
        assert_eq!(account, "pgm-order:01a1fcce-e986-7000-8000-000000000001:ayse:42");
        assert!(is_order_account(&account));
        assert_eq!(pientegra_user(&account), "ayse:42");
        assert_eq!(pientegra_user("ayse"), "ayse");
        assert!(!is_order_account("ayse"));
        // A malformed order name is known by its whole name, so it matches no webhook.
        assert_eq!(pientegra_user("pgm-order:short"), "pgm-order:short");
    }

    #[test]
    fn a_snapshot_must_name_the_user_pientegra_knows_the_account_by() {
        let id = Uuid::nil();
        let amount = Amount::from_minor(10_000);
        assert_eq!(refuse_snapshot("ayse", "ayse", amount), None);
        assert_eq!(refuse_snapshot(&order_account(id, "ayse"), "ayse", amount), None);
        assert!(refuse_snapshot(&order_account(id, "ayse"), "mehmet", amount).is_some());
        // The order account's own name is not a Pientegra user.
        assert!(refuse_snapshot(&order_account(id, "ayse"), &order_account(id, "ayse"), amount).is_some());
        assert!(refuse_snapshot("ayse", "ayse", Amount::from_minor(1)).is_some());
    }

    #[test]
    fn approval_credits_once_and_only_forward() {
        assert_eq!(plan_intent(IntentStatus::Reserved, IntentEvent::Approved), Some(IntentStatus::Approved));
        assert_eq!(plan_intent(IntentStatus::Approved, IntentEvent::Approved), None);
        assert_eq!(plan_intent(IntentStatus::Rejected, IntentEvent::Approved), None);
        assert_eq!(plan_intent(IntentStatus::LateArrival, IntentEvent::AutoCancelled), None);
    }

    #[test]
    fn pre_reserve_nets_to_the_model() {
        let id = Uuid::nil();
        let a = Amount::from_minor(1_000);
        // reserve (-1000, +1000) then sent (0, -1000): net debit.
        assert_eq!(sum(&plan_withdrawal(PendingReview, Sent, BalanceModel::PreReserve, id, a).unwrap()), (0, -1_000));
        // rejected gives the reservation back.
        assert_eq!(
            sum(&plan_withdrawal(Approved, Rejected, BalanceModel::PreReserve, id, a).unwrap()),
            (1_000, -1_000)
        );
        // returned seen before sent: finalize then credit back.
        assert_eq!(
            sum(&plan_withdrawal(PendingReview, Returned, BalanceModel::PreReserve, id, a).unwrap()),
            (1_000, -1_000)
        );
        // a late sent after returned changes nothing.
        assert_eq!(plan_withdrawal(Returned, Sent, BalanceModel::PreReserve, id, a), None);
    }

    #[test]
    fn final_debit_moves_only_on_sent_and_returned() {
        let id = Uuid::nil();
        let a = Amount::from_minor(1_000);
        assert_eq!(sum(&plan_withdrawal(PendingReview, Sent, BalanceModel::FinalDebit, id, a).unwrap()), (-1_000, 0));
        assert!(plan_withdrawal(PendingReview, Rejected, BalanceModel::FinalDebit, id, a).unwrap().is_empty());
        assert_eq!(sum(&plan_withdrawal(Sent, Returned, BalanceModel::FinalDebit, id, a).unwrap()), (1_000, 0));
    }
}
