//! The ledger procedure, written once for every database: what a webhook (or
//! a reconciliation transition, which arrives as one) does to the deposit or
//! withdrawal it is about, which money moves, which events the user's stream
//! gets and in which order; how events that came before their record are
//! replayed; what a withdrawal request may reserve, and what Pientegra
//! accepting or refusing it changes.
//!
//! Nothing here reads or writes a database. Each database loads what the
//! procedure asks for into [`Records`] and [`Book`], runs it, and writes back
//! what it changed ([`Records::changed_deposits`], [`Book::entries`],
//! [`Outbox`]), inside one transaction (the statements that are the same on
//! both are in [`super::sql`]): SQLite for a whole group commit at a
//! time, PostgreSQL for one webhook at a time under its locks. The rules it
//! applies are [`crate::ledger`]'s; a rule changed here holds on both
//! databases, and `tests/ledger_model.rs` holds both to it.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
use pientegra_shared::Amount;
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::{EventKind, WebhookEvent};
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::wire::WithdrawalCreated;
use uuid::Uuid;

use super::rows::{amount, minor, time};
use super::{
    BalanceRow, Changed, DepositRecord, InboxOutcome, InsufficientFunds, NewWithdrawal, Result, WithdrawalRecord,
    WithdrawalState, balance_event,
};
use crate::ledger::{self, BalanceModel, Movement};

/// The intent or withdrawal an event is about.
pub(super) fn subject_id(event: &WebhookEvent) -> Option<Uuid> {
    match &event.kind {
        EventKind::Intent { intent, .. } => Some(intent.id),
        EventKind::Withdrawal { withdrawal, .. } => Some(withdrawal.id),
        EventKind::Unknown { .. } => None,
    }
}

/// Each user once, sorted.
pub(super) fn dedup(mut users: Vec<String>) -> Vec<String> {
    users.sort();
    users.dedup();
    users
}

/// Whether each of a batch's eventIds is new: not `known` (in the inbox), nor
/// earlier in `ids`.
pub(super) fn first_unknown(ids: &[String], known: impl Fn(&str) -> bool) -> Vec<bool> {
    let mut seen = HashSet::new();
    ids.iter().map(|id| !known(id) && seen.insert(id.as_str())).collect()
}

/// A batch's outcomes: in order, what applying each `fresh` webhook did
/// (`applied`, one per fresh webhook), and a duplicate for every other one.
pub(super) fn with_duplicates(fresh: &[bool], applied: Vec<Changed<InboxOutcome>>) -> Vec<Changed<InboxOutcome>> {
    let mut applied = applied.into_iter();
    let duplicate = || Changed { value: InboxOutcome::Duplicate, touched: vec![] };
    fresh.iter().map(|&fresh| if fresh { applied.next().expect("one per new webhook") } else { duplicate() }).collect()
}

/// Stored orphans (`event_id`, raw body), read back as events.
pub(super) fn parse_orphans(rows: Vec<(String, Vec<u8>)>) -> Result<Vec<(String, WebhookEvent)>> {
    rows.into_iter()
        .map(|(event_id, body)| Ok((event_id, WebhookEvent::parse(&body).context("re-reading a stored webhook")?)))
        .collect()
}

/// What one event does: its outcome, the record's new view for the user's
/// stream, and the money it moves (each movement once per business key).
#[derive(Debug)]
pub(super) struct Decision {
    pub outcome: InboxOutcome,
    pub user_id: String,
    pub announce: Option<UserEvent>,
    pub moves: Vec<Movement>,
}

impl Decision {
    fn nothing(outcome: InboxOutcome) -> Decision {
        Decision { outcome, user_id: String::new(), announce: None, moves: Vec::new() }
    }

    /// Money that moves with no record to announce (a reservation, its release).
    pub fn money(user_id: &str, moves: Vec<Movement>) -> Decision {
        Decision { outcome: InboxOutcome::Applied, user_id: user_id.to_owned(), announce: None, moves }
    }
}

/// The local records a set of events is about, as the events leave them.
#[derive(Default)]
pub(super) struct Records {
    deposits: HashMap<Uuid, DepositRecord>,
    /// By Pientegra's `withdrawalId`.
    withdrawals: HashMap<Uuid, WithdrawalRecord>,
    changed_deposits: HashSet<Uuid>,
    changed_withdrawals: HashSet<Uuid>,
}

impl Records {
    /// What to load for `events`: the intent ids and the Pientegra withdrawal ids they name.
    pub fn wanted<'a>(events: impl IntoIterator<Item = &'a WebhookEvent>) -> (Vec<String>, Vec<String>) {
        let mut intent_ids = Vec::new();
        let mut withdrawal_ids = Vec::new();
        for event in events {
            match &event.kind {
                EventKind::Intent { intent, .. } => intent_ids.push(intent.id.to_string()),
                EventKind::Withdrawal { withdrawal, .. } => withdrawal_ids.push(withdrawal.id.to_string()),
                EventKind::Unknown { .. } => {}
            }
        }
        (intent_ids, withdrawal_ids)
    }

    /// The records found for [`Records::wanted`].
    pub fn new(deposits: Vec<DepositRecord>, withdrawals: Vec<WithdrawalRecord>) -> Records {
        Records {
            deposits: deposits.into_iter().map(|deposit| (deposit.intent_id, deposit)).collect(),
            withdrawals: withdrawals.into_iter().filter_map(|record| Some((record.withdrawal_id?, record))).collect(),
            ..Records::default()
        }
    }

    /// Decides `events` in order, each seeing what the ones before it did.
    pub fn decide_all<'a>(&mut self, events: impl IntoIterator<Item = &'a WebhookEvent>, now: i64) -> Vec<Decision> {
        events.into_iter().map(|event| self.decide(event, now)).collect()
    }

    /// The heart of the webhook path: one event against the local records.
    pub fn decide(&mut self, event: &WebhookEvent, now: i64) -> Decision {
        match &event.kind {
            EventKind::Unknown { .. } => Decision::nothing(InboxOutcome::Ignored),
            EventKind::Intent { event: kind, intent } => {
                let Some(deposit) = self.deposits.get_mut(&intent.id) else {
                    return Decision::nothing(InboxOutcome::Orphan);
                };
                if let Some(why) = ledger::refuse_snapshot(&deposit.user_id, &intent.external_user_id, intent.amount) {
                    tracing::error!(intent_id = %intent.id, why, "webhook not applied");
                    return Decision::nothing(InboxOutcome::Mismatch);
                }
                let Some(next) = ledger::plan_intent(deposit.status, *kind) else {
                    return Decision::nothing(InboxOutcome::Stale);
                };
                let credited = (next == IntentStatus::Approved).then_some(intent.amount);
                deposit.status = next;
                deposit.rejected_reason = intent.rejected_reason.clone().or(deposit.rejected_reason.take());
                deposit.credited_amount = credited.or(deposit.credited_amount);
                deposit.updated_at = time(now);
                self.changed_deposits.insert(intent.id);
                Decision {
                    outcome: InboxOutcome::Applied,
                    user_id: deposit.user_id.clone(),
                    announce: Some(UserEvent::Deposit(deposit.view())),
                    moves: credited.map(|credit| ledger::deposit_credit(intent.id, credit)).into_iter().collect(),
                }
            }
            EventKind::Withdrawal { event: kind, withdrawal: snapshot } => {
                let Some(record) = self.withdrawals.get_mut(&snapshot.id) else {
                    return Decision::nothing(InboxOutcome::Orphan);
                };
                if let Some(why) = ledger::refuse_snapshot(&record.user_id, &snapshot.external_user_id, snapshot.amount)
                {
                    tracing::error!(withdrawal_id = %snapshot.id, why, "webhook not applied");
                    return Decision::nothing(InboxOutcome::Mismatch);
                }
                let WithdrawalState::Known(current) = record.state else {
                    return Decision::nothing(InboxOutcome::Stale);
                };
                if snapshot.amount != record.amount {
                    tracing::warn!(withdrawal_id = %snapshot.id, "webhook amount differs from the requested amount; the local amount is used");
                }
                let Some(moves) =
                    ledger::plan_withdrawal(current, kind.status(), record.balance_model, snapshot.id, record.amount)
                else {
                    return Decision::nothing(InboxOutcome::Stale);
                };
                record.state = WithdrawalState::Known(kind.status());
                record.rejected_reason = snapshot.rejected_reason.clone().or(record.rejected_reason.take());
                record.updated_at = time(now);
                self.changed_withdrawals.insert(snapshot.id);
                Decision {
                    outcome: InboxOutcome::Applied,
                    user_id: record.user_id.clone(),
                    announce: record.view().map(UserEvent::Withdrawal),
                    moves,
                }
            }
        }
    }

    /// The deposits the events changed, to be written back.
    pub fn changed_deposits(&self) -> impl ExactSizeIterator<Item = &DepositRecord> {
        self.changed_deposits.iter().map(|id| &self.deposits[id])
    }

    /// The withdrawals the events changed, to be written back.
    pub fn changed_withdrawals(&self) -> impl ExactSizeIterator<Item = &WithdrawalRecord> {
        self.changed_withdrawals.iter().map(|id| &self.withdrawals[id])
    }
}

/// The balances and ledger keys a set of decisions moves money on, and the
/// ledger entries they add.
#[derive(Default)]
pub(super) struct Book {
    /// Business keys already in the ledger, and those added here.
    applied: HashSet<String>,
    /// (available, reserved) of each user a movement is planned for.
    balances: HashMap<String, (i64, i64)>,
    entries: Vec<(String, Movement)>,
    /// Users whose balance moved.
    moved: HashSet<String>,
}

impl Book {
    /// What to load for `decisions`: the business keys of their movements
    /// (which of them the ledger holds already) and the users who own them
    /// (their balances), each once and sorted.
    pub fn wanted(decisions: &[Decision]) -> (Vec<String>, Vec<String>) {
        let keys = decisions.iter().flat_map(|d| &d.moves).map(|m| m.business_key.clone()).collect();
        let users = decisions.iter().filter(|d| !d.moves.is_empty()).map(|d| d.user_id.clone()).collect();
        (dedup(keys), dedup(users))
    }

    /// The ledger keys found among the wanted ones, and the balances found of
    /// the wanted `users` (a user with no account has nothing).
    pub fn new(applied: Vec<String>, users: Vec<String>, balances: Vec<(String, i64, i64)>) -> Book {
        let mut all: HashMap<String, (i64, i64)> = users.into_iter().map(|user| (user, (0, 0))).collect();
        all.extend(balances.into_iter().map(|(user, available, reserved)| (user, (available, reserved))));
        Book { applied: applied.into_iter().collect(), balances: all, ..Book::default() }
    }

    /// Applies each movement whose business key is new; returns the user's
    /// balance after them when any moved money.
    pub fn apply(&mut self, user_id: &str, moves: Vec<Movement>) -> Result<Option<BalanceRow>> {
        let mut moved = false;
        for m in moves {
            if !self.applied.insert(m.business_key.clone()) {
                continue;
            }
            let balance = self.balances.get_mut(user_id).context("a balance loaded for every user with a movement")?;
            let after = balance.0.checked_add(m.available).zip(balance.1.checked_add(m.reserved));
            // What the accounts table's CHECK would refuse.
            let Some(after) = after.filter(|&(available, reserved)| available >= 0 && reserved >= 0) else {
                bail!("{} would take the balance of {user_id} out of range", m.business_key);
            };
            *balance = after;
            self.entries.push((user_id.to_owned(), m));
            moved = true;
        }
        if !moved {
            return Ok(None);
        }
        self.moved.insert(user_id.to_owned());
        let (available, reserved) = self.balances[user_id];
        Ok(Some(BalanceRow { available: amount(available)?, reserved: amount(reserved)? }))
    }

    /// The ledger entries to add: (user, movement), each with a new business key.
    pub fn entries(&self) -> &[(String, Movement)] {
        &self.entries
    }

    /// The new `(user, available, reserved)` of every balance that moved.
    pub fn moved(&self) -> impl ExactSizeIterator<Item = (&str, i64, i64)> {
        self.moved.iter().map(|user| {
            let (available, reserved) = self.balances[user];
            (user.as_str(), available, reserved)
        })
    }
}

/// Stream events a transaction produced, in order, to be appended to their
/// users' streams when it writes.
#[derive(Default)]
pub(super) struct Outbox {
    events: Vec<(String, UserEvent)>,
}

impl Outbox {
    pub fn push(&mut self, user_id: &str, event: UserEvent) {
        self.events.push((user_id.to_owned(), event));
    }

    /// How many events there are so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// The events, oldest first.
    pub fn events(&self) -> &[(String, UserEvent)] {
        &self.events
    }

    /// The users with events from the `from`-th on, each once (to wake after commit).
    pub fn users_from(&self, from: usize) -> Vec<String> {
        dedup(self.events[from..].iter().map(|(user, _)| user.clone()).collect())
    }
}

/// Carries out `decisions` in order: each one's record view, then the money
/// it moves on `book` and the balance after it, on the user's stream.
/// Returns what each did and whose streams it touched.
pub(super) fn settle(
    decisions: Vec<Decision>,
    book: &mut Book,
    outbox: &mut Outbox,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let mut changes = Vec::with_capacity(decisions.len());
    for decision in decisions {
        let from = outbox.len();
        if let Some(event) = decision.announce {
            outbox.push(&decision.user_id, event);
        }
        if let Some(balance) = book.apply(&decision.user_id, decision.moves)? {
            outbox.push(&decision.user_id, balance_event(balance));
        }
        changes.push(Changed { value: decision.outcome, touched: outbox.users_from(from) });
    }
    Ok(changes)
}

/// Whether a user with `balance`, whose final-debit requests hold back
/// `pending` ([`super::sql::SELECT_PENDING_FINAL_DEBIT`]), may ask to withdraw `requested`.
pub(super) fn check_funds(
    balance: BalanceRow,
    pending: i64,
    requested: Amount,
) -> Result<std::result::Result<(), InsufficientFunds>> {
    let spendable = minor(balance.available) - pending;
    if spendable < minor(requested) {
        return Ok(Err(InsufficientFunds { available: amount(spendable.max(0))? }));
    }
    Ok(Ok(()))
}

/// The money a new withdrawal request `local_id` takes at once: its
/// reservation under pre-reserve, nothing under final-debit.
pub(super) fn reservation(local_id: Uuid, request: &NewWithdrawal) -> Decision {
    let moves = match request.balance_model {
        BalanceModel::PreReserve => vec![ledger::withdrawal_reserve(local_id, request.amount)],
        BalanceModel::FinalDebit => Vec::new(),
    };
    Decision::money(&request.user_id, moves)
}

/// Pientegra accepted a request still SUBMITTING: it takes Pientegra's id and
/// reference and is PENDING_REVIEW, which the user's stream is told. `None`
/// (and no change) when the request was not SUBMITTING.
pub(super) fn accept(record: &mut WithdrawalRecord, created: &WithdrawalCreated, now: i64) -> Option<Decision> {
    if record.state != WithdrawalState::Submitting {
        return None;
    }
    record.withdrawal_id = Some(created.withdrawal_id);
    record.reference_no = Some(created.reference_no.clone());
    record.state = WithdrawalState::Known(WithdrawalStatus::PendingReview);
    record.updated_at = time(now);
    let announce = record.view().map(UserEvent::Withdrawal);
    Some(Decision { announce, ..Decision::money(&record.user_id, Vec::new()) })
}

/// Pientegra definitely refused a request still SUBMITTING: it is REFUSED
/// and a pre-reservation goes back. `None` (and no change) when the request
/// was not SUBMITTING.
pub(super) fn refuse(record: &mut WithdrawalRecord, reason: &str, now: i64) -> Option<Decision> {
    if record.state != WithdrawalState::Submitting {
        return None;
    }
    record.state = WithdrawalState::Refused;
    record.rejected_reason = Some(reason.to_owned());
    record.updated_at = time(now);
    let moves = match record.balance_model {
        BalanceModel::PreReserve => vec![ledger::withdrawal_release(record.local_id, record.amount)],
        BalanceModel::FinalDebit => Vec::new(),
    };
    Some(Decision::money(&record.user_id, moves))
}
