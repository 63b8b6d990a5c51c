//! WAL checkpoints, kept out of the commits users wait for.
//!
//! In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies
//! them into the database file and syncs it, so that the log can start over.
//! By itself SQLite runs one inside the commit that takes the log past 1,000
//! pages, and the request or webhook behind that commit waits for the copy
//! and a second sync: a new deposit writes 10 pages, so every 90th
//! deposit took 1.0–1.8 ms instead of 0.35 ms on the bench machine.
//!
//! Here a thread of its own checkpoints every [`INTERVAL`] on a connection of
//! its own, in `PASSIVE` mode, which never blocks the writer nor the readers.
//! Once it has copied the whole log, the next commit starts the log over, so
//! under a moderate load the log never reaches 1,000 pages and no commit
//! checkpoints. SQLite's own checkpoint stays as the backstop for bursts: a
//! commit that takes the log past 1,000 pages still checkpoints, with most
//! pages already copied, so the log stays as bounded as it was.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use rusqlite::OpenFlags;

use super::open_direct;

/// Pause between two checkpoints: short enough that the log copied this often
/// stays well under 1,000 pages (about 80 deposits' worth at the bench's
/// pace), long enough that the database file is synced at most ten times a second.
const INTERVAL: Duration = Duration::from_millis(100);

/// The checkpointing thread; it stops when this is dropped.
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing `file` (a WAL database sqlx has already created).
    pub(super) fn spawn(file: &Path) -> anyhow::Result<Checkpointer> {
        let conn = open_direct(file, OpenFlags::SQLITE_OPEN_READ_WRITE, "checkpoints")?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = checkpoint(&conn) {
                        // The writer's own checkpoint still runs: nothing is lost, commits are just slower.
                        tracing::warn!(error = %e, "background WAL checkpoint failed");
                    }
                }
            })
            .context("starting the checkpoint thread")?;
        Ok(Checkpointer { _stop: stop })
    }
}

/// Copies every page it can into the database file without waiting for anyone.
/// With nothing new in the log it reads the log's index and returns.
fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::SqliteStorage;
    use crate::storage::testing::record_deposit;

    /// A commit appends to the log file only while the log cannot start
    /// over. Without the thread each of the deposits below would add its
    /// pages to the file (82 frames over the 10, measured), since the log
    /// stays under the 1,000 pages at which a commit checkpoints; with it, the
    /// log is copied while the writer is idle and the next commit starts over
    /// at the file's beginning.
    #[tokio::test]
    async fn the_log_starts_over_without_a_commit_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let storage = SqliteStorage::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let wal = dir.path().join("db-wal");
        // Frames in the file: a 32-byte header, then each page with a 24-byte header.
        let frames = || (std::fs::metadata(&wal).unwrap().len().saturating_sub(32)) / (4096 + 24);
        for _ in 0..60 {
            record_deposit(&storage, 100).await;
        }
        let before = frames();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            record_deposit(&storage, 100).await;
        }
        let grown = frames() - before;
        assert!(grown < 40, "the log file grew by {grown} frames over 10 deposits: it never started over");
    }
}
