//! The Pientegra External API client: the [`PientegraApi`] trait the rest of
//! the server talks to, its one error type, the HTTP implementation with its
//! retry policy, and streams that walk a cursor-paginated listing to the end.
//!
//! Every attempt takes a slot of one [`CallBudget`] first (see `budget`).
//!
//! The client never decides business outcomes. It answers one question per
//! call: did Pientegra give a definite answer (a record, or a refusal), or
//! could it not be reached? The second case is [`PientegraError::Unavailable`],
//! and the caller must treat the request as "maybe done": retry with the same
//! idempotency key, or look the record up.

mod budget;
mod http;
mod listing;

use pientegra_shared::api::codes as kit;
use pientegra_shared::ids::IdempotencyKey;
use pientegra_shared::wire::{
    CreateDepositRequest, CreateWithdrawalRequest, DepositCreated, EventRecord, EventsQuery, Intent, ListQuery, Page,
    ReplayAccepted, WebhookConfig, WebhookConfigRequest, Withdrawal, WithdrawalCreated, codes,
};
use uuid::Uuid;

pub use budget::{BudgetSettings, CallBudget, Contact, FOREGROUND_MAX_WAIT, Priority};
pub use http::{HttpClient, RetryPolicy};
pub use listing::{all_events, all_intents, all_withdrawals};

/// The `Idempotency-Key` of the `kind` of request named by `scope`: a UUIDv5
/// of `kind:scope` in `namespace`, the same on every call and in every release,
/// so a retry, after a crash or an upgrade too, is the same request.
pub fn derived_key(namespace: &Uuid, kind: &str, scope: &str) -> IdempotencyKey {
    IdempotencyKey::from_uuid(Uuid::new_v5(namespace, format!("{kind}:{scope}").as_bytes()))
}

/// What the server needs from Pientegra; a trait so tests can swap it.
#[async_trait::async_trait]
pub trait PientegraApi: Send + Sync + 'static {
    /// `POST /external/deposits`: creates an intent and reserves a receiving account.
    async fn create_deposit(
        &self,
        key: IdempotencyKey,
        req: &CreateDepositRequest,
    ) -> Result<DepositCreated, PientegraError>;

    /// `POST /external/withdrawals`.
    async fn create_withdrawal(
        &self,
        key: IdempotencyKey,
        req: &CreateWithdrawalRequest,
    ) -> Result<WithdrawalCreated, PientegraError>;

    /// `GET /external/intents/{id}`; [`PientegraError::NotFound`] for an unknown id.
    async fn get_intent(&self, id: Uuid) -> Result<Intent, PientegraError>;

    /// `GET /external/withdrawals/{id}`; [`PientegraError::NotFound`] for an unknown id.
    async fn get_withdrawal(&self, id: Uuid) -> Result<Withdrawal, PientegraError>;

    /// One page of `GET /external/intents`; see [`all_intents`] for every page.
    async fn list_intents(&self, query: &ListQuery) -> Result<Page<Intent>, PientegraError>;

    /// One page of `GET /external/withdrawals`; see [`all_withdrawals`] for every page.
    async fn list_withdrawals(&self, query: &ListQuery) -> Result<Page<Withdrawal>, PientegraError>;

    /// One page of `GET /external/events`; see [`all_events`] for every page.
    async fn list_events(&self, query: &EventsQuery) -> Result<Page<EventRecord>, PientegraError>;

    /// `POST /external/events/{eventId}/replay`: re-queues a delivered, failed or dead event.
    async fn replay_event(&self, event_id: Uuid) -> Result<ReplayAccepted, PientegraError>;

    /// `PUT /external/site/webhook-config`; the answer carries a new secret only on rotation.
    async fn set_webhook_config(&self, req: &WebhookConfigRequest) -> Result<WebhookConfig, PientegraError>;

    /// Cheap reachability + auth check (list intents with limit=1), made by a
    /// background job within the call budget, never by a readiness probe.
    async fn ping(&self) -> Result<(), PientegraError>;
}

/// Why a Pientegra call did not produce the record asked for.
///
/// No variant ever carries the API key, a request body or a header value.
#[derive(Debug, thiserror::Error)]
pub enum PientegraError {
    /// Pientegra answered with a definite refusal (nothing was created): a
    /// 4xx, or a `503 no_account_available` that outlasted every retry.
    #[error("Pientegra refused the request (HTTP {status}, {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    /// The record does not exist (404 not_found).
    #[error("Pientegra has no such record")]
    NotFound,
    /// No definite answer after every retry: transport error, timeout, 5xx,
    /// 429, or 409 duplicate_idempotency_key that never cleared. The request
    /// may or may not have taken effect; retry with the same key, or look it up.
    #[error("Pientegra gave no definite answer: {reason}")]
    Unavailable { reason: String },
    /// The request was not sent: the call budget had no slot soon enough (or
    /// could not be read, or the server is stopping). On a first attempt
    /// nothing happened at Pientegra; try again after `retry_after`.
    #[error("the Pientegra call was not sent: {reason}")]
    NotSent { reason: String, retry_after: std::time::Duration },
    /// Pientegra answered 2xx with a body we cannot read (or redirected us,
    /// which an API never should).
    #[error("Pientegra answered in a way we cannot read: {reason}")]
    Protocol { reason: String },
}

impl PientegraError {
    /// The kit's error code (`pientegra_shared::api::codes`) the widget can explain.
    ///
    /// Field-level refusals pass through so the user can fix the input. A 401
    /// means the partner's API key is wrong, which no user can fix, so it reads
    /// as `provider_unavailable`; the client logs it at error level. So does a
    /// 4xx without Pientegra's envelope (a proxy's page).
    pub fn kit_code(&self) -> &'static str {
        match self {
            PientegraError::Refused { status, code, .. } => match code.as_str() {
                codes::AMOUNT_BELOW_MIN => kit::AMOUNT_BELOW_MIN,
                codes::AMOUNT_ABOVE_MAX => kit::AMOUNT_ABOVE_MAX,
                codes::INVALID_IBAN => kit::INVALID_IBAN,
                codes::UNSUPPORTED_CURRENCY => kit::UNSUPPORTED_CURRENCY,
                codes::VALIDATION_FAILED => kit::VALIDATION_FAILED,
                codes::NO_ACCOUNT_AVAILABLE => kit::PROVIDER_BUSY,
                codes::UNAUTHORIZED => kit::PROVIDER_UNAVAILABLE,
                _ if *status == 401 => kit::PROVIDER_UNAVAILABLE,
                // Not Pientegra's envelope: a proxy or firewall in front of it
                // answered, and Pientegra never judged the request.
                code if code.starts_with("http_") => kit::PROVIDER_UNAVAILABLE,
                _ => kit::PROVIDER_REJECTED,
            },
            PientegraError::NotFound => kit::NOT_FOUND,
            PientegraError::NotSent { .. } => kit::PROVIDER_BUSY,
            PientegraError::Unavailable { .. } | PientegraError::Protocol { .. } => kit::PROVIDER_UNAVAILABLE,
        }
    }

    /// Whether Pientegra refused this request on its merits, so that it will
    /// refuse it again and a reservation can be released.
    ///
    /// A refused API key is not such a refusal: nothing of the request was
    /// looked at, and it goes through once the partner's key is right. Nor is
    /// `no_account_available`: nothing was free at that moment.
    /// `Protocol` is not a refusal: Pientegra said 2xx, so the record most
    /// likely exists even though its body could not be read. Nor is
    /// `NotSent`: the attempt held back may be a resubmission of one that
    /// reached Pientegra before.
    pub fn is_definite_refusal(&self) -> bool {
        match self {
            PientegraError::Refused { .. } => {
                !matches!(self.kit_code(), kit::PROVIDER_UNAVAILABLE | kit::PROVIDER_BUSY)
            }
            PientegraError::NotFound => true,
            _ => false,
        }
    }

    /// A definite refusal in the kit's words: what the caller is answered,
    /// and the reason a refused withdrawal keeps. `None` for other failures.
    pub fn refusal(&self) -> Option<String> {
        match self {
            PientegraError::Refused { message, .. } => Some(format!("Pientegra refused the request: {message}")),
            PientegraError::NotFound => Some("Pientegra does not know this record".to_owned()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> PientegraError {
        PientegraError::Refused { status, code: code.into(), message: "m".into() }
    }

    #[test]
    fn field_refusals_pass_through_to_the_widget() {
        assert_eq!(refused(400, "amount_below_min").kit_code(), "amount_below_min");
        assert_eq!(refused(400, "amount_above_max").kit_code(), "amount_above_max");
        assert_eq!(refused(400, "invalid_iban").kit_code(), "invalid_iban");
        assert_eq!(refused(400, "unsupported_currency").kit_code(), "unsupported_currency");
        assert_eq!(refused(400, "validation_failed").kit_code(), "validation_failed");
    }

    #[test]
    fn provider_side_faults_are_not_the_users_fault() {
        assert_eq!(refused(503, "no_account_available").kit_code(), "provider_busy");
        assert_eq!(refused(401, "unauthorized").kit_code(), "provider_unavailable");
        assert_eq!(refused(401, "http_401").kit_code(), "provider_unavailable");
        assert_eq!(refused(409, "idempotency_key_reuse_with_different_body").kit_code(), "provider_rejected");
        assert_eq!(PientegraError::Unavailable { reason: "x".into() }.kit_code(), "provider_unavailable");
        assert_eq!(PientegraError::NotFound.kit_code(), "not_found");
    }

    #[test]
    fn only_refusals_release_a_reservation() {
        assert!(refused(400, "invalid_iban").is_definite_refusal());
        assert!(!refused(401, "unauthorized").is_definite_refusal());
        assert!(!refused(503, "no_account_available").is_definite_refusal());
        assert!(!PientegraError::Unavailable { reason: "x".into() }.is_definite_refusal());
        assert!(!PientegraError::Protocol { reason: "x".into() }.is_definite_refusal());
        let not_sent = PientegraError::NotSent { reason: "x".into(), retry_after: std::time::Duration::from_secs(3) };
        assert!(!not_sent.is_definite_refusal());
        assert_eq!(not_sent.kit_code(), "provider_busy");
    }
}
