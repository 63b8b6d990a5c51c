//! SQLite storage: WAL, `synchronous = FULL` so a commit is durable before the
//! webhook's 2xx, and one write transaction at a time, each run with rusqlite
//! on the thread that asked for it ([`direct`]); sqlx's pool of readers runs
//! beside it. Webhooks share commits ([`super::group_commit`]) and are applied as a
//! set ([`apply`]); idempotency claims in flight live in memory ([`claims`]);
//! WAL checkpoints run beside the writer, not inside its commits ([`checkpoint`]).

mod apply;
mod checkpoint;
mod claims;
mod direct;
mod group_commit;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::WebhookEvent;
use pientegra_shared::wire::WithdrawalCreated;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

use self::apply::{apply_events, settle_in};
use self::checkpoint::Checkpointer;
use self::claims::{Answers, Claims, Taken};
pub(super) use self::direct::Direct;
use super::group_commit::{Webhook, WebhookWriter};
use super::pgm::SqlitePgmRecords;
use super::procedure::{self, Outbox, subject_id};
use super::reads::Readers;
use super::rows::{amount, deposit_from_row, minor, now_ms, withdrawal_from_row};
use super::sql;
use super::{
    Audit, BalanceRow, Changed, Coordination, DepositRecord, DepositReply, EventLog, HeldLock, Idempotency,
    IdempotencyClaim, IdempotencyScope, InboxOutcome, InsufficientFunds, Ledger, NewDeposit, NewWithdrawal, PgmRecords,
    Reply, Result, Storage, StoredEvent, WithdrawalRecord,
};

/// The SQLite implementation of [`Storage`].
pub struct SqliteStorage {
    reads: Readers,
    direct: Arc<Direct>,
    webhooks: WebhookWriter,
    claims: Claims,
    answers: Answers,
    _checkpointer: Checkpointer,
    pgm: Arc<dyn PgmRecords>,
    /// One SQLite file serves one instance, so its locks are in-process.
    locks: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<SqliteStorage> {
        // The server's connections share one file; an in-memory database would be one per connection.
        anyhow::ensure!(
            !url.contains(":memory:") && !url.contains("mode=memory"),
            "DATABASE_URL: SQLite storage needs a file (sqlite://path.db), not an in-memory database"
        );
        let busy_timeout = Duration::from_secs(10);
        let options = SqliteConnectOptions::from_str(url)
            .context("DATABASE_URL is not a valid sqlite: URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout);
        let migrations = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .context("opening the SQLite database")?;
        sqlx::migrate!("./migrations/sqlite").run(&migrations).await.context("applying SQLite migrations")?;

        // The file is local: a connection cannot go stale between uses, and the
        // ping sqlx would send before lending one is a round trip to its thread.
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await
            .context("opening the SQLite database for reading")?;
        let direct = Arc::new(Direct::open(options.get_filename(), busy_timeout)?);
        // Writes run on their own connection now; the others keep the log open.
        migrations.close().await;
        let answers = Answers::open(options.get_filename())?;
        let checkpointer = Checkpointer::spawn(options.get_filename())?;
        // SQLite has one writer: a second task would only wait for it.
        let webhooks = WebhookWriter::spawn(direct.clone(), 1);
        let pgm = Arc::new(SqlitePgmRecords { pool: reader.clone(), direct: direct.clone() });
        Ok(SqliteStorage {
            reads: Readers::Sqlite(reader),
            direct,
            webhooks,
            claims: Claims::default(),
            answers,
            _checkpointer: checkpointer,
            pgm,
            locks: Default::default(),
        })
    }
}

// ---- statements run inside a write transaction -------------------------------------

/// Inserts a RESERVED deposit unless its intent is known, returning the row and
/// whether events about the intent arrived before it (orphans).
const INSERT_DEPOSIT: &str =
    "INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                           status, expires_at, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, 'RESERVED', ?, ?, ?) ON CONFLICT (intent_id) DO NOTHING
     RETURNING *, EXISTS (SELECT 1 FROM webhook_inbox WHERE subject_id = ? AND outcome = 'orphan') AS orphans";

// Reads by key, made inside write transactions.
const SELECT_DEPOSIT: &str = "SELECT * FROM deposits WHERE intent_id = ?";
const SELECT_WITHDRAWAL_BY_LOCAL_ID: &str = "SELECT * FROM withdrawals WHERE local_id = ?";

/// `rows` parenthesised tuples of `columns` placeholders: `(?, ?), (?, ?)`.
fn tuples(rows: usize, columns: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(", "));
    vec![one; rows].join(", ")
}

/// Runs `sql` with `values` bound in order.
fn execute(conn: &Connection, sql: &str, values: Vec<Value>) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values))?)
}

/// The rows `select` (ending in `IN `) finds for `values`, read with `from_row`.
fn rows_in<T>(
    conn: &Connection,
    select: &str,
    values: &[String],
    from_row: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(&format!("{select}{}", tuples(1, values.len())))?;
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(from_row(row)?);
    }
    Ok(found)
}

/// The one row `sql` finds for `params`, read with `from_row`.
fn row_in<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from_row: impl FnOnce(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    rows.next()?.map(from_row).transpose()
}

fn ensure_account(conn: &Connection, user_id: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO accounts (user_id) VALUES (?) ON CONFLICT (user_id) DO NOTHING")?
        .execute([user_id])?;
    Ok(())
}

/// Appends every event of `outbox` to its user's stream with the next
/// sequence numbers, in order: one sequence bump for all their users and one
/// insert for all the events.
fn write_outbox(conn: &Connection, outbox: &Outbox) -> Result<()> {
    let events = outbox.events();
    if events.is_empty() {
        return Ok(());
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for (user, _) in events {
        *counts.entry(user.as_str()).or_default() += 1;
    }
    // Creates an account on its first event: one statement either way.
    let bump = format!(
        "INSERT INTO accounts (user_id, last_seq) VALUES {}
             ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq RETURNING user_id, last_seq",
        tuples(counts.len(), 2)
    );
    let values = counts.iter().flat_map(|(user, count)| [Value::from((*user).to_owned()), Value::from(*count)]);
    let mut statement = conn.prepare_cached(&bump)?;
    let mut lasts = statement.query(rusqlite::params_from_iter(values))?;
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
    while let Some(row) = lasts.next()? {
        let (user, last): (String, i64) = (row.get(0)?, row.get(1)?);
        let (user, count) = counts.get_key_value(user.as_str()).context("an account's sequence")?;
        next.insert(user, last - count + 1);
    }
    let now = now_ms();
    let mut values = Vec::with_capacity(events.len() * 5);
    for (user, event) in events {
        let seq = next.get_mut(user.as_str()).context("every user was counted")?;
        values.extend([
            Value::from(user.clone()),
            Value::from(*seq),
            Value::from(event.name().to_owned()),
            Value::from(event.data()),
            Value::from(now),
        ]);
        *seq += 1;
    }
    let insert =
        format!("INSERT INTO user_events (user_id, seq, name, data, created_at) VALUES {}", tuples(events.len(), 5));
    execute(conn, &insert, values)?;
    Ok(())
}

fn push_event(conn: &Connection, user_id: &str, event: UserEvent) -> Result<()> {
    let mut outbox = Outbox::default();
    outbox.push(user_id, event);
    write_outbox(conn, &outbox)
}

fn balance_row(available: i64, reserved: i64) -> Result<BalanceRow> {
    Ok(BalanceRow { available: amount(available)?, reserved: amount(reserved)? })
}

fn read_balance(conn: &Connection, user_id: &str) -> Result<BalanceRow> {
    let row = row_in(conn, sql::SELECT_BALANCE, [user_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let (available, reserved) = row.unwrap_or_default();
    balance_row(available, reserved)
}

fn deposit_in(conn: &Connection, intent_id: Uuid) -> Result<Option<DepositRecord>> {
    row_in(conn, SELECT_DEPOSIT, [intent_id.to_string()], |row| deposit_from_row(row))
}

fn withdrawal_in(conn: &Connection, local_id: Uuid) -> Result<Option<WithdrawalRecord>> {
    row_in(conn, SELECT_WITHDRAWAL_BY_LOCAL_ID, [local_id.to_string()], |row| withdrawal_from_row(row))
}

/// Writes what [`procedure::accept`] or [`procedure::refuse`] changed of a withdrawal.
fn save_withdrawal(conn: &Connection, record: &WithdrawalRecord) -> Result<()> {
    conn.prepare_cached(sql::UPDATE_WITHDRAWAL)?.execute(params![
        record.withdrawal_id.map(|id| id.to_string()),
        record.reference_no,
        record.state.as_str(),
        record.rejected_reason,
        record.updated_at.timestamp_millis(),
        record.local_id.to_string(),
    ])?;
    Ok(())
}

/// Applies events that arrived before the record they are about ([`sql::SELECT_ORPHANS`]);
/// says whether there were any.
fn apply_orphans(conn: &Connection, subject_id: Uuid, outbox: &mut Outbox) -> Result<bool> {
    let mut statement = conn.prepare_cached(sql::SELECT_ORPHANS)?;
    let rows = statement
        .query_map([subject_id.to_string()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let orphans = procedure::parse_orphans(rows)?;
    let events: Vec<&WebhookEvent> = orphans.iter().map(|(_, event)| event).collect();
    let changes = apply_events(conn, &events, outbox)?;
    let now = now_ms();
    let mut update = conn.prepare_cached("UPDATE webhook_inbox SET outcome = ?, applied_at = ? WHERE event_id = ?")?;
    for ((event_id, _), changed) in orphans.iter().zip(changes) {
        update.execute(params![changed.value.as_str(), now, event_id])?;
    }
    Ok(!orphans.is_empty())
}

/// Dedupes by `eventId` (against the inbox and within `webhooks`), applies
/// each event in order and records them all in the inbox, inside the caller's
/// transaction. The inbox is read and written once for all of them.
fn apply_webhooks_in(conn: &Connection, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>> {
    let ids: Vec<String> = webhooks.iter().map(|(event, _)| event.event_id.to_string()).collect();
    let select = "SELECT event_id FROM webhook_inbox WHERE event_id IN ";
    let known: HashSet<String> = rows_in(conn, select, &ids, |row| Ok(row.get(0)?))?.into_iter().collect();
    let first = procedure::first_unknown(&ids, |id| known.contains(id));
    let fresh: Vec<(&String, Webhook<'_>)> =
        ids.iter().zip(webhooks).zip(&first).filter(|(_, first)| **first).map(|((id, &w), _)| (id, w)).collect();
    let events: Vec<&WebhookEvent> = fresh.iter().map(|(_, (event, _))| *event).collect();
    let mut outbox = Outbox::default();
    let applied = apply_events(conn, &events, &mut outbox)?;
    if !fresh.is_empty() {
        let now = now_ms();
        let mut values = Vec::with_capacity(fresh.len() * 7);
        for ((id, (event, body)), changed) in fresh.iter().zip(&applied) {
            values.extend([
                Value::from((*id).clone()),
                Value::from(event.event_type().to_owned()),
                Value::from(subject_id(event).map(|id| id.to_string())),
                Value::from(body.to_vec()),
                Value::from(changed.value.as_str().to_owned()),
                Value::from(now),
                Value::from(now),
            ]);
        }
        let insert = format!(
            "INSERT INTO webhook_inbox (event_id, event_type, subject_id, body, outcome, received_at, applied_at)
             VALUES {}",
            tuples(fresh.len(), 7)
        );
        execute(conn, &insert, values)?;
    }
    write_outbox(conn, &outbox)?;
    Ok(procedure::with_duplicates(&first, applied))
}

/// Stores the final answer to an idempotency key.
const STORE_REPLY: &str = "INSERT INTO idempotency (user_id, route, key, request_hash, state, locked_until,
                                 response_status, response_body, created_at)
     VALUES (?, ?, ?, ?, 'done', 0, ?, ?, ?)
     ON CONFLICT (user_id, route, key) DO UPDATE SET
         state = 'done', response_status = excluded.response_status, response_body = excluded.response_body";

fn store_reply(conn: &Connection, reply: &Reply<'_>, body: &str) -> Result<()> {
    conn.prepare_cached(STORE_REPLY)?.execute(params![
        reply.scope.user_id,
        reply.scope.route,
        reply.scope.key,
        reply.request_hash,
        reply.status,
        body,
        now_ms(),
    ])?;
    Ok(())
}

/// A rusqlite connection to `file` for `purpose`, used from one thread at a
/// time (behind a mutex or owned by a thread), so SQLite's own mutex is off.
fn open_direct(file: &Path, flags: OpenFlags, purpose: &str) -> anyhow::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(file, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening the SQLite database for {purpose}"))
}

impl Storage for SqliteStorage {
    fn pgm_records(&self) -> Arc<dyn PgmRecords> {
        self.pgm.clone()
    }
}

#[async_trait]
impl Idempotency for SqliteStorage {
    async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope<'_>,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyClaim> {
        match self.claims.take(scope, request_hash, now_ms(), lease_ms) {
            Taken::Mismatch => return Ok(IdempotencyClaim::Mismatch),
            Taken::InFlight => return Ok(IdempotencyClaim::InFlight),
            Taken::Claimed => {}
        }
        // Read after claiming: a request finishing now commits its answer
        // before it lets go of its claim, so either we saw its claim or we see its answer.
        let claim = match self.answers.find(scope) {
            Ok(None) => return Ok(IdempotencyClaim::Claimed),
            Ok(Some((hash, _, _))) if hash != request_hash => IdempotencyClaim::Mismatch,
            Ok(Some((_, status, body))) => {
                IdempotencyClaim::Done { status: u16::try_from(status).unwrap_or(500), body }
            }
            Err(e) => {
                self.claims.forget(scope);
                return Err(e);
            }
        };
        self.claims.forget(scope);
        Ok(claim)
    }

    async fn finish_idempotency(&self, reply: &Reply<'_>, body: &str) -> Result<()> {
        self.direct.write(|tx| store_reply(tx, reply, body)).await?;
        self.claims.forget(reply.scope);
        Ok(())
    }

    async fn settle_idempotency(&self, scope: &IdempotencyScope<'_>) -> Result<()> {
        self.claims.forget(scope);
        Ok(())
    }

    async fn release_idempotency(&self, scope: &IdempotencyScope<'_>) -> Result<()> {
        self.claims.forget(scope);
        Ok(())
    }
}

#[async_trait]
impl Ledger for SqliteStorage {
    async fn record_deposit(&self, d: NewDeposit, reply: Option<&DepositReply<'_>>) -> Result<Changed<DepositRecord>> {
        self.direct
            .write(|tx| {
                let now = now_ms();
                let intent_id = d.intent_id.to_string();
                let inserted = row_in(
                    tx,
                    INSERT_DEPOSIT,
                    params![
                        intent_id,
                        d.user_id,
                        d.reference_no,
                        d.deposit_url,
                        minor(d.requested_amount),
                        minor(d.amount),
                        d.currency,
                        d.expires_at.timestamp_millis(),
                        now,
                        now,
                        intent_id,
                    ],
                    |row| Ok((deposit_from_row(row)?, row.get::<_, bool>("orphans")?)),
                )?;
                let mut outbox = Outbox::default();
                let mut record = None;
                if let Some((inserted, orphans)) = inserted {
                    outbox.push(&d.user_id, UserEvent::Deposit(inserted.view()));
                    // Events that arrived first move it on: then read it again.
                    let moved_on = orphans && apply_orphans(tx, d.intent_id, &mut outbox)?;
                    if !moved_on {
                        record = Some(inserted);
                    }
                    write_outbox(tx, &outbox)?;
                }
                let record = match record {
                    Some(record) => record,
                    None => deposit_in(tx, d.intent_id)?.context("the deposit just recorded")?,
                };
                if let Some(answer) = reply {
                    store_reply(tx, &answer.reply, &record.reply_body(answer.framing))?;
                }
                Ok(Changed { value: record, touched: outbox.users_from(0) })
            })
            .await
    }

    async fn deposit(&self, intent_id: Uuid) -> Result<Option<DepositRecord>> {
        self.reads.deposit(intent_id).await
    }

    async fn note_under_review(&self, intent_id: Uuid) -> Result<Changed<bool>> {
        self.direct
            .write(|tx| {
                let updated = row_in(
                    tx,
                    "UPDATE deposits SET status = 'PENDING_REVIEW', updated_at = ?
                     WHERE intent_id = ? AND status = 'RESERVED' RETURNING *",
                    params![now_ms(), intent_id.to_string()],
                    |row| deposit_from_row(row),
                )?;
                let mut touched = Vec::new();
                if let Some(deposit) = updated {
                    push_event(tx, &deposit.user_id, UserEvent::Deposit(deposit.view()))?;
                    touched.push(deposit.user_id);
                }
                Ok(Changed { value: !touched.is_empty(), touched })
            })
            .await
    }

    async fn awaiting_transfer(&self, limit: i64) -> Result<Vec<DepositRecord>> {
        self.reads.awaiting_transfer(limit).await
    }

    async fn deposits_of(&self, user_id: &str, limit: i64) -> Result<Vec<DepositRecord>> {
        self.reads.deposits_of(user_id, limit).await
    }

    async fn reserve_withdrawal(
        &self,
        w: NewWithdrawal,
    ) -> Result<std::result::Result<Changed<WithdrawalRecord>, InsufficientFunds>> {
        self.direct
            .write(|tx| {
                let existing =
                    row_in(tx, sql::SELECT_WITHDRAWAL_BY_KEY, params![w.user_id, w.idempotency_key], |row| {
                        withdrawal_from_row(row)
                    })?;
                if let Some(existing) = existing {
                    return Ok(Ok(Changed { value: existing, touched: vec![] }));
                }
                let balance = read_balance(tx, &w.user_id)?;
                let pending: i64 =
                    tx.prepare_cached(sql::SELECT_PENDING_FINAL_DEBIT)?.query_row([&w.user_id], |row| row.get(0))?;
                if let Err(refused) = procedure::check_funds(balance, pending, w.amount)? {
                    // Nothing was written: the commit is empty.
                    return Ok(Err(refused));
                }
                ensure_account(tx, &w.user_id)?;
                let local_id = Uuid::now_v7();
                let now = now_ms();
                tx.prepare_cached(
                    "INSERT INTO withdrawals (local_id, user_id, idempotency_key, amount, currency, iban, holder_name,
                                              status, balance_model, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, 'SUBMITTING', ?, ?, ?)",
                )?
                .execute(params![
                    local_id.to_string(),
                    w.user_id,
                    w.idempotency_key,
                    minor(w.amount),
                    w.currency,
                    w.iban,
                    w.holder_name,
                    w.balance_model.as_str(),
                    now,
                    now,
                ])?;
                let mut outbox = Outbox::default();
                settle_in(tx, vec![procedure::reservation(local_id, &w)], &mut outbox, now)?;
                write_outbox(tx, &outbox)?;
                let record = withdrawal_in(tx, local_id)?.context("the new withdrawal")?;
                Ok(Ok(Changed { value: record, touched: outbox.users_from(0) }))
            })
            .await
    }

    async fn withdrawal_accepted(
        &self,
        local_id: Uuid,
        created: &WithdrawalCreated,
    ) -> Result<Changed<WithdrawalRecord>> {
        self.direct
            .write(|tx| {
                let mut record = withdrawal_in(tx, local_id)?.context("unknown withdrawal")?;
                let now = now_ms();
                let mut outbox = Outbox::default();
                if let Some(accepted) = procedure::accept(&mut record, created, now) {
                    save_withdrawal(tx, &record)?;
                    settle_in(tx, vec![accepted], &mut outbox, now)?;
                    apply_orphans(tx, created.withdrawal_id, &mut outbox)?;
                    write_outbox(tx, &outbox)?;
                }
                let record = withdrawal_in(tx, local_id)?.context("the withdrawal")?;
                Ok(Changed { value: record, touched: outbox.users_from(0) })
            })
            .await
    }

    async fn withdrawal_refused(&self, local_id: Uuid, reason: &str) -> Result<Changed<WithdrawalRecord>> {
        self.direct
            .write(|tx| {
                let mut record = withdrawal_in(tx, local_id)?.context("unknown withdrawal")?;
                let now = now_ms();
                let mut outbox = Outbox::default();
                if let Some(refused) = procedure::refuse(&mut record, reason, now) {
                    save_withdrawal(tx, &record)?;
                    settle_in(tx, vec![refused], &mut outbox, now)?;
                    write_outbox(tx, &outbox)?;
                }
                Ok(Changed { value: record, touched: outbox.users_from(0) })
            })
            .await
    }

    async fn withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<WithdrawalRecord>> {
        self.reads.withdrawal(withdrawal_id).await
    }

    async fn withdrawal_by_key(&self, user_id: &str, key: &str) -> Result<Option<WithdrawalRecord>> {
        self.reads.withdrawal_by_key(user_id, key).await
    }

    async fn withdrawals_of(&self, user_id: &str, limit: i64) -> Result<Vec<WithdrawalRecord>> {
        self.reads.withdrawals_of(user_id, limit).await
    }

    async fn submitting_withdrawals(&self) -> Result<Vec<WithdrawalRecord>> {
        self.reads.submitting_withdrawals().await
    }

    async fn apply_webhook(&self, event: &WebhookEvent, body: &[u8]) -> Result<Changed<InboxOutcome>> {
        self.webhooks.apply(event, body).await
    }

    async fn balance(&self, user_id: &str) -> Result<BalanceRow> {
        self.reads.balance(user_id).await
    }

    async fn deposits_created_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<DepositRecord>> {
        self.reads.deposits_created_between(from, to).await
    }

    async fn withdrawals_created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WithdrawalRecord>> {
        self.reads.withdrawals_created_between(from, to).await
    }
}

#[async_trait]
impl EventLog for SqliteStorage {
    async fn last_event_seq(&self, user_id: &str) -> Result<i64> {
        self.reads.last_event_seq(user_id).await
    }

    async fn events_after(&self, user_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        self.reads.events_after(user_id, after, limit).await
    }
}

#[async_trait]
impl Coordination for SqliteStorage {
    async fn ping(&self) -> Result<()> {
        self.reads.ping().await
    }

    async fn serving_starts(&self) -> Result<()> {
        // Claims in flight live in memory now; a file written by an older
        // version may still hold some, of requests that died with it.
        self.direct
            .write(|tx| {
                tx.execute("DELETE FROM idempotency WHERE state = 'in_flight'", [])?;
                Ok(())
            })
            .await
    }

    async fn try_lock(&self, name: &str) -> Result<Option<HeldLock>> {
        let lock = self.locks.lock().expect("locks").entry(name.to_owned()).or_default().clone();
        Ok(lock.try_lock_owned().ok().map(HeldLock::new))
    }

    async fn relay_changes(&self, _hub: crate::sse::Hub, _shutdown: tokio_util::sync::CancellationToken) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Audit for SqliteStorage {
    async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)> {
        self.reads.ledger_sum(user_id).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use pientegra_shared::Amount;
    use pientegra_shared::status::IntentStatus;

    use super::*;
    use crate::ledger::BalanceModel;

    /// The PGM facade writes to the same file through a connection of its
    /// own; the storage's transactions, which read before they write, must
    /// wait for it rather than fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_connection_writing_never_fails_a_write_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db").display());
        let storage = SqliteStorage::connect(&url).await.unwrap();
        let other = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::from_str(&url).unwrap().busy_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE other_writes (n INTEGER)").execute(&other).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writing = tokio::spawn({
            let stop = stop.clone();
            async move {
                while !stop.load(Ordering::Relaxed) {
                    sqlx::query("INSERT INTO other_writes VALUES (1)").execute(&other).await.unwrap();
                }
            }
        });
        for i in 0..300 {
            let request = NewWithdrawal {
                user_id: "u".into(),
                idempotency_key: format!("key-{i}"),
                amount: Amount::from_minor(1_000),
                currency: "TRY".into(),
                iban: "TR330006100519786457841326".into(),
                holder_name: "U".into(),
                balance_model: BalanceModel::PreReserve,
            };
            let refused = storage.reserve_withdrawal(request).await.unwrap_or_else(|e| panic!("request {i}: {e:#}"));
            assert!(refused.is_err(), "nothing to withdraw from");
        }
        stop.store(true, Ordering::Relaxed);
        writing.await.unwrap();
    }
    /// A new deposit recorded in the calling thread ([`direct`]) reads back
    /// through the readers as returned: the row, its stream event and the
    /// stored answer; recording it again changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_deposit_recorded_in_thread_reads_back_as_returned() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::connect(&format!("sqlite://{}", dir.path().join("db").display())).await.unwrap();
        let deposit = NewDeposit {
            intent_id: Uuid::new_v4(),
            user_id: "u".into(),
            reference_no: "REF-1".into(),
            deposit_url: "https://pay.example/d/1".into(),
            requested_amount: Amount::from_minor(150_000),
            amount: Amount::from_minor(150_001),
            currency: "TRY".into(),
            expires_at: Utc::now() + chrono::Duration::minutes(30),
        };
        let scope = IdempotencyScope { user_id: "u", route: "deposits", key: "k-1" };
        let framing = Some(pientegra_shared::api::Framing::ALLOWED);
        let reply = DepositReply { reply: Reply { scope: &scope, request_hash: "h", status: 201 }, framing };
        assert!(matches!(storage.claim_idempotency(&scope, "h", 60_000).await.unwrap(), IdempotencyClaim::Claimed));

        let recorded = storage.record_deposit(deposit.clone(), Some(&reply)).await.unwrap();
        storage.settle_idempotency(&scope).await.unwrap();

        assert_eq!(recorded.touched, ["u"]);
        let record = recorded.value;
        assert_eq!(
            (record.status, record.credited_amount, record.amount),
            (IntentStatus::Reserved, None, deposit.amount)
        );
        assert_eq!(storage.deposit(deposit.intent_id).await.unwrap().as_ref(), Some(&record));
        let events = storage.events_after("u", 0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].seq, events[0].name.as_str()), (1, UserEvent::DEPOSIT_UPDATED));
        assert_eq!(events[0].data, UserEvent::Deposit(record.view()).data());
        match storage.claim_idempotency(&scope, "h", 60_000).await.unwrap() {
            IdempotencyClaim::Done { status, body } => {
                assert_eq!((status, body.as_str()), (201, record.reply_body(framing).as_str()));
                assert!(body.contains(r#""framing":{"allowed":true,"reason":null}"#), "{body}");
            }
            _ => panic!("the answer was stored with the deposit"),
        }

        // Known already: the answer is the stored row, and no event is added.
        let again = storage.record_deposit(deposit, None).await.unwrap();
        assert_eq!((again.value, again.touched), (record, vec![]));
        assert_eq!(storage.last_event_seq("u").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_in_memory_database_is_refused_with_the_reason() {
        let Err(error) = SqliteStorage::connect("sqlite::memory:").await else { panic!("connected") };
        assert!(error.to_string().contains("needs a file"), "{error}");
    }
}
