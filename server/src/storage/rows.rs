//! Column values ↔ domain values, shared by every database: times are unix
//! milliseconds, money is integer minor units, ids are UUID text.

use anyhow::Context;
use chrono::{DateTime, Utc};
use pientegra_shared::Amount;
use pientegra_shared::status::IntentStatus;
use sqlx::{ColumnIndex, Decode, Row, Type};
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

/// A `deposits` row.
pub(super) fn deposit_from_row<'r, R>(row: &'r R) -> anyhow::Result<DepositRecord>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    Ok(DepositRecord {
        intent_id: uuid(&row.try_get::<String, _>("intent_id")?)?,
        user_id: row.try_get("user_id")?,
        reference_no: row.try_get("reference_no")?,
        deposit_url: row.try_get("deposit_url")?,
        requested_amount: amount(row.try_get("requested_amount")?)?,
        amount: amount(row.try_get("amount")?)?,
        credited_amount: row.try_get::<Option<i64>, _>("credited_amount")?.map(amount).transpose()?,
        currency: row.try_get("currency")?,
        status: IntentStatus::parse(&status).context("unknown intent status in storage")?,
        rejected_reason: row.try_get("rejected_reason")?,
        expires_at: time(row.try_get("expires_at")?),
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

/// A `withdrawals` row.
pub(super) fn withdrawal_from_row<'r, R>(row: &'r R) -> anyhow::Result<WithdrawalRecord>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: String = row.try_get("status")?;
    let model: String = row.try_get("balance_model")?;
    Ok(WithdrawalRecord {
        local_id: uuid(&row.try_get::<String, _>("local_id")?)?,
        user_id: row.try_get("user_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        withdrawal_id: row.try_get::<Option<String>, _>("withdrawal_id")?.as_deref().map(uuid).transpose()?,
        reference_no: row.try_get("reference_no")?,
        amount: amount(row.try_get("amount")?)?,
        currency: row.try_get("currency")?,
        iban: row.try_get("iban")?,
        holder_name: row.try_get("holder_name")?,
        state: WithdrawalState::parse(&state).context("unknown withdrawal state in storage")?,
        rejected_reason: row.try_get("rejected_reason")?,
        balance_model: model.parse().map_err(|()| anyhow::anyhow!("unknown balance model in storage"))?,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}
