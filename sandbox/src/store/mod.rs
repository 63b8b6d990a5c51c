//! All sandbox state and every change to it: intents, withdrawals, the account
//! pool, the webhook target, and the events with their delivery bookkeeping.
//!
//! Every state change goes through one transition method that checks the
//! shared status machine, stamps the record and emits the event announcing it,
//! so no path can change a status without the webhook that goes with it. The
//! store is plain data behind one mutex (see [`crate::state`]); nothing in here
//! awaits, so the lock is never held across an `.await`.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pientegra_shared::Amount;
use pientegra_shared::event::{EventKind, IntentEvent, WithdrawalEvent};
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::time::Timestamp;
use rand::Rng;
use tokio::time::Instant;
use uuid::Uuid;

use crate::accounts::AccountPool;

mod deliveries;
mod records;
mod table;
mod timers;

pub use deliveries::{Attempt, EventRecord, Outcome, WebhookTarget, known_event_types};
pub use records::{IntentRecord, NewIntent, NewWithdrawal, WithdrawalRecord};
pub use table::{Key, Table, Window};
use timers::{Review, Timers};

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{what} is {from} and cannot become {to}")]
    InvalidState { what: &'static str, from: &'static str, to: &'static str },
    #[error("every receiving account is reserved; try again once an open deposit ends")]
    NoAccountAvailable,
    #[error("the event is PENDING: its delivery has not been attempted yet, so there is nothing to replay")]
    ReplayOfPending,
}

/// The whole sandbox state.
#[derive(Debug)]
pub struct Store {
    pub intents: Table<IntentRecord>,
    pub withdrawals: Table<WithdrawalRecord>,
    pub events: Table<EventRecord>,
    pub webhook: WebhookTarget,
    pool: AccountPool,
    references: HashSet<String>,
    /// The newest key handed out, so every new record sorts after every older one.
    last_key: Key,
    /// `Some(d)`: reviews happen by themselves `d` after they become due.
    auto_review: Option<Duration>,
    timers: Timers,
    /// The events whose delivery is PENDING or FAILED, oldest first: all the
    /// delivery worker looks through, so a wake-up does not cost every event ever sent.
    undelivered: BTreeSet<Key>,
}

impl Store {
    /// An empty store with `accounts` receiving accounts.
    pub fn new(accounts: usize, webhook: WebhookTarget, auto_review: Option<Duration>) -> Store {
        Store {
            intents: Table::new(),
            withdrawals: Table::new(),
            events: Table::new(),
            webhook,
            pool: AccountPool::new(accounts),
            references: HashSet::new(),
            last_key: (DateTime::<Utc>::MIN_UTC, Uuid::nil()),
            auto_review,
            timers: Timers::default(),
            undelivered: BTreeSet::new(),
        }
    }

    /// How many receiving accounts are free.
    pub fn free_accounts(&self) -> usize {
        self.pool.free_count()
    }

    /// A creation time and a UUID v7 that sort after every key handed out before.
    ///
    /// Two records made in the same millisecond could otherwise get ids in
    /// either order, and a record sorting *before* one a client already paged
    /// past would be a gap in its walk.
    fn fresh_key(&mut self, now: Timestamp) -> Key {
        let mut key = (now.max(self.last_key.0), Uuid::now_v7());
        if key <= self.last_key {
            key.0 = self.last_key.0 + chrono::Duration::milliseconds(1);
        }
        self.last_key = key;
        key
    }

    /// 10 characters of `[A-Z0-9]`, unique among intents and withdrawals.
    fn fresh_reference(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut rng = rand::thread_rng();
        loop {
            let reference: String = (0..10).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect();
            if self.references.insert(reference.clone()) {
                return reference;
            }
        }
    }

    fn auto_due(&self) -> Option<Instant> {
        self.auto_review.map(|delay| Instant::now() + delay)
    }

    /// Switches auto-review on or off; what is waiting for review now gets a
    /// fresh deadline (or loses it), so a changed policy applies at once.
    pub fn set_auto_review(&mut self, auto_review: Option<Duration>) {
        self.auto_review = auto_review;
        let due = self.auto_due();
        for intent in self.intents.rows.values_mut() {
            let waiting = matches!(intent.status, IntentStatus::PendingReview | IntentStatus::LateArrival);
            self.timers.review_at(&mut intent.auto_due, due.filter(|_| waiting), Review::Intent(intent.id));
        }
        for withdrawal in self.withdrawals.rows.values_mut() {
            let waiting = matches!(withdrawal.status, WithdrawalStatus::PendingReview | WithdrawalStatus::Approved);
            let what = Review::Withdrawal(withdrawal.id);
            self.timers.review_at(&mut withdrawal.auto_due, due.filter(|_| waiting), what);
        }
    }

    // ----- intents -------------------------------------------------------

    /// Creates a RESERVED intent holding a receiving account.
    /// `deposit_url` makes the hosted page's address from the id and the expiry.
    pub fn create_intent(
        &mut self,
        new: NewIntent,
        now: Timestamp,
        ttl: Duration,
        deposit_url: impl FnOnce(Uuid, Timestamp) -> String,
    ) -> Result<&IntentRecord, StoreError> {
        let account_index = self.pool.reserve().ok_or(StoreError::NoAccountAvailable)?;
        let (created_at, id) = self.fresh_key(now);
        let expires_at = created_at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let record = IntentRecord {
            id,
            reference_no: self.fresh_reference(),
            external_user_id: new.external_user_id,
            external_user_label: new.external_user_label,
            requested_amount: new.amount,
            amount: new.amount,
            currency: new.currency,
            status: IntentStatus::Reserved,
            created_at,
            expires_at,
            approved_at: None,
            rejected_at: None,
            rejected_reason: None,
            deposit_url: deposit_url(id, expires_at),
            account: self.pool.get(account_index).clone(),
            account_index: Some(account_index),
            auto_due: None,
        };
        self.intents.insert(record);
        self.timers.expire_at(expires_at, id);
        Ok(self.intents.get(&id).expect("just inserted"))
    }

    /// The user says they paid: RESERVED → PENDING_REVIEW.
    pub fn confirm_intent(&mut self, id: Uuid, now: Timestamp) -> Result<&IntentRecord, StoreError> {
        self.move_intent(id, IntentStatus::PendingReview, now, |_| {})
    }

    /// Review passed; `amount` is what actually arrived, when it differs.
    pub fn approve_intent(
        &mut self,
        id: Uuid,
        amount: Option<Amount>,
        now: Timestamp,
    ) -> Result<&IntentRecord, StoreError> {
        self.move_intent(id, IntentStatus::Approved, now, |intent| {
            intent.approved_at = Some(now);
            if let Some(amount) = amount {
                intent.amount = amount;
            }
        })
    }

    /// Review failed.
    pub fn reject_intent(&mut self, id: Uuid, reason: String, now: Timestamp) -> Result<&IntentRecord, StoreError> {
        self.move_intent(id, IntentStatus::Rejected, now, |intent| {
            intent.rejected_at = Some(now);
            intent.rejected_reason = Some(reason);
        })
    }

    /// RESERVED → AUTO_CANCELLED, by the timer or by force.
    pub fn expire_intent(&mut self, id: Uuid, now: Timestamp) -> Result<&IntentRecord, StoreError> {
        self.move_intent(id, IntentStatus::AutoCancelled, now, |_| {})
    }

    /// Money arrived for a cancelled intent: AUTO_CANCELLED → LATE_ARRIVAL.
    pub fn late_arrival(&mut self, id: Uuid, now: Timestamp) -> Result<&IntentRecord, StoreError> {
        self.move_intent(id, IntentStatus::LateArrival, now, |_| {})
    }

    /// The one place an intent's status changes.
    fn move_intent(
        &mut self,
        id: Uuid,
        to: IntentStatus,
        now: Timestamp,
        stamp: impl FnOnce(&mut IntentRecord),
    ) -> Result<&IntentRecord, StoreError> {
        let due = self.auto_due();
        let intent = self.intents.get_mut(&id).ok_or(StoreError::NotFound("intent"))?;
        if !intent.status.can_transition_to(to) {
            return Err(StoreError::InvalidState { what: "the intent", from: intent.status.as_str(), to: to.as_str() });
        }
        intent.status = to;
        stamp(intent);
        let waiting = matches!(to, IntentStatus::PendingReview | IntentStatus::LateArrival);
        self.timers.review_at(&mut intent.auto_due, due.filter(|_| waiting), Review::Intent(id));
        // The account is free again once no more money is expected on it for this intent.
        let released = matches!(to, IntentStatus::Approved | IntentStatus::Rejected | IntentStatus::AutoCancelled)
            .then(|| intent.account_index.take())
            .flatten();
        let announce = IntentEvent::for_status(to).map(|event| EventKind::Intent { event, intent: intent.snapshot() });
        if let Some(index) = released {
            self.pool.release(index);
        }
        if let Some(kind) = announce {
            self.emit(now, kind);
        }
        Ok(self.intents.get(&id).expect("exists"))
    }

    // ----- withdrawals ---------------------------------------------------

    /// Creates a PENDING_REVIEW withdrawal and announces it.
    pub fn create_withdrawal(&mut self, new: NewWithdrawal, now: Timestamp) -> &WithdrawalRecord {
        let (created_at, id) = self.fresh_key(now);
        let mut record = WithdrawalRecord {
            id,
            reference_no: self.fresh_reference(),
            external_user_id: new.external_user_id,
            external_user_label: new.external_user_label,
            amount: new.amount,
            currency: new.currency,
            target_iban: new.target_iban,
            target_holder_name: new.target_holder_name,
            status: WithdrawalStatus::PendingReview,
            created_at,
            approved_at: None,
            sent_at: None,
            rejected_at: None,
            returned_at: None,
            rejected_reason: None,
            auto_due: None,
        };
        self.timers.review_at(&mut record.auto_due, self.auto_due(), Review::Withdrawal(id));
        let kind = EventKind::Withdrawal { event: WithdrawalEvent::Created, withdrawal: record.snapshot() };
        self.withdrawals.insert(record);
        self.emit(now, kind);
        self.withdrawals.get(&id).expect("just inserted")
    }

    /// Review passed: PENDING_REVIEW → APPROVED.
    pub fn approve_withdrawal(&mut self, id: Uuid, now: Timestamp) -> Result<&WithdrawalRecord, StoreError> {
        self.move_withdrawal(id, WithdrawalStatus::Approved, now, |w| w.approved_at = Some(now))
    }

    /// The payout left: APPROVED → SENT.
    pub fn send_withdrawal(&mut self, id: Uuid, now: Timestamp) -> Result<&WithdrawalRecord, StoreError> {
        self.move_withdrawal(id, WithdrawalStatus::Sent, now, |w| w.sent_at = Some(now))
    }

    /// Refused before it was sent.
    pub fn reject_withdrawal(
        &mut self,
        id: Uuid,
        reason: String,
        now: Timestamp,
    ) -> Result<&WithdrawalRecord, StoreError> {
        self.move_withdrawal(id, WithdrawalStatus::Rejected, now, |w| {
            w.rejected_at = Some(now);
            w.rejected_reason = Some(reason);
        })
    }

    /// The bank sent the money back: SENT → RETURNED.
    pub fn return_withdrawal(&mut self, id: Uuid, now: Timestamp) -> Result<&WithdrawalRecord, StoreError> {
        self.move_withdrawal(id, WithdrawalStatus::Returned, now, |w| w.returned_at = Some(now))
    }

    /// The one place a withdrawal's status changes.
    fn move_withdrawal(
        &mut self,
        id: Uuid,
        to: WithdrawalStatus,
        now: Timestamp,
        stamp: impl FnOnce(&mut WithdrawalRecord),
    ) -> Result<&WithdrawalRecord, StoreError> {
        let due = self.auto_due();
        let withdrawal = self.withdrawals.get_mut(&id).ok_or(StoreError::NotFound("withdrawal"))?;
        if !withdrawal.status.can_transition_to(to) {
            return Err(StoreError::InvalidState {
                what: "the withdrawal",
                from: withdrawal.status.as_str(),
                to: to.as_str(),
            });
        }
        withdrawal.status = to;
        stamp(withdrawal);
        // Auto-review sends an approved payout one more delay later.
        self.timers.review_at(
            &mut withdrawal.auto_due,
            due.filter(|_| to == WithdrawalStatus::Approved),
            Review::Withdrawal(id),
        );
        let announce = WithdrawalEvent::for_status(to)
            .map(|event| EventKind::Withdrawal { event, withdrawal: withdrawal.snapshot() });
        if let Some(kind) = announce {
            self.emit(now, kind);
        }
        Ok(self.withdrawals.get(&id).expect("exists"))
    }

    // ----- timers --------------------------------------------------------

    /// Does whatever is due (expiries, automatic reviews) and answers when
    /// something is due next. Idempotent: calling it early does nothing.
    /// It costs what is due, not what is stored (see [`timers`]).
    pub fn run_timers(&mut self, now: Timestamp, clock: Instant) -> Option<Instant> {
        for (_, id) in self.timers.due_expiries(now) {
            if self.intents.get(&id).is_some_and(|i| i.status == IntentStatus::Reserved) {
                let _ = self.expire_intent(id, now);
            }
        }
        // A deadline acts only while it is still the record's: one the record
        // has moved on from (reviewed by hand, rescheduled) is dropped.
        for (at, review) in self.timers.due_reviews(clock) {
            let _ = match review {
                Review::Intent(id) if self.intents.get(&id).is_some_and(|i| i.auto_due == Some(at)) => {
                    self.approve_intent(id, None, now).map(drop)
                }
                Review::Withdrawal(id) => {
                    match self.withdrawals.get(&id).filter(|w| w.auto_due == Some(at)).map(|w| w.status) {
                        Some(WithdrawalStatus::PendingReview) => self.approve_withdrawal(id, now).map(drop),
                        Some(WithdrawalStatus::Approved) => self.send_withdrawal(id, now).map(drop),
                        _ => Ok(()),
                    }
                }
                Review::Intent(_) => Ok(()),
            };
        }
        self.timers.next(now, clock)
    }
}

/// Stores and intents for the unit tests of this module and its children.
#[cfg(test)]
mod fixtures {
    use std::time::Duration;

    use chrono::Utc;
    use pientegra_shared::Amount;
    use pientegra_shared::ids::{ExternalUserId, HolderName};
    use uuid::Uuid;

    use super::{NewIntent, NewWithdrawal, Store, WebhookTarget};

    pub fn store(accounts: usize) -> Store {
        let webhook =
            WebhookTarget { url: Some("http://127.0.0.1:1/".into()), secret: "whsec_a".into(), rotated_at: Utc::now() };
        Store::new(accounts, webhook, None)
    }

    pub fn new_intent() -> NewIntent {
        NewIntent {
            external_user_id: ExternalUserId::parse("u1").unwrap(),
            external_user_label: None,
            amount: Amount::from_minor(10_000),
            currency: "TRY".into(),
        }
    }

    pub fn new_withdrawal() -> NewWithdrawal {
        NewWithdrawal {
            external_user_id: ExternalUserId::parse("u1").unwrap(),
            external_user_label: None,
            amount: Amount::from_minor(10_000),
            currency: "TRY".into(),
            target_iban: "TR330006100519786457841326".into(),
            target_holder_name: HolderName::parse("Ada Lovelace").unwrap(),
        }
    }

    pub fn create(store: &mut Store) -> Uuid {
        store.create_intent(new_intent(), Utc::now(), Duration::from_secs(60), |id, _| format!("x/{id}")).unwrap().id
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{create, new_intent, new_withdrawal, store};
    use super::*;

    #[test]
    fn keys_only_grow_even_within_a_millisecond() {
        let mut store = store(1);
        let now = Utc::now();
        let mut last = store.fresh_key(now);
        for _ in 0..1000 {
            let key = store.fresh_key(now);
            assert!(key > last);
            last = key;
        }
    }

    #[test]
    fn an_account_is_held_until_the_intent_ends() {
        let mut store = store(1);
        let id = create(&mut store);
        assert_eq!(
            store.create_intent(new_intent(), Utc::now(), Duration::from_secs(60), |_, _| String::new()).unwrap_err(),
            StoreError::NoAccountAvailable
        );
        store.confirm_intent(id, Utc::now()).unwrap();
        assert_eq!(store.free_accounts(), 0);
        store.approve_intent(id, Some(Amount::from_minor(9_000)), Utc::now()).unwrap();
        assert_eq!(store.free_accounts(), 1);
        assert_eq!(store.intents.get(&id).unwrap().amount, Amount::from_minor(9_000));
    }

    #[test]
    fn illegal_steps_are_refused_and_emit_nothing() {
        let mut store = store(2);
        let id = create(&mut store);
        assert!(matches!(store.approve_intent(id, None, Utc::now()), Err(StoreError::InvalidState { .. })));
        assert!(matches!(store.late_arrival(id, Utc::now()), Err(StoreError::InvalidState { .. })));
        assert_eq!(store.events.newest_first().count(), 0);
        store.expire_intent(id, Utc::now()).unwrap();
        store.late_arrival(id, Utc::now()).unwrap();
        store.reject_intent(id, "no".into(), Utc::now()).unwrap();
        let types: Vec<_> = store.events.newest_first().map(|e| e.event_type).collect();
        assert_eq!(types, ["intent.rejected", "intent.late_arrival", "intent.auto_cancelled"]);
        assert_eq!(store.free_accounts(), 2);
    }

    #[test]
    fn each_timer_acts_once_when_due() {
        let mut store = store(3);
        store.set_auto_review(Some(Duration::from_secs(3600)));
        let (now, clock) = (Utc::now(), Instant::now());
        let unpaid = create(&mut store);
        let paid = create(&mut store);
        store.confirm_intent(paid, now).unwrap();
        let payout = store.create_withdrawal(new_withdrawal(), now).id;

        let next = store.run_timers(now, clock).expect("deadlines are set");
        assert!(next <= clock + Duration::from_secs(61), "the expiry comes first");
        assert_eq!(store.intents.get(&unpaid).unwrap().status, IntentStatus::Reserved);

        let (later, later_clock) = (now + chrono::Duration::hours(2), clock + Duration::from_secs(7200));
        store.run_timers(later, later_clock);
        assert_eq!(store.intents.get(&unpaid).unwrap().status, IntentStatus::AutoCancelled);
        assert_eq!(store.intents.get(&paid).unwrap().status, IntentStatus::Approved);
        assert_eq!(store.withdrawals.get(&payout).unwrap().status, WithdrawalStatus::Approved);
        // Approving scheduled the payout one more delay on; it was not due in the same pass.
        assert_eq!(store.run_timers(later, later_clock), None);
        assert_eq!(store.withdrawals.get(&payout).unwrap().status, WithdrawalStatus::Sent);
        let events = store.events.newest_first().count();
        store.run_timers(later, later_clock + Duration::from_secs(7200));
        assert_eq!(store.events.newest_first().count(), events, "nothing acts twice");
    }

    #[test]
    fn a_deadline_the_record_has_moved_on_from_does_nothing() {
        let mut store = store(1);
        store.set_auto_review(Some(Duration::ZERO));
        let (now, clock) = (Utc::now(), Instant::now());
        let id = create(&mut store);
        store.confirm_intent(id, now).unwrap();
        let payout = store.create_withdrawal(new_withdrawal(), now).id;
        // A slower policy reschedules both; their first deadlines stay behind, stale.
        store.set_auto_review(Some(Duration::from_secs(3600)));
        store.run_timers(now, clock + Duration::from_secs(1));
        assert_eq!(store.intents.get(&id).unwrap().status, IntentStatus::PendingReview);
        // Approved by hand: the payout goes out one delay after this approval, not at the old deadline.
        store.approve_withdrawal(payout, now).unwrap();
        store.run_timers(now, clock + Duration::from_secs(1800));
        assert_eq!(store.withdrawals.get(&payout).unwrap().status, WithdrawalStatus::Approved);
        store.run_timers(now, Instant::now() + Duration::from_secs(3600));
        assert_eq!(store.withdrawals.get(&payout).unwrap().status, WithdrawalStatus::Sent);
    }
}
