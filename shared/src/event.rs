//! Webhook events: the body Pientegra POSTs to the partner's webhook URL.
//!
//! Known types parse into typed snapshots; a well-formed event of a type this
//! version does not know parses to [`EventKind::Unknown`], keeping its name
//! and payload, so a receiver can acknowledge it and change nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::amount::Amount;
use crate::status::{IntentStatus, WithdrawalStatus};
use crate::time::{self, Timestamp};

/// A parsed webhook event.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    pub event_id: Uuid,
    pub occurred_at: Timestamp,
    pub kind: EventKind,
}

/// What the event is about.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Intent {
        event: IntentEvent,
        intent: IntentSnapshot,
    },
    Withdrawal {
        event: WithdrawalEvent,
        withdrawal: WithdrawalSnapshot,
    },
    /// A type this version does not know: its name and the rest of the body, untouched.
    Unknown {
        event_type: String,
        payload: Map<String, Value>,
    },
}

/// The intent event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntentEvent {
    Approved,
    Rejected,
    AutoCancelled,
    LateArrival,
}

/// The withdrawal event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WithdrawalEvent {
    Created,
    Approved,
    Sent,
    Rejected,
    Returned,
}

impl IntentEvent {
    /// Every intent event type.
    pub const ALL: [IntentEvent; 4] =
        [IntentEvent::Approved, IntentEvent::Rejected, IntentEvent::AutoCancelled, IntentEvent::LateArrival];

    /// The `eventType` string, e.g. `intent.approved`.
    pub fn event_type(self) -> &'static str {
        match self {
            IntentEvent::Approved => "intent.approved",
            IntentEvent::Rejected => "intent.rejected",
            IntentEvent::AutoCancelled => "intent.auto_cancelled",
            IntentEvent::LateArrival => "intent.late_arrival",
        }
    }

    /// The status the intent has once this event happened.
    pub fn status(self) -> IntentStatus {
        match self {
            IntentEvent::Approved => IntentStatus::Approved,
            IntentEvent::Rejected => IntentStatus::Rejected,
            IntentEvent::AutoCancelled => IntentStatus::AutoCancelled,
            IntentEvent::LateArrival => IntentStatus::LateArrival,
        }
    }

    /// The event announcing that an intent reached `status`, if there is one.
    pub fn for_status(status: IntentStatus) -> Option<IntentEvent> {
        IntentEvent::ALL.into_iter().find(|e| e.status() == status)
    }
}

impl WithdrawalEvent {
    /// Every withdrawal event type.
    pub const ALL: [WithdrawalEvent; 5] = [
        WithdrawalEvent::Created,
        WithdrawalEvent::Approved,
        WithdrawalEvent::Sent,
        WithdrawalEvent::Rejected,
        WithdrawalEvent::Returned,
    ];

    /// The `eventType` string, e.g. `withdrawal.sent`.
    pub fn event_type(self) -> &'static str {
        match self {
            WithdrawalEvent::Created => "withdrawal.created",
            WithdrawalEvent::Approved => "withdrawal.approved",
            WithdrawalEvent::Sent => "withdrawal.sent",
            WithdrawalEvent::Rejected => "withdrawal.rejected",
            WithdrawalEvent::Returned => "withdrawal.returned",
        }
    }

    /// The status the withdrawal has once this event happened.
    pub fn status(self) -> WithdrawalStatus {
        match self {
            WithdrawalEvent::Created => WithdrawalStatus::PendingReview,
            WithdrawalEvent::Approved => WithdrawalStatus::Approved,
            WithdrawalEvent::Sent => WithdrawalStatus::Sent,
            WithdrawalEvent::Rejected => WithdrawalStatus::Rejected,
            WithdrawalEvent::Returned => WithdrawalStatus::Returned,
        }
    }

    /// The event announcing that a withdrawal reached `status`, if there is one.
    pub fn for_status(status: WithdrawalStatus) -> Option<WithdrawalEvent> {
        WithdrawalEvent::ALL.into_iter().find(|e| e.status() == status)
    }
}

/// The `intent` object of an intent event. Note the id field is `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IntentSnapshot {
    pub id: Uuid,
    pub reference_no: String,
    pub external_user_id: String,
    pub requested_amount: Amount,
    pub amount: Amount,
    pub currency: String,
    pub status: IntentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
}

/// The `withdrawal` object of a withdrawal event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WithdrawalSnapshot {
    pub id: Uuid,
    pub reference_no: String,
    pub external_user_id: String,
    pub amount: Amount,
    pub currency: String,
    pub status: WithdrawalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
}

/// Why a body is not a webhook event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the webhook body is not a valid event: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("a {event_type} event must carry a `{field}` object")]
    MissingSubject { event_type: String, field: &'static str },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    event_id: Uuid,
    event_type: String,
    #[serde(with = "time::millis")]
    occurred_at: Timestamp,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl WebhookEvent {
    /// Parses a raw body. Call only after the signature has been verified.
    pub fn parse(body: &[u8]) -> Result<WebhookEvent, EventError> {
        let Envelope { event_id, event_type, occurred_at, mut rest } = serde_json::from_slice(body)?;
        let kind = if let Some(event) = IntentEvent::ALL.into_iter().find(|e| e.event_type() == event_type) {
            let intent = rest.remove("intent").ok_or(EventError::MissingSubject { event_type, field: "intent" })?;
            EventKind::Intent { event, intent: serde_json::from_value(intent)? }
        } else if let Some(event) = WithdrawalEvent::ALL.into_iter().find(|e| e.event_type() == event_type) {
            let withdrawal =
                rest.remove("withdrawal").ok_or(EventError::MissingSubject { event_type, field: "withdrawal" })?;
            EventKind::Withdrawal { event, withdrawal: serde_json::from_value(withdrawal)? }
        } else {
            EventKind::Unknown { event_type, payload: rest }
        };
        Ok(WebhookEvent { event_id, occurred_at, kind })
    }

    /// The `eventType` string.
    pub fn event_type(&self) -> &str {
        match &self.kind {
            EventKind::Intent { event, .. } => event.event_type(),
            EventKind::Withdrawal { event, .. } => event.event_type(),
            EventKind::Unknown { event_type, .. } => event_type,
        }
    }

    /// The body minus `eventId`, `eventType` and `occurredAt` (the events listing's `payload`).
    pub fn payload(&self) -> Map<String, Value> {
        let mut payload = Map::new();
        match &self.kind {
            EventKind::Intent { intent, .. } => {
                payload.insert("intent".into(), serde_json::to_value(intent).expect("snapshot serializes"));
            }
            EventKind::Withdrawal { withdrawal, .. } => {
                payload.insert("withdrawal".into(), serde_json::to_value(withdrawal).expect("snapshot serializes"));
            }
            EventKind::Unknown { payload: rest, .. } => payload.clone_from(rest),
        }
        payload
    }

    /// The body as Pientegra sends it.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("eventId".into(), Value::String(self.event_id.to_string()));
        body.insert("eventType".into(), Value::String(self.event_type().to_owned()));
        body.insert("occurredAt".into(), Value::String(time::format(&self.occurred_at)));
        body.extend(self.payload());
        Value::Object(body)
    }

    /// The body bytes, ready to sign.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("a JSON value serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = r#"{"eventId":"019dd459-43c1-711c-9e38-76a3182f4185","eventType":"intent.approved",
        "occurredAt":"2026-04-28T13:00:00.000Z",
        "intent":{"id":"01927b3c-9c1f-7a3a-9c4f-8a3e1f8b1c00","referenceNo":"5MDLZBFDY7","externalUserId":"user-12345",
                  "requestedAmount":"100000","amount":"100000","currency":"TRY","status":"APPROVED"}}"#;

    #[test]
    fn the_documented_event_parses() {
        let event = WebhookEvent::parse(DOCUMENTED.as_bytes()).unwrap();
        let EventKind::Intent { event: kind, intent } = &event.kind else { panic!("not an intent event") };
        assert_eq!(*kind, IntentEvent::Approved);
        assert_eq!(intent.amount, Amount::from_minor(100_000));
        assert_eq!(intent.external_user_id, "user-12345");
    }

    #[test]
    fn an_unknown_type_keeps_its_name_and_payload() {
        let body = r#"{"eventId":"019dd459-43c1-711c-9e38-76a3182f4185","eventType":"payout.teleported",
            "occurredAt":"2026-04-28T13:00:00.000Z","thing":{"a":1}}"#;
        let event = WebhookEvent::parse(body.as_bytes()).unwrap();
        assert_eq!(event.event_type(), "payout.teleported");
        let EventKind::Unknown { payload, .. } = &event.kind else { panic!("should be unknown") };
        assert_eq!(payload["thing"]["a"], 1);
    }

    #[test]
    fn a_known_type_without_its_object_is_refused() {
        let body = r#"{"eventId":"019dd459-43c1-711c-9e38-76a3182f4185","eventType":"withdrawal.sent",
            "occurredAt":"2026-04-28T13:00:00.000Z"}"#;
        assert!(matches!(
            WebhookEvent::parse(body.as_bytes()),
            Err(EventError::MissingSubject { field: "withdrawal", .. })
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(WebhookEvent::parse(b"").is_err());
        assert!(WebhookEvent::parse(b"{}").is_err());
        assert!(WebhookEvent::parse(b"[1,2]").is_err());
    }

    #[test]
    fn to_body_round_trips() {
        let event = WebhookEvent::parse(DOCUMENTED.as_bytes()).unwrap();
        assert_eq!(WebhookEvent::parse(&event.to_body()).unwrap(), event);
    }

    #[test]
    fn every_status_with_an_event_maps_back() {
        for e in IntentEvent::ALL {
            assert_eq!(IntentEvent::for_status(e.status()), Some(e));
        }
        for e in WithdrawalEvent::ALL {
            assert_eq!(WithdrawalEvent::for_status(e.status()), Some(e));
        }
    }
}
