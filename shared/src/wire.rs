//! The Pientegra External API on the wire (`docs/pientegra-contract.md`): requests,
//! responses, list pages, events and the error envelope. Field names are
//! camelCase; unknown fields are tolerated everywhere; fields the docs do not
//! promise are `Option` so a client never depends on them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::amount::Amount;
use crate::iban::Iban;
use crate::ids::{ExternalUserId, HolderName, UserLabel};
use crate::status::{IntentStatus, WithdrawalStatus};
use crate::time::{self, Timestamp};

/// The only active currency, and the default when a request omits it.
pub const DEFAULT_CURRENCY: &str = "TRY";

/// Pientegra's error codes, as sent in the `error` field.
pub mod codes {
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const AMOUNT_BELOW_MIN: &str = "amount_below_min";
    pub const AMOUNT_ABOVE_MAX: &str = "amount_above_max";
    pub const INVALID_IBAN: &str = "invalid_iban";
    pub const UNSUPPORTED_CURRENCY: &str = "unsupported_currency";
    pub const MISSING_IDEMPOTENCY_KEY: &str = "missing_idempotency_key";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const NOT_FOUND: &str = "not_found";
    pub const IDEMPOTENCY_KEY_REUSE: &str = "idempotency_key_reuse_with_different_body";
    pub const DUPLICATE_IDEMPOTENCY_KEY: &str = "duplicate_idempotency_key";
    pub const INVALID_STATE: &str = "invalid_state";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const NO_ACCOUNT_AVAILABLE: &str = "no_account_available";
}

/// `{"error": "<code>", "message": "...", "details"?: {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ErrorBody {
    /// An envelope without details.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody { error: error.into(), message: message.into(), details: None }
    }
}

/// `POST /external/deposits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDepositRequest {
    pub external_user_id: ExternalUserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_label: Option<UserLabel>,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The 201 (or 200) answer to a deposit creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositCreated {
    pub intent_id: Uuid,
    pub reference_no: String,
    pub deposit_url: String,
    pub requested_amount: Amount,
    pub amount: Amount,
    pub currency: String,
    #[serde(with = "time::millis")]
    pub expires_at: Timestamp,
}

/// `POST /external/withdrawals`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWithdrawalRequest {
    pub external_user_id: ExternalUserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_label: Option<UserLabel>,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub target_iban: Iban,
    pub target_holder_name: HolderName,
}

/// The 201 answer to a withdrawal creation. Only the first two fields are documented.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawalCreated {
    pub withdrawal_id: Uuid,
    pub reference_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WithdrawalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// An intent as returned by the lookup and the listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PientegraIntent))]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    pub intent_id: Uuid,
    pub reference_no: String,
    pub status: IntentStatus,
    pub requested_amount: Amount,
    pub amount: Amount,
    pub currency: String,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub approved_at: Option<Timestamp>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub rejected_at: Option<Timestamp>,
    #[serde(default)]
    pub rejected_reason: Option<String>,
    #[serde(default)]
    pub external_user_id: Option<String>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// A withdrawal as returned by the lookup and the listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PientegraWithdrawal))]
#[serde(rename_all = "camelCase")]
pub struct Withdrawal {
    pub withdrawal_id: Uuid,
    pub reference_no: String,
    pub status: WithdrawalStatus,
    pub amount: Amount,
    pub currency: String,
    #[serde(default)]
    pub external_user_id: Option<String>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub sent_at: Option<Timestamp>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub rejected_at: Option<Timestamp>,
    #[serde(default, with = "time::millis_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub returned_at: Option<Timestamp>,
    #[serde(default)]
    pub rejected_reason: Option<String>,
}

/// One page of a cursor-paginated listing. `next_cursor: None` ends the range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// Query of `GET /external/intents` and `GET /external/withdrawals`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::millis_opt")]
    pub created_from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::millis_opt")]
    pub created_to: Option<Timestamp>,
    /// Comma-separated statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Query of `GET /external/events`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::millis_opt")]
    pub created_from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::millis_opt")]
    pub created_to: Option<Timestamp>,
    /// Comma-separated event types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Comma-separated delivery statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Where an event's delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Queued, not yet attempted.
    Pending,
    /// A 2xx came back.
    Delivered,
    /// At least one attempt failed and a retry is scheduled.
    Failed,
    /// Every attempt failed.
    Dead,
}

impl DeliveryStatus {
    /// Every status, in a stable order.
    pub const ALL: [DeliveryStatus; 4] =
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed, DeliveryStatus::Dead];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Failed => "FAILED",
            DeliveryStatus::Dead => "DEAD",
        }
    }

    /// Parses a wire name exactly.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// An item of `GET /external/events`. `payload` is the delivered body minus
/// `eventId`, `eventType` and `occurredAt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub event_id: Uuid,
    pub event_type: String,
    #[serde(with = "time::millis")]
    pub occurred_at: Timestamp,
    pub delivery_status: DeliveryStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_response_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default, with = "time::millis_opt")]
    pub delivered_at: Option<Timestamp>,
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// The 202 answer to `POST /external/events/{eventId}/replay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayAccepted {
    pub event_id: Uuid,
    pub delivery_status: DeliveryStatus,
}

/// `PUT /external/site/webhook-config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfigRequest {
    pub webhook_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_secret: Option<bool>,
}

/// The answer to a webhook-config change; the secret is shown once, on rotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    pub webhook_url: String,
    #[serde(default)]
    pub webhook_secret: Option<String>,
    #[serde(default, with = "time::millis_opt")]
    pub rotated_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_deposit_answer_parses() {
        let body = r#"{"intentId":"01927b3c-9c1f-7a3a-9c4f-8a3e1f8b1c00","referenceNo":"5MDLZBFDY7",
            "depositUrl":"https://pay.tenant.example/d/tok","requestedAmount":"100000",
            "amount":"100000","currency":"TRY","expiresAt":"2026-04-28T12:30:00.000Z","extra":1}"#;
        let created: DepositCreated = serde_json::from_str(body).unwrap();
        assert_eq!(created.amount, Amount::from_minor(100_000));
        assert_eq!(time::format(&created.expires_at), "2026-04-28T12:30:00.000Z");
    }

    #[test]
    fn an_intent_without_decided_fields_parses() {
        let body = r#"{"intentId":"01927b3c-9c1f-7a3a-9c4f-8a3e1f8b1c00","referenceNo":"D-2026-0000123",
            "status":"APPROVED","requestedAmount":"100000","amount":"99000","currency":"TRY",
            "approvedAt":"2026-04-28T12:30:00.000Z","rejectedAt":null,"rejectedReason":null}"#;
        let intent: Intent = serde_json::from_str(body).unwrap();
        assert_eq!(intent.status, IntentStatus::Approved);
        assert_eq!(intent.external_user_id, None);
    }

    #[test]
    fn a_page_ends_with_a_null_cursor() {
        let page: Page<Intent> = serde_json::from_str(r#"{"data":[],"nextCursor":null}"#).unwrap();
        assert!(page.next_cursor.is_none());
        assert_eq!(
            serde_json::to_string(&Page::<Intent> { data: vec![], next_cursor: None }).unwrap(),
            r#"{"data":[],"nextCursor":null}"#
        );
    }

    #[test]
    fn requests_accept_amounts_as_numbers() {
        let body = r#"{"externalUserId":"user-1","amount":100000}"#;
        let req: CreateDepositRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.amount.minor(), 100_000);
        assert!(serde_json::from_str::<CreateDepositRequest>(r#"{"externalUserId":"u","amount":1.5}"#).is_err());
    }
}
