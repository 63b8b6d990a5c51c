//! The Mia-Platform Payment Gateway Manager facade's domain: PGM statuses and
//! their mapping from Pientegra's, the status object, the facade's records,
//! and the notifier that tells the shop (PGM's `PAYMENT_CALLBACK_URL`) when a
//! payment it started reaches a final state. Payments and refunds are taken by
//! `service::Orders`; the routes are in `http::pgm`.
//!
//! Notifications are a persisted queue: a webhook moves a deposit or a
//! withdrawal through the ledger as usual; the notifier sees the new status in
//! the same database, queues the status object, and POSTs it until the shop
//! answers 2xx, with exponential backoff. What the shop acknowledged is
//! recorded, so a duplicate webhook (which changes nothing) notifies nothing.
//! Each attempt is signed afresh ([`SIGNATURE_HEADER`]), so the shop can tell
//! a notification from the kit from anyone else's POST.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pientegra_shared::Amount;
use pientegra_shared::ids::IdempotencyKey;
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

pub use crate::storage::pgm::{PgmPayment, PgmRecords};

use crate::pientegra::PientegraApi;
use crate::settings::{Settings, ShopCallback};
use crate::state::AppState;
use crate::storage::pgm::Due;
use crate::storage::{Storage, WithdrawalState};

/// Namespace of the Pientegra idempotency keys the facade derives: the same
/// shopTransactionId (or refund) always sends Pientegra the same key.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x3f5e_9a21_7c4b_4d0e_8b6a_1e2f_3a4b_5c6d);

/// The Pientegra `Idempotency-Key` of the payment of a shopTransactionId: a
/// retry, even after a crash right after Pientegra answered, gets the same
/// intent back instead of a second one.
pub fn pay_key(shop_transaction_id: &str) -> IdempotencyKey {
    crate::pientegra::derived_key(&KEY_NAMESPACE, "pay", shop_transaction_id)
}

/// The key under which a refund of `amount` of a payment is reserved and sent:
/// the same refund asked again is the same withdrawal.
pub fn refund_key(payment_id: Uuid, amount: Amount) -> IdempotencyKey {
    crate::pientegra::derived_key(&KEY_NAMESPACE, "refund", &format!("{payment_id}:{}", amount.minor()))
}

/// `providerName` of every status object.
pub const PROVIDER_NAME: &str = "pientegra";
/// `paymentMethod` of every status object: Pientegra takes bank transfers.
pub const PAYMENT_METHOD: &str = "bank_transfer";

/// How often the notifier looks for changed payments (a `/check` wakes it at once).
const SCAN_EVERY: Duration = Duration::from_millis(250);
/// Records looked at, and notifications sent, per pass.
const BATCH: i64 = 100;
/// The longest wait between two attempts of one notification.
const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// How long the shop has to answer a notification.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The delay after the `attempts`-th failure: base × 2^(attempts − 1), capped.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let base = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    Duration::from_millis(base.saturating_mul(factor)).min(BACKOFF_CAP)
}

/// What PGM started: a payment (a deposit intent) or a refund (a withdrawal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = PgmAction)]
pub enum Action {
    Payment,
    Refund,
}

impl Action {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Payment => "PAYMENT",
            Action::Refund => "REFUND",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Action> {
        [Action::Payment, Action::Refund].into_iter().find(|a| a.as_str() == s)
    }
}

/// A payment's status in PGM's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PgmStatus {
    Accepted,
    Failed,
    Pending,
}

impl PgmStatus {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PgmStatus::Accepted => "ACCEPTED",
            PgmStatus::Failed => "FAILED",
            PgmStatus::Pending => "PENDING",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<PgmStatus> {
        [PgmStatus::Accepted, PgmStatus::Failed, PgmStatus::Pending].into_iter().find(|st| st.as_str() == s)
    }

    /// ACCEPTED and FAILED are what the shop is told about unasked.
    pub fn is_final(self) -> bool {
        self != PgmStatus::Pending
    }
}

/// A deposit intent's status for PGM.
pub fn payment_status(status: IntentStatus) -> PgmStatus {
    match status {
        IntentStatus::Approved => PgmStatus::Accepted,
        IntentStatus::Rejected | IntentStatus::AutoCancelled => PgmStatus::Failed,
        IntentStatus::Reserved | IntentStatus::PendingReview | IntentStatus::LateArrival => PgmStatus::Pending,
    }
}

/// A refund's (withdrawal's) status for PGM.
pub fn refund_status(state: WithdrawalState) -> PgmStatus {
    match state {
        WithdrawalState::Known(WithdrawalStatus::Sent) => PgmStatus::Accepted,
        WithdrawalState::Known(WithdrawalStatus::Rejected | WithdrawalStatus::Returned) | WithdrawalState::Refused => {
            PgmStatus::Failed
        }
        WithdrawalState::Known(WithdrawalStatus::PendingReview | WithdrawalStatus::Approved)
        | WithdrawalState::Submitting => PgmStatus::Pending,
    }
}

/// Whether a stored Pientegra status can never change again, so the record can close.
fn settled(action: Action, pientegra_status: &str) -> bool {
    match action {
        Action::Payment => IntentStatus::parse(pientegra_status).is_some_and(IntentStatus::is_final),
        Action::Refund => WithdrawalState::parse(pientegra_status).is_some_and(|s| match s {
            WithdrawalState::Known(s) => s.is_final(),
            WithdrawalState::Refused => true,
            WithdrawalState::Submitting => false,
        }),
    }
}

/// The status object of `/status`, `/check` and the shop notification.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PgmStatusObject)]
pub struct StatusObject {
    pub status: PgmStatus,
    pub payment_id: Uuid,
    pub shop_transaction_id: String,
    /// `pientegra`.
    pub provider_name: &'static str,
    /// `bank_transfer`.
    pub payment_method: &'static str,
    pub action: Action,
    pub metadata: Metadata,
}

/// Pientegra's own view, for the shop's support staff.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PgmMetadata)]
pub struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_no: Option<String>,
    pub pientegra_status: String,
    /// For a refund: the refunded payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_of: Option<Uuid>,
}

impl StatusObject {
    fn new(payment: &PgmPayment, status: PgmStatus, reference_no: Option<String>, pientegra_status: &str) -> Self {
        StatusObject {
            status,
            payment_id: payment.payment_id,
            shop_transaction_id: payment.shop_transaction_id.clone(),
            provider_name: PROVIDER_NAME,
            payment_method: PAYMENT_METHOD,
            action: payment.action,
            metadata: Metadata {
                reference_no,
                pientegra_status: pientegra_status.to_owned(),
                refund_of: payment.refund_of,
            },
        }
    }

    /// The JSON that is POSTed.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a status object serializes")
    }
}

/// The header that signs every shop notification: `t=<unix ms>,v1=<hex>`, the
/// scheme of Pientegra's own `Pientegra-Signature` (`shared::signature`),
/// keyed with `PAYMENT_CALLBACK_SECRET`.
pub const SIGNATURE_HEADER: &str = "Pientegra-Kit-Signature";

/// The facade's handles, shared by its routes and its notifier.
pub struct Facade {
    pub store: Arc<dyn PgmRecords>,
    callback: Option<ShopCallback>,
    /// The first retry delay of a failed notification.
    backoff_base: Duration,
    client: reqwest::Client,
    wake: Notify,
}

impl Facade {
    /// The facade when `PGM_FACADE_TOKEN` is set, keeping its records in `storage`.
    pub fn connect(settings: &Settings, storage: &dyn Storage) -> anyhow::Result<Option<Arc<Facade>>> {
        let Some(pgm) = &settings.pgm else { return Ok(None) };
        let store = storage.pgm_records();
        if pgm.callback.is_none() {
            tracing::warn!("PGM facade on without PAYMENT_CALLBACK_URL: the shop will not be notified");
        }
        Ok(Some(Arc::new(Facade::new(store, pgm.callback.clone(), pgm.notify_backoff_base)?)))
    }

    /// The facade over `store`, notifying the shop at `callback` if there is
    /// one, retrying a failed notification after `backoff_base`, then doubling.
    pub fn new(
        store: Arc<dyn PgmRecords>,
        callback: Option<ShopCallback>,
        backoff_base: Duration,
    ) -> anyhow::Result<Facade> {
        let client = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the PGM callback client")?;
        Ok(Facade { store, callback, backoff_base, client, wake: Notify::new() })
    }

    /// Queues a notification of `object` (`/check`) and wakes the notifier.
    pub async fn notify_shop(&self, object: &StatusObject) -> anyhow::Result<()> {
        if self.callback.is_none() {
            return Ok(());
        }
        self.store.enqueue(object.payment_id, object.status, &object.to_json()).await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The status of a facade record from the local deposit or withdrawal; with
/// `refresh`, a status that is not final yet is looked up live at Pientegra
/// (a webhook may be late). Only reads: money moves on the webhook path alone.
pub async fn status_of(
    storage: &dyn Storage,
    pientegra: &dyn PientegraApi,
    payment: &PgmPayment,
    refresh: bool,
) -> anyhow::Result<StatusObject> {
    match payment.action {
        Action::Payment => {
            let deposit = storage.deposit(payment.payment_id).await?.context("a PGM payment has no deposit")?;
            let mut status = deposit.status;
            if refresh && payment_status(status) == PgmStatus::Pending {
                match pientegra.get_intent(payment.payment_id).await {
                    Ok(live) if status.can_advance_to(live.status) => status = live.status,
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "live intent status unavailable; answering the local one"),
                }
            }
            Ok(StatusObject::new(payment, payment_status(status), Some(deposit.reference_no), status.as_str()))
        }
        Action::Refund => {
            let withdrawal = storage.withdrawal(payment.payment_id).await?.context("a PGM refund has no withdrawal")?;
            let mut local = withdrawal.state;
            if let (true, PgmStatus::Pending, WithdrawalState::Known(known)) = (refresh, refund_status(local), local) {
                match pientegra.get_withdrawal(payment.payment_id).await {
                    Ok(live) if known.can_advance_to(live.status) => local = WithdrawalState::Known(live.status),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "live withdrawal status unavailable; answering the local one");
                    }
                }
            }
            Ok(StatusObject::new(payment, refund_status(local), withdrawal.reference_no, local.as_str()))
        }
    }
}

/// Delivers shop notifications until shutdown: one pass every [`SCAN_EVERY`],
/// or at once when `/check` queued one.
pub async fn notifier(state: AppState) {
    let Some(facade) = state.pgm.clone() else { return };
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(SCAN_EVERY) => {}
            () = facade.wake.notified() => {}
        }
        if let Err(err) = notify_pass(&state, &facade).await {
            tracing::error!(error = format!("{err:#}"), "PGM notification pass failed");
        }
    }
}

/// One idempotent pass: queue what changed, then send what is due.
async fn notify_pass(state: &AppState, facade: &Facade) -> anyhow::Result<()> {
    let Some(callback) = &facade.callback else { return Ok(()) };
    // Two cheap reads first: the lock (a database session on PostgreSQL) is
    // only taken when there is work.
    let now = chrono::Utc::now().timestamp_millis();
    if facade.store.changed(1).await?.is_empty() && facade.store.due(now, 1).await?.is_empty() {
        return Ok(());
    }
    // One notifier at a time across instances sharing the database.
    let Some(lock) = state.storage.try_lock("pgm-notifier").await? else { return Ok(()) };
    for seen in facade.store.changed(BATCH).await? {
        let payment = &seen.payment;
        let enqueue = match status_of(state.storage.as_ref(), state.pientegra.as_ref(), payment, false).await {
            Ok(object) if object.status.is_final() && payment.last_notified_status != Some(object.status) => {
                Some((object.status, object.to_json()))
            }
            Ok(_) => None,
            Err(err) => {
                tracing::error!(payment_id = %payment.payment_id, error = format!("{err:#}"), "PGM status unreadable");
                continue;
            }
        };
        let closed = settled(payment.action, &seen.pientegra_status);
        let enqueue = enqueue.as_ref().map(|(status, body)| (*status, body.as_str()));
        facade.store.observed(payment.payment_id, &seen.pientegra_status, closed, enqueue).await?;
    }
    let now = chrono::Utc::now().timestamp_millis();
    for due in facade.store.due(now, BATCH).await? {
        if state.shutdown.is_cancelled() {
            break;
        }
        deliver(facade, callback, due).await?;
    }
    drop(lock);
    Ok(())
}

/// The `Pientegra-Kit-Signature` value of `body` sent at `t_ms`.
pub fn signature(secret: &SecretString, t_ms: i64, body: &str) -> String {
    pientegra_shared::signature::sign(secret.expose_secret(), t_ms, body.as_bytes())
}

async fn deliver(facade: &Facade, callback: &ShopCallback, due: Due) -> anyhow::Result<()> {
    // Signed now, not when queued: a retry hours later still arrives within
    // the shop's tolerance, and the queued body is sent byte for byte.
    let signed = signature(&callback.secret, chrono::Utc::now().timestamp_millis(), &due.body);
    let sent = facade
        .client
        .post(callback.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signed)
        .body(due.body.clone())
        .send()
        .await;
    let failure = match sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("the callback answered HTTP {}", response.status().as_u16())),
        Err(err) => Some(format!("the callback could not be reached: {}", err.without_url())),
    };
    match failure {
        None => {
            tracing::info!(payment_id = %due.payment_id, status = due.status.as_str(), "shop notified");
            facade.store.delivered(due.payment_id, due.status, &due.body).await
        }
        Some(error) => {
            let attempts = due.attempts.saturating_add(1);
            let wait = backoff(facade.backoff_base, attempts);
            tracing::warn!(payment_id = %due.payment_id, attempts, retry_in_ms = wait.as_millis(), %error,
                "shop notification failed");
            let next = chrono::Utc::now().timestamp_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            facade.store.delivery_failed(due.payment_id, attempts, next, &error).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_statuses_map_as_documented() {
        use IntentStatus::*;
        assert_eq!(payment_status(Approved), PgmStatus::Accepted);
        for s in [Rejected, AutoCancelled] {
            assert_eq!(payment_status(s), PgmStatus::Failed);
        }
        for s in [Reserved, PendingReview, LateArrival] {
            assert_eq!(payment_status(s), PgmStatus::Pending);
        }
    }

    #[test]
    fn refund_statuses_map_as_documented() {
        use WithdrawalStatus::*;
        assert_eq!(refund_status(WithdrawalState::Known(Sent)), PgmStatus::Accepted);
        for s in [Rejected, Returned] {
            assert_eq!(refund_status(WithdrawalState::Known(s)), PgmStatus::Failed);
        }
        for s in [PendingReview, Approved] {
            assert_eq!(refund_status(WithdrawalState::Known(s)), PgmStatus::Pending);
        }
        assert_eq!(refund_status(WithdrawalState::Submitting), PgmStatus::Pending);
    }

    #[test]
    fn a_record_closes_only_when_its_status_cannot_change() {
        assert!(settled(Action::Payment, "APPROVED"));
        assert!(!settled(Action::Payment, "AUTO_CANCELLED")); // a late arrival may follow
        assert!(!settled(Action::Refund, "SENT")); // a bank return may follow
        assert!(settled(Action::Refund, "RETURNED"));
    }

    #[test]
    fn a_shop_transaction_always_derives_the_same_key() {
        assert_eq!(pay_key("order-1"), pay_key("order-1"));
        assert_ne!(pay_key("order-1"), pay_key("order-2"));
        let id = Uuid::nil();
        assert_ne!(refund_key(id, Amount::from_minor(100)), refund_key(id, Amount::from_minor(200)));
    }

    /// A key that changed between releases would let a shop's retry across an
    /// upgrade open a second intent or send a second refund.
    #[test]
    fn the_facades_keys_never_change() {
        assert_eq!(pay_key("order-1").to_string(), "ffeea310-5927-5132-82a9-014d9ca0d793");
        let refund = refund_key(Uuid::nil(), Amount::from_minor(100));
        assert_eq!(refund.to_string(), "2fef5161-495a-5252-9a7f-92c6b35483d1");
    }

    #[test]
    fn a_notification_is_signed_over_its_exact_body_with_the_callback_secret() {
        let secret = SecretString::from("shop-callback-secret-0123456789ab".to_owned());
        let body = r#"{"status":"ACCEPTED","paymentId":"p-1"}"#;
        let t = 1_767_225_600_000;
        let header = signature(&secret, t, body);
        assert!(header.starts_with(&format!("t={t},v1=")), "{header}");
        let verify = |header: &str, body: &str, secret: &str, now: i64| {
            pientegra_shared::signature::verify(header, body.as_bytes(), &[secret], now)
        };
        assert!(verify(&header, body, secret.expose_secret(), t).is_ok());
        assert!(verify(&header, &body.replace("ACCEPTED", "FAILED"), secret.expose_secret(), t).is_err());
        assert!(verify(&header, body, "another-secret-0123456789abcdef01", t).is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = crate::settings::DEFAULT_NOTIFY_BACKOFF_BASE;
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 3), 4 * base);
        assert_eq!(backoff(base, 40), BACKOFF_CAP);
        assert_eq!(backoff(Duration::from_millis(20), 2), Duration::from_millis(40));
    }
}
