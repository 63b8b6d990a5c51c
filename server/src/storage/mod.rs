//! Storage: every SQL statement of the server lives below this module, behind
//! a few traits split by concern ([`Idempotency`], [`Ledger`], [`EventLog`],
//! [`Coordination`], together [`Storage`]) with one implementation per
//! database. Each method that moves money does so in one transaction together
//! with the status change and the user events that announce it. Checks that
//! only tests and operators run are in [`audit`].

pub mod audit;
pub mod call_budget;
mod group_commit;
pub mod pgm;
pub mod postgres;
mod presence;
mod procedure;
mod reads;
mod rows;
mod sql;
pub mod sqlite;
#[cfg(test)]
mod testing;
mod views;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pientegra_shared::Amount;
use pientegra_shared::api;
use pientegra_shared::event::WebhookEvent;
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::wire::WithdrawalCreated;
use uuid::Uuid;

pub use self::audit::{Audit, Audited};
pub use self::pgm::PgmRecords;
pub use self::views::balance_event;
use crate::ledger::BalanceModel;

/// Storage failures are unexpected by definition: they surface as 500s.
pub type Result<T> = anyhow::Result<T>;

/// A deposit intent this server created.
#[derive(Clone, Debug, PartialEq)]
pub struct DepositRecord {
    pub intent_id: Uuid,
    pub user_id: String,
    pub reference_no: String,
    pub deposit_url: String,
    pub requested_amount: Amount,
    pub amount: Amount,
    /// What the approval credited (the webhook's `amount`).
    pub credited_amount: Option<Amount>,
    pub currency: String,
    pub status: IntentStatus,
    pub rejected_reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a withdrawal stands locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithdrawalState {
    /// Reserved and sent to Pientegra; the answer is not known yet.
    Submitting,
    /// Pientegra definitely refused it; the reservation was released.
    Refused,
    /// Pientegra has it.
    Known(WithdrawalStatus),
}

impl WithdrawalState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalState::Submitting => "SUBMITTING",
            WithdrawalState::Refused => "REFUSED",
            WithdrawalState::Known(s) => s.as_str(),
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<WithdrawalState> {
        match s {
            "SUBMITTING" => Some(WithdrawalState::Submitting),
            "REFUSED" => Some(WithdrawalState::Refused),
            other => WithdrawalStatus::parse(other).map(WithdrawalState::Known),
        }
    }
}

/// A withdrawal requested through this server.
#[derive(Clone, Debug, PartialEq)]
pub struct WithdrawalRecord {
    pub local_id: Uuid,
    pub user_id: String,
    pub idempotency_key: String,
    pub withdrawal_id: Option<Uuid>,
    pub reference_no: Option<String>,
    pub amount: Amount,
    pub currency: String,
    pub iban: String,
    pub holder_name: String,
    pub state: WithdrawalState,
    pub rejected_reason: Option<String>,
    pub balance_model: BalanceModel,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A deposit Pientegra just created, to be recorded.
#[derive(Clone, Debug)]
pub struct NewDeposit {
    pub intent_id: Uuid,
    pub user_id: String,
    pub reference_no: String,
    pub deposit_url: String,
    pub requested_amount: Amount,
    pub amount: Amount,
    pub currency: String,
    pub expires_at: DateTime<Utc>,
}

/// A withdrawal request to reserve for.
#[derive(Clone, Debug)]
pub struct NewWithdrawal {
    pub user_id: String,
    pub idempotency_key: String,
    pub amount: Amount,
    pub currency: String,
    pub iban: String,
    pub holder_name: String,
    pub balance_model: BalanceModel,
}

/// The user's balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BalanceRow {
    pub available: Amount,
    pub reserved: Amount,
}

/// An event on a user's SSE stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub name: String,
    pub data: String,
}

/// The outcome of claiming an idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub enum IdempotencyClaim {
    /// First use (or an abandoned claim taken over): go ahead.
    Claimed,
    /// Same key, other body.
    Mismatch,
    /// Same key, the first request is still running.
    InFlight,
    /// Same key, done: replay this response.
    Done { status: u16, body: String },
}

/// Which idempotency record.
#[derive(Clone, Debug)]
pub struct IdempotencyScope<'a> {
    pub user_id: &'a str,
    pub route: &'a str,
    pub key: &'a str,
}

/// The final answer to a claimed idempotency key.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub scope: &'a IdempotencyScope<'a>,
    pub request_hash: &'a str,
    pub status: u16,
}

/// The answer to the request that creates a deposit, stored with the deposit.
#[derive(Clone, Copy, Debug)]
pub struct DepositReply<'a> {
    pub reply: Reply<'a>,
    /// What the page that asked may do with `depositUrl` (part of the answer, not of the deposit).
    pub framing: Option<api::Framing>,
}

/// What a webhook did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxOutcome {
    /// The state moved forward (and money moved if the event says so).
    Applied,
    /// This `eventId` was seen before: nothing changed.
    Duplicate,
    /// A reordered or repeated transition: recorded, nothing changed.
    Stale,
    /// An event type this server does not handle: recorded, nothing changed.
    Ignored,
    /// About an intent or withdrawal this server does not know (yet): kept for later.
    Orphan,
    /// Contradicts the local record (another user): kept, nothing changed, logged.
    Mismatch,
}

impl InboxOutcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxOutcome::Applied => "applied",
            InboxOutcome::Duplicate => "duplicate",
            InboxOutcome::Stale => "stale",
            InboxOutcome::Ignored => "ignored",
            InboxOutcome::Orphan => "orphan",
            InboxOutcome::Mismatch => "mismatch",
        }
    }
}

/// A state change's result: what it produced and whose streams must wake.
#[derive(Clone, Debug)]
pub struct Changed<T> {
    pub value: T,
    /// Users with new events on their stream (notify after commit).
    pub touched: Vec<String>,
}

/// The withdrawal request could not be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsufficientFunds {
    pub available: Amount,
}

/// Idempotency-Key records: a request's claim, its stored answer, its release.
#[async_trait]
pub trait Idempotency: Send + Sync + 'static {
    /// Claims `scope` for a request whose body hashes to `request_hash`.
    async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope<'_>,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyClaim>;
    /// Stores the final answer of a claimed key and lets go of the claim.
    async fn finish_idempotency(&self, reply: &Reply<'_>, body: &str) -> Result<()>;
    /// Lets go of a claim whose answer the work's own transaction stored (see
    /// [`Ledger::record_deposit`]).
    async fn settle_idempotency(&self, scope: &IdempotencyScope<'_>) -> Result<()>;
    /// Forgets a claim whose outcome was transient, so a retry runs again.
    async fn release_idempotency(&self, scope: &IdempotencyScope<'_>) -> Result<()>;
}

/// Deposits, withdrawals, webhooks and balances: everything that moves money,
/// each change in one transaction with the user events that announce it.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Records a created deposit (idempotent on `intent_id`), announces it, and
    /// applies webhook events that arrived before it. With a `reply`, the same
    /// transaction stores the answer to the request ([`DepositRecord::reply_body`]),
    /// so creating a deposit takes one durable commit, not two.
    async fn record_deposit(
        &self,
        deposit: NewDeposit,
        reply: Option<&DepositReply<'_>>,
    ) -> Result<Changed<DepositRecord>>;
    /// One deposit.
    async fn deposit(&self, intent_id: Uuid) -> Result<Option<DepositRecord>>;
    /// Moves a RESERVED deposit to PENDING_REVIEW (the user confirmed the transfer;
    /// Pientegra sends no event for it, so the server learns it by lookup). No money
    /// moves. The value says whether anything changed.
    async fn note_under_review(&self, intent_id: Uuid) -> Result<Changed<bool>>;
    /// RESERVED deposits not yet expired, newest first, at most `limit`.
    async fn awaiting_transfer(&self, limit: i64) -> Result<Vec<DepositRecord>>;
    /// A user's deposits, newest first.
    async fn deposits_of(&self, user_id: &str, limit: i64) -> Result<Vec<DepositRecord>>;
    /// Checks the balance and reserves (or, final-debit, checks against pending
    /// withdrawals) atomically, recording the request as SUBMITTING. A request
    /// seen before (same user and key) returns its existing record.
    async fn reserve_withdrawal(
        &self,
        request: NewWithdrawal,
    ) -> Result<std::result::Result<Changed<WithdrawalRecord>, InsufficientFunds>>;
    /// Pientegra accepted it: attach its id and apply events that arrived first.
    async fn withdrawal_accepted(
        &self,
        local_id: Uuid,
        created: &WithdrawalCreated,
    ) -> Result<Changed<WithdrawalRecord>>;
    /// Pientegra definitely refused it: release the reservation.
    async fn withdrawal_refused(&self, local_id: Uuid, reason: &str) -> Result<Changed<WithdrawalRecord>>;
    /// One withdrawal by Pientegra id.
    async fn withdrawal(&self, withdrawal_id: Uuid) -> Result<Option<WithdrawalRecord>>;
    /// One withdrawal by (user, idempotency key).
    async fn withdrawal_by_key(&self, user_id: &str, key: &str) -> Result<Option<WithdrawalRecord>>;
    /// A user's withdrawals, newest first.
    async fn withdrawals_of(&self, user_id: &str, limit: i64) -> Result<Vec<WithdrawalRecord>>;
    /// Withdrawals whose submission outcome is unknown.
    async fn submitting_withdrawals(&self) -> Result<Vec<WithdrawalRecord>>;
    /// Dedupes by `eventId`, applies the transition and its ledger movements and
    /// records the user's events, all in one transaction. `body` is kept raw.
    async fn apply_webhook(&self, event: &WebhookEvent, body: &[u8]) -> Result<Changed<InboxOutcome>>;
    /// A user's balance (zero for a user never seen).
    async fn balance(&self, user_id: &str) -> Result<BalanceRow>;
    /// Deposits created in `[from, to)`, oldest first (reconciliation).
    async fn deposits_created_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<DepositRecord>>;
    /// Withdrawals created in `[from, to)`, oldest first (reconciliation).
    async fn withdrawals_created_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WithdrawalRecord>>;
}

/// Each user's stream of events, as the ledger appended them.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The sequence number of the user's newest stream event (0 when none).
    async fn last_event_seq(&self, user_id: &str) -> Result<i64>;
    /// A user's stream events with `seq > after`, oldest first.
    async fn events_after(&self, user_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>>;
}

/// The database as something instances share: its health, start-up
/// recovery, cluster-wide locks and the relay of other instances' changes.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;
    /// Called once when a server process starts serving, before any request:
    /// recovers what a killed predecessor left behind (SQLite: its in-flight
    /// idempotency claims; shared databases: nothing, another instance takes
    /// a dead one's claims over, see `presence`).
    async fn serving_starts(&self) -> Result<()> {
        Ok(())
    }
    /// Takes the named cluster-wide lock if it is free; holding the value holds the lock.
    async fn try_lock(&self, name: &str) -> Result<Option<HeldLock>>;
    /// Wakes `hub` streams for users whose events were committed by *other*
    /// instances, until `shutdown`. Single-instance databases return at once.
    async fn relay_changes(&self, hub: crate::sse::Hub, shutdown: tokio_util::sync::CancellationToken) -> Result<()>;
}

/// Everything the server keeps: what `Arc<dyn Storage>` callers hold.
pub trait Storage: Idempotency + Ledger + EventLog + Coordination {
    /// The PGM facade's records, on the same connections.
    fn pgm_records(&self) -> std::sync::Arc<dyn PgmRecords>;
}

/// A held lock; dropping it releases the lock.
pub struct HeldLock {
    _guard: Box<dyn std::any::Any + Send>,
}

impl HeldLock {
    /// Wraps whatever keeps the lock held (a mutex guard, a database session).
    pub fn new(guard: impl std::any::Any + Send) -> HeldLock {
        HeldLock { _guard: Box::new(guard) }
    }
}

/// Opens the storage named by a `DATABASE_URL` and applies its migrations.
pub async fn connect(database_url: &str) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    Ok(open(database_url).await?.0)
}

/// Opens one storage and returns its two views: what the server uses and what checks it.
async fn open(database_url: &str) -> anyhow::Result<(std::sync::Arc<dyn Storage>, std::sync::Arc<dyn Audit>)> {
    // Never echo the URL: it may carry a password.
    if database_url.starts_with("sqlite:") {
        let storage = std::sync::Arc::new(sqlite::SqliteStorage::connect(database_url).await?);
        Ok((storage.clone(), storage))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        let storage = std::sync::Arc::new(postgres::PostgresStorage::connect(database_url).await?);
        Ok((storage.clone(), storage))
    } else {
        anyhow::bail!("DATABASE_URL: unsupported database scheme (use sqlite:, postgres:// or postgresql://)")
    }
}
