//! The PGM facade's records (`pgm_payments`, migration `0002_pgm.sql`) behind
//! [`PgmRecords`], on the same connections as the ledger: PostgreSQL's pool;
//! on SQLite, the pool of readers and the one writing connection.
//!
//! The facade never writes the ledger's tables. Its notifier reads the
//! `status` column of `deposits` and `withdrawals`, so a webhook applied by
//! the ledger is seen without any hook in the ledger.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::Amount;
use sqlx::{PgPool, Row, SqlitePool};
use uuid::Uuid;

use super::sqlite::Direct;
use crate::pgm::{Action, PgmStatus};

/// A payment or refund PGM started through the facade.
#[derive(Clone, Debug, PartialEq)]
pub struct PgmPayment {
    /// The Pientegra intentId (payment) or withdrawalId (refund).
    pub payment_id: Uuid,
    pub action: Action,
    /// The shop's id (for a refund: the refunded payment's).
    pub shop_transaction_id: String,
    /// For a refund: the payment it refunds.
    pub refund_of: Option<Uuid>,
    pub external_user_id: String,
    pub amount: Amount,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    /// What the shop last acknowledged.
    pub last_notified_status: Option<PgmStatus>,
}

/// An open record whose Pientegra status changed since the notifier last looked.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub payment: PgmPayment,
    /// The `status` column of its deposit or withdrawal.
    pub pientegra_status: String,
}

/// A queued shop notification whose time has come.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    pub payment_id: Uuid,
    pub status: PgmStatus,
    /// The JSON status object, exactly as it will be POSTed.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

use super::Result;

/// Everything the facade keeps.
#[async_trait]
pub trait PgmRecords: Send + Sync + 'static {
    /// Inserts unless the id (or, for a payment, the shop transaction) exists;
    /// either way returns the stored record.
    async fn insert(&self, payment: &PgmPayment) -> Result<PgmPayment>;
    /// One record by paymentId.
    async fn payment(&self, payment_id: Uuid) -> Result<Option<PgmPayment>>;
    /// The payment of a shop transaction.
    async fn by_shop_transaction(&self, shop_transaction_id: &str) -> Result<Option<PgmPayment>>;
    /// The refunds of a payment, oldest first.
    async fn refunds_of(&self, payment_id: Uuid) -> Result<Vec<PgmPayment>>;
    /// Open records whose deposit or withdrawal status differs from the one last observed.
    async fn changed(&self, limit: i64) -> Result<Vec<Observed>>;
    /// Records what the notifier observed; `settled` closes the record (its
    /// status can no longer change); `enqueue` queues a notification.
    async fn observed(
        &self,
        payment_id: Uuid,
        pientegra_status: &str,
        settled: bool,
        enqueue: Option<(PgmStatus, &str)>,
    ) -> Result<()>;
    /// Queues (replacing any queued one) a notification due now.
    async fn enqueue(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()>;
    /// Queued notifications due at `now_ms`, oldest due first.
    async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<Due>>;
    /// The shop acknowledged `body`: remember its status and dequeue it
    /// (unless a newer notification replaced it meanwhile).
    async fn delivered(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()>;
    /// A delivery failed: try again at `next_at_ms`.
    async fn delivery_failed(&self, payment_id: Uuid, attempts: u32, next_at_ms: i64, error: &str) -> Result<()>;
}

/// The SQLite implementation of [`PgmRecords`]: reads on the storage's pool
/// of readers, writes on its writing connection, in turn with the ledger's.
pub(super) struct SqlitePgmRecords {
    pub(super) pool: SqlitePool,
    pub(super) direct: Arc<Direct>,
}

/// The PostgreSQL implementation of [`PgmRecords`], on the storage's pool.
pub(super) struct PostgresPgmRecords {
    pub(super) pool: PgPool,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// SQL is written once with `?` placeholders; PostgreSQL gets `$1, $2, ...`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The columns [`payment_from`] decodes, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "p.payment_id, p.action, p.shop_transaction_id, p.refund_of, p.external_user_id, p.amount, p.currency, \
         p.created_at, p.last_notified_status"
    };
}

const INSERT: &str = "INSERT INTO pgm_payments (payment_id, action, shop_transaction_id, refund_of, external_user_id, \
                      amount, currency, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
const BY_ID: &str = concat!("SELECT ", columns!(), " FROM pgm_payments p WHERE p.payment_id = ?");
const BY_SHOP_TX: &str =
    concat!("SELECT ", columns!(), " FROM pgm_payments p WHERE p.shop_transaction_id = ? AND p.action = 'PAYMENT'");
const REFUNDS: &str =
    concat!("SELECT ", columns!(), " FROM pgm_payments p WHERE p.refund_of = ? ORDER BY p.created_at, p.payment_id");
// Read-only use of the server's tables: their `status` is what webhooks move.
const CHANGED: &str = concat!(
    "SELECT ",
    columns!(),
    ", COALESCE(d.status, w.status) AS pientegra_status \
     FROM pgm_payments p \
     LEFT JOIN deposits d ON p.action = 'PAYMENT' AND d.intent_id = p.payment_id \
     LEFT JOIN withdrawals w ON p.action = 'REFUND' AND w.withdrawal_id = p.payment_id \
     WHERE p.settled = 0 AND COALESCE(d.status, w.status) IS NOT NULL \
       AND COALESCE(d.status, w.status) IS DISTINCT FROM p.seen_status \
     ORDER BY p.created_at LIMIT ?"
);
const OBSERVED: &str = "UPDATE pgm_payments SET seen_status = ?, settled = ? WHERE payment_id = ?";
const ENQUEUE: &str = "UPDATE pgm_payments SET pending_status = ?, pending_body = ?, notify_attempts = 0, \
                       next_notify_at = ?, last_notify_error = NULL WHERE payment_id = ?";
const DUE: &str = "SELECT payment_id, pending_status, pending_body, notify_attempts FROM pgm_payments \
                   WHERE pending_status IS NOT NULL AND next_notify_at <= ? ORDER BY next_notify_at LIMIT ?";
const DELIVERED: &str = "UPDATE pgm_payments SET last_notified_status = ? WHERE payment_id = ?";
const DEQUEUE: &str = "UPDATE pgm_payments SET pending_status = NULL, pending_body = NULL, notify_attempts = 0, \
                       next_notify_at = NULL, last_notify_error = NULL WHERE payment_id = ? AND pending_body = ?";
const FAILED: &str = "UPDATE pgm_payments SET notify_attempts = ?, next_notify_at = ?, last_notify_error = ? \
                      WHERE payment_id = ?";

/// Decodes the [`COLUMNS`] of a row.
fn payment_from<R>(row: &R) -> anyhow::Result<PgmPayment>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let uuid = |s: &str| Uuid::parse_str(s).context("malformed id in pgm_payments");
    let action: String = row.try_get("action")?;
    let amount: i64 = row.try_get("amount")?;
    Ok(PgmPayment {
        payment_id: uuid(&row.try_get::<String, _>("payment_id")?)?,
        action: Action::parse(&action).context("unknown action in pgm_payments")?,
        shop_transaction_id: row.try_get("shop_transaction_id")?,
        refund_of: row.try_get::<Option<String>, _>("refund_of")?.as_deref().map(uuid).transpose()?,
        external_user_id: row.try_get("external_user_id")?,
        amount: Amount::from_minor(u64::try_from(amount).context("negative amount in pgm_payments")?),
        currency: row.try_get("currency")?,
        created_at: DateTime::from_timestamp_millis(row.try_get("created_at")?).unwrap_or_default(),
        last_notified_status: row
            .try_get::<Option<String>, _>("last_notified_status")?
            .as_deref()
            .and_then(PgmStatus::parse),
    })
}

/// A payment just inserted (or whose insert conflicted): the stored record.
async fn stored(records: &dyn PgmRecords, p: &PgmPayment) -> Result<PgmPayment> {
    if let Some(stored) = records.payment(p.payment_id).await? {
        return Ok(stored);
    }
    // The conflict was the shop transaction: another intent holds it.
    match p.action {
        Action::Payment => records.by_shop_transaction(&p.shop_transaction_id).await?,
        Action::Refund => None,
    }
    .context("a PGM payment conflicted with a row that is gone")
}

/// The reads, the same statements for both databases on the storage's
/// pool (of readers); only the placeholder style and the integer width of
/// `notify_attempts` differ.
macro_rules! pgm_records {
    ($records:ty, $sql:expr, $attempts:ty, { $($writes:tt)* }) => {
        #[async_trait]
        impl PgmRecords for $records {
        $($writes)*
        async fn payment(&self, payment_id: Uuid) -> Result<Option<PgmPayment>> {
            sqlx::query(&$sql(BY_ID))
                .bind(payment_id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(payment_from)
                .transpose()
        }

        async fn by_shop_transaction(&self, shop_transaction_id: &str) -> Result<Option<PgmPayment>> {
            sqlx::query(&$sql(BY_SHOP_TX))
                .bind(shop_transaction_id)
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(payment_from)
                .transpose()
        }

        async fn refunds_of(&self, payment_id: Uuid) -> Result<Vec<PgmPayment>> {
            sqlx::query(&$sql(REFUNDS))
                .bind(payment_id.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(payment_from)
                .collect()
        }

        async fn changed(&self, limit: i64) -> Result<Vec<Observed>> {
            sqlx::query(&$sql(CHANGED))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .context("listing changed PGM payments")?
                .iter()
                .map(|row| Ok(Observed { payment: payment_from(row)?, pientegra_status: row.try_get("pientegra_status")? }))
                .collect()
        }

        async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<Due>> {
            sqlx::query(&$sql(DUE))
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .context("listing due PGM notifications")?
                .iter()
                .map(|row| {
                    let status: String = row.try_get("pending_status")?;
                    let attempts: $attempts = row.try_get("notify_attempts")?;
                    Ok(Due {
                        payment_id: Uuid::parse_str(row.try_get("payment_id")?)?,
                        status: PgmStatus::parse(&status).context("unknown status in pgm_payments")?,
                        body: row.try_get("pending_body")?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                    })
                })
                .collect()
        }
        }
    };
}

fn amount_of(p: &PgmPayment) -> Result<i64> {
    i64::try_from(p.amount.minor()).context("amount fits i64")
}

pgm_records!(SqlitePgmRecords, as_is, i64, {
    async fn insert(&self, p: &PgmPayment) -> Result<PgmPayment> {
        let amount = amount_of(p)?;
        self.direct
            .write(|tx| {
                let values = rusqlite::params![
                    p.payment_id.to_string(),
                    p.action.as_str(),
                    p.shop_transaction_id,
                    p.refund_of.map(|id| id.to_string()),
                    p.external_user_id,
                    amount,
                    p.currency,
                    p.created_at.timestamp_millis(),
                ];
                tx.execute(INSERT, values)?;
                Ok(())
            })
            .await
            .context("inserting a PGM payment")?;
        stored(self, p).await
    }

    async fn observed(
        &self,
        payment_id: Uuid,
        pientegra_status: &str,
        settled: bool,
        enqueue: Option<(PgmStatus, &str)>,
    ) -> Result<()> {
        let id = payment_id.to_string();
        self.direct
            .write(|tx| {
                tx.execute(OBSERVED, rusqlite::params![pientegra_status, i64::from(settled), id])?;
                if let Some((status, body)) = enqueue {
                    tx.execute(ENQUEUE, rusqlite::params![status.as_str(), body, now_ms(), id])?;
                }
                Ok(())
            })
            .await
    }

    async fn enqueue(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
        let id = payment_id.to_string();
        self.direct
            .write(|tx| {
                tx.execute(ENQUEUE, rusqlite::params![status.as_str(), body, now_ms(), id])?;
                Ok(())
            })
            .await
    }

    async fn delivered(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
        let id = payment_id.to_string();
        self.direct
            .write(|tx| {
                tx.execute(DELIVERED, rusqlite::params![status.as_str(), id])?;
                tx.execute(DEQUEUE, rusqlite::params![id, body])?;
                Ok(())
            })
            .await
    }

    async fn delivery_failed(&self, payment_id: Uuid, attempts: u32, next_at_ms: i64, error: &str) -> Result<()> {
        let id = payment_id.to_string();
        self.direct
            .write(|tx| {
                tx.execute(FAILED, rusqlite::params![i64::from(attempts), next_at_ms, error, id])?;
                Ok(())
            })
            .await
    }
});

pgm_records!(PostgresPgmRecords, for_postgres, i32, {
    async fn insert(&self, p: &PgmPayment) -> Result<PgmPayment> {
        sqlx::query(&numbered(INSERT))
            .bind(p.payment_id.to_string())
            .bind(p.action.as_str())
            .bind(&p.shop_transaction_id)
            .bind(p.refund_of.map(|id| id.to_string()))
            .bind(&p.external_user_id)
            .bind(amount_of(p)?)
            .bind(&p.currency)
            .bind(p.created_at.timestamp_millis())
            .execute(&self.pool)
            .await
            .context("inserting a PGM payment")?;
        stored(self, p).await
    }

    async fn observed(
        &self,
        payment_id: Uuid,
        pientegra_status: &str,
        settled: bool,
        enqueue: Option<(PgmStatus, &str)>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&numbered(OBSERVED))
            .bind(pientegra_status)
            .bind(i32::from(settled))
            .bind(payment_id.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some((status, body)) = enqueue {
            sqlx::query(&numbered(ENQUEUE))
                .bind(status.as_str())
                .bind(body)
                .bind(now_ms())
                .bind(payment_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
        sqlx::query(&numbered(ENQUEUE))
            .bind(status.as_str())
            .bind(body)
            .bind(now_ms())
            .bind(payment_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delivered(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&numbered(DELIVERED)).bind(status.as_str()).bind(payment_id.to_string()).execute(&mut *tx).await?;
        sqlx::query(&numbered(DEQUEUE)).bind(payment_id.to_string()).bind(body).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delivery_failed(&self, payment_id: Uuid, attempts: u32, next_at_ms: i64, error: &str) -> Result<()> {
        sqlx::query(&numbered(FAILED))
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .bind(next_at_ms)
            .bind(error)
            .bind(payment_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
});

fn as_is(sql: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Borrowed(sql)
}

fn for_postgres(sql: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Owned(numbered(sql))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b = ? LIMIT ?"), "a = $1 AND b = $2 LIMIT $3");
        assert!(!numbered(CHANGED).contains('?'));
    }
}
