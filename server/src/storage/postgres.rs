//! PostgreSQL storage, for several server instances sharing one database.
//!
//! The behaviour is the SQLite implementation's, statement for statement; what
//! SQLite gets from its single writer, PostgreSQL gets from locks held until
//! commit (READ COMMITTED throughout):
//!
//! - a user's `accounts` row is locked by every transaction that moves their
//!   money or appends to their stream, so balance checks, reservations and SSE
//!   sequence numbers are serialized per user across instances;
//! - a transaction-scoped advisory lock on the intent or withdrawal id
//!   serializes everything that happens to one subject (webhooks among
//!   themselves, and a webhook against the recording of its subject, which is
//!   what keeps an early event from being stranded as an orphan);
//! - `ON CONFLICT DO NOTHING` on the business keys, event ids and idempotency
//!   keys makes the second of two racing writers wait for the first and then
//!   find its row.
//!
//! Locks are always taken in the order subject → record → account, so these
//! transactions cannot deadlock; should the database still report a deadlock
//! or a serialization failure, the whole transaction is run again.
//!
//! Every event appended to a user's stream is announced with `pg_notify` (sent
//! on commit); [`Storage::relay_changes`] listens and wakes that user's
//! streams on this instance.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::WebhookEvent;
use pientegra_shared::wire::WithdrawalCreated;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::procedure::{self, Book, Decision, Outbox, Records, subject_id};
use super::reads::Readers;
use super::rows::{amount, deposit_from_row, minor, now_ms, withdrawal_from_row};
use super::sql;
use super::{
    BalanceRow, Changed, DepositRecord, DepositReply, HeldLock, IdempotencyClaim, IdempotencyScope, InboxOutcome,
    InsufficientFunds, NewDeposit, NewWithdrawal, Reply, Result, Storage, StoredEvent, WithdrawalRecord,
};

/// The `LISTEN/NOTIFY` channel of user stream changes; the payload is the user id.
pub const CHANNEL: &str = "pientegra_user_events";

/// Connections per instance.
const POOL_SIZE: u32 = 10;

/// The first key of the two-key advisory locks on subjects (a namespace of this
/// server's; the two-key space never overlaps the one-key space of [`Storage::try_lock`]).
const SUBJECT_LOCK_SPACE: i32 = 0x5049_4e54; // "PINT"

/// How often a transaction that hit a deadlock or serialization failure runs again.
const TRANSIENT_RETRIES: u32 = 3;

/// The PostgreSQL implementation of [`Storage`].
pub struct PostgresStorage {
    pool: PgPool,
    reads: Readers,
    /// The schema the tables live in: part of each named lock's key, so two
    /// deployments in one database never hold each other's locks.
    schema: String,
}

impl PostgresStorage {
    /// Connects and applies migrations (into the first schema of the `search_path`).
    pub async fn connect(url: &str) -> anyhow::Result<PostgresStorage> {
        // Never echo the URL or its parse error: it may carry a password.
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.context("applying PostgreSQL migrations")?;
        let schema: Option<String> =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.context("reading the schema")?;
        Ok(PostgresStorage { reads: Readers::Postgres(pool.clone()), pool, schema: schema.unwrap_or_default() })
    }

    /// The 64-bit advisory lock key of a named lock: stable across instances and versions.
    fn lock_key(&self, name: &str) -> i64 {
        let digest = Sha256::new().chain_update(self.schema.as_bytes()).chain_update([0]).chain_update(name).finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// Whether a failed transaction may simply run again: a deadlock or a serialization failure.
fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|db| db.code())
            .is_some_and(|code| code == "40001" || code == "40P01")
    })
}

/// Runs a whole transaction, again if the database aborted it for a transient reason.
async fn retrying<T, F, Fut>(what: &'static str, mut transaction: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match transaction().await {
            Err(err) if attempt < TRANSIENT_RETRIES && is_transient(&err) => {
                attempt += 1;
                tracing::warn!(what, attempt, error = format!("{err:#}"), "transient database conflict; retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

// ---- statements run inside a write transaction -------------------------------------

async fn ensure_account(conn: &mut PgConnection, user_id: &str) -> Result<()> {
    sqlx::query("INSERT INTO accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Serializes, until commit, every transaction about one intent or withdrawal.
async fn lock_subject(conn: &mut PgConnection, subject: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(SUBJECT_LOCK_SPACE)
        .bind(subject.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores the final answer to an idempotency key (its claim row normally exists).
async fn store_reply(conn: &mut PgConnection, reply: &Reply<'_>, body: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO idempotency (user_id, route, key, request_hash, state, locked_until, response_status,
                                  response_body, created_at)
         VALUES ($1, $2, $3, $4, 'done', 0, $5, $6, $7)
         ON CONFLICT (user_id, route, key) DO UPDATE SET
             state = 'done', response_status = excluded.response_status, response_body = excluded.response_body",
    )
    .bind(reply.scope.user_id)
    .bind(reply.scope.route)
    .bind(reply.scope.key)
    .bind(reply.request_hash)
    .bind(i32::from(reply.status))
    .bind(body)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends an event to the user's stream with the next sequence number, and
/// announces it to every instance (delivered on commit).
async fn push_event(conn: &mut PgConnection, user_id: &str, event: &UserEvent) -> Result<()> {
    ensure_account(conn, user_id).await?;
    // The row lock taken here is held until commit: numbers are handed out in commit order, never twice.
    let seq: i64 =
        sqlx::query_scalar("UPDATE accounts SET last_seq = last_seq + 1 WHERE user_id = $1 RETURNING last_seq")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query("INSERT INTO user_events (user_id, seq, name, data, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(seq)
        .bind(event.name())
        .bind(event.data())
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(user_id).execute(&mut *conn).await?;
    Ok(())
}

async fn read_balance(conn: &mut PgConnection, user_id: &str) -> Result<BalanceRow> {
    let row: Option<(i64, i64)> = sqlx::query_as(sql::SELECT_BALANCE).bind(user_id).fetch_optional(&mut *conn).await?;
    let (available, reserved) = row.unwrap_or_default();
    Ok(BalanceRow { available: amount(available)?, reserved: amount(reserved)? })
}

async fn deposit_in(conn: &mut PgConnection, intent_id: Uuid) -> Result<Option<DepositRecord>> {
    let row = sqlx::query("SELECT * FROM deposits WHERE intent_id = $1")
        .bind(intent_id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(deposit_from_row).transpose()
}

/// A withdrawal by `local_id`; with `lock`, locked until commit.
async fn withdrawal_in(conn: &mut PgConnection, local_id: Uuid, lock: bool) -> Result<Option<WithdrawalRecord>> {
    let sql = if lock {
        "SELECT * FROM withdrawals WHERE local_id = $1 FOR UPDATE"
    } else {
        "SELECT * FROM withdrawals WHERE local_id = $1"
    };
    let row = sqlx::query(sql).bind(local_id.to_string()).fetch_optional(conn).await?;
    row.as_ref().map(withdrawal_from_row).transpose()
}

/// PostgreSQL's side of the [ledger procedure](super::procedure): applies
/// `events` in order, pushing the stream events they produce to `outbox`.
/// The caller holds the lock of the subject they are about; the records they
/// are about are locked here, then the accounts whose money they move.
async fn apply_events(
    conn: &mut PgConnection,
    events: &[&WebhookEvent],
    outbox: &mut Outbox,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let now = now_ms();
    let mut records = load_records(conn, events).await?;
    let decisions = records.decide_all(events.iter().copied(), now);
    for deposit in records.changed_deposits() {
        save_deposit(conn, deposit).await?;
    }
    for withdrawal in records.changed_withdrawals() {
        save_withdrawal(conn, withdrawal).await?;
    }
    settle_in(conn, decisions, outbox, now).await
}

/// The records `events` are about, locked until commit.
async fn load_records(conn: &mut PgConnection, events: &[&WebhookEvent]) -> Result<Records> {
    let (intent_ids, withdrawal_ids) = Records::wanted(events.iter().copied());
    let mut deposits = Vec::new();
    if !intent_ids.is_empty() {
        let rows = sqlx::query("SELECT * FROM deposits WHERE intent_id = ANY($1) FOR UPDATE")
            .bind(&intent_ids)
            .fetch_all(&mut *conn)
            .await?;
        deposits = rows.iter().map(deposit_from_row).collect::<Result<_>>()?;
    }
    let mut withdrawals = Vec::new();
    if !withdrawal_ids.is_empty() {
        let rows = sqlx::query("SELECT * FROM withdrawals WHERE withdrawal_id = ANY($1) FOR UPDATE")
            .bind(&withdrawal_ids)
            .fetch_all(&mut *conn)
            .await?;
        withdrawals = rows.iter().map(withdrawal_from_row).collect::<Result<_>>()?;
    }
    Ok(Records::new(deposits, withdrawals))
}

/// Writes what the procedure changed of a deposit.
async fn save_deposit(conn: &mut PgConnection, deposit: &DepositRecord) -> Result<()> {
    sqlx::query(
        "UPDATE deposits SET status = $1, rejected_reason = $2, credited_amount = $3, updated_at = $4
         WHERE intent_id = $5",
    )
    .bind(deposit.status.as_str())
    .bind(deposit.rejected_reason.as_deref())
    .bind(deposit.credited_amount.map(minor))
    .bind(deposit.updated_at.timestamp_millis())
    .bind(deposit.intent_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes what the procedure changed of a withdrawal.
async fn save_withdrawal(conn: &mut PgConnection, record: &WithdrawalRecord) -> Result<()> {
    sqlx::query(sql::UPDATE_WITHDRAWAL)
        .bind(record.withdrawal_id.map(|id| id.to_string()))
        .bind(record.reference_no.as_deref())
        .bind(record.state.as_str())
        .bind(record.rejected_reason.as_deref())
        .bind(record.updated_at.timestamp_millis())
        .bind(record.local_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Carries out `decisions` ([`procedure::settle`]) against the ledger and
/// the balances, and writes the money they move.
async fn settle_in(
    conn: &mut PgConnection,
    decisions: Vec<Decision>,
    outbox: &mut Outbox,
    now: i64,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let mut book = load_book(conn, &decisions).await?;
    let changes = procedure::settle(decisions, &mut book, outbox)?;
    for (user_id, m) in book.entries() {
        // No ON CONFLICT: the key was checked under the locks that serialize
        // every writer of it, so a clash is a bug and fails the transaction.
        sqlx::query(
            "INSERT INTO ledger_entries (business_key, user_id, available_delta, reserved_delta, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&m.business_key)
        .bind(user_id)
        .bind(m.available)
        .bind(m.reserved)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    for (user_id, available, reserved) in book.moved() {
        sqlx::query("UPDATE accounts SET available = $1, reserved = $2 WHERE user_id = $3")
            .bind(available)
            .bind(reserved)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(changes)
}

/// The ledger keys and balances `decisions` move money on; the accounts stay
/// locked until commit, so no other transaction moves them meanwhile.
async fn load_book(conn: &mut PgConnection, decisions: &[Decision]) -> Result<Book> {
    let (keys, users) = Book::wanted(decisions);
    if keys.is_empty() {
        return Ok(Book::default());
    }
    for user_id in &users {
        ensure_account(conn, user_id).await?;
    }
    // In user order, so two transactions never wait for each other in a circle.
    let balances: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT user_id, available, reserved FROM accounts WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
    )
    .bind(&users)
    .fetch_all(&mut *conn)
    .await?;
    let applied: Vec<String> =
        sqlx::query_scalar("SELECT business_key FROM ledger_entries WHERE business_key = ANY($1)")
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Book::new(applied, users, balances))
}

/// Appends `outbox`'s events to their users' streams, in order.
async fn write_outbox(conn: &mut PgConnection, outbox: &Outbox) -> Result<()> {
    for (user_id, event) in outbox.events() {
        push_event(conn, user_id, event).await?;
    }
    Ok(())
}

/// Applies events that arrived before the record they are about
/// ([`sql::SELECT_ORPHANS`]). The caller holds the subject's lock, so no
/// webhook about it can be mid-way.
async fn apply_orphans(conn: &mut PgConnection, subject_id: Uuid, outbox: &mut Outbox) -> Result<()> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as(sql::SELECT_ORPHANS).bind(subject_id.to_string()).fetch_all(&mut *conn).await?;
    let orphans = procedure::parse_orphans(rows)?;
    let events: Vec<&WebhookEvent> = orphans.iter().map(|(_, event)| event).collect();
    let changes = apply_events(conn, &events, outbox).await?;
    let now = now_ms();
    for ((event_id, _), changed) in orphans.iter().zip(changes) {
        sqlx::query("UPDATE webhook_inbox SET outcome = $1, applied_at = $2 WHERE event_id = $3")
            .bind(changed.value.as_str())
            .bind(now)
            .bind(event_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A stored idempotency record: request hash, state, lease end, response status and body.
type IdempotencyRow = (String, String, i64, Option<i32>, Option<String>);

// ---- one transaction per operation (run again by `retrying` on a transient abort) ----

impl PostgresStorage {
    async fn claim_idempotency_once(
        &self,
        scope: &IdempotencyScope<'_>,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<Option<IdempotencyClaim>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // Insert first: of two instances claiming a new key at once, one inserts
        // and the other waits for its commit, then finds the row.
        let inserted = sqlx::query(
            "INSERT INTO idempotency (user_id, route, key, request_hash, state, locked_until, created_at)
             VALUES ($1, $2, $3, $4, 'in_flight', $5, $6) ON CONFLICT (user_id, route, key) DO NOTHING",
        )
        .bind(scope.user_id)
        .bind(scope.route)
        .bind(scope.key)
        .bind(request_hash)
        .bind(now + lease_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            tx.commit().await?;
            return Ok(Some(IdempotencyClaim::Claimed));
        }
        let row: Option<IdempotencyRow> = sqlx::query_as(
            "SELECT request_hash, state, locked_until, response_status, response_body
             FROM idempotency WHERE user_id = $1 AND route = $2 AND key = $3 FOR UPDATE",
        )
        .bind(scope.user_id)
        .bind(scope.route)
        .bind(scope.key)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match row {
            // Released between our insert and our read: claim it afresh.
            None => return Ok(None),
            Some((hash, _, _, _, _)) if hash != request_hash => IdempotencyClaim::Mismatch,
            Some((_, state, _, Some(status), Some(body))) if state == "done" => {
                IdempotencyClaim::Done { status: u16::try_from(status).unwrap_or(500), body }
            }
            Some((_, _, locked_until, _, _)) if locked_until > now => IdempotencyClaim::InFlight,
            Some(_) => {
                // The claimant died mid-request: take over; the work it did is idempotent.
                // The row lock makes this take-over one instance's only.
                sqlx::query("UPDATE idempotency SET locked_until = $1 WHERE user_id = $2 AND route = $3 AND key = $4")
                    .bind(now + lease_ms)
                    .bind(scope.user_id)
                    .bind(scope.route)
                    .bind(scope.key)
                    .execute(&mut *tx)
                    .await?;
                IdempotencyClaim::Claimed
            }
        };
        tx.commit().await?;
        Ok(Some(claim))
    }

    async fn record_deposit_once(
        &self,
        d: &NewDeposit,
        reply: Option<&DepositReply<'_>>,
    ) -> Result<Changed<DepositRecord>> {
        let mut tx = self.pool.begin().await?;
        // A webhook about this intent either committed (as an orphan) before we
        // take the lock, and we apply it below, or waits and then finds the deposit.
        lock_subject(&mut tx, d.intent_id).await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                                   status, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'RESERVED', $8, $9, $10) ON CONFLICT (intent_id) DO NOTHING",
        )
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
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let mut outbox = Outbox::default();
        if inserted {
            let record = deposit_in(&mut tx, d.intent_id).await?.context("the deposit just inserted")?;
            outbox.push(&d.user_id, UserEvent::Deposit(record.view()));
            apply_orphans(&mut tx, d.intent_id, &mut outbox).await?;
            write_outbox(&mut tx, &outbox).await?;
        }
        let record = deposit_in(&mut tx, d.intent_id).await?.context("the deposit just recorded")?;
        if let Some(answer) = reply {
            store_reply(&mut tx, &answer.reply, &record.reply_body(answer.framing)).await?;
        }
        tx.commit().await?;
        Ok(Changed { value: record, touched: outbox.users_from(0) })
    }

    async fn reserve_withdrawal_once(
        &self,
        w: &NewWithdrawal,
    ) -> Result<std::result::Result<Changed<WithdrawalRecord>, InsufficientFunds>> {
        let mut tx = self.pool.begin().await?;
        ensure_account(&mut tx, &w.user_id).await?;
        // Every reservation of this user, on any instance, queues here until we commit.
        sqlx::query("SELECT 1 FROM accounts WHERE user_id = $1 FOR UPDATE").bind(&w.user_id).execute(&mut *tx).await?;
        let existing = sqlx::query(sql::SELECT_WITHDRAWAL_BY_KEY)
            .bind(&w.user_id)
            .bind(&w.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(withdrawal_from_row)
            .transpose()?;
        if let Some(existing) = existing {
            tx.rollback().await?;
            return Ok(Ok(Changed { value: existing, touched: vec![] }));
        }
        let balance = read_balance(&mut tx, &w.user_id).await?;
        let pending: i64 =
            sqlx::query_scalar(sql::SELECT_PENDING_FINAL_DEBIT).bind(&w.user_id).fetch_one(&mut *tx).await?;
        if let Err(refused) = procedure::check_funds(balance, pending, w.amount)? {
            tx.rollback().await?;
            return Ok(Err(refused));
        }
        let local_id = Uuid::now_v7();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO withdrawals (local_id, user_id, idempotency_key, amount, currency, iban, holder_name, status,
                                      balance_model, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'SUBMITTING', $8, $9, $10)",
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
        let mut outbox = Outbox::default();
        settle_in(&mut tx, vec![procedure::reservation(local_id, w)], &mut outbox, now).await?;
        write_outbox(&mut tx, &outbox).await?;
        let record = withdrawal_in(&mut tx, local_id, false).await?.context("the new withdrawal")?;
        tx.commit().await?;
        Ok(Ok(Changed { value: record, touched: outbox.users_from(0) }))
    }

    async fn withdrawal_accepted_once(
        &self,
        local_id: Uuid,
        created: &WithdrawalCreated,
    ) -> Result<Changed<WithdrawalRecord>> {
        let mut tx = self.pool.begin().await?;
        // Webhooks about this withdrawal wait, or committed as orphans we apply below.
        lock_subject(&mut tx, created.withdrawal_id).await?;
        let mut record = withdrawal_in(&mut tx, local_id, true).await?.context("unknown withdrawal")?;
        let now = now_ms();
        let mut outbox = Outbox::default();
        if let Some(accepted) = procedure::accept(&mut record, created, now) {
            save_withdrawal(&mut tx, &record).await?;
            settle_in(&mut tx, vec![accepted], &mut outbox, now).await?;
            apply_orphans(&mut tx, created.withdrawal_id, &mut outbox).await?;
            write_outbox(&mut tx, &outbox).await?;
        }
        let record = withdrawal_in(&mut tx, local_id, false).await?.context("the withdrawal")?;
        tx.commit().await?;
        Ok(Changed { value: record, touched: outbox.users_from(0) })
    }

    async fn withdrawal_refused_once(&self, local_id: Uuid, reason: &str) -> Result<Changed<WithdrawalRecord>> {
        let mut tx = self.pool.begin().await?;
        let mut record = withdrawal_in(&mut tx, local_id, true).await?.context("unknown withdrawal")?;
        let now = now_ms();
        let mut outbox = Outbox::default();
        if let Some(refused) = procedure::refuse(&mut record, reason, now) {
            save_withdrawal(&mut tx, &record).await?;
            settle_in(&mut tx, vec![refused], &mut outbox, now).await?;
            write_outbox(&mut tx, &outbox).await?;
        }
        tx.commit().await?;
        Ok(Changed { value: record, touched: outbox.users_from(0) })
    }

    async fn apply_webhook_once(&self, event: &WebhookEvent, body: &[u8]) -> Result<Changed<InboxOutcome>> {
        let mut tx = self.pool.begin().await?;
        let subject = subject_id(event);
        if let Some(subject) = subject {
            lock_subject(&mut tx, subject).await?;
        }
        // Of two instances receiving the same event at once, one inserts; the
        // other waits for its commit and finds the row: a duplicate.
        let fresh = sqlx::query(
            "INSERT INTO webhook_inbox (event_id, event_type, subject_id, body, outcome, received_at)
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id.to_string())
        .bind(event.event_type())
        .bind(subject.map(|id| id.to_string()))
        .bind(body)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            tx.commit().await?;
            return Ok(Changed { value: InboxOutcome::Duplicate, touched: vec![] });
        }
        let mut outbox = Outbox::default();
        let changed = apply_events(&mut tx, &[event], &mut outbox).await?.remove(0);
        write_outbox(&mut tx, &outbox).await?;
        sqlx::query("UPDATE webhook_inbox SET outcome = $1, applied_at = $2 WHERE event_id = $3")
            .bind(changed.value.as_str())
            .bind(now_ms())
            .bind(event.event_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(changed)
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn ping(&self) -> Result<()> {
        self.reads.ping().await
    }

    async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope<'_>,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyClaim> {
        for _ in 0..5 {
            let claim =
                retrying("claim_idempotency", || self.claim_idempotency_once(scope, request_hash, lease_ms)).await?;
            if let Some(claim) = claim {
                return Ok(claim);
            }
        }
        anyhow::bail!("an idempotency key kept being claimed and released under us")
    }

    async fn finish_idempotency(&self, reply: &Reply<'_>, body: &str) -> Result<()> {
        store_reply(&mut *self.pool.acquire().await?, reply, body).await
    }

    async fn settle_idempotency(&self, _scope: &IdempotencyScope<'_>) -> Result<()> {
        // The answer's commit marked the claim done.
        Ok(())
    }

    async fn release_idempotency(&self, scope: &IdempotencyScope<'_>) -> Result<()> {
        sqlx::query("DELETE FROM idempotency WHERE user_id = $1 AND route = $2 AND key = $3 AND state = 'in_flight'")
            .bind(scope.user_id)
            .bind(scope.route)
            .bind(scope.key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn note_under_review(&self, intent_id: Uuid) -> Result<Changed<bool>> {
        let mut tx = self.pool.begin().await?;
        lock_subject(&mut tx, intent_id).await?;
        let updated = sqlx::query(
            "UPDATE deposits SET status = 'PENDING_REVIEW', updated_at = $1 WHERE intent_id = $2 AND status = 'RESERVED'
             RETURNING *",
        )
        .bind(now_ms())
        .bind(intent_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let mut touched = Vec::new();
        if let Some(row) = updated {
            let deposit = deposit_from_row(&row)?;
            push_event(&mut tx, &deposit.user_id, &UserEvent::Deposit(deposit.view())).await?;
            touched.push(deposit.user_id);
        }
        tx.commit().await?;
        Ok(Changed { value: !touched.is_empty(), touched })
    }

    async fn awaiting_transfer(&self, limit: i64) -> Result<Vec<DepositRecord>> {
        self.reads.awaiting_transfer(limit).await
    }

    async fn record_deposit(
        &self,
        deposit: NewDeposit,
        reply: Option<&DepositReply<'_>>,
    ) -> Result<Changed<DepositRecord>> {
        retrying("record_deposit", || self.record_deposit_once(&deposit, reply)).await
    }

    async fn deposit(&self, intent_id: Uuid) -> Result<Option<DepositRecord>> {
        self.reads.deposit(intent_id).await
    }

    async fn deposits_of(&self, user_id: &str, limit: i64) -> Result<Vec<DepositRecord>> {
        self.reads.deposits_of(user_id, limit).await
    }

    async fn reserve_withdrawal(
        &self,
        request: NewWithdrawal,
    ) -> Result<std::result::Result<Changed<WithdrawalRecord>, InsufficientFunds>> {
        retrying("reserve_withdrawal", || self.reserve_withdrawal_once(&request)).await
    }

    async fn withdrawal_accepted(
        &self,
        local_id: Uuid,
        created: &WithdrawalCreated,
    ) -> Result<Changed<WithdrawalRecord>> {
        retrying("withdrawal_accepted", || self.withdrawal_accepted_once(local_id, created)).await
    }

    async fn withdrawal_refused(&self, local_id: Uuid, reason: &str) -> Result<Changed<WithdrawalRecord>> {
        retrying("withdrawal_refused", || self.withdrawal_refused_once(local_id, reason)).await
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
        retrying("apply_webhook", || self.apply_webhook_once(event, body)).await
    }

    async fn balance(&self, user_id: &str) -> Result<BalanceRow> {
        self.reads.balance(user_id).await
    }

    async fn last_event_seq(&self, user_id: &str) -> Result<i64> {
        self.reads.last_event_seq(user_id).await
    }

    async fn events_after(&self, user_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        self.reads.events_after(user_id, after, limit).await
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

    async fn serving_starts(&self) -> Result<()> {
        // Other instances may be mid-request on their claims: an abandoned
        // claim is recognized by its expired lease instead (see `claim_idempotency`).
        Ok(())
    }

    async fn try_lock(&self, name: &str) -> Result<Option<HeldLock>> {
        let mut conn = self.pool.acquire().await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.lock_key(name))
            .fetch_one(&mut *conn)
            .await?;
        if !taken {
            return Ok(None);
        }
        // The lock belongs to this session: the connection never goes back to
        // the pool, and closing it when the guard drops ends the session, which
        // releases the lock (also if this process dies).
        conn.close_on_drop();
        Ok(Some(HeldLock::new(conn)))
    }

    async fn relay_changes(&self, hub: crate::sse::Hub, shutdown: tokio_util::sync::CancellationToken) -> Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await.context("connecting the change listener")?;
        listener.listen(CHANNEL).await.context("listening for stream changes")?;
        // Whatever other instances committed before LISTEN took effect was not
        // announced to us: let every stream look.
        hub.notify_all();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = listener.try_recv() => match next {
                    Ok(Some(notification)) => hub.notify(&[notification.payload()]),
                    Ok(None) => {
                        // The connection dropped and was re-established: notifications
                        // in between are lost, the events themselves are not.
                        tracing::warn!("change listener reconnected; waking every stream");
                        hub.notify_all();
                    }
                    Err(err) => {
                        hub.notify_all();
                        return Err(err).context("listening for stream changes");
                    }
                },
            }
        }
    }

    async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)> {
        self.reads.ledger_sum(user_id).await
    }
}
