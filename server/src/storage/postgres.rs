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

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::WebhookEvent;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::wire::WithdrawalCreated;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::group_commit::{CommitWebhooks, Webhook, WebhookWriter};
use super::pgm::PostgresPgmRecords;
use super::presence::{self, Presence};
use super::procedure::{self, Book, Decision, Outbox, Records, dedup, subject_id};
use super::reads::Readers;
use super::rows::{amount, deposit_from_row, minor, now_ms, time, withdrawal_from_row};
use super::sql;
use super::{
    Audit, BalanceRow, Changed, Coordination, DepositRecord, DepositReply, EventLog, HeldLock, Idempotency,
    IdempotencyClaim, IdempotencyScope, InboxOutcome, InsufficientFunds, Ledger, NewDeposit, NewWithdrawal, PgmRecords,
    Reply, Result, Storage, StoredEvent, WithdrawalRecord,
};

/// The `LISTEN/NOTIFY` channel of user stream changes; the payload is the user id.
pub const CHANNEL: &str = "pientegra_user_events";

/// Connections per instance for reads, job locks (each held by its job, for
/// as long as it runs) and the change listener.
const POOL_SIZE: u32 = 8;

/// Connections per instance for the transactions of requests and jobs
/// (recording deposits, reserving withdrawals), besides the webhook writers'.
const WRITE_POOL_SIZE: u32 = 3;

/// Connections per instance that only insert new Idempotency-Key claims.
const CLAIM_POOL_SIZE: u32 = 4;

/// The first key of the two-key advisory locks on subjects (a namespace of this
/// server's; the two-key space never overlaps the one-key space of [`Storage::try_lock`]).
const SUBJECT_LOCK_SPACE: i32 = 0x5049_4e54; // "PINT"

/// Webhook transactions an instance runs side by side, each committing the
/// webhooks that arrived while the others were busy ([`super::group_commit`]),
/// each on a connection of its own.
const WEBHOOK_WRITERS: u32 = 2;

/// How often a transaction that hit a deadlock or serialization failure runs again.
const TRANSIENT_RETRIES: u32 = 3;

/// The PostgreSQL implementation of [`Storage`].
pub struct PostgresStorage {
    /// Reads, job locks and the change listener.
    pool: PgPool,
    /// The transactions of requests and jobs, on connections not pinged
    /// before use ([`begin`]).
    writes: PgPool,
    /// Connections whose commits do not wait for the disk, for new claims
    /// only ([`PostgresStorage::claim_idempotency_once`] says why that is safe).
    claims: PgPool,
    /// This instance's presence lock, named in its claims: a claim whose
    /// instance is gone is taken over before its lease ends.
    presence: Presence,
    reads: Readers,
    webhooks: WebhookWriter,
    /// The schema the tables live in: part of each named lock's key, so two
    /// deployments in one database never hold each other's locks.
    schema: String,
    pgm: Arc<dyn PgmRecords>,
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
            .connect_with(options.clone())
            .await
            .context("connecting to PostgreSQL")?;
        let presence = Presence::take(options.clone()).await?;
        let writes =
            unpinged(WRITE_POOL_SIZE).connect_with(options.clone()).await.context("connecting to PostgreSQL")?;
        let claims = unpinged(CLAIM_POOL_SIZE)
            .connect_with(options.clone().options([("synchronous_commit", "off")]))
            .await
            .context("connecting to PostgreSQL")?;
        // A batch's statements join arrays of any length (1 to 256 webhooks)
        // against tables that grow from empty: a plan cached once would be
        // wrong for most of them (a plan made on a near-empty table scans it
        // whole, for every batch, for as long as the connection lives), so
        // they are planned for each batch.
        let webhook_pool = unpinged(WEBHOOK_WRITERS)
            .connect_with(options.options([("plan_cache_mode", "force_custom_plan")]))
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.context("applying PostgreSQL migrations")?;
        let schema: Option<String> =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.context("reading the schema")?;
        let webhooks = WebhookWriter::spawn(Arc::new(Webhooks { pool: webhook_pool }), WEBHOOK_WRITERS as usize);
        Ok(PostgresStorage {
            reads: Readers::Postgres(pool.clone()),
            webhooks,
            pgm: Arc::new(PostgresPgmRecords { pool: pool.clone() }),
            pool,
            writes,
            claims,
            presence,
            schema: schema.unwrap_or_default(),
        })
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

/// Options for a pool whose connections are not pinged before each use.
///
/// sqlx pings a pooled connection before handing it out, by default: a round
/// trip on every acquire, where a deposit's whole work is three statements
/// (BENCHMARKS.md, figure 12). These pools' work starts with a statement that
/// is itself the check ([`on_live_connection`]).
pub(crate) fn unpinged(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
}

/// Whether the connection was gone: closed by the database (terminated,
/// shut down, an idle-session timeout) or broken on the way.
fn connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}

/// Runs `first` (a connection's first statement of some work: a `BEGIN`, or
/// a statement that may run twice) on a connection of `pool`, and again on
/// another while the connections it gets turn out to be closed. A connection
/// the database closed while it sat idle (terminated, restarted, an
/// idle-session timeout) fails the statement before running it; sqlx then
/// drops it rather than pooling it again, and every idle connection may be
/// such a one, so the tries are one more than the pool holds.
pub(crate) async fn on_live_connection<T, F, Fut>(pool: &PgPool, mut first: F) -> sqlx::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let tries = pool.options().get_max_connections() + 1;
    let mut tried = 1;
    loop {
        match first().await {
            Err(err) if tried < tries && connection_lost(&err) => {
                tracing::info!(error = %err, "a pooled database connection was closed; using another");
                tried += 1;
            }
            other => return other,
        }
    }
}

/// Begins a transaction on a live connection of `pool` ([`on_live_connection`]).
async fn begin(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    on_live_connection(pool, || pool.begin()).await
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

/// Accounts locked by this transaction, each `(user, available, reserved)`
/// as it was locked.
type Locked = Vec<(String, i64, i64)>;

/// Creates the accounts of `users` (sorted, each once) that do not exist yet,
/// and locks them all until commit, in user order, so two transactions never
/// wait for each other in a circle. Returns their balances.
async fn lock_accounts(conn: &mut PgConnection, users: &[String]) -> Result<Locked> {
    if users.is_empty() {
        return Ok(vec![]);
    }
    // One statement: the upsert's no-op update locks the rows that exist, in the array's order.
    let balances = sqlx::query_as(
        "INSERT INTO accounts (user_id) SELECT unnest($1::text[])
         ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id
         RETURNING user_id, available, reserved",
    )
    .bind(users)
    .fetch_all(&mut *conn)
    .await?;
    Ok(balances)
}

/// Begins a transaction that holds, until commit, the locks of `subjects`
/// (intent or withdrawal ids), serializing every transaction about one of
/// them. Every transaction takes its subjects' locks in one order (sorted),
/// so two batches never wait for each other in a circle.
///
/// The locks are taken by a statement of their own inside the transaction:
/// should the wait for them fail or be dropped, the transaction's rollback
/// releases the connection clean.
async fn begin_locked(
    pool: &PgPool,
    subjects: impl IntoIterator<Item = Uuid>,
) -> Result<Transaction<'static, Postgres>> {
    let mut tx = begin(pool).await?;
    let subjects = dedup(subjects.into_iter().map(|id| id.to_string()).collect());
    if !subjects.is_empty() {
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, hashtext(s))
             FROM unnest($2::text[]) WITH ORDINALITY AS u(s, n) ORDER BY n",
        )
        .bind(SUBJECT_LOCK_SPACE)
        .bind(&subjects)
        .execute(&mut *tx)
        .await?;
    }
    Ok(tx)
}

/// The common tables that append the rows of a table `events (u, n, d, o,
/// t)` (user, event name, data, order, time) to the users' streams: `bumped`
/// moves each user's last number past their events (creating the account if
/// new), locking the accounts in user order as every lock of them does, and
/// returns `(user_id, last_seq)`; the k-th of a user's n events takes
/// last - n + k. For [`write_outbox`] and [`RECORD_NEW_DEPOSIT`].
macro_rules! append_events_sql {
    () => {
        "v AS (
             SELECT u, n, d, t, row_number() OVER (PARTITION BY u ORDER BY o) AS k, count(*) OVER (PARTITION BY u) AS c
             FROM events
         ), bumped AS (
             INSERT INTO accounts (user_id, last_seq) SELECT DISTINCT u, c FROM v ORDER BY u
             ON CONFLICT (user_id) DO UPDATE SET last_seq = accounts.last_seq + excluded.last_seq
             RETURNING user_id, last_seq
         ), appended AS (
             INSERT INTO user_events (user_id, seq, name, data, created_at)
             SELECT v.u, b.last_seq - v.c + v.k, v.n, v.d, v.t FROM v JOIN bumped b ON b.user_id = v.u
         )"
    };
}

/// The statement that stores final answers to idempotency keys (whose claim
/// rows normally exist): `$rows` is a `VALUES` or a `SELECT` of user, route,
/// key, request hash, state, lease, status, body and time. For
/// [`store_reply`] and [`RECORD_NEW_DEPOSIT`]. The first answer stored
/// stays: when a request was taken over from an instance that was still
/// working on it (its presence session lost), both may finish, and replays
/// answer as the first did.
macro_rules! store_reply_sql {
    ($rows:literal) => {
        concat!(
            "INSERT INTO idempotency (user_id, route, key, request_hash, state, locked_until, response_status,
                                      response_body, created_at) ",
            $rows,
            " ON CONFLICT (user_id, route, key) DO UPDATE SET
                 state = 'done', response_status = excluded.response_status, response_body = excluded.response_body
             WHERE idempotency.state <> 'done'"
        )
    };
}

/// Records a new deposit (`$1` to `$9`, `$9` being now) unless it exists or
/// webhooks about it wait as orphans, in a transaction of its own that holds
/// the intent's lock (`$19` the lock space), as [`begin_locked`] takes it;
/// then appends its event (`$10`, `$11`) to the user's stream with
/// [`write_outbox`]'s tables, and stores the answer (`$12` to `$17`, all null
/// for none) with [`store_reply`]'s statement. Returns whether it recorded
/// the deposit.
///
/// The orphans are asked by `orphans_waiting`, a function, which sees what
/// committed while this statement waited for the lock: a webhook holding it
/// may have stored one. (A subquery would see only what committed before
/// the statement began.)
const RECORD_NEW_DEPOSIT: &str = concat!(
    "WITH locked AS MATERIALIZED (
         SELECT pg_advisory_xact_lock($19, hashtext($1))
     ), asked AS MATERIALIZED (
         SELECT orphans_waiting($1) AS orphans FROM locked
     ), recorded AS (
         INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                               status, expires_at, created_at, updated_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, 'RESERVED', $8, $9, $9 FROM asked WHERE NOT orphans
         ON CONFLICT (intent_id) DO NOTHING
         RETURNING user_id
     ), events AS (
         SELECT user_id AS u, $10::text AS n, $11::text AS d, 1 AS o, $9::bigint AS t FROM recorded
     ), ",
    append_events_sql!(),
    ", answered AS (",
    store_reply_sql!("SELECT $12, $13, $14, $15, 'done', 0, $16, $17, $9 FROM recorded WHERE $12::text IS NOT NULL"),
    ") SELECT EXISTS (SELECT 1 FROM recorded) AND (SELECT count(*) FROM bumped, pg_notify($18, bumped.user_id)) = 1"
);

/// Binds a new deposit's columns as `$1` to `$9` (`$9` being now), as both
/// statements that insert one take them.
macro_rules! bind_new_deposit {
    ($query:expr, $d:expr, $now:expr) => {
        $query
            .bind($d.intent_id.to_string())
            .bind(&$d.user_id)
            .bind(&$d.reference_no)
            .bind(&$d.deposit_url)
            .bind(minor($d.requested_amount))
            .bind(minor($d.amount))
            .bind(&$d.currency)
            .bind($d.expires_at.timestamp_millis())
            .bind($now)
    };
}

/// The deposit [`RECORD_NEW_DEPOSIT`] stores for `d` at `now`, as a read would return it.
fn reserved(d: &NewDeposit, now: i64) -> DepositRecord {
    DepositRecord {
        intent_id: d.intent_id,
        user_id: d.user_id.clone(),
        reference_no: d.reference_no.clone(),
        deposit_url: d.deposit_url.clone(),
        requested_amount: d.requested_amount,
        amount: d.amount,
        credited_amount: None,
        currency: d.currency.clone(),
        status: IntentStatus::Reserved,
        rejected_reason: None,
        expires_at: time(d.expires_at.timestamp_millis()),
        created_at: time(now),
        updated_at: time(now),
    }
}

/// Stores the final answer to an idempotency key (its claim row normally exists).
async fn store_reply(conn: &mut PgConnection, reply: &Reply<'_>, body: &str) -> Result<()> {
    sqlx::query(store_reply_sql!("VALUES ($1, $2, $3, $4, 'done', 0, $5, $6, $7)"))
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
/// The caller holds the locks of the subjects they are about; the records
/// they are about are locked here, then the accounts of their users. Each
/// table is read and written with one statement, whatever the number of events.
async fn apply_events(
    conn: &mut PgConnection,
    events: &[&WebhookEvent],
    outbox: &mut Outbox,
) -> Result<Vec<Changed<InboxOutcome>>> {
    if events.is_empty() {
        return Ok(vec![]);
    }
    let now = now_ms();
    let (mut records, locked) = load_records(conn, events).await?;
    let decisions = records.decide_all(events.iter().copied(), now);
    save_deposits(conn, records.changed_deposits()).await?;
    for withdrawal in records.changed_withdrawals() {
        save_withdrawal(conn, withdrawal).await?;
    }
    settle_in(conn, decisions, &locked, outbox, now).await
}

/// The records `events` are about, locked until commit, with their users' accounts.
async fn load_records(conn: &mut PgConnection, events: &[&WebhookEvent]) -> Result<(Records, Locked)> {
    let (intent_ids, withdrawal_ids) = Records::wanted(events.iter().copied());
    let mut deposits = Vec::new();
    if !intent_ids.is_empty() {
        let rows = sqlx::query("SELECT * FROM deposits WHERE intent_id = ANY($1) FOR UPDATE")
            .bind(&intent_ids)
            .fetch_all(&mut *conn)
            .await?;
        deposits = rows.iter().map(deposit_from_row).collect::<Result<Vec<_>>>()?;
    }
    let mut withdrawals = Vec::new();
    if !withdrawal_ids.is_empty() {
        let rows = sqlx::query("SELECT * FROM withdrawals WHERE withdrawal_id = ANY($1) FOR UPDATE")
            .bind(&withdrawal_ids)
            .fetch_all(&mut *conn)
            .await?;
        withdrawals = rows.iter().map(withdrawal_from_row).collect::<Result<Vec<_>>>()?;
    }
    let users = deposits.iter().map(|d| d.user_id.clone()).chain(withdrawals.iter().map(|w| w.user_id.clone()));
    let locked = lock_accounts(conn, &dedup(users.collect())).await?;
    Ok((Records::new(deposits, withdrawals), locked))
}

/// Writes what the procedure changed of `deposits`, in one statement.
async fn save_deposits(conn: &mut PgConnection, deposits: impl ExactSizeIterator<Item = &DepositRecord>) -> Result<()> {
    if deposits.len() == 0 {
        return Ok(());
    }
    let (mut ids, mut statuses, mut reasons, mut credited, mut updated) = (vec![], vec![], vec![], vec![], vec![]);
    for deposit in deposits {
        ids.push(deposit.intent_id.to_string());
        statuses.push(deposit.status.as_str());
        reasons.push(deposit.rejected_reason.as_deref());
        credited.push(deposit.credited_amount.map(minor));
        updated.push(deposit.updated_at.timestamp_millis());
    }
    sqlx::query(
        "UPDATE deposits d SET status = v.status, rejected_reason = v.reason, credited_amount = v.credited,
                               updated_at = v.updated
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
              AS v(intent_id, status, reason, credited, updated)
         WHERE d.intent_id = v.intent_id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&reasons)
    .bind(&credited)
    .bind(&updated)
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
/// the balances, and writes the money they move: one statement for the
/// ledger and one for the balances. `locked` are the accounts this
/// transaction has locked so far, whose balances it has not changed since.
async fn settle_in(
    conn: &mut PgConnection,
    decisions: Vec<Decision>,
    locked: &[(String, i64, i64)],
    outbox: &mut Outbox,
    now: i64,
) -> Result<Vec<Changed<InboxOutcome>>> {
    let mut book = load_book(conn, &decisions, locked).await?;
    let changes = procedure::settle(decisions, &mut book, outbox)?;
    if !book.entries().is_empty() {
        let (mut keys, mut users, mut available, mut reserved) = (vec![], vec![], vec![], vec![]);
        for (user_id, m) in book.entries() {
            keys.push(m.business_key.as_str());
            users.push(user_id.as_str());
            available.push(m.available);
            reserved.push(m.reserved);
        }
        // No ON CONFLICT: the keys were checked under the locks that serialize
        // every writer of them, so a clash is a bug and fails the transaction.
        sqlx::query(
            "INSERT INTO ledger_entries (business_key, user_id, available_delta, reserved_delta, created_at)
             SELECT k, u, a, r, $5 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                                        WITH ORDINALITY AS v(k, u, a, r, n)
             ORDER BY n",
        )
        .bind(&keys)
        .bind(&users)
        .bind(&available)
        .bind(&reserved)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    if book.moved().len() > 0 {
        let (mut users, mut available, mut reserved) = (vec![], vec![], vec![]);
        for (user_id, a, r) in book.moved() {
            users.push(user_id);
            available.push(a);
            reserved.push(r);
        }
        sqlx::query(
            "UPDATE accounts a SET available = v.available, reserved = v.reserved
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(user_id, available, reserved)
             WHERE a.user_id = v.user_id",
        )
        .bind(&users)
        .bind(&available)
        .bind(&reserved)
        .execute(&mut *conn)
        .await?;
    }
    Ok(changes)
}

/// The ledger keys and balances `decisions` move money on; the accounts stay
/// locked until commit, so no other transaction moves them meanwhile. Those
/// among `locked` are not locked (nor read) again.
async fn load_book(conn: &mut PgConnection, decisions: &[Decision], locked: &[(String, i64, i64)]) -> Result<Book> {
    let (keys, users) = Book::wanted(decisions);
    if keys.is_empty() {
        return Ok(Book::default());
    }
    // `users` is sorted; a batch has up to 256 of them.
    let held: HashSet<&str> = locked.iter().map(|(user, ..)| user.as_str()).collect();
    let missing: Vec<String> = users.iter().filter(|user| !held.contains(user.as_str())).cloned().collect();
    let mut balances = lock_accounts(conn, &missing).await?;
    balances.extend(locked.iter().filter(|(user, ..)| users.binary_search(user).is_ok()).cloned());
    let applied: Vec<String> =
        sqlx::query_scalar("SELECT business_key FROM ledger_entries WHERE business_key = ANY($1)")
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Book::new(applied, users, balances))
}

/// Appends `outbox`'s events to their users' streams, in order, each with
/// its user's next sequence number, and announces them to every instance
/// (`pg_notify`, delivered on commit), in one statement. The account row
/// locks, held until commit, hand the numbers out in commit order, never twice.
async fn write_outbox(conn: &mut PgConnection, outbox: &Outbox) -> Result<()> {
    if outbox.len() == 0 {
        return Ok(());
    }
    let (mut users, mut names, mut data) = (vec![], vec![], vec![]);
    for (user_id, event) in outbox.events() {
        users.push(user_id.as_str());
        names.push(event.name());
        data.push(event.data());
    }
    sqlx::query(concat!(
        "WITH events AS (
             SELECT u, n, d, o, $4::bigint AS t FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(u, n, d, o)
         ), ",
        append_events_sql!(),
        " SELECT pg_notify($5, user_id) FROM bumped"
    ))
    .bind(&users)
    .bind(&names)
    .bind(&data)
    .bind(now_ms())
    .bind(CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets the outcome of inbox rows `(event_id, outcome)`, applied now.
async fn mark_applied(conn: &mut PgConnection, ids: &[&str], outcomes: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE webhook_inbox i SET outcome = v.outcome, applied_at = $3
         FROM unnest($1::text[], $2::text[]) AS v(event_id, outcome) WHERE i.event_id = v.event_id",
    )
    .bind(ids)
    .bind(outcomes)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies events that arrived before the record they are about
/// ([`sql::SELECT_ORPHANS`]) and returns how many there were. The caller
/// holds the subject's lock, so no webhook about it can be mid-way.
async fn apply_orphans(conn: &mut PgConnection, subject_id: Uuid, outbox: &mut Outbox) -> Result<usize> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as(sql::SELECT_ORPHANS).bind(subject_id.to_string()).fetch_all(&mut *conn).await?;
    let orphans = procedure::parse_orphans(rows)?;
    let events: Vec<&WebhookEvent> = orphans.iter().map(|(_, event)| event).collect();
    let changes = apply_events(conn, &events, outbox).await?;
    let ids: Vec<&str> = orphans.iter().map(|(event_id, _)| event_id.as_str()).collect();
    let outcomes: Vec<&str> = changes.iter().map(|changed| changed.value.as_str()).collect();
    mark_applied(conn, &ids, &outcomes).await?;
    Ok(ids.len())
}

/// A stored idempotency record: request hash, state, lease end, response
/// status and body, and the presence id of the instance that claimed it.
type IdempotencyRow = (String, String, i64, Option<i32>, Option<String>, Option<i32>);

// ---- one transaction per operation (run again by `retrying` on a transient abort) ----

impl PostgresStorage {
    async fn claim_idempotency_once(
        &self,
        scope: &IdempotencyScope<'_>,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<Option<IdempotencyClaim>> {
        let now = now_ms();
        // Insert first, on its own: of two instances claiming a new key at
        // once, one inserts and the other waits for its commit, then finds
        // the row. The commit does not wait for the disk (it is visible to
        // every session at once all the same): should the database crash and
        // lose the claim, the client's retry claims the key again and calls
        // Pientegra with the same derived key, which answers with the same
        // intent or withdrawal. The answer's own commit is durable, and
        // carries the claim to disk with it. Run twice (its connection lost
        // after it committed), the insert finds its own claim: in flight.
        let insert = || {
            sqlx::query(
                "INSERT INTO idempotency (user_id, route, key, request_hash, state, locked_until, created_at, claimant)
                 VALUES ($1, $2, $3, $4, 'in_flight', $5, $6, $7) ON CONFLICT (user_id, route, key) DO NOTHING",
            )
            .bind(scope.user_id)
            .bind(scope.route)
            .bind(scope.key)
            .bind(request_hash)
            .bind(now + lease_ms)
            .bind(now)
            .bind(self.presence.id())
            .execute(&self.claims)
        };
        let inserted = on_live_connection(&self.claims, insert).await?.rows_affected() == 1;
        if inserted {
            return Ok(Some(IdempotencyClaim::Claimed));
        }
        let mut tx = begin(&self.writes).await?;
        let row: Option<IdempotencyRow> = sqlx::query_as(
            "SELECT request_hash, state, locked_until, response_status, response_body, claimant
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
            Some((hash, ..)) if hash != request_hash => IdempotencyClaim::Mismatch,
            Some((_, state, _, Some(status), Some(body), _)) if state == "done" => {
                IdempotencyClaim::Done { status: u16::try_from(status).unwrap_or(500), body }
            }
            Some((_, _, locked_until, _, _, claimant)) => {
                if locked_until > now && presence::is_present(&mut tx, claimant).await? {
                    IdempotencyClaim::InFlight
                } else {
                    // The claimant died mid-request (its instance's presence
                    // lock is free) or its lease ended: take over; the work it
                    // did is idempotent. The row lock makes this take-over one
                    // instance's only.
                    tracing::info!(
                        route = scope.route,
                        "took over an Idempotency-Key claim whose instance is gone or whose lease ended"
                    );
                    sqlx::query(
                        "UPDATE idempotency SET locked_until = $1, claimant = $2
                         WHERE user_id = $3 AND route = $4 AND key = $5",
                    )
                    .bind(now + lease_ms)
                    .bind(self.presence.id())
                    .bind(scope.user_id)
                    .bind(scope.route)
                    .bind(scope.key)
                    .execute(&mut *tx)
                    .await?;
                    IdempotencyClaim::Claimed
                }
            }
        };
        tx.commit().await?;
        Ok(Some(claim))
    }

    /// Records a new deposit with its event and answer in one statement
    /// ([`RECORD_NEW_DEPOSIT`]); `None` when webhooks about it wait as
    /// orphans or it was recorded before, which [`Self::record_deposit_once`]
    /// takes care of.
    async fn record_new_deposit(
        &self,
        d: &NewDeposit,
        reply: Option<&DepositReply<'_>>,
    ) -> Result<Option<Changed<DepositRecord>>> {
        let now = now_ms();
        let record = reserved(d, now);
        let event = UserEvent::Deposit(record.view());
        let body = reply.map(|answer| record.reply_body(answer.framing));
        let answer = reply.map(|answer| answer.reply);
        // Run twice (its connection lost after it committed), it finds the deposit: `None`.
        let statement = || {
            bind_new_deposit!(sqlx::query_scalar(RECORD_NEW_DEPOSIT), d, now)
                .bind(event.name())
                .bind(event.data())
                .bind(answer.map(|answer| answer.scope.user_id))
                .bind(answer.map(|answer| answer.scope.route))
                .bind(answer.map(|answer| answer.scope.key))
                .bind(answer.map(|answer| answer.request_hash))
                .bind(answer.map(|answer| i32::from(answer.status)))
                .bind(body.as_deref())
                .bind(CHANNEL)
                .bind(SUBJECT_LOCK_SPACE)
                .fetch_one(&self.writes)
        };
        let recorded: bool = on_live_connection(&self.writes, statement).await?;
        Ok(recorded.then(|| Changed { value: record, touched: vec![d.user_id.clone()] }))
    }

    async fn record_deposit_once(
        &self,
        d: &NewDeposit,
        reply: Option<&DepositReply<'_>>,
    ) -> Result<Changed<DepositRecord>> {
        if let Some(recorded) = self.record_new_deposit(d, reply).await? {
            return Ok(recorded);
        }
        // A webhook about this intent either committed (as an orphan) before we
        // take the lock, and we apply it below, or waits and then finds the deposit.
        let mut tx = begin_locked(&self.writes, [d.intent_id]).await?;
        let now = now_ms();
        let insert = sqlx::query(
            "INSERT INTO deposits (intent_id, user_id, reference_no, deposit_url, requested_amount, amount, currency,
                                   status, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'RESERVED', $8, $9, $9) ON CONFLICT (intent_id) DO NOTHING
             RETURNING *",
        );
        let inserted = bind_new_deposit!(insert, d, now).fetch_optional(&mut *tx).await?;
        let mut outbox = Outbox::default();
        let record = match inserted {
            Some(row) => {
                outbox.push(&d.user_id, UserEvent::Deposit(deposit_from_row(&row)?.view()));
                apply_orphans(&mut tx, d.intent_id, &mut outbox).await?;
                write_outbox(&mut tx, &outbox).await?;
                deposit_in(&mut tx, d.intent_id).await?.context("the deposit just recorded")?
            }
            None => deposit_in(&mut tx, d.intent_id).await?.context("the deposit recorded before")?,
        };
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
        let mut tx = begin(&self.writes).await?;
        // Every reservation of this user, on any instance, queues here until we commit.
        let locked = lock_accounts(&mut tx, std::slice::from_ref(&w.user_id)).await?;
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
        let (_, available, reserved) = locked.first().context("the account just locked")?;
        let balance = BalanceRow { available: amount(*available)?, reserved: amount(*reserved)? };
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
        settle_in(&mut tx, vec![procedure::reservation(local_id, w)], &locked, &mut outbox, now).await?;
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
        // Webhooks about this withdrawal wait, or committed as orphans we apply below.
        let mut tx = begin_locked(&self.writes, [created.withdrawal_id]).await?;
        let mut record = withdrawal_in(&mut tx, local_id, true).await?.context("unknown withdrawal")?;
        let now = now_ms();
        let mut outbox = Outbox::default();
        if let Some(accepted) = procedure::accept(&mut record, created, now) {
            save_withdrawal(&mut tx, &record).await?;
            settle_in(&mut tx, vec![accepted], &[], &mut outbox, now).await?;
            apply_orphans(&mut tx, created.withdrawal_id, &mut outbox).await?;
            write_outbox(&mut tx, &outbox).await?;
        }
        let record = withdrawal_in(&mut tx, local_id, false).await?.context("the withdrawal")?;
        tx.commit().await?;
        Ok(Changed { value: record, touched: outbox.users_from(0) })
    }

    async fn withdrawal_refused_once(&self, local_id: Uuid, reason: &str) -> Result<Changed<WithdrawalRecord>> {
        let mut tx = begin(&self.writes).await?;
        let mut record = withdrawal_in(&mut tx, local_id, true).await?.context("unknown withdrawal")?;
        let now = now_ms();
        let mut outbox = Outbox::default();
        if let Some(refused) = procedure::refuse(&mut record, reason, now) {
            save_withdrawal(&mut tx, &record).await?;
            settle_in(&mut tx, vec![refused], &[], &mut outbox, now).await?;
            write_outbox(&mut tx, &outbox).await?;
        }
        tx.commit().await?;
        Ok(Changed { value: record, touched: outbox.users_from(0) })
    }
}

/// The transactions that apply webhooks ([`super::group_commit`]): a batch
/// of webhooks is one transaction, on one of the writers' connections.
struct Webhooks {
    pool: PgPool,
}

impl Webhooks {
    async fn commit_once(&self, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>> {
        let mut tx = begin_locked(&self.pool, webhooks.iter().filter_map(|(event, _)| subject_id(event))).await?;
        let ids: Vec<String> = webhooks.iter().map(|(event, _)| event.event_id.to_string()).collect();
        // The inbox is asked by inserting into it.
        let first = procedure::first_unknown(&ids, |_| false);
        let inserted = insert_pending(&mut tx, webhooks, &ids, &first).await?;
        let fresh: Vec<bool> = ids.iter().zip(&first).map(|(id, &first)| first && inserted.contains(id)).collect();
        let events: Vec<&WebhookEvent> =
            webhooks.iter().zip(&fresh).filter(|(_, fresh)| **fresh).map(|((event, _), _)| *event).collect();
        let mut outbox = Outbox::default();
        let applied = apply_events(&mut tx, &events, &mut outbox).await?;
        write_outbox(&mut tx, &outbox).await?;
        let fresh_ids: Vec<&str> =
            ids.iter().zip(&fresh).filter(|(_, fresh)| **fresh).map(|(id, _)| id.as_str()).collect();
        let outcomes: Vec<&str> = applied.iter().map(|changed| changed.value.as_str()).collect();
        mark_applied(&mut tx, &fresh_ids, &outcomes).await?;
        tx.commit().await?;
        Ok(procedure::with_duplicates(&fresh, applied))
    }
}

#[async_trait]
impl CommitWebhooks for Webhooks {
    async fn commit(&self, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>> {
        retrying("apply_webhooks", || self.commit_once(webhooks)).await
    }
}

/// Records the first of each eventId among `webhooks` in the inbox as
/// pending, unless it is there already; returns the eventIds it recorded. Of
/// two instances receiving the same event at once, one inserts; the other
/// waits for its commit and finds the row: a duplicate.
async fn insert_pending(
    conn: &mut PgConnection,
    webhooks: &[Webhook<'_>],
    ids: &[String],
    first: &[bool],
) -> Result<HashSet<String>> {
    let (mut event_ids, mut types, mut subjects, mut bodies) = (vec![], vec![], vec![], vec![]);
    for ((id, (event, body)), _) in ids.iter().zip(webhooks).zip(first).filter(|(_, first)| **first) {
        event_ids.push(id.as_str());
        types.push(event.event_type());
        subjects.push(subject_id(event).map(|id| id.to_string()));
        bodies.push(*body);
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO webhook_inbox (event_id, event_type, subject_id, body, outcome, received_at)
         SELECT e, t, s, b, 'pending', $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS v(e, t, s, b)
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(&event_ids)
    .bind(&types)
    .bind(&subjects)
    .bind(&bodies)
    .bind(now_ms())
    .fetch_all(&mut *conn)
    .await?;
    Ok(inserted.into_iter().collect())
}

impl Storage for PostgresStorage {
    fn pgm_records(&self) -> Arc<dyn PgmRecords> {
        self.pgm.clone()
    }
}

#[async_trait]
impl Idempotency for PostgresStorage {
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
        // Only this instance's claim: one taken over by another instance is
        // that instance's to release or answer.
        sqlx::query(
            "DELETE FROM idempotency
             WHERE user_id = $1 AND route = $2 AND key = $3 AND state = 'in_flight' AND claimant = $4",
        )
        .bind(scope.user_id)
        .bind(scope.route)
        .bind(scope.key)
        .bind(self.presence.id())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Ledger for PostgresStorage {
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

    async fn note_under_review(&self, intent_id: Uuid) -> Result<Changed<bool>> {
        let mut tx = begin_locked(&self.writes, [intent_id]).await?;
        let updated = sqlx::query(
            "UPDATE deposits SET status = 'PENDING_REVIEW', updated_at = $1 WHERE intent_id = $2 AND status = 'RESERVED'
             RETURNING *",
        )
        .bind(now_ms())
        .bind(intent_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let mut outbox = Outbox::default();
        if let Some(row) = updated {
            let deposit = deposit_from_row(&row)?;
            outbox.push(&deposit.user_id, UserEvent::Deposit(deposit.view()));
            write_outbox(&mut tx, &outbox).await?;
        }
        tx.commit().await?;
        Ok(Changed { value: outbox.len() > 0, touched: outbox.users_from(0) })
    }

    async fn awaiting_transfer(&self, limit: i64) -> Result<Vec<DepositRecord>> {
        self.reads.awaiting_transfer(limit).await
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
impl EventLog for PostgresStorage {
    async fn last_event_seq(&self, user_id: &str) -> Result<i64> {
        self.reads.last_event_seq(user_id).await
    }

    async fn events_after(&self, user_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        self.reads.events_after(user_id, after, limit).await
    }
}

#[async_trait]
impl Coordination for PostgresStorage {
    async fn ping(&self) -> Result<()> {
        self.reads.ping().await
    }

    async fn serving_starts(&self) -> Result<()> {
        // Other instances may be mid-request on their claims: a claim this
        // process's predecessor abandoned is taken over by the next request
        // with its key, its instance's presence lock being free (see
        // `claim_idempotency_once`).
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
}

#[async_trait]
impl Audit for PostgresStorage {
    async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)> {
        self.reads.ledger_sum(user_id).await
    }
}

#[cfg(test)]
mod tests {
    use pientegra_shared::Amount;
    use pientegra_shared::event::WebhookEvent;
    use uuid::Uuid;

    use super::{PostgresStorage, SUBJECT_LOCK_SPACE, Webhooks};
    use crate::storage::Audit;
    use crate::storage::group_commit::{CommitWebhooks, Webhook};
    use crate::storage::testing::{self, approved, record_deposit, record_deposit_of};
    use crate::storage::{Changed, InboxOutcome, Ledger};

    /// A storage on a schema of its own (skipped without PostgreSQL, unless `CI=true`).
    struct Schema {
        storage: PostgresStorage,
        schema: pientegra_testkit::postgres::Schema,
    }

    impl Schema {
        async fn create() -> Option<Schema> {
            let schema = pientegra_testkit::postgres::Schema::create().await?;
            let storage = PostgresStorage::connect(&schema.url).await.unwrap();
            Some(Schema { storage, schema })
        }

        async fn drop_now(self) {
            self.storage.pool.close().await;
        }

        /// Applies `events` as one batch, in one transaction.
        async fn one_batch(&self, events: &[WebhookEvent]) -> Vec<Changed<InboxOutcome>> {
            let bodies: Vec<Vec<u8>> = events.iter().map(WebhookEvent::to_body).collect();
            let webhooks: Vec<Webhook<'_>> = events.iter().zip(&bodies).map(|(e, body)| (e, body.as_slice())).collect();
            Webhooks { pool: self.storage.pool.clone() }.commit(&webhooks).await.unwrap()
        }

        async fn outcomes(&self, events: &[WebhookEvent]) -> Vec<InboxOutcome> {
            self.one_batch(events).await.into_iter().map(|changed| changed.value).collect()
        }
    }

    #[tokio::test]
    async fn events_in_one_batch_see_the_ones_before_them() {
        let Some(schema) = Schema::create().await else { return };
        testing::events_in_one_batch_see_the_ones_before_them(&schema.storage, |events| async {
            let events = events;
            schema.one_batch(&events).await.into_iter().map(Ok).collect()
        })
        .await;
        schema.drop_now().await;
    }

    #[tokio::test]
    async fn a_recorded_deposit_is_stored_with_its_event_and_its_answer() {
        let Some(schema) = Schema::create().await else { return };
        testing::a_recorded_deposit_is_stored_with_its_event_and_its_answer(&schema.storage).await;
        schema.drop_now().await;
    }

    /// A webhook that stores an orphan while a deposit's record waits for the
    /// intent's lock is seen by the record, which applies it.
    #[tokio::test]
    async fn an_orphan_stored_while_the_record_waits_for_the_lock_is_applied() {
        use sqlx::Connection;
        let Some(schema) = Schema::create().await else { return };
        let intent = Uuid::new_v4();
        let mut holder = sqlx::PgConnection::connect(&schema.schema.url).await.unwrap();
        let mut held = holder.begin().await.unwrap();
        let key = format!("{SUBJECT_LOCK_SPACE}, hashtext('{intent}')");
        sqlx::query(&format!("SELECT pg_advisory_xact_lock({key})")).execute(&mut *held).await.unwrap();
        // What the webhook path stores for an approval of an intent it does not know.
        let approval = approved(intent);
        sqlx::query(
            "INSERT INTO webhook_inbox (event_id, event_type, subject_id, body, outcome, received_at)
             VALUES ($1, $2, $3, $4, 'orphan', 0)",
        )
        .bind(approval.event_id.to_string())
        .bind(approval.event_type())
        .bind(intent.to_string())
        .bind(approval.to_body())
        .execute(&mut *held)
        .await
        .unwrap();

        let commit_once_waited_for = async {
            let waiting = format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                 AND (classid, objid, objsubid) = ({SUBJECT_LOCK_SPACE}::oid, hashtext('{intent}')::oid, 2)"
            );
            let observer = sqlx::PgPool::connect(&schema.schema.url).await.unwrap();
            let waited_for = async {
                while sqlx::query_scalar::<_, i64>(&waiting).fetch_one(&observer).await.unwrap() == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), waited_for).await.expect("the record waits");
            held.commit().await.unwrap();
        };
        tokio::join!(record_deposit_of(&schema.storage, intent, 1_000), commit_once_waited_for);

        let deposit = schema.storage.deposit(intent).await.unwrap().unwrap();
        assert_eq!(deposit.status, pientegra_shared::status::IntentStatus::Approved);
        assert_eq!(schema.storage.balance("u").await.unwrap().available, Amount::from_minor(1_000));
        schema.drop_now().await;
    }

    /// A batch dedupes by eventId, within itself and against the inbox, and
    /// keeps an event about an intent not recorded yet until its deposit is.
    #[tokio::test]
    async fn a_batch_dedupes_by_event_id_and_keeps_orphans_for_their_deposit() {
        let Some(schema) = Schema::create().await else { return };
        let storage = &schema.storage;
        let known = record_deposit(storage, 1_000).await;
        let early = Uuid::new_v4();
        let credit = approved(known);

        let outcomes = schema.outcomes(&[credit.clone(), credit.clone(), approved(early)]).await;
        assert_eq!(outcomes, [InboxOutcome::Applied, InboxOutcome::Duplicate, InboxOutcome::Orphan]);
        assert_eq!(schema.outcomes(std::slice::from_ref(&credit)).await, [InboxOutcome::Duplicate]);
        assert_eq!(storage.balance("u").await.unwrap().available, Amount::from_minor(1_000));

        record_deposit_of(storage, early, 1_000).await;
        assert_eq!(storage.balance("u").await.unwrap().available, Amount::from_minor(2_000));
        assert_eq!(storage.ledger_sum("u").await.unwrap(), (2_000, 0));
        schema.drop_now().await;
    }

    /// A batch's statements are planned for the tables as they are: the
    /// batches applied while the tables were nearly empty do not leave the
    /// later ones reading them whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_find_their_rows_by_index_however_the_tables_grew_since_the_first() {
        const GROWN: i64 = 20_000;
        const AT_ONCE: usize = 20;
        let Some(schema) = Schema::create().await else { return };
        let storage = &schema.storage;
        // `AT_ONCE` webhooks sent together, which the writers take in batches.
        let together = || async {
            let mut events = Vec::new();
            for _ in 0..AT_ONCE {
                events.push(approved(record_deposit(storage, 100).await));
            }
            let bodies: Vec<Vec<u8>> = events.iter().map(WebhookEvent::to_body).collect();
            let applied = events.iter().zip(&bodies).map(|(event, body)| storage.apply_webhook(event, body));
            for outcome in futures::future::join_all(applied).await {
                assert_eq!(outcome.unwrap().value, InboxOutcome::Applied);
            }
        };
        // More than the five runs after which PostgreSQL may keep one plan
        // for a prepared statement, on each of the writers' connections.
        let rounds = 16;
        for _ in 0..rounds {
            together().await;
        }
        // Months of traffic of other users.
        sqlx::query(
            "INSERT INTO webhook_inbox (event_id, event_type, subject_id, body, outcome, received_at)
             SELECT gen_random_uuid()::text, 'intent.approved', gen_random_uuid()::text, '\\x7b7d', 'applied', 0
             FROM generate_series(1, $1)",
        )
        .bind(GROWN)
        .execute(&storage.pool)
        .await
        .unwrap();
        together().await;

        // Each applied webhook updates its inbox row once; the writers'
        // counts reach the statistics within seconds of going idle.
        let all = i64::try_from((rounds + 1) * AT_ONCE).unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let read = loop {
            let (updated, read): (i64, i64) = sqlx::query_as(
                "SELECT n_tup_upd, seq_tup_read FROM pg_stat_user_tables WHERE relid = 'webhook_inbox'::regclass",
            )
            .fetch_one(&storage.pool)
            .await
            .unwrap();
            if updated >= all {
                break read;
            }
            assert!(tokio::time::Instant::now() < deadline, "the statistics never counted the last webhooks");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        assert!(read < GROWN, "the inbox was read whole: {read} rows read by scans");
        schema.drop_now().await;
    }

    /// A transaction given up while it waits for its subject's lock (its
    /// request dropped, say) leaves no lock behind on the pool's connections.
    #[tokio::test]
    async fn a_wait_for_a_subject_lock_given_up_leaves_no_lock_behind() {
        use sqlx::Connection;
        let Some(schema) = Schema::create().await else { return };
        let intent = Uuid::new_v4();
        let lock = format!("SELECT pg_advisory_xact_lock({SUBJECT_LOCK_SPACE}, hashtext('{intent}'))");
        let mut holder = sqlx::PgConnection::connect(&schema.schema.url).await.unwrap();
        let mut held = holder.begin().await.unwrap();
        sqlx::query(&lock).execute(&mut *held).await.unwrap();

        let given_up = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            record_deposit_of(&schema.storage, intent, 100),
        )
        .await;
        assert!(given_up.is_err(), "the deposit waited for the lock");
        held.commit().await.unwrap();

        // The lock is free again once the abandoned transaction has rolled back.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let try_lock = format!("SELECT pg_try_advisory_xact_lock({SUBJECT_LOCK_SPACE}, hashtext('{intent}'))");
        loop {
            let mut probe = holder.begin().await.unwrap();
            let free: bool = sqlx::query_scalar(&try_lock).fetch_one(&mut *probe).await.unwrap();
            probe.rollback().await.unwrap();
            if free {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "a pooled connection still holds the subject's lock");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // And the pool's connections work: the deposit is recorded after all.
        record_deposit_of(&schema.storage, intent, 100).await;
        assert!(schema.storage.deposit(intent).await.unwrap().is_some());
        schema.drop_now().await;
    }

    /// The backend ids of every connection `pool` can hold (opening them all).
    async fn backends(pool: &sqlx::PgPool) -> Vec<i32> {
        let mut held = Vec::new();
        for _ in 0..pool.options().get_max_connections() {
            held.push(pool.acquire().await.unwrap());
        }
        let mut pids = Vec::new();
        for conn in &mut held {
            pids.push(sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut **conn).await.unwrap());
        }
        pids
    }

    /// Terminates the sessions `pids` and waits until they are gone.
    async fn terminate(url: &str, pids: &[i32]) {
        let killer = sqlx::PgPool::connect(url).await.unwrap();
        let terminated: Vec<bool> =
            sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS p(pid)")
                .bind(pids)
                .fetch_all(&killer)
                .await
                .unwrap();
        assert!(terminated.iter().all(|t| *t), "{terminated:?}");
        let gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)";
        while sqlx::query_scalar::<_, i64>(gone).bind(pids).fetch_one(&killer).await.unwrap() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        killer.close().await;
    }

    /// The write and claim pools do not ping a connection before handing it
    /// out: when the database has closed every one of them while idle, the
    /// next claim and the next transaction still succeed, on new connections.
    #[tokio::test]
    async fn work_after_the_database_closed_every_idle_connection_runs_on_new_ones() {
        use crate::storage::{Idempotency, IdempotencyClaim, IdempotencyScope};
        let Some(schema) = Schema::create().await else { return };
        let storage = &schema.storage;
        let intent = record_deposit(storage, 100).await;

        // A transaction (its BEGIN) and a claim.
        let mut pids = backends(&storage.writes).await;
        pids.extend(backends(&storage.claims).await);
        terminate(&schema.schema.url, &pids).await;
        assert!(storage.note_under_review(intent).await.unwrap().value);
        let scope = IdempotencyScope { user_id: "u", route: "deposits", key: "k" };
        let claim = storage.claim_idempotency(&scope, "hash", 60_000).await.unwrap();
        assert!(matches!(claim, IdempotencyClaim::Claimed), "{claim:?}");

        // A new deposit's one statement.
        terminate(&schema.schema.url, &backends(&storage.writes).await).await;
        let intent = record_deposit(storage, 100).await;
        assert!(storage.deposit(intent).await.unwrap().is_some());
        schema.drop_now().await;
    }

    /// The session holding instance `id`'s presence lock, if one does.
    async fn presence_holder(pool: &sqlx::PgPool, id: i32) -> Option<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2",
        )
        .bind(i64::from(super::presence::PRESENCE_SPACE))
        .bind(i64::from(id))
        .fetch_optional(pool)
        .await
        .unwrap()
    }

    /// Waits until a session holds instance `id`'s presence lock (again).
    async fn until_present(pool: &sqlx::PgPool, id: i32) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while presence_holder(pool, id).await.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "the presence lock was never taken again");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A claim made by an instance that is gone is taken over at once by
    /// another, long before its lease ends; while its instance lives, it is in
    /// flight, also after the database ended the instance's presence session
    /// (which the instance opens again).
    #[tokio::test]
    async fn a_claim_of_an_instance_that_is_gone_is_taken_over_before_its_lease_ends() {
        use crate::storage::{Idempotency, IdempotencyClaim, IdempotencyScope};
        // Ten minutes: within this test only presence can end a claim.
        const LEASE_MS: i64 = 600_000;
        let Some(schema) = Schema::create().await else { return };
        let storage = &schema.storage;
        let other = PostgresStorage::connect(&schema.schema.url).await.unwrap();
        let scope = IdempotencyScope { user_id: "u", route: "deposits", key: "k" };
        let claim = other.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
        assert!(matches!(claim, IdempotencyClaim::Claimed), "{claim:?}");
        let claim = storage.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
        assert!(matches!(claim, IdempotencyClaim::InFlight), "{claim:?}");

        // The database ends the other instance's presence session; it takes its lock again.
        let id = other.presence.id();
        let first = presence_holder(&storage.pool, id).await.expect("the other instance is present");
        terminate(&schema.schema.url, &[first]).await;
        until_present(&storage.pool, id).await;
        let claim = storage.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
        assert!(matches!(claim, IdempotencyClaim::InFlight), "{claim:?}");

        // The other instance goes away, and its claim with it.
        drop(other);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let claim = loop {
            let claim = storage.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
            if !matches!(claim, IdempotencyClaim::InFlight) || tokio::time::Instant::now() > deadline {
                break claim;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert!(matches!(claim, IdempotencyClaim::Claimed), "{claim:?}");
        // Now this instance's: in flight to a third.
        let third = PostgresStorage::connect(&schema.schema.url).await.unwrap();
        let claim = third.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
        assert!(matches!(claim, IdempotencyClaim::InFlight), "{claim:?}");
        drop(third);
        schema.drop_now().await;
    }

    /// A claim taken over from an instance that still works on it (its
    /// presence session ended by the database) is the taker's: the first
    /// instance's release leaves it, and its later answer does not replace
    /// the one stored first.
    #[tokio::test]
    async fn a_claim_taken_over_from_a_live_instance_is_the_takers_and_the_first_answer_stays() {
        use crate::storage::{Idempotency, IdempotencyClaim, IdempotencyScope, Reply};
        const LEASE_MS: i64 = 600_000;
        let Some(schema) = Schema::create().await else { return };
        let (first, taker) = (&schema.storage, PostgresStorage::connect(&schema.schema.url).await.unwrap());
        let scope = IdempotencyScope { user_id: "u", route: "withdrawals", key: "k" };
        let claim = first.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
        assert!(matches!(claim, IdempotencyClaim::Claimed), "{claim:?}");
        // Between the end of the first instance's presence session and its
        // keeper taking the lock again, the taker claims.
        let mut taken = false;
        for _ in 0..10 {
            let session = presence_holder(&taker.pool, first.presence.id()).await;
            terminate(&schema.schema.url, &[session.expect("the first instance is present")]).await;
            match taker.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap() {
                IdempotencyClaim::Claimed => {
                    taken = true;
                    break;
                }
                IdempotencyClaim::InFlight => {
                    // The keeper was quicker: wait for the lock, end it again.
                    until_present(&taker.pool, first.presence.id()).await;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(taken, "the taker never found the first instance's presence lock free");

        first.release_idempotency(&scope).await.unwrap();
        let third = taker.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap();
        assert!(matches!(third, IdempotencyClaim::InFlight), "released by the instance it was taken from: {third:?}");

        let reply = Reply { scope: &scope, request_hash: "hash", status: 201 };
        taker.finish_idempotency(&reply, "{\"by\":\"taker\"}").await.unwrap();
        first.finish_idempotency(&reply, "{\"by\":\"first\"}").await.unwrap();
        match first.claim_idempotency(&scope, "hash", LEASE_MS).await.unwrap() {
            IdempotencyClaim::Done { status: 201, body } => assert_eq!(body, "{\"by\":\"taker\"}"),
            other => panic!("{other:?}"),
        }
        drop(taker);
        schema.drop_now().await;
    }

    /// Recording a new deposit announces it to every instance's listener.
    #[tokio::test]
    async fn a_new_deposit_is_announced_on_the_change_channel() {
        let Some(schema) = Schema::create().await else { return };
        let mut listener = sqlx::postgres::PgListener::connect(&schema.schema.url).await.unwrap();
        listener.listen(super::CHANNEL).await.unwrap();
        record_deposit(&schema.storage, 100).await;
        let heard = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv()).await;
        assert_eq!(heard.expect("announced").unwrap().payload(), "u");
        schema.drop_now().await;
    }
}
