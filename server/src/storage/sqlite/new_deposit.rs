//! A new deposit recorded in this thread, on a connection of its own.
//!
//! A user waits on `POST /api/deposits` while its deposit is recorded. sqlx
//! runs each SQLite statement on a thread of its own, and every statement is a
//! hand-off to that thread and back: about 0.1 ms each on a small VM, six of
//! them for a new deposit. Here the same transaction (the deposit, its stream
//! event, the stored answer, one durable commit) runs with rusqlite on the
//! calling thread, with no hand-off at all.
//!
//! This connection writes only while its caller holds the writer pool's one
//! connection, so it never races sqlx's writes for SQLite's write lock.
//!
//! Only the common case runs here: a deposit not recorded before, which no
//! webhook arrived ahead of. Anything else rolls back, changes nothing and
//! returns `None`, and the caller takes the general path.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use pientegra_shared::api::UserEvent;
use pientegra_shared::status::IntentStatus;
use rusqlite::{OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{INSERT_DEPOSIT, STORE_REPLY, open_direct};
use crate::storage::rows::{minor, now_ms, time};
use crate::storage::{DepositRecord, NewDeposit, Reply, Result};

/// Bumps a user's stream sequence for one event, creating the account on its first.
const NEXT_SEQ: &str = "INSERT INTO accounts (user_id, last_seq) VALUES (?, 1)
     ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq";
const INSERT_EVENT: &str = "INSERT INTO user_events (user_id, seq, name, data, created_at) VALUES (?, ?, ?, ?, ?)";

/// The connection new deposits are recorded on.
pub(super) struct NewDeposits {
    conn: Mutex<rusqlite::Connection>,
}

impl NewDeposits {
    /// Opens `file`, which sqlx has already created and migrated, with the
    /// writer's settings: WAL is the file's own, `synchronous = FULL` and the
    /// busy timeout are the connection's.
    pub(super) fn open(file: &Path, busy_timeout: Duration) -> anyhow::Result<NewDeposits> {
        let conn = open_direct(file, OpenFlags::SQLITE_OPEN_READ_WRITE, "new deposits")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(busy_timeout)?;
        Ok(NewDeposits { conn: Mutex::new(conn) })
    }

    /// Records `d` with its `deposit.updated` event and, given one, the answer
    /// to its request, in one durable commit. `None` (nothing changed) when the
    /// deposit is known already or events about it are waiting.
    ///
    /// Blocks for the commit: call it through [`blocking_here`], holding the writer pool's connection.
    pub(super) fn record(&self, d: &NewDeposit, reply: Option<&Reply<'_>>) -> Result<Option<DepositRecord>> {
        let mut conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Dropped without a commit, it rolls back.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let intent_id = d.intent_id.to_string();
        let orphans: Option<bool> = tx
            .prepare_cached(INSERT_DEPOSIT)?
            .query_row(
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
                |row| row.get("orphans"),
            )
            .optional()?;
        if orphans != Some(false) {
            return Ok(None);
        }
        let record = reserved(d, now);
        let event = UserEvent::Deposit(record.view());
        let seq: i64 = tx.prepare_cached(NEXT_SEQ)?.query_row([&d.user_id], |row| row.get(0))?;
        tx.prepare_cached(INSERT_EVENT)?.execute(params![d.user_id, seq, event.name(), event.data(), now])?;
        if let Some(reply) = reply {
            tx.prepare_cached(STORE_REPLY)?.execute(params![
                reply.scope.user_id,
                reply.scope.route,
                reply.scope.key,
                reply.request_hash,
                reply.status,
                record.reply_body(),
                now,
            ])?;
        }
        tx.commit()?;
        Ok(Some(record))
    }
}

/// The row [`INSERT_DEPOSIT`] writes for `d` at `now`, as the database gives it back.
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

/// Runs `f`, which blocks, on this thread: tokio's other workers take over
/// its tasks meanwhile. (A single-threaded runtime, as in tests, just waits.)
pub(super) fn blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
