//! Checks of what is stored, for tests and operators. The server never runs
//! them, so they are not part of [`Storage`]: they are reached through an
//! [`Audited`] storage, opened on purpose.

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Result, Storage};

/// Invariants of the stored ledger, read back.
#[async_trait]
pub trait Audit: Send + Sync + 'static {
    /// The sum of a user's ledger entries `(available, reserved)`: always equal to the balance.
    async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)>;
}

/// A storage that can also be audited: one database, one set of connections,
/// used as a [`Storage`] (through `Deref`) and checked through [`Audit`].
#[derive(Clone)]
pub struct Audited {
    storage: Arc<dyn Storage>,
    audit: Arc<dyn Audit>,
}

impl Audited {
    /// Opens the storage named by a `DATABASE_URL` (as [`super::connect`] does).
    pub async fn connect(database_url: &str) -> anyhow::Result<Audited> {
        let (storage, audit) = super::open(database_url).await?;
        Ok(Audited { storage, audit })
    }

    /// The storage itself, to hand to code that takes one.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
}

impl Deref for Audited {
    type Target = dyn Storage;

    fn deref(&self) -> &(dyn Storage + 'static) {
        self.storage.as_ref()
    }
}

#[async_trait]
impl Audit for Audited {
    async fn ledger_sum(&self, user_id: &str) -> Result<(i64, i64)> {
        self.audit.ledger_sum(user_id).await
    }
}
