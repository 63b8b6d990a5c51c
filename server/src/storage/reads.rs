//! Reads that are the same on every database: one statement each (with the
//! `$n` placeholders both read, see [`super::sql`]), run on the database's
//! pool of readers and checked by the compiler for each driver.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use super::rows::{amount, deposit_from_row, now_ms, withdrawal_from_row};
use super::sql::{SELECT_BALANCE, SELECT_WITHDRAWAL_BY_KEY};
use super::{BalanceRow, DepositRecord, Result, StoredEvent, WithdrawalRecord};

/// The pool reads run on.
pub(super) enum Readers {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$readers` holds.
macro_rules! on_pool {
    ($readers:expr, $pool:ident => $body:expr) => {
        match $readers {
            Readers::Sqlite($pool) => $body,
            Readers::Postgres($pool) => $body,
        }
    };
}

/// The deposits `$query` finds.
macro_rules! deposits {
    ($readers:expr, $query:expr) => {
        on_pool!($readers, pool => $query.fetch_all(pool).await?.iter().map(deposit_from_row).collect())
    };
}

/// The withdrawals `$query` finds.
macro_rules! withdrawals {
    ($readers:expr, $query:expr) => {
        on_pool!($readers, pool => $query.fetch_all(pool).await?.iter().map(withdrawal_from_row).collect())
    };
}

/// The one withdrawal `$query` finds, if any.
macro_rules! withdrawal {
    ($readers:expr, $query:expr) => {
        on_pool!($readers, pool => $query.fetch_optional(pool).await?.as_ref().map(withdrawal_from_row).transpose())
    };
}

impl Readers {
    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// One deposit.
    pub async fn deposit(&self, intent_id: Uuid) -> Result<Option<DepositRecord>> {
        let sql = "SELECT * FROM deposits WHERE intent_id = $1";
        on_pool!(self, pool => {
            let row = sqlx::query(sql).bind(intent_id.to_string()).fetch_optional(pool).await?;
            row.as_ref().map(deposit_from_row).transpose()
        })
    }

    /// RESERVED deposits not yet expired, newest first, at most `limit`.
    pub async fn awaiting_transfer(&self, limit: i64) -> Result<Vec<DepositRecord>> {
        let sql = "SELECT * FROM deposits WHERE status = 'RESERVED' AND expires_at > $1
                   ORDER BY created_at DESC LIMIT $2";
        deposits!(self, sqlx::query(sql).bind(now_ms()).bind(limit))
    }

    /// A user's deposits, newest first.
    pub async fn deposits_of(&self, user_id: &str, limit: i64) -> Result<Vec<DepositRecord>> {
        let sql = "SELECT * FROM deposits WHERE user_id = $1 ORDER BY created_at DESC, intent_id DESC LIMIT $2";
        deposits!(self, sqlx::query(sql).bind(user_id).bind(limit))
    }

    /// Deposits created in `[from, to)`, oldest first.
    pub async fn deposits_created_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<DepositRecord>> {
        let sql = "SELECT * FROM deposits WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at";
        deposits!(self, sqlx::query(sql).bind(from.timestamp_millis()).bind(to.timestamp_millis()))
    }

    /// One withdrawal by Pientegra id.
    pub async fn withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<WithdrawalRecord>> {
        let sql = "SELECT * FROM withdrawals WHERE withdrawal_id = $1";
        withdrawal!(self, sqlx::query(sql).bind(withdrawal_id.to_string()))
    }

    /// One withdrawal by (user, idempotency key).
    pub async fn withdrawal_by_key(&self, user_id: &str, key: &str) -> Result<Option<WithdrawalRecord>> {
        withdrawal!(self, sqlx::query(SELECT_WITHDRAWAL_BY_KEY).bind(user_id).bind(key))
    }

    /// A user's withdrawals, newest first.
    pub async fn withdrawals_of(&self, user_id: &str, limit: i64) -> Result<Vec<WithdrawalRecord>> {
        let sql = "SELECT * FROM withdrawals WHERE user_id = $1 ORDER BY created_at DESC, local_id DESC LIMIT $2";
        withdrawals!(self, sqlx::query(sql).bind(user_id).bind(limit))
    }

    /// Withdrawals whose submission outcome is unknown.
    pub async fn submitting_withdrawals(&self) -> Result<Vec<WithdrawalRecord>> {
        withdrawals!(self, sqlx::query("SELECT * FROM withdrawals WHERE status = 'SUBMITTING' ORDER BY created_at"))
    }

    /// Withdrawals created in `[from, to)`, oldest first.
    pub async fn withdrawals_created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WithdrawalRecord>> {
        let sql = "SELECT * FROM withdrawals WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at";
        withdrawals!(self, sqlx::query(sql).bind(from.timestamp_millis()).bind(to.timestamp_millis()))
    }

    /// A user's balance (zero for a user never seen).
    pub async fn balance(&self, user_id: &str) -> Result<BalanceRow> {
        let row: Option<(i64, i64)> =
            on_pool!(self, pool => sqlx::query_as(SELECT_BALANCE).bind(user_id).fetch_optional(pool).await?);
        let (available, reserved) = row.unwrap_or_default();
        Ok(BalanceRow { available: amount(available)?, reserved: amount(reserved)? })
    }

    /// The sequence number of the user's newest stream event (0 when none).
    pub async fn last_event_seq(&self, user_id: &str) -> Result<i64> {
        let sql = "SELECT last_seq FROM accounts WHERE user_id = $1";
        let seq: Option<i64> =
            on_pool!(self, pool => sqlx::query_scalar(sql).bind(user_id).fetch_optional(pool).await?);
        Ok(seq.unwrap_or(0))
    }

    /// A user's stream events with `seq > after`, oldest first.
    pub async fn events_after(&self, user_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let sql = "SELECT seq, name, data FROM user_events WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
        let rows: Vec<(i64, String, String)> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(user_id).bind(after).bind(limit).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(seq, name, data)| StoredEvent { seq, name, data }).collect())
    }

    /// The sum of a user's ledger entries `(available, reserved)`.
    pub async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)> {
        let sql =
            "SELECT CAST(COALESCE(SUM(available_delta), 0) AS BIGINT), CAST(COALESCE(SUM(reserved_delta), 0) AS BIGINT)
                   FROM ledger_entries WHERE user_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_as(sql).bind(user_id).fetch_one(pool).await?))
    }

    /// The pool of a SQLite database (tests read it directly).
    #[cfg(test)]
    pub fn sqlite(&self) -> &SqlitePool {
        match self {
            Readers::Sqlite(pool) => pool,
            Readers::Postgres(_) => panic!("not a SQLite database"),
        }
    }
}
