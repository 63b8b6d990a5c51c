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

use anyhow::Context;
use pientegra_shared::api::UserEvent;
use pientegra_shared::status::IntentStatus;
use rusqlite::{OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{INSERT_DEPOSIT, STORE_REPLY};
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

/// A rusqlite connection to `file` for `purpose`, used from one thread at a
/// time (behind a mutex or owned by a thread), so SQLite's own mutex is off.
pub(super) fn open_direct(file: &Path, flags: OpenFlags, purpose: &str) -> anyhow::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(file, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening the SQLite database for {purpose}"))
}

/// Runs `f`, which blocks, on this thread: tokio's other workers take over
/// its tasks meanwhile. (A single-threaded runtime, as in tests, just waits.)
pub(super) fn blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use pientegra_shared::Amount;
    use rusqlite::OpenFlags;
    use uuid::Uuid;

    use super::open_direct;
    use crate::storage::sqlite::SqliteStorage;
    use crate::storage::{IdempotencyScope, NewDeposit, Reply, Storage};

    /// Every page a commit writes is appended to the log and synced before
    /// the user gets an answer. A new deposit writes one page per B-tree it
    /// touches: the deposit and its three indexes, the account, the stream
    /// event and the stored answer. With rowid tables it was ten (measured).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_deposit_commit_writes_seven_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let storage = SqliteStorage::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let record = |n: u32| {
            let deposit = NewDeposit {
                intent_id: Uuid::new_v4(),
                user_id: "u".into(),
                reference_no: format!("REF-{n}"),
                deposit_url: format!("https://pay.example/d/{n}"),
                requested_amount: Amount::from_minor(150_000),
                amount: Amount::from_minor(150_000),
                currency: "TRY".into(),
                expires_at: Utc::now() + chrono::Duration::minutes(30),
            };
            let storage = &storage;
            async move {
                let key = format!("k-{n}");
                let scope = IdempotencyScope { user_id: "u", route: "deposits", key: &key };
                let reply = Reply { scope: &scope, request_hash: "h", status: 201 };
                storage.record_deposit(deposit, Some(&reply)).await.unwrap();
            }
        };
        // The account exists and every table has its first page.
        record(0).await;

        // An empty log, then one deposit: the log holds exactly its pages.
        let conn = open_direct(&path, OpenFlags::SQLITE_OPEN_READ_WRITE, "the test").unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!(busy, 0, "the log could not be emptied");
        record(1).await;

        let wal = std::fs::metadata(dir.path().join("db-wal")).unwrap().len();
        // A 32-byte header, then each page with a 24-byte header.
        let pages = (wal - 32) / (4096 + 24);
        assert_eq!(pages, 7, "a new deposit's commit wrote {pages} pages");
    }
}
