//! The facade's own records (`pgm_payments`, migration `0002_pgm.sql`) behind
//! [`FacadeStore`], with one implementation per database over a pool of its
//! own on the server's `DATABASE_URL`.
//!
//! The facade never writes the server's tables. Its notifier reads the
//! `status` column of `deposits` and `withdrawals` in the same database, so a
//! webhook applied by the ledger is seen without any hook in the ledger.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::Amount;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use uuid::Uuid;

use super::{Action, PgmStatus};

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

/// Storage failures are unexpected: they surface as 500s and retried passes.
pub type Result<T> = anyhow::Result<T>;

/// Everything the facade keeps.
#[async_trait]
pub trait FacadeStore: Send + Sync + 'static {
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

/// Opens the facade's pool on `database_url`. Call it after the server's
/// storage is up: that applies every migration, this module's included.
pub async fn connect(database_url: &str) -> anyhow::Result<std::sync::Arc<dyn FacadeStore>> {
    if database_url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(database_url)
            .context("DATABASE_URL is not a valid sqlite: URL")?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // One connection: the facade's writes are few, and SQLite serialises writers anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .context("opening the SQLite database for the PGM facade")?;
        Ok(std::sync::Arc::new(SqliteFacadeStore { pool }))
    } else {
        let options = PgConnectOptions::from_str(database_url).context("DATABASE_URL is not a valid postgres URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .context("opening the PostgreSQL database for the PGM facade")?;
        Ok(std::sync::Arc::new(PostgresFacadeStore { pool }))
    }
}

/// The SQLite implementation of [`FacadeStore`].
pub struct SqliteFacadeStore {
    pool: SqlitePool,
}

/// The PostgreSQL implementation of [`FacadeStore`].
pub struct PostgresFacadeStore {
    pool: PgPool,
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

/// The same statements for both databases; only the pool, the placeholder
/// style and the integer width of `notify_attempts` differ.
macro_rules! facade_store {
    ($store:ty, $sql:expr, $attempts:ty) => {
        #[async_trait]
        impl FacadeStore for $store {
            async fn insert(&self, p: &PgmPayment) -> Result<PgmPayment> {
                sqlx::query(&$sql(INSERT))
                    .bind(p.payment_id.to_string())
                    .bind(p.action.as_str())
                    .bind(&p.shop_transaction_id)
                    .bind(p.refund_of.map(|id| id.to_string()))
                    .bind(&p.external_user_id)
                    .bind(i64::try_from(p.amount.minor()).context("amount fits i64")?)
                    .bind(&p.currency)
                    .bind(p.created_at.timestamp_millis())
                    .execute(&self.pool)
                    .await
                    .context("inserting a PGM payment")?;
                if let Some(stored) = self.payment(p.payment_id).await? {
                    return Ok(stored);
                }
                // The conflict was the shop transaction: another intent holds it.
                match p.action {
                    Action::Payment => self.by_shop_transaction(&p.shop_transaction_id).await?,
                    Action::Refund => None,
                }
                .context("a PGM payment conflicted with a row that is gone")
            }

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
                    .map(|row| {
                        Ok(Observed { payment: payment_from(row)?, pientegra_status: row.try_get("pientegra_status")? })
                    })
                    .collect()
            }

            async fn observed(
                &self,
                payment_id: Uuid,
                pientegra_status: &str,
                settled: bool,
                enqueue: Option<(PgmStatus, &str)>,
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(&$sql(OBSERVED))
                    .bind(pientegra_status)
                    .bind(<$attempts>::from(settled))
                    .bind(payment_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                if let Some((status, body)) = enqueue {
                    sqlx::query(&$sql(ENQUEUE))
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
                sqlx::query(&$sql(ENQUEUE))
                    .bind(status.as_str())
                    .bind(body)
                    .bind(now_ms())
                    .bind(payment_id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
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

            async fn delivered(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(&$sql(DELIVERED))
                    .bind(status.as_str())
                    .bind(payment_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&$sql(DEQUEUE)).bind(payment_id.to_string()).bind(body).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delivery_failed(
                &self,
                payment_id: Uuid,
                attempts: u32,
                next_at_ms: i64,
                error: &str,
            ) -> Result<()> {
                sqlx::query(&$sql(FAILED))
                    .bind(<$attempts>::try_from(attempts).unwrap_or(<$attempts>::MAX))
                    .bind(next_at_ms)
                    .bind(error)
                    .bind(payment_id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

fn as_is(sql: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Borrowed(sql)
}

fn for_postgres(sql: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Owned(numbered(sql))
}

facade_store!(SqliteFacadeStore, as_is, i64);
facade_store!(PostgresFacadeStore, for_postgres, i32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b = ? LIMIT ?"), "a = $1 AND b = $2 LIMIT $3");
        assert!(!numbered(CHANGED).contains('?'));
    }
}
