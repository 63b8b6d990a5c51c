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

/// A parameter of a write, bound alike by both drivers.
enum Param {
    Text(String),
    Int(i64),
    /// A NULL text.
    Null,
}

impl From<&str> for Param {
    fn from(text: &str) -> Param {
        Param::Text(text.to_owned())
    }
}

impl From<Uuid> for Param {
    fn from(id: Uuid) -> Param {
        Param::Text(id.to_string())
    }
}

impl From<Option<Uuid>> for Param {
    fn from(id: Option<Uuid>) -> Param {
        id.map_or(Param::Null, Param::from)
    }
}

impl From<i64> for Param {
    fn from(n: i64) -> Param {
        Param::Int(n)
    }
}

/// One statement of a write (`?` placeholders) with its parameters.
type Step = (&'static str, Vec<Param>);

/// The records, the same statements for both databases: reads on the
/// storage's pool (of readers), writes through the type's `write`, which
/// runs its steps in one transaction. Only the row type, the placeholder
/// style and the integer width of `notify_attempts` differ.
macro_rules! pgm_records {
    ($records:ty, $row:ty, $sql:expr, $attempts:ty) => {
        impl $records {
            /// The records `sql` selects by its one parameter, `key`.
            async fn payments(&self, sql: &str, key: &str) -> Result<Vec<PgmPayment>> {
                sqlx::query(&$sql(sql)).bind(key).fetch_all(&self.pool).await?.iter().map(payment_from).collect()
            }

            /// The rows `sql` selects by its integer parameters `ints`, each decoded by `row`.
            async fn listed<T>(
                &self,
                sql: &str,
                ints: &[i64],
                what: &'static str,
                row: impl Fn(&$row) -> Result<T>,
            ) -> Result<Vec<T>> {
                let sql = $sql(sql);
                let query = ints.iter().fold(sqlx::query(&sql), |query, n| query.bind(*n));
                query.fetch_all(&self.pool).await.context(what)?.iter().map(row).collect()
            }
        }

        #[async_trait]
        impl PgmRecords for $records {
            async fn insert(&self, p: &PgmPayment) -> Result<PgmPayment> {
                let values = vec![
                    p.payment_id.into(),
                    p.action.as_str().into(),
                    p.shop_transaction_id.as_str().into(),
                    p.refund_of.into(),
                    p.external_user_id.as_str().into(),
                    amount_of(p)?.into(),
                    p.currency.as_str().into(),
                    p.created_at.timestamp_millis().into(),
                ];
                self.write(vec![(INSERT, values)]).await.context("inserting a PGM payment")?;
                stored(self, p).await
            }

            async fn payment(&self, payment_id: Uuid) -> Result<Option<PgmPayment>> {
                Ok(self.payments(BY_ID, &payment_id.to_string()).await?.into_iter().next())
            }

            async fn by_shop_transaction(&self, shop_transaction_id: &str) -> Result<Option<PgmPayment>> {
                Ok(self.payments(BY_SHOP_TX, shop_transaction_id).await?.into_iter().next())
            }

            async fn refunds_of(&self, payment_id: Uuid) -> Result<Vec<PgmPayment>> {
                self.payments(REFUNDS, &payment_id.to_string()).await
            }

            async fn changed(&self, limit: i64) -> Result<Vec<Observed>> {
                self.listed(CHANGED, &[limit], "listing changed PGM payments", |row| {
                    Ok(Observed { payment: payment_from(row)?, pientegra_status: row.try_get("pientegra_status")? })
                })
                .await
            }

            async fn observed(
                &self,
                payment_id: Uuid,
                pientegra_status: &str,
                settled: bool,
                enqueue: Option<(PgmStatus, &str)>,
            ) -> Result<()> {
                let mut steps =
                    vec![(OBSERVED, vec![pientegra_status.into(), i64::from(settled).into(), payment_id.into()])];
                steps.extend(enqueue.map(|(status, body)| enqueue_step(payment_id, status, body)));
                self.write(steps).await
            }

            async fn enqueue(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
                self.write(vec![enqueue_step(payment_id, status, body)]).await
            }

            async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<Due>> {
                self.listed(DUE, &[now_ms, limit], "listing due PGM notifications", |row| {
                    let status: String = row.try_get("pending_status")?;
                    let attempts: $attempts = row.try_get("notify_attempts")?;
                    Ok(Due {
                        payment_id: Uuid::parse_str(row.try_get("payment_id")?)?,
                        status: PgmStatus::parse(&status).context("unknown status in pgm_payments")?,
                        body: row.try_get("pending_body")?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                    })
                })
                .await
            }

            async fn delivered(&self, payment_id: Uuid, status: PgmStatus, body: &str) -> Result<()> {
                self.write(vec![
                    (DELIVERED, vec![status.as_str().into(), payment_id.into()]),
                    (DEQUEUE, vec![payment_id.into(), body.into()]),
                ])
                .await
            }

            async fn delivery_failed(
                &self,
                payment_id: Uuid,
                attempts: u32,
                next_at_ms: i64,
                error: &str,
            ) -> Result<()> {
                let values = vec![i64::from(attempts).into(), next_at_ms.into(), error.into(), payment_id.into()];
                self.write(vec![(FAILED, values)]).await
            }
        }
    };
}

fn amount_of(p: &PgmPayment) -> Result<i64> {
    i64::try_from(p.amount.minor()).context("amount fits i64")
}

/// Queues `body` (replacing any queued notification), due now.
fn enqueue_step(payment_id: Uuid, status: PgmStatus, body: &str) -> Step {
    (ENQUEUE, vec![status.as_str().into(), body.into(), now_ms().into(), payment_id.into()])
}

pgm_records!(SqlitePgmRecords, sqlx::sqlite::SqliteRow, as_is, i64);
pgm_records!(PostgresPgmRecords, sqlx::postgres::PgRow, for_postgres, i32);

impl SqlitePgmRecords {
    /// Runs `steps` in one transaction of the writing connection.
    async fn write(&self, steps: Vec<Step>) -> Result<()> {
        self.direct
            .write(|tx| {
                for (sql, params) in steps {
                    let values = params.into_iter().map(|param| match param {
                        Param::Text(text) => rusqlite::types::Value::Text(text),
                        Param::Int(n) => rusqlite::types::Value::Integer(n),
                        Param::Null => rusqlite::types::Value::Null,
                    });
                    tx.execute(sql, rusqlite::params_from_iter(values))?;
                }
                Ok(())
            })
            .await
    }
}

impl PostgresPgmRecords {
    /// Runs `steps` in one transaction.
    async fn write(&self, steps: Vec<Step>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (sql, params) in steps {
            let sql = numbered(sql);
            let mut query = sqlx::query(&sql);
            for param in params {
                query = match param {
                    Param::Text(text) => query.bind(text),
                    Param::Int(n) => query.bind(n),
                    Param::Null => query.bind(None::<String>),
                };
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

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
