//! Every write runs with rusqlite on the calling thread.
//!
//! sqlx runs each SQLite statement on a thread of its own, and every statement
//! is a hand-off to that thread and back: two thread wake-ups, 30 µs at the
//! median on a small VM and milliseconds in the tail, when a virtual CPU has
//! to be woken for each. A webhook's transaction has a dozen statements. Here
//! a write transaction runs from `BEGIN` to its durable commit on the thread
//! that asked for it, with no hand-off at all; sqlx keeps the reads.
//!
//! The one connection sits behind an async mutex, which hands it out in turn
//! (first come, first served), so writes never race each other for SQLite's
//! write lock and a task waiting for it blocks no thread.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{Mutex, MutexGuard};

use super::open_direct;
use crate::storage::Result;

/// Distinct statements kept prepared (batches of different sizes are different statements).
const STATEMENT_CACHE: usize = 64;

/// The connection every write transaction runs on.
pub(in crate::storage) struct Direct {
    conn: Mutex<Connection>,
}

impl Direct {
    /// Opens `file`, which sqlx has already created and migrated, with the
    /// writer's settings: WAL is the file's own, `synchronous = FULL` and the
    /// busy timeout are the connection's.
    pub(super) fn open(file: &Path, busy_timeout: Duration) -> anyhow::Result<Direct> {
        let conn = open_direct(file, OpenFlags::SQLITE_OPEN_READ_WRITE, "writing")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Direct { conn: Mutex::new(conn) })
    }

    /// Runs `f` in one write transaction, on this thread, once the connection
    /// is ours; returns after the durable commit.
    pub(in crate::storage) async fn write<T: Send>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        let mut conn = self.conn.lock().await;
        blocking_here(|| transaction(&mut conn, f))
    }

    /// The connection, held: writes wait until the guard is dropped (tests use it).
    #[cfg(test)]
    pub(super) async fn hold(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().await
    }
}

/// Runs `f` in one write transaction (`BEGIN IMMEDIATE`: SQLite's write lock
/// from the start, so a transaction that reads first cannot fail to upgrade
/// later, should another connection write in between) and commits it durably
/// when `f` succeeds; an error rolls everything back.
fn transaction<T>(
    conn: &mut MutexGuard<'_, Connection>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    // Dropped without a commit, it rolls back.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Runs `f`, which blocks, on this thread: tokio's other workers take over
/// its tasks meanwhile. (A single-threaded runtime, as in tests, just waits.)
fn blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
