//! Column values ↔ domain values, shared by every database: times are unix
//! milliseconds, money is integer minor units, ids are UUID text.

use anyhow::Context;
use chrono::{DateTime, Utc};
use pientegra_shared::Amount;
use pientegra_shared::status::IntentStatus;
use sqlx::Row;
use uuid::Uuid;

use super::{DepositRecord, WithdrawalRecord, WithdrawalState};

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(super) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(super) fn amount(minor: i64) -> anyhow::Result<Amount> {
    Ok(Amount::from_minor(u64::try_from(minor).context("negative amount in storage")?))
}

pub(super) fn minor(a: Amount) -> i64 {
    i64::try_from(a.minor()).expect("amounts fit i64")
}

pub(super) fn uuid(s: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(s).context("malformed id in storage")
}

/// A row read by name, whichever driver read it: sqlx (PostgreSQL, SQLite's
/// readers) or rusqlite (SQLite's writes).
pub(super) trait Columns {
    fn text(&self, column: &str) -> anyhow::Result<Option<String>>;
    fn int(&self, column: &str) -> anyhow::Result<Option<i64>>;
}

macro_rules! sqlx_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> anyhow::Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> anyhow::Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
sqlx_columns!(sqlx::postgres::PgRow);
sqlx_columns!(sqlx::sqlite::SqliteRow);

impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> anyhow::Result<Option<String>> {
        Ok(self.get(column)?)
    }
    fn int(&self, column: &str) -> anyhow::Result<Option<i64>> {
        Ok(self.get(column)?)
    }
}

fn text(row: &impl Columns, column: &str) -> anyhow::Result<String> {
    row.text(column)?.with_context(|| format!("{column} is NULL in storage"))
}

fn int(row: &impl Columns, column: &str) -> anyhow::Result<i64> {
    row.int(column)?.with_context(|| format!("{column} is NULL in storage"))
}

/// A `deposits` row.
pub(super) fn deposit_from_row(row: &impl Columns) -> anyhow::Result<DepositRecord> {
    let status = text(row, "status")?;
    Ok(DepositRecord {
        intent_id: uuid(&text(row, "intent_id")?)?,
        user_id: text(row, "user_id")?,
        reference_no: text(row, "reference_no")?,
        deposit_url: text(row, "deposit_url")?,
        requested_amount: amount(int(row, "requested_amount")?)?,
        amount: amount(int(row, "amount")?)?,
        credited_amount: row.int("credited_amount")?.map(amount).transpose()?,
        currency: text(row, "currency")?,
        status: IntentStatus::parse(&status).context("unknown intent status in storage")?,
        rejected_reason: row.text("rejected_reason")?,
        expires_at: time(int(row, "expires_at")?),
        created_at: time(int(row, "created_at")?),
        updated_at: time(int(row, "updated_at")?),
    })
}

/// A `withdrawals` row.
pub(super) fn withdrawal_from_row(row: &impl Columns) -> anyhow::Result<WithdrawalRecord> {
    let state = text(row, "status")?;
    let model = text(row, "balance_model")?;
    Ok(WithdrawalRecord {
        local_id: uuid(&text(row, "local_id")?)?,
        user_id: text(row, "user_id")?,
        idempotency_key: text(row, "idempotency_key")?,
        withdrawal_id: row.text("withdrawal_id")?.as_deref().map(uuid).transpose()?,
        reference_no: row.text("reference_no")?,
        amount: amount(int(row, "amount")?)?,
        currency: text(row, "currency")?,
        iban: text(row, "iban")?,
        holder_name: text(row, "holder_name")?,
        state: WithdrawalState::parse(&state).context("unknown withdrawal state in storage")?,
        rejected_reason: row.text("rejected_reason")?,
        balance_model: model.parse().map_err(|()| anyhow::anyhow!("unknown balance model in storage"))?,
        created_at: time(int(row, "created_at")?),
        updated_at: time(int(row, "updated_at")?),
    })
}
