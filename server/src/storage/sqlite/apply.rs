//! Webhook events applied as a set. The deposits and withdrawals they are
//! about are read with one query per table; each event is then decided in
//! memory, in arrival order, seeing what the events before it did; the money
//! they move is checked against the ledger and the balances with one query
//! each; and every change is written back with one statement per table. A
//! batch of 200 webhooks costs the same handful of statements as one, which
//! is what lets group commit pay off.
//!
//! It all runs inside the caller's write transaction ([`super::direct`]), so
//! nothing can change the rows between the reads and the writes.

use std::collections::{HashMap, HashSet};

use anyhow::bail;
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::{EventKind, WebhookEvent};
use pientegra_shared::status::IntentStatus;
use rusqlite::Connection;
use rusqlite::types::Value;
use uuid::Uuid;

use super::super::rows::{amount, deposit_from_row, minor, now_ms, time, withdrawal_from_row};
use super::super::{
    BalanceRow, Changed, DepositRecord, InboxOutcome, Result, WithdrawalRecord, WithdrawalState, balance_event,
};
use super::{Outbox, execute, rows_in, tuples};
use crate::ledger::{self, Movement};

/// Applies `events` in order, pushing the stream events they produce to
/// `outbox`; returns what each one did and whose streams it touched.
pub(super) fn apply_events(
    conn: &Connection,
    events: &[&WebhookEvent],
    outbox: &mut Outbox,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let now = now_ms();
    let mut records = Records::load(conn, events)?;
    let decisions: Vec<Decision> = events.iter().map(|event| records.decide(event, now)).collect();
    let mut money = Money::load(conn, &decisions)?;
    let mut changes = Vec::with_capacity(decisions.len());
    for decision in decisions {
        let from = outbox.events.len();
        if let Some(event) = decision.announce {
            outbox.push(&decision.user_id, event);
        }
        if let Some(balance) = money.apply(&decision.user_id, decision.moves)? {
            outbox.push(&decision.user_id, balance_event(balance));
        }
        changes.push(Changed { value: decision.outcome, touched: outbox.users_from(from) });
    }
    records.write(conn, now)?;
    money.write(conn, now)?;
    Ok(changes)
}

/// What one event does: its outcome, the record's new view for the user's
/// stream, and the money it moves.
struct Decision {
    outcome: InboxOutcome,
    user_id: String,
    announce: Option<UserEvent>,
    moves: Vec<Movement>,
}

impl Decision {
    fn nothing(outcome: InboxOutcome) -> Decision {
        Decision { outcome, user_id: String::new(), announce: None, moves: Vec::new() }
    }
}

/// The local records a set of events is about, as the events leave them.
struct Records {
    deposits: HashMap<Uuid, DepositRecord>,
    /// By Pientegra's `withdrawalId`.
    withdrawals: HashMap<Uuid, WithdrawalRecord>,
    changed_deposits: HashSet<Uuid>,
    changed_withdrawals: HashSet<Uuid>,
}

impl Records {
    fn load(conn: &Connection, events: &[&WebhookEvent]) -> Result<Records> {
        let mut intent_ids = Vec::new();
        let mut withdrawal_ids = Vec::new();
        for event in events {
            match &event.kind {
                EventKind::Intent { intent, .. } => intent_ids.push(intent.id.to_string()),
                EventKind::Withdrawal { withdrawal, .. } => withdrawal_ids.push(withdrawal.id.to_string()),
                EventKind::Unknown { .. } => {}
            }
        }
        let select = "SELECT * FROM deposits WHERE intent_id IN ";
        let deposits = rows_in(conn, select, &intent_ids, |row| deposit_from_row(row))?;
        let deposits = deposits.into_iter().map(|deposit| (deposit.intent_id, deposit)).collect();
        let select = "SELECT * FROM withdrawals WHERE withdrawal_id IN ";
        let withdrawals = rows_in(conn, select, &withdrawal_ids, |row| withdrawal_from_row(row))?;
        let withdrawals = withdrawals.into_iter().filter_map(|record| Some((record.withdrawal_id?, record))).collect();
        Ok(Records { deposits, withdrawals, changed_deposits: HashSet::new(), changed_withdrawals: HashSet::new() })
    }

    /// The heart of the webhook path: one event against the local records.
    fn decide(&mut self, event: &WebhookEvent, now: i64) -> Decision {
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

    /// Writes the changed records back: one statement per table.
    fn write(&self, conn: &Connection, now: i64) -> Result<()> {
        if !self.changed_deposits.is_empty() {
            let mut values = vec![Value::from(now)];
            for id in &self.changed_deposits {
                let deposit = &self.deposits[id];
                values.extend([
                    Value::from(id.to_string()),
                    Value::from(deposit.status.as_str().to_owned()),
                    Value::from(deposit.rejected_reason.clone()),
                    Value::from(deposit.credited_amount.map(minor)),
                ]);
            }
            let update = format!(
                "UPDATE deposits SET status = v.column2, rejected_reason = v.column3, credited_amount = v.column4,
                 updated_at = ? FROM (VALUES {}) AS v WHERE deposits.intent_id = v.column1",
                tuples(self.changed_deposits.len(), 4)
            );
            execute(conn, &update, values)?;
        }
        if !self.changed_withdrawals.is_empty() {
            let mut values = vec![Value::from(now)];
            for id in &self.changed_withdrawals {
                let record = &self.withdrawals[id];
                values.extend([
                    Value::from(record.local_id.to_string()),
                    Value::from(record.state.as_str().to_owned()),
                    Value::from(record.rejected_reason.clone()),
                ]);
            }
            let update = format!(
                "UPDATE withdrawals SET status = v.column2, rejected_reason = v.column3, updated_at = ?
                 FROM (VALUES {}) AS v WHERE withdrawals.local_id = v.column1",
                tuples(self.changed_withdrawals.len(), 3)
            );
            execute(conn, &update, values)?;
        }
        Ok(())
    }
}

/// The balances and ledger keys a set of events moves money on, and the
/// ledger entries they add.
struct Money {
    /// Business keys already in the ledger, and those added here.
    applied: HashSet<String>,
    /// (available, reserved) of each user a movement is planned for.
    balances: HashMap<String, (i64, i64)>,
    entries: Vec<(String, Movement)>,
    /// Users whose balance moved.
    moved: HashSet<String>,
}

impl Money {
    fn load(conn: &Connection, decisions: &[Decision]) -> Result<Money> {
        let keys: Vec<String> = decisions.iter().flat_map(|d| &d.moves).map(|m| m.business_key.clone()).collect();
        let mut users: Vec<String> =
            decisions.iter().filter(|d| !d.moves.is_empty()).map(|d| d.user_id.clone()).collect();
        users.sort();
        users.dedup();
        let mut money =
            Money { applied: HashSet::new(), balances: HashMap::new(), entries: Vec::new(), moved: HashSet::new() };
        if keys.is_empty() {
            return Ok(money);
        }
        let select = "SELECT business_key FROM ledger_entries WHERE business_key IN ";
        money.applied = rows_in(conn, select, &keys, |row| Ok(row.get(0)?))?.into_iter().collect();
        let select = "SELECT user_id, available, reserved FROM accounts WHERE user_id IN ";
        let rows: Vec<(String, i64, i64)> =
            rows_in(conn, select, &users, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        money.balances = users.into_iter().map(|user| (user, (0, 0))).collect();
        money.balances.extend(rows.into_iter().map(|(user, available, reserved)| (user, (available, reserved))));
        Ok(money)
    }

    /// Applies each movement whose business key is new; returns the user's
    /// balance after them when any moved money.
    fn apply(&mut self, user_id: &str, moves: Vec<Movement>) -> Result<Option<BalanceRow>> {
        let mut moved = false;
        for m in moves {
            if !self.applied.insert(m.business_key.clone()) {
                continue;
            }
            let balance = self.balances.get_mut(user_id).expect("loaded for every user with a movement");
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

    /// Writes the new ledger entries and balances: one statement each.
    fn write(&self, conn: &Connection, now: i64) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        // No ON CONFLICT: the keys were checked above, so a clash is a bug and fails the transaction.
        let mut values = Vec::with_capacity(self.entries.len() * 5);
        for (user_id, m) in &self.entries {
            values.extend([
                Value::from(m.business_key.clone()),
                Value::from(user_id.clone()),
                Value::from(m.available),
                Value::from(m.reserved),
                Value::from(now),
            ]);
        }
        let insert = format!(
            "INSERT INTO ledger_entries (business_key, user_id, available_delta, reserved_delta, created_at) VALUES {}",
            tuples(self.entries.len(), 5)
        );
        execute(conn, &insert, values)?;
        let mut values = Vec::with_capacity(self.moved.len() * 3);
        for user_id in &self.moved {
            let (available, reserved) = self.balances[user_id];
            values.extend([Value::from(user_id.clone()), Value::from(available), Value::from(reserved)]);
        }
        let upsert = format!(
            "INSERT INTO accounts (user_id, available, reserved) VALUES {}
             ON CONFLICT (user_id) DO UPDATE SET available = excluded.available, reserved = excluded.reserved",
            tuples(self.moved.len(), 3)
        );
        execute(conn, &upsert, values)?;
        Ok(())
    }
}
