//! Every write runs with rusqlite on the calling thread.
//!
//! sqlx runs each SQLite statement on a thread of its own, and every statement
//! is a hand-off to that thread and back: two thread wake-ups, 30 µs at the
//! median on a small VM and milliseconds in the tail, when a virtual CPU has
//! to be woken for each. A webhook's transaction has a dozen statements. Here
//! a write transaction runs from `BEGIN` to its durable commit on the thread
//! that asked for it, with no hand-off at all; sqlx keeps the reads.
//!
//! This connection writes only while its caller holds the writer pool's one
//! connection (the write permit, taken in turn), so writes never race each
//! other for SQLite's write lock.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{OpenFlags, TransactionBehavior};
use sqlx::SqlitePool;

use super::open_direct;
use crate::storage::Result;

/// Distinct statements kept prepared (batches of different sizes are different statements).
const STATEMENT_CACHE: usize = 64;

/// The connection every write transaction runs on, and the permit to use it.
pub(super) struct Direct {
    /// The writer pool: its one connection is the write permit, handed out in turn.
    permit: SqlitePool,
    conn: Mutex<rusqlite::Connection>,
}

impl Direct {
    /// Opens `file`, which sqlx has already created and migrated, with the
    /// writer's settings: WAL is the file's own, `synchronous = FULL` and the
    /// busy timeout are the connection's.
    pub(super) fn open(file: &Path, busy_timeout: Duration, permit: SqlitePool) -> anyhow::Result<Direct> {
        let conn = open_direct(file, OpenFlags::SQLITE_OPEN_READ_WRITE, "writing")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Direct { permit, conn: Mutex::new(conn) })
    }

    /// Runs `f` in one write transaction, on this thread, once the write
    /// permit is ours; returns after the durable commit.
    pub(super) async fn write<T: Send>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        let _permit = self.permit.acquire().await?;
        blocking_here(|| self.transaction(f))
    }

    /// The writer pool (tests hold its connection to make writes wait).
    #[cfg(test)]
    pub(super) fn permit(&self) -> &SqlitePool {
        &self.permit
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`: SQLite's write
    /// lock from the start, so a transaction that reads first cannot fail to
    /// upgrade later, should another connection write in between) and commits
    /// it durably when `f` succeeds; an error rolls everything back.
    fn transaction<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Dropped without a commit, it rolls back.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// Runs `f`, which blocks, on this thread: tokio's other workers take over
/// its tasks meanwhile. (A single-threaded runtime, as in tests, just waits.)
fn blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
