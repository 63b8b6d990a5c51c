//! SQLite storage: WAL, `synchronous = FULL` so a commit is durable before the
//! webhook's 2xx, and one writer connection so write transactions never race
//! (readers run beside it on their own pool). Webhooks share commits
//! ([`group_commit`]) and are applied as a set ([`apply`]); idempotency claims
//! in flight live in memory ([`claims`]); WAL checkpoints run beside the
//! writer, not inside its commits ([`checkpoint`]).

mod apply;
mod checkpoint;
mod claims;
mod group_commit;
mod new_deposit;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::{EventKind, WebhookEvent};
use pientegra_shared::status::WithdrawalStatus;
use pientegra_shared::wire::WithdrawalCreated;
use rusqlite::OpenFlags;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;

use self::apply::apply_events;
use self::checkpoint::Checkpointer;
use self::claims::{Answers, Claims, Taken};
use self::group_commit::WebhookWriter;
use self::new_deposit::{NewDeposits, blocking_here};
use super::rows::{amount, deposit_from_row, minor, now_ms, withdrawal_from_row};
use super::{
    BalanceRow, Changed, DepositRecord, HeldLock, IdempotencyClaim, IdempotencyScope, InboxOutcome, InsufficientFunds,
    NewDeposit, NewWithdrawal, Reply, Result, Storage, StoredEvent, WithdrawalRecord, WithdrawalState, balance_event,
};
use crate::ledger::{self, BalanceModel, Movement};

/// The SQLite implementation of [`Storage`].
pub struct SqliteStorage {
    writer: SqlitePool,
    reader: SqlitePool,
    webhooks: WebhookWriter,
    new_deposits: NewDeposits,
    claims: Claims,
    answers: Answers,
    _checkpointer: Checkpointer,
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
        // The file is local: a connection cannot go stale between uses, and the
        // ping sqlx would send before lending one is a round trip to its thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .context("opening the SQLite database")?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await.context("applying SQLite migrations")?;

        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await
            .context("opening the SQLite database for reading")?;
        let new_deposits = NewDeposits::open(options.get_filename(), busy_timeout)?;
        let answers = Answers::open(options.get_filename())?;
        let checkpointer = Checkpointer::spawn(options.get_filename())?;
        let webhooks = WebhookWriter::spawn(writer.clone());
        Ok(SqliteStorage {
            writer,
            reader,
            webhooks,
            new_deposits,
            claims: Claims::default(),
            answers,
            _checkpointer: checkpointer,
            locks: Default::default(),
        })
    }
}

// ---- statements run inside a write transaction -------------------------------------

/// Begins a write transaction holding SQLite's write lock from its first
/// statement. A deferred one that reads first could not take the lock later if
/// another connection (the PGM facade has its own) wrote in between: SQLite
/// fails that at once ("database is locked") instead of waiting.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A write transaction ([`BEGIN_WRITE`]) on the writer pool's connection.
async fn write_transaction(writer: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(writer.begin_with(BEGIN_WRITE).await?)
}

/// Inserts a RESERVED deposit unless its intent is known, returning the row and
/// whether events about the intent arrived before it (orphans).
const INSERT_DEPOSIT: &str =
    "INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                           status, expires_at, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, 'RESERVED', ?, ?, ?) ON CONFLICT (intent_id) DO NOTHING
     RETURNING *, EXISTS (SELECT 1 FROM webhook_inbox WHERE subject_id = ? AND outcome = 'orphan') AS orphans";

async fn ensure_account(conn: &mut SqliteConnection, user_id: &str) -> Result<()> {
    sqlx::query("INSERT INTO accounts (user_id) VALUES (?) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stream events a transaction produced, in order, to be written together:
/// one sequence bump for all their users and one insert for all the events.
#[derive(Default)]
struct Outbox {
    events: Vec<(String, UserEvent)>,
}

impl Outbox {
    fn push(&mut self, user_id: &str, event: UserEvent) {
        self.events.push((user_id.to_owned(), event));
    }

    /// The users with events from the `from`-th on, each once (to wake after commit).
    fn users_from(&self, from: usize) -> Vec<String> {
        dedup(self.events[from..].iter().map(|(user, _)| user.clone()).collect())
    }

    /// Appends every event to its user's stream with the next sequence numbers, in order.
    async fn write(&self, conn: &mut SqliteConnection) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for (user, _) in &self.events {
            *counts.entry(user.as_str()).or_default() += 1;
        }
        // Creates an account on its first event: one statement either way.
        let mut bump = QueryBuilder::new("INSERT INTO accounts (user_id, last_seq) ");
        bump.push_values(&counts, |mut row, (user, count)| {
            row.push_bind(*user).push_bind(*count);
        });
        bump.push(" ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq");
        bump.push(" RETURNING user_id, last_seq");
        let lasts: Vec<(String, i64)> = bump.build_query_as().fetch_all(&mut *conn).await?;
        let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
        for (user, last) in &lasts {
            let (user, count) = counts.get_key_value(user.as_str()).context("an account's sequence")?;
            next.insert(user, last - count + 1);
        }
        let now = now_ms();
        let mut insert = QueryBuilder::new("INSERT INTO user_events (user_id, seq, name, data, created_at) ");
        insert.push_values(&self.events, |mut row, (user, event)| {
            let seq = next.get_mut(user.as_str()).expect("every user was counted");
            row.push_bind(user.as_str()).push_bind(*seq).push_bind(event.name()).push_bind(event.data()).push_bind(now);
            *seq += 1;
        });
        insert.build().execute(&mut *conn).await?;
        Ok(())
    }
}

async fn push_event(conn: &mut SqliteConnection, user_id: &str, event: UserEvent) -> Result<()> {
    let mut outbox = Outbox::default();
    outbox.push(user_id, event);
    outbox.write(conn).await
}

async fn read_balance(conn: &mut SqliteConnection, user_id: &str) -> Result<BalanceRow> {
    let row: Option<(i64, i64)> = sqlx::query_as("SELECT available, reserved FROM accounts WHERE user_id = ?")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    let (available, reserved) = row.unwrap_or_default();
    Ok(BalanceRow { available: amount(available)?, reserved: amount(reserved)? })
}

/// Applies a movement unless its business key was applied before. Returns the
/// new balance when it moved money.
async fn apply_movement(conn: &mut SqliteConnection, user_id: &str, m: &Movement) -> Result<Option<BalanceRow>> {
    let inserted = sqlx::query(
        "INSERT INTO ledger_entries (business_key, user_id, available_delta, reserved_delta, created_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (business_key) DO NOTHING",
    )
    .bind(&m.business_key)
    .bind(user_id)
    .bind(m.available)
    .bind(m.reserved)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let update = || {
        sqlx::query_as(
            "UPDATE accounts SET available = available + ?, reserved = reserved + ? WHERE user_id = ?
             RETURNING available, reserved",
        )
        .bind(m.available)
        .bind(m.reserved)
        .bind(user_id)
    };
    let mut balance: Option<(i64, i64)> = update().fetch_optional(&mut *conn).await?;
    if balance.is_none() {
        // A user's first movement (accounts are normally made by their first event).
        ensure_account(conn, user_id).await?;
        balance = update().fetch_optional(&mut *conn).await?;
    }
    let (available, reserved) = balance.with_context(|| format!("applying {}", m.business_key))?;
    Ok(Some(BalanceRow { available: amount(available)?, reserved: amount(reserved)? }))
}

async fn announce_balance(conn: &mut SqliteConnection, user_id: &str) -> Result<()> {
    let balance = read_balance(conn, user_id).await?;
    push_event(conn, user_id, balance_event(balance)).await
}

async fn deposit_in(conn: &mut SqliteConnection, intent_id: Uuid) -> Result<Option<DepositRecord>> {
    sqlx::query("SELECT * FROM deposits WHERE intent_id = ?")
        .bind(intent_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(deposit_from_row)
        .transpose()
}

async fn withdrawal_in(conn: &mut SqliteConnection, column: &str, id: &str) -> Result<Option<WithdrawalRecord>> {
    // `column` is one of two literals chosen by this module, never user input.
    sqlx::query(&format!("SELECT * FROM withdrawals WHERE {column} = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(withdrawal_from_row)
        .transpose()
}

/// Applies events that arrived before the record they are about; says whether there were any.
async fn apply_orphans(conn: &mut SqliteConnection, subject_id: Uuid, outbox: &mut Outbox) -> Result<bool> {
    let orphans: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT event_id, body FROM webhook_inbox WHERE subject_id = ? AND outcome = 'orphan' ORDER BY received_at",
    )
    .bind(subject_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let events = orphans
        .iter()
        .map(|(_, body)| WebhookEvent::parse(body).context("re-reading a stored webhook"))
        .collect::<Result<Vec<_>>>()?;
    let changes = apply_events(conn, &events.iter().collect::<Vec<_>>(), outbox).await?;
    let now = now_ms();
    for ((event_id, _), changed) in orphans.iter().zip(changes) {
        sqlx::query("UPDATE webhook_inbox SET outcome = ?, applied_at = ? WHERE event_id = ?")
            .bind(changed.value.as_str())
            .bind(now)
            .bind(event_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(!orphans.is_empty())
}

/// A verified webhook: the parsed event and its raw body.
pub(super) type Webhook<'a> = (&'a WebhookEvent, &'a [u8]);

/// Dedupes by `eventId` (against the inbox and within `webhooks`), applies
/// each event in order and records them all in the inbox, inside the caller's
/// transaction. The inbox is read and written once for all of them.
async fn apply_webhooks_in(
    conn: &mut SqliteConnection,
    webhooks: &[Webhook<'_>],
) -> Result<Vec<Changed<InboxOutcome>>> {
    let ids: Vec<String> = webhooks.iter().map(|(event, _)| event.event_id.to_string()).collect();
    let mut seen = known_events(conn, &ids).await?;
    // Whether each webhook's eventId is new (not in the inbox, nor earlier in `webhooks`).
    let first: Vec<bool> = ids.iter().map(|id| seen.insert(id.as_str())).collect();
    let fresh: Vec<(&String, Webhook<'_>)> =
        ids.iter().zip(webhooks).zip(&first).filter(|(_, first)| **first).map(|((id, &w), _)| (id, w)).collect();
    let events: Vec<&WebhookEvent> = fresh.iter().map(|(_, (event, _))| *event).collect();
    let mut outbox = Outbox::default();
    let applied = apply_events(conn, &events, &mut outbox).await?;
    if !fresh.is_empty() {
        let now = now_ms();
        let mut insert = QueryBuilder::new(
            "INSERT INTO webhook_inbox (event_id, event_type, subject_id, body, outcome, received_at, applied_at) ",
        );
        insert.push_values(fresh.iter().zip(&applied), |mut row, ((id, (event, body)), changed)| {
            row.push_bind(id.as_str())
                .push_bind(event.event_type())
                .push_bind(subject_id(event).map(|id| id.to_string()))
                .push_bind(*body)
                .push_bind(changed.value.as_str())
                .push_bind(now)
                .push_bind(now);
        });
        insert.build().execute(&mut *conn).await?;
    }
    outbox.write(conn).await?;
    let mut applied = applied.into_iter();
    let duplicate = || Changed { value: InboxOutcome::Duplicate, touched: vec![] };
    Ok(first
        .into_iter()
        .map(|first| if first { applied.next().expect("one per new webhook") } else { duplicate() })
        .collect())
}

/// Which of `ids` the inbox holds already.
async fn known_events<'a>(conn: &mut SqliteConnection, ids: &'a [String]) -> Result<HashSet<&'a str>> {
    let select = "SELECT event_id FROM webhook_inbox WHERE event_id IN (";
    let known: HashSet<String> =
        select_in(select, ids).build_query_scalar().fetch_all(&mut *conn).await?.into_iter().collect();
    Ok(ids.iter().map(String::as_str).filter(|id| known.contains(*id)).collect())
}

/// `select` followed by one bound parameter per value and a closing parenthesis.
fn select_in<'a>(select: &str, values: &'a [String]) -> QueryBuilder<'a, Sqlite> {
    let mut query = QueryBuilder::new(select);
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value.as_str());
    }
    query.push(")");
    query
}

/// Stores the final answer to an idempotency key.
const STORE_REPLY: &str = "INSERT INTO idempotency (user_id, route, key, request_hash, state, locked_until,
                                 response_status, response_body, created_at)
     VALUES (?, ?, ?, ?, 'done', 0, ?, ?, ?)
     ON CONFLICT (user_id, route, key) DO UPDATE SET
         state = 'done', response_status = excluded.response_status, response_body = excluded.response_body";

async fn store_reply(conn: &mut SqliteConnection, reply: &Reply<'_>, body: &str) -> Result<()> {
    sqlx::query(STORE_REPLY)
        .bind(reply.scope.user_id)
        .bind(reply.scope.route)
        .bind(reply.scope.key)
        .bind(reply.request_hash)
        .bind(i64::from(reply.status))
        .bind(body)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn subject_id(event: &WebhookEvent) -> Option<Uuid> {
    match &event.kind {
        EventKind::Intent { intent, .. } => Some(intent.id),
        EventKind::Withdrawal { withdrawal, .. } => Some(withdrawal.id),
        EventKind::Unknown { .. } => None,
    }
}

fn dedup(mut users: Vec<String>) -> Vec<String> {
    users.sort();
    users.dedup();
    users
}

/// A rusqlite connection to `file` for `purpose`, used from one thread at a
/// time (behind a mutex or owned by a thread), so SQLite's own mutex is off.
fn open_direct(file: &Path, flags: OpenFlags, purpose: &str) -> anyhow::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(file, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening the SQLite database for {purpose}"))
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

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
        store_reply(&mut *self.writer.acquire().await?, reply, body).await?;
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

    async fn record_deposit(&self, d: NewDeposit, reply: Option<&Reply<'_>>) -> Result<Changed<DepositRecord>> {
        // The common case, in this thread ([`new_deposit`]); holding the writer pool's
        // one connection keeps every other write out meanwhile.
        let mut writer = self.writer.acquire().await?;
        if let Some(record) = blocking_here(|| self.new_deposits.record(&d, reply))? {
            let touched = vec![record.user_id.clone()];
            return Ok(Changed { value: record, touched });
        }

        // The general path, on the connection already held.
        let mut tx = writer.begin_with(BEGIN_WRITE).await?;
        let now = now_ms();
        let inserted = sqlx::query(INSERT_DEPOSIT)
            .bind(d.intent_id.to_string())
            .bind(&d.user_id)
            .bind(&d.reference_no)
            .bind(&d.deposit_url)
            .bind(minor(d.requested_amount))
            .bind(minor(d.amount))
            .bind(&d.currency)
            .bind(d.expires_at.timestamp_millis())
            .bind(now)
            .bind(now)
            .bind(d.intent_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let mut touched = Vec::new();
        let mut record = None;
        if let Some(row) = inserted {
            let inserted = deposit_from_row(&row)?;
            let mut outbox = Outbox::default();
            outbox.push(&d.user_id, UserEvent::Deposit(inserted.view()));
            // Events that arrived first move it on: then read it again.
            let moved_on = row.try_get("orphans")? && apply_orphans(&mut tx, d.intent_id, &mut outbox).await?;
            if !moved_on {
                record = Some(inserted);
            }
            outbox.write(&mut tx).await?;
            touched.extend(outbox.users_from(0));
        }
        let record = match record {
            Some(record) => record,
            None => deposit_in(&mut tx, d.intent_id).await?.context("the deposit just recorded")?,
        };
        if let Some(reply) = reply {
            store_reply(&mut tx, reply, &record.reply_body()).await?;
        }
        tx.commit().await?;
        Ok(Changed { value: record, touched: dedup(touched) })
    }

    async fn deposit(&self, intent_id: Uuid) -> Result<Option<DepositRecord>> {
        let mut conn = self.reader.acquire().await?;
        deposit_in(&mut conn, intent_id).await
    }

    async fn note_under_review(&self, intent_id: Uuid) -> Result<Changed<bool>> {
        let mut tx = write_transaction(&self.writer).await?;
        let updated = sqlx::query(
            "UPDATE deposits SET status = 'PENDING_REVIEW', updated_at = ? WHERE intent_id = ? AND status = 'RESERVED'
             RETURNING *",
        )
        .bind(now_ms())
        .bind(intent_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let mut touched = Vec::new();
        if let Some(row) = updated {
            let deposit = deposit_from_row(&row)?;
            push_event(&mut tx, &deposit.user_id, UserEvent::Deposit(deposit.view())).await?;
            touched.push(deposit.user_id);
        }
        tx.commit().await?;
        Ok(Changed { value: !touched.is_empty(), touched })
    }

    async fn awaiting_transfer(&self, limit: i64) -> Result<Vec<DepositRecord>> {
        sqlx::query(
            "SELECT * FROM deposits WHERE status = 'RESERVED' AND expires_at > ? ORDER BY created_at DESC LIMIT ?",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(deposit_from_row)
        .collect()
    }

    async fn deposits_of(&self, user_id: &str, limit: i64) -> Result<Vec<DepositRecord>> {
        sqlx::query("SELECT * FROM deposits WHERE user_id = ? ORDER BY created_at DESC, intent_id DESC LIMIT ?")
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(deposit_from_row)
            .collect()
    }

    async fn reserve_withdrawal(
        &self,
        w: NewWithdrawal,
    ) -> Result<std::result::Result<Changed<WithdrawalRecord>, InsufficientFunds>> {
        let mut tx = write_transaction(&self.writer).await?;
        if let Some(existing) = withdrawal_by_key_in(&mut tx, &w.user_id, &w.idempotency_key).await? {
            return Ok(Ok(Changed { value: existing, touched: vec![] }));
        }
        ensure_account(&mut tx, &w.user_id).await?;
        let balance = read_balance(&mut tx, &w.user_id).await?;
        // Final-debit leaves the balance alone until `sent`, so pending requests count against it here.
        let pending: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount), 0) FROM withdrawals
             WHERE user_id = ? AND balance_model = 'final-debit' AND status IN ('SUBMITTING', 'PENDING_REVIEW', 'APPROVED')",
        )
        .bind(&w.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let spendable = minor(balance.available) - pending;
        if spendable < minor(w.amount) {
            return Ok(Err(InsufficientFunds { available: amount(spendable.max(0))? }));
        }
        let local_id = Uuid::now_v7();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO withdrawals (local_id, user_id, idempotency_key, amount, currency, iban, holder_name, status,
                                      balance_model, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'SUBMITTING', ?, ?, ?)",
        )
        .bind(local_id.to_string())
        .bind(&w.user_id)
        .bind(&w.idempotency_key)
        .bind(minor(w.amount))
        .bind(&w.currency)
        .bind(&w.iban)
        .bind(&w.holder_name)
        .bind(w.balance_model.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut touched = Vec::new();
        if w.balance_model == BalanceModel::PreReserve {
            apply_movement(&mut tx, &w.user_id, &ledger::withdrawal_reserve(local_id, w.amount)).await?;
            announce_balance(&mut tx, &w.user_id).await?;
            touched.push(w.user_id.clone());
        }
        let record = withdrawal_in(&mut tx, "local_id", &local_id.to_string()).await?.context("the new withdrawal")?;
        tx.commit().await?;
        Ok(Ok(Changed { value: record, touched }))
    }

    async fn withdrawal_accepted(
        &self,
        local_id: Uuid,
        created: &WithdrawalCreated,
    ) -> Result<Changed<WithdrawalRecord>> {
        let mut tx = write_transaction(&self.writer).await?;
        let record = withdrawal_in(&mut tx, "local_id", &local_id.to_string()).await?.context("unknown withdrawal")?;
        let mut touched = Vec::new();
        if record.state == WithdrawalState::Submitting {
            let updated = sqlx::query(
                "UPDATE withdrawals SET withdrawal_id = ?, reference_no = ?, status = ?, updated_at = ?
                 WHERE local_id = ? RETURNING *",
            )
            .bind(created.withdrawal_id.to_string())
            .bind(&created.reference_no)
            .bind(WithdrawalStatus::PendingReview.as_str())
            .bind(now_ms())
            .bind(local_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
            let record = withdrawal_from_row(&updated)?;
            if let Some(view) = record.view() {
                push_event(&mut tx, &record.user_id, UserEvent::Withdrawal(view)).await?;
            }
            touched.push(record.user_id.clone());
            let mut outbox = Outbox::default();
            apply_orphans(&mut tx, created.withdrawal_id, &mut outbox).await?;
            outbox.write(&mut tx).await?;
            touched.extend(outbox.users_from(0));
        }
        let record = withdrawal_in(&mut tx, "local_id", &local_id.to_string()).await?.context("the withdrawal")?;
        tx.commit().await?;
        Ok(Changed { value: record, touched: dedup(touched) })
    }

    async fn withdrawal_refused(&self, local_id: Uuid, reason: &str) -> Result<Changed<WithdrawalRecord>> {
        let mut tx = write_transaction(&self.writer).await?;
        let record = withdrawal_in(&mut tx, "local_id", &local_id.to_string()).await?.context("unknown withdrawal")?;
        let mut touched = Vec::new();
        if record.state == WithdrawalState::Submitting {
            sqlx::query(
                "UPDATE withdrawals SET status = 'REFUSED', rejected_reason = ?, updated_at = ? WHERE local_id = ?",
            )
            .bind(reason)
            .bind(now_ms())
            .bind(local_id.to_string())
            .execute(&mut *tx)
            .await?;
            if record.balance_model == BalanceModel::PreReserve
                && apply_movement(&mut tx, &record.user_id, &ledger::withdrawal_release(local_id, record.amount))
                    .await?
                    .is_some()
            {
                announce_balance(&mut tx, &record.user_id).await?;
                touched.push(record.user_id.clone());
            }
        }
        let record = withdrawal_in(&mut tx, "local_id", &local_id.to_string()).await?.context("the withdrawal")?;
        tx.commit().await?;
        Ok(Changed { value: record, touched })
    }

    async fn withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<WithdrawalRecord>> {
        let mut conn = self.reader.acquire().await?;
        withdrawal_in(&mut conn, "withdrawal_id", &withdrawal_id.to_string()).await
    }

    async fn withdrawal_by_key(&self, user_id: &str, key: &str) -> Result<Option<WithdrawalRecord>> {
        let mut conn = self.reader.acquire().await?;
        withdrawal_by_key_in(&mut conn, user_id, key).await
    }

    async fn withdrawals_of(&self, user_id: &str, limit: i64) -> Result<Vec<WithdrawalRecord>> {
        sqlx::query("SELECT * FROM withdrawals WHERE user_id = ? ORDER BY created_at DESC, local_id DESC LIMIT ?")
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(withdrawal_from_row)
            .collect()
    }

    async fn submitting_withdrawals(&self) -> Result<Vec<WithdrawalRecord>> {
        sqlx::query("SELECT * FROM withdrawals WHERE status = 'SUBMITTING' ORDER BY created_at")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(withdrawal_from_row)
            .collect()
    }

    async fn apply_webhook(&self, event: &WebhookEvent, body: &[u8]) -> Result<Changed<InboxOutcome>> {
        self.webhooks.apply(event, body).await
    }

    async fn balance(&self, user_id: &str) -> Result<BalanceRow> {
        let mut conn = self.reader.acquire().await?;
        read_balance(&mut conn, user_id).await
    }

    async fn last_event_seq(&self, user_id: &str) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM accounts WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn events_after(&self, user_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, name, data FROM user_events WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(user_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(|(seq, name, data)| StoredEvent { seq, name, data }).collect())
    }

    async fn deposits_created_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<DepositRecord>> {
        sqlx::query("SELECT * FROM deposits WHERE created_at >= ? AND created_at < ? ORDER BY created_at")
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(deposit_from_row)
            .collect()
    }

    async fn withdrawals_created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WithdrawalRecord>> {
        sqlx::query("SELECT * FROM withdrawals WHERE created_at >= ? AND created_at < ? ORDER BY created_at")
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(withdrawal_from_row)
            .collect()
    }

    async fn serving_starts(&self) -> Result<()> {
        // Claims in flight live in memory now; a file written by an older
        // version may still hold some, of requests that died with it.
        sqlx::query("DELETE FROM idempotency WHERE state = 'in_flight'").execute(&self.writer).await?;
        Ok(())
    }

    async fn try_lock(&self, name: &str) -> Result<Option<HeldLock>> {
        let lock = self.locks.lock().expect("locks").entry(name.to_owned()).or_default().clone();
        Ok(lock.try_lock_owned().ok().map(HeldLock::new))
    }

    async fn relay_changes(&self, _hub: crate::sse::Hub, _shutdown: tokio_util::sync::CancellationToken) -> Result<()> {
        Ok(())
    }

    async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)> {
        let sums: (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(available_delta), 0), COALESCE(SUM(reserved_delta), 0) FROM ledger_entries WHERE user_id = ?",
        )
        .bind(user_id)
        .fetch_one(&self.reader)
        .await?;
        Ok(sums)
    }
}

async fn withdrawal_by_key_in(
    conn: &mut SqliteConnection,
    user_id: &str,
    key: &str,
) -> Result<Option<WithdrawalRecord>> {
    sqlx::query("SELECT * FROM withdrawals WHERE user_id = ? AND idempotency_key = ?")
        .bind(user_id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(withdrawal_from_row)
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use pientegra_shared::Amount;
    use pientegra_shared::status::IntentStatus;

    use super::*;

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
    /// A new deposit recorded in the calling thread ([`new_deposit`]) is what
    /// the general path would have stored: the row, its stream event and the
    /// stored answer read back as returned, and recording it again changes nothing.
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
        let reply = Reply { scope: &scope, request_hash: "h", status: 201 };
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
            IdempotencyClaim::Done { status, body } => assert_eq!((status, body), (201, record.reply_body())),
            _ => panic!("the answer was stored with the deposit"),
        }

        // Known already: the general path answers with the stored row and adds no event.
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
