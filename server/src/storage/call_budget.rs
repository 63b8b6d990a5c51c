//! The Pientegra call budget's row on PostgreSQL, which every instance
//! advances ([`crate::pientegra::budget`] says how much; this takes the slots).
//!
//! It has two connections of its own, so a call never waits for a slot
//! behind webhook transactions, and their commits do not wait for the disk:
//! should the database crash, the slots taken in its last moments may be
//! handed out again, a few calls over the budget once, which Pientegra
//! answers with a 429 that the client already retries.

use std::str::FromStr;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use super::postgres::{on_live_connection, unpinged};

/// The shared budget row.
pub struct BudgetRow {
    pool: PgPool,
}

/// What one attempt to take a slot saw, in microseconds of the database's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The row's theoretical arrival time the slot ends at, when one was taken.
    pub taken: Option<i64>,
    /// The row's theoretical arrival time before the attempt.
    pub tat: i64,
    pub now: i64,
}

impl BudgetRow {
    /// Connects to the database of `database_url` (whose migrations created the row).
    pub async fn connect(database_url: &str) -> anyhow::Result<BudgetRow> {
        // Never echo the URL or its parse error: it may carry a password.
        let options = PgConnectOptions::from_str(database_url)
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?
            .options([("synchronous_commit", "off")]);
        // Two connections: calls are at most a few a second, and each takes one short statement.
        let pool = unpinged(2)
            .connect_with(options)
            .await
            .context("opening the PostgreSQL database for the Pientegra call budget")?;
        Ok(BudgetRow { pool })
    }

    /// Takes a slot if the rule of [`crate::pientegra::budget`] admits one
    /// now: while `max(tat, now) - tolerance <= now`, and `tat` then becomes
    /// `max(tat, now) + interval`. One statement, on the database's clock, so
    /// instances whose clocks differ agree; a concurrent attempt waits for
    /// this one's row lock, then decides on the row as this one left it.
    /// Run twice (its connection lost after it committed), it takes two
    /// slots: one call fewer in that minute.
    pub async fn take(&self, interval: i64, tolerance: i64) -> anyhow::Result<Attempt> {
        let attempt = || {
            sqlx::query_as(
                "WITH clock AS MATERIALIZED (SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT AS now),
                 taken AS (
                     UPDATE pientegra_call_budget SET tat_us = GREATEST(tat_us, clock.now) + $1
                     FROM clock WHERE id = 1 AND GREATEST(tat_us, clock.now) - $2 <= clock.now
                     RETURNING tat_us
                 )
                 SELECT (SELECT tat_us FROM taken), b.tat_us, clock.now
                 FROM pientegra_call_budget b, clock WHERE b.id = 1",
            )
            .bind(interval)
            .bind(tolerance)
            .fetch_one(&self.pool)
        };
        let (taken, tat, now) = on_live_connection(&self.pool, attempt).await.context("taking a call budget slot")?;
        Ok(Attempt { taken, tat, now })
    }

    /// Gives back what is left of a slot [`Self::take`] took (ending at
    /// `until`) and no call spent. The slot held the interval before `until`;
    /// the part of it still ahead of the clock goes back, so `tat` moves back
    /// by at most one interval and never behind the clock: the slots others
    /// took after it stay counted. Not run again on a lost connection, where
    /// it may have committed: a slot not given back costs one call in a minute.
    pub async fn give_back(&self, interval: i64, until: i64) -> anyhow::Result<()> {
        sqlx::query(
            "WITH clock AS MATERIALIZED (SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT AS now)
             UPDATE pientegra_call_budget SET tat_us = tat_us - LEAST($1, GREATEST(0, $2 - clock.now))
             FROM clock WHERE id = 1",
        )
        .bind(interval)
        .bind(until)
        .execute(&self.pool)
        .await
        .context("giving a call budget slot back")?;
        Ok(())
    }
}
