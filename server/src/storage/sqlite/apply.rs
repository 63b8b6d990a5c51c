//! Webhook events applied as a set. The deposits and withdrawals they are
//! about are read with one query per table; each event is then decided in
//! memory, in arrival order, seeing what the events before it did; the money
//! they move is checked against the ledger and the balances with one query
//! each; and every change is written back with one statement per table. A
//! batch of 200 webhooks costs the same handful of statements as one, which
//! is what lets group commit pay off: with SQLite behind sqlx, each statement
//! is a round trip to the connection's thread.
//!
//! It all runs inside the caller's write transaction on the one writer
//! connection, so nothing can change the rows between the reads and the writes.

use std::collections::{HashMap, HashSet};

use anyhow::bail;
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::{EventKind, WebhookEvent};
use pientegra_shared::status::IntentStatus;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::super::rows::{amount, deposit_from_row, minor, now_ms, time, withdrawal_from_row};
use super::super::{
    BalanceRow, Changed, DepositRecord, InboxOutcome, Result, WithdrawalRecord, WithdrawalState, balance_event,
};
use super::{Outbox, select_in};
use crate::ledger::{self, Movement};

/// Applies `events` in order, pushing the stream events they produce to
/// `outbox`; returns what each one did and whose streams it touched.
pub(super) async fn apply_events(
    conn: &mut SqliteConnection,
    events: &[&WebhookEvent],
    outbox: &mut Outbox,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let now = now_ms();
    let mut records = Records::load(conn, events).await?;
    let decisions: Vec<Decision> = events.iter().map(|event| records.decide(event, now)).collect();
    let mut money = Money::load(conn, &decisions).await?;
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
    records.write(conn, now).await?;
    money.write(conn, now).await?;
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
    async fn load(conn: &mut SqliteConnection, events: &[&WebhookEvent]) -> Result<Records> {
        let mut intent_ids = Vec::new();
        let mut withdrawal_ids = Vec::new();
        for event in events {
            match &event.kind {
                EventKind::Intent { intent, .. } => intent_ids.push(intent.id.to_string()),
                EventKind::Withdrawal { withdrawal, .. } => withdrawal_ids.push(withdrawal.id.to_string()),
                EventKind::Unknown { .. } => {}
            }
        }
        let select = "SELECT * FROM deposits WHERE intent_id IN (";
        let deposits = rows_in(conn, select, &intent_ids, |row| deposit_from_row(row)).await?;
        let deposits = deposits.into_iter().map(|deposit| (deposit.intent_id, deposit)).collect();
        let select = "SELECT * FROM withdrawals WHERE withdrawal_id IN (";
        let withdrawals = rows_in(conn, select, &withdrawal_ids, |row| withdrawal_from_row(row)).await?;
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
    async fn write(&self, conn: &mut SqliteConnection, now: i64) -> Result<()> {
        if !self.changed_deposits.is_empty() {
            let mut update = QueryBuilder::new(
                "UPDATE deposits SET status = v.column2, rejected_reason = v.column3, credited_amount = v.column4,
                 updated_at = ",
            );
            update.push_bind(now).push(" FROM (");
            update.push_values(&self.changed_deposits, |mut row, id| {
                let deposit = &self.deposits[id];
                row.push_bind(id.to_string())
                    .push_bind(deposit.status.as_str())
                    .push_bind(deposit.rejected_reason.as_deref())
                    .push_bind(deposit.credited_amount.map(minor));
            });
            update.push(") AS v WHERE deposits.intent_id = v.column1");
            update.build().execute(&mut *conn).await?;
        }
        if !self.changed_withdrawals.is_empty() {
            let mut update = QueryBuilder::new(
                "UPDATE withdrawals SET status = v.column2, rejected_reason = v.column3, updated_at = ",
            );
            update.push_bind(now).push(" FROM (");
            update.push_values(&self.changed_withdrawals, |mut row, id| {
                let record = &self.withdrawals[id];
                row.push_bind(record.local_id.to_string())
                    .push_bind(record.state.as_str())
                    .push_bind(record.rejected_reason.as_deref());
            });
            update.push(") AS v WHERE withdrawals.local_id = v.column1");
            update.build().execute(&mut *conn).await?;
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
    async fn load(conn: &mut SqliteConnection, decisions: &[Decision]) -> Result<Money> {
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
        let select = "SELECT business_key FROM ledger_entries WHERE business_key IN (";
        money.applied =
            select_in(select, &keys).build_query_scalar().fetch_all(&mut *conn).await?.into_iter().collect();
        let select = "SELECT user_id, available, reserved FROM accounts WHERE user_id IN (";
        let rows: Vec<(String, i64, i64)> = select_in(select, &users).build_query_as().fetch_all(&mut *conn).await?;
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
    async fn write(&self, conn: &mut SqliteConnection, now: i64) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        // No ON CONFLICT: the keys were checked above, so a clash is a bug and fails the transaction.
        let mut insert = QueryBuilder::new(
            "INSERT INTO ledger_entries (business_key, user_id, available_delta, reserved_delta, created_at) ",
        );
        insert.push_values(&self.entries, |mut row, (user_id, m)| {
            row.push_bind(&m.business_key)
                .push_bind(user_id)
                .push_bind(m.available)
                .push_bind(m.reserved)
                .push_bind(now);
        });
        insert.build().execute(&mut *conn).await?;
        let mut upsert = QueryBuilder::new("INSERT INTO accounts (user_id, available, reserved) ");
        upsert.push_values(&self.moved, |mut row, user_id| {
            let (available, reserved) = self.balances[user_id];
            row.push_bind(user_id).push_bind(available).push_bind(reserved);
        });
        upsert
            .push(" ON CONFLICT (user_id) DO UPDATE SET available = excluded.available, reserved = excluded.reserved");
        upsert.build().execute(&mut *conn).await?;
        Ok(())
    }
}

/// The rows `select` (ending in `IN (`) finds for `values`, read with `from_row`.
async fn rows_in<T>(
    conn: &mut SqliteConnection,
    select: &str,
    values: &[String],
    from_row: impl Fn(&SqliteRow) -> Result<T>,
) -> Result<Vec<T>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    select_in(select, values).build().fetch_all(&mut *conn).await?.iter().map(from_row).collect()
}
