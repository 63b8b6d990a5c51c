//! The Pientegra call budget's row on PostgreSQL, which every instance
//! advances ([`crate::pientegra::budget`] decides; this reads and writes).
//!
//! It has two connections of its own, so a call never waits for a slot
//! behind webhook transactions, and their commits do not wait for the disk:
//! should the database crash, the slots taken in its last moments may be
//! handed out again, a few calls over the budget once, which Pientegra
//! answers with a 429 that the client already retries.

use std::str::FromStr;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The shared budget row.
pub struct BudgetRow {
    pool: PgPool,
}

impl BudgetRow {
    /// Connects to the database of `database_url` (whose migrations created the row).
    pub async fn connect(database_url: &str) -> anyhow::Result<BudgetRow> {
        // Never echo the URL or its parse error: it may carry a password.
        let options = PgConnectOptions::from_str(database_url)
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?
            .options([("synchronous_commit", "off")]);
        // Two connections: calls are at most a few a second, and each takes two short statements.
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .context("opening the PostgreSQL database for the Pientegra call budget")?;
        Ok(BudgetRow { pool })
    }

    /// The row's theoretical arrival time and the database's clock, both in
    /// microseconds: the database's clock, so instances whose clocks differ agree.
    pub async fn read(&self) -> anyhow::Result<(i64, i64)> {
        sqlx::query_as(
            "SELECT tat_us, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
             FROM pientegra_call_budget WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await
        .context("reading the call budget")
    }

    /// Moves the arrival time from `seen` to `next`; false when another
    /// instance moved it first.
    pub async fn advance(&self, seen: i64, next: i64) -> anyhow::Result<bool> {
        let moved = sqlx::query("UPDATE pientegra_call_budget SET tat_us = $1 WHERE id = 1 AND tat_us = $2")
            .bind(next)
            .bind(seen)
            .execute(&self.pool)
            .await
            .context("advancing the call budget")?
            .rows_affected();
        Ok(moved == 1)
    }
}
