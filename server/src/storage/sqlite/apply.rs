//! SQLite's side of the [ledger procedure](super::super::procedure), for a
//! set of webhook events at once. The deposits and withdrawals they are
//! about are read with one query per table; the procedure decides each event
//! in memory, in arrival order, seeing what the events before it did; the
//! money they move is checked against the ledger and the balances with one
//! query each; and every change is written back with one statement per
//! table. A batch of 200 webhooks costs the same handful of statements as
//! one, which is what lets group commit pay off.
//!
//! It all runs inside the caller's write transaction ([`super::direct`]), so
//! nothing can change the rows between the reads and the writes.

use pientegra_shared::event::WebhookEvent;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::super::procedure::{self, Book, Decision, Outbox, Records};
use super::super::rows::{deposit_from_row, minor, now_ms, withdrawal_from_row};
use super::super::{Changed, InboxOutcome, Result};
use super::{execute, rows_in, tuples};

/// Applies `events` in order, pushing the stream events they produce to
/// `outbox`; returns what each one did and whose streams it touched.
pub(super) fn apply_events(
    conn: &Connection,
    events: &[&WebhookEvent],
    outbox: &mut Outbox,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let now = now_ms();
    let mut records = load_records(conn, events)?;
    let decisions = records.decide_all(events.iter().copied(), now);
    write_records(conn, &records, now)?;
    settle_in(conn, decisions, outbox, now)
}

/// Carries out `decisions` ([`procedure::settle`]) against the ledger and
/// balances as they are in `conn`, and writes the money they move.
pub(super) fn settle_in(
    conn: &Connection,
    decisions: Vec<Decision>,
    outbox: &mut Outbox,
    now: i64,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let mut book = load_book(conn, &decisions)?;
    let changes = procedure::settle(decisions, &mut book, outbox)?;
    write_book(conn, &book, now)?;
    Ok(changes)
}

fn load_records(conn: &Connection, events: &[&WebhookEvent]) -> Result<Records> {
    let (intent_ids, withdrawal_ids) = Records::wanted(events.iter().copied());
    let select = "SELECT * FROM deposits WHERE intent_id IN ";
    let deposits = rows_in(conn, select, &intent_ids, |row| deposit_from_row(row))?;
    let select = "SELECT * FROM withdrawals WHERE withdrawal_id IN ";
    let withdrawals = rows_in(conn, select, &withdrawal_ids, |row| withdrawal_from_row(row))?;
    Ok(Records::new(deposits, withdrawals))
}

/// Writes the changed records back: one statement per table.
fn write_records(conn: &Connection, records: &Records, now: i64) -> Result<()> {
    let deposits = records.changed_deposits();
    if deposits.len() > 0 {
        let update = format!(
            "UPDATE deposits SET status = v.column2, rejected_reason = v.column3, credited_amount = v.column4,
             updated_at = ? FROM (VALUES {}) AS v WHERE deposits.intent_id = v.column1",
            tuples(deposits.len(), 4)
        );
        let mut values = vec![Value::from(now)];
        for deposit in deposits {
            values.extend([
                Value::from(deposit.intent_id.to_string()),
                Value::from(deposit.status.as_str().to_owned()),
                Value::from(deposit.rejected_reason.clone()),
                Value::from(deposit.credited_amount.map(minor)),
            ]);
        }
        execute(conn, &update, values)?;
    }
    let withdrawals = records.changed_withdrawals();
    if withdrawals.len() > 0 {
        let update = format!(
            "UPDATE withdrawals SET status = v.column2, rejected_reason = v.column3, updated_at = ?
             FROM (VALUES {}) AS v WHERE withdrawals.local_id = v.column1",
            tuples(withdrawals.len(), 3)
        );
        let mut values = vec![Value::from(now)];
        for record in withdrawals {
            values.extend([
                Value::from(record.local_id.to_string()),
                Value::from(record.state.as_str().to_owned()),
                Value::from(record.rejected_reason.clone()),
            ]);
        }
        execute(conn, &update, values)?;
    }
    Ok(())
}

/// The ledger keys and balances `decisions` move money on: one query each.
fn load_book(conn: &Connection, decisions: &[Decision]) -> Result<Book> {
    let (keys, users) = Book::wanted(decisions);
    if keys.is_empty() {
        return Ok(Book::default());
    }
    let select = "SELECT business_key FROM ledger_entries WHERE business_key IN ";
    let applied = rows_in(conn, select, &keys, |row| Ok(row.get(0)?))?;
    let select = "SELECT user_id, available, reserved FROM accounts WHERE user_id IN ";
    let balances = rows_in(conn, select, &users, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(Book::new(applied, users, balances))
}

/// Writes the new ledger entries and balances: one statement each.
fn write_book(conn: &Connection, book: &Book, now: i64) -> Result<()> {
    let entries = book.entries();
    if entries.is_empty() {
        return Ok(());
    }
    // No ON CONFLICT: the keys were checked above, so a clash is a bug and fails the transaction.
    let mut values = Vec::with_capacity(entries.len() * 5);
    for (user_id, m) in entries {
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
        tuples(entries.len(), 5)
    );
    execute(conn, &insert, values)?;
    let moved = book.moved();
    let upsert = format!(
        "INSERT INTO accounts (user_id, available, reserved) VALUES {}
         ON CONFLICT (user_id) DO UPDATE SET available = excluded.available, reserved = excluded.reserved",
        tuples(moved.len(), 3)
    );
    let mut values = Vec::with_capacity(moved.len() * 3);
    for (user_id, available, reserved) in moved {
        values.extend([Value::from(user_id.to_owned()), Value::from(available), Value::from(reserved)]);
    }
    execute(conn, &upsert, values)?;
    Ok(())
}
