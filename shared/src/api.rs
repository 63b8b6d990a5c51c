//! The widget ↔ companion server API (`docs/server.md`, "HTTP API"):
//! request bodies, views, the SSE event payloads and the error envelope.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::amount::Amount;
use crate::status::{IntentStatus, WithdrawalStatus};
use crate::time::{self, Timestamp};

/// `{"error": "<code>", "message": "..."}`, the server's one error envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "error": "insufficient_funds", "message": "insufficient funds: ₺12.50 available"
})))]
pub struct ApiError {
    /// The stable code ([`codes`]): each route lists the codes it answers with.
    pub error: String,
    /// What went wrong, in English, for a developer; never anything internal.
    pub message: String,
}

/// The kit's stable error codes, which the widget explains in words.
pub mod codes {
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const AMOUNT_BELOW_MIN: &str = "amount_below_min";
    pub const AMOUNT_ABOVE_MAX: &str = "amount_above_max";
    pub const INVALID_IBAN: &str = "invalid_iban";
    pub const UNSUPPORTED_CURRENCY: &str = "unsupported_currency";
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    pub const MISSING_IDEMPOTENCY_KEY: &str = "missing_idempotency_key";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
    pub const IDEMPOTENCY_KEY_IN_FLIGHT: &str = "idempotency_key_in_flight";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The widget token's `alg` is not HS256 (`none` included).
    pub const TOKEN_WRONG_ALGORITHM: &str = "token_wrong_algorithm";
    /// The widget token's `aud` is missing or is not `pientegra-kit/widget`.
    pub const TOKEN_WRONG_AUDIENCE: &str = "token_wrong_audience";
    /// The widget token lacks `sub`, `iat` or `exp`.
    pub const TOKEN_MISSING_CLAIM: &str = "token_missing_claim";
    /// The widget token's `exp` is not after its `iat`, or later than the maximum lifetime allows.
    pub const TOKEN_LIFETIME_REFUSED: &str = "token_lifetime_refused";
    /// The widget token's `iat` or `nbf` is in the future beyond the allowed clock skew.
    pub const TOKEN_NOT_YET_VALID: &str = "token_not_yet_valid";
    /// The widget token's `sub` is not a valid user id, or its `name` not a valid display name.
    pub const TOKEN_INVALID_CLAIM: &str = "token_invalid_claim";
    /// `GET /api/events?token=`: the URL must carry a stream ticket instead.
    pub const STREAM_TICKET_REQUIRED: &str = "stream_ticket_required";
    /// The stream ticket is past its minute: fetch a new one.
    pub const TICKET_EXPIRED: &str = "ticket_expired";
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists, but not with this method (the `Allow` header lists its methods).
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const PROVIDER_UNAVAILABLE: &str = "provider_unavailable";
    pub const PROVIDER_BUSY: &str = "provider_busy";
    pub const PROVIDER_REJECTED: &str = "provider_rejected";
    pub const DEPOSIT_URL_NOT_ALLOWED: &str = "deposit_url_not_allowed";
    pub const INTERNAL: &str = "internal_error";
}

/// `POST /api/deposits` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"amount": "150000", "currency": "TRY"})))]
pub struct CreateDeposit {
    /// 1,00 to 1.000.000,00 TRY: 100 to 100000000 minor units.
    pub amount: Amount,
    /// `TRY`, the only currency, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `POST /api/withdrawals` body. IBAN and holder are plain strings here so the
/// server can answer each field's fault with its own code (`invalid_iban`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "amount": "50000", "iban": "TR330006100519786457841326", "holderName": "Ayşe Yılmaz"
})))]
#[serde(rename_all = "camelCase")]
pub struct CreateWithdrawal {
    /// 1,00 to 1.000.000,00 TRY: 100 to 100000000 minor units.
    pub amount: Amount,
    /// A Turkish IBAN (`TR` and 24 digits; spaces are ignored).
    pub iban: String,
    /// The account holder's name, 1 to 140 characters.
    pub holder_name: String,
}

/// A deposit as the user sees it (201 of `POST /api/deposits`, lookups, account list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "intentId": "0192f1c4-8b7e-7c3a-9f1e-2b7d8c9a0e11", "referenceNo": "PNT-7K3Q9X",
    "depositUrl": "https://pay.pientegra.example/d/0192f1c4", "requestedAmount": "150000", "amount": "150000",
    "currency": "TRY", "expiresAt": "2026-04-28T13:00:00.000Z", "status": "RESERVED",
    "createdAt": "2026-04-28T12:30:00.000Z", "updatedAt": "2026-04-28T12:30:00.000Z",
    "framing": {"allowed": true, "reason": null}
})))]
#[serde(rename_all = "camelCase")]
pub struct Deposit {
    pub intent_id: Uuid,
    pub reference_no: String,
    pub deposit_url: String,
    pub requested_amount: Amount,
    pub amount: Amount,
    pub currency: String,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    pub status: IntentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
    /// Only in the answer to `POST /api/deposits`: whether the page that asked
    /// may show `depositUrl` in a frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
}

/// Whether a page may show the hosted deposit page in a frame (iframe mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Framing {
    pub allowed: bool,
    /// Why not; `None` when allowed.
    pub reason: Option<FramingRefusal>,
}

impl Framing {
    /// Framing is allowed.
    pub const ALLOWED: Framing = Framing { allowed: true, reason: None };

    /// Framing is refused for `reason`.
    pub fn refused(reason: FramingRefusal) -> Framing {
        Framing { allowed: false, reason: Some(reason) }
    }
}

/// Why a page may not frame the hosted deposit page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FramingRefusal {
    /// The hosted page's `Content-Security-Policy: frame-ancestors` does not list the page's origin.
    FrameAncestors,
    /// The hosted page's `X-Frame-Options` forbids it.
    XFrameOptions,
    /// The hosted page could not be asked.
    Unknown,
}

/// `GET /api/embed-check`: whether a page of `origin` may use this server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"origin": "https://partner.example", "allowed": true})))]
pub struct EmbedCheck {
    /// The request's `Origin` header; `None` when it sent none.
    pub origin: Option<String>,
    pub allowed: bool,
}

/// A withdrawal as the user sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "withdrawalId": "0192f1c5-1a2b-7c3d-8e4f-5a6b7c8d9e0f", "referenceNo": "PNT-W4M2ZP", "amount": "50000",
    "currency": "TRY", "status": "PENDING_REVIEW", "ibanMasked": "TR33 **** **** **** **** **13 26",
    "holderName": "Ayşe Yılmaz", "createdAt": "2026-04-28T12:31:00.000Z", "updatedAt": "2026-04-28T12:31:00.000Z"
})))]
#[serde(rename_all = "camelCase")]
pub struct Withdrawal {
    pub withdrawal_id: Uuid,
    pub reference_no: String,
    pub amount: Amount,
    pub currency: String,
    pub status: WithdrawalStatus,
    /// The target IBAN with all but the country, check digits and last four masked.
    pub iban_masked: String,
    pub holder_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// The user's balance. `available` can be withdrawn; `reserved` is held for pending withdrawals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"available": "150000", "reserved": "50000", "currency": "TRY"})))]
pub struct Balance {
    pub available: Amount,
    pub reserved: Amount,
    pub currency: String,
}

/// `GET /api/account`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub external_user_id: String,
    pub balance: Balance,
    /// Newest first.
    pub deposits: Vec<Deposit>,
    /// Newest first.
    pub withdrawals: Vec<Withdrawal>,
}

/// `POST /api/session` (demo mode only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"externalUserId": "customer-42", "label": "Ayşe Yılmaz"})))]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    pub external_user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A widget token for the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub token: String,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// `POST /api/stream-ticket`: what opens `GET /api/events?ticket=` until `expires_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "ticket": "st1.eyJzdWIiOiJjdXN0b21lci00MiIsImV4cCI6MTc3NzM4MDI2MCwiZW5kIjoxNzc3MzgzODAwfQ.3q2-7w",
    "expiresAt": "2026-04-28T12:31:00.000Z"
})))]
#[serde(rename_all = "camelCase")]
pub struct StreamTicket {
    pub ticket: String,
    #[serde(with = "time::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// One event of the user's SSE stream; `name()` is the SSE `event:` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum UserEvent {
    Deposit(Deposit),
    Withdrawal(Withdrawal),
    Balance(Balance),
}

impl UserEvent {
    pub const DEPOSIT_UPDATED: &'static str = "deposit.updated";
    pub const WITHDRAWAL_UPDATED: &'static str = "withdrawal.updated";
    pub const BALANCE_UPDATED: &'static str = "balance.updated";

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            UserEvent::Deposit(_) => UserEvent::DEPOSIT_UPDATED,
            UserEvent::Withdrawal(_) => UserEvent::WITHDRAWAL_UPDATED,
            UserEvent::Balance(_) => UserEvent::BALANCE_UPDATED,
        }
    }

    /// Rebuilds an event from its SSE name and JSON data; `None` for an unknown name.
    pub fn from_sse(name: &str, data: &str) -> Option<Result<UserEvent, serde_json::Error>> {
        Some(match name {
            UserEvent::DEPOSIT_UPDATED => serde_json::from_str(data).map(UserEvent::Deposit),
            UserEvent::WITHDRAWAL_UPDATED => serde_json::from_str(data).map(UserEvent::Withdrawal),
            UserEvent::BALANCE_UPDATED => serde_json::from_str(data).map(UserEvent::Balance),
            _ => return None,
        })
    }

    /// The SSE `data:` field.
    pub fn data(&self) -> String {
        serde_json::to_string(self).expect("views serialize")
    }
}

/// Masks an IBAN for display: `TR33 **** **** **** **** **13 26` style, keeping
/// the country, check digits and the last four characters.
pub fn mask_iban(iban: &str) -> String {
    let chars: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    let keep_tail = chars.len().saturating_sub(4);
    let masked: String =
        chars.iter().enumerate().map(|(i, &c)| if i < 4 || i >= keep_tail { c } else { '*' }).collect();
    crate::iban::group_for_display(&masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_country_check_and_tail() {
        assert_eq!(mask_iban("TR330006100519786457841326"), "TR33 **** **** **** **** **13 26");
    }

    #[test]
    fn sse_events_round_trip_by_name() {
        let balance = UserEvent::Balance(Balance {
            available: Amount::from_minor(150_000),
            reserved: Amount::ZERO,
            currency: "TRY".into(),
        });
        let back = UserEvent::from_sse(balance.name(), &balance.data()).unwrap().unwrap();
        assert_eq!(back, balance);
        assert!(UserEvent::from_sse("nope", "{}").is_none());
    }
}
