//! Events and their delivery bookkeeping: what is due, how an attempt
//! ended, when the retry comes, and replay.

use std::sync::Arc;
use std::time::Duration;

use pientegra_shared::event::{EventKind, IntentEvent, WebhookEvent, WithdrawalEvent};
use pientegra_shared::time::Timestamp;
use pientegra_shared::wire::{self, DeliveryStatus};
use tokio::time::Instant;
use uuid::Uuid;

use super::table::{Key, Row};
use super::{Store, StoreError};
use crate::config::scale_duration;

/// Waits before attempts 2..=8 of a delivery, at the real scale.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
    Duration::from_secs(600),
    Duration::from_secs(1200),
];

/// Attempts per delivery run before an event is DEAD.
pub const MAX_ATTEMPTS: u32 = 8;

/// An emitted event and its delivery.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub id: Uuid,
    pub event_type: &'static str,
    pub occurred_at: Timestamp,
    /// The exact bytes every attempt sends (and signs).
    pub body: Arc<[u8]>,
    /// The body minus `eventId`, `eventType` and `occurredAt`.
    pub payload: serde_json::Value,
    pub delivery: Delivery,
}

impl Row for EventRecord {
    fn key(&self) -> Key {
        (self.occurred_at, self.id)
    }
}

impl EventRecord {
    /// The shape of `GET /external/events`.
    pub fn to_wire(&self) -> wire::EventRecord {
        wire::EventRecord {
            event_id: self.id,
            event_type: self.event_type.to_owned(),
            occurred_at: self.occurred_at,
            delivery_status: self.delivery.status,
            attempts: self.delivery.attempts,
            last_response_status: self.delivery.last_response_status,
            last_error: self.delivery.last_error.clone(),
            delivered_at: self.delivery.delivered_at,
            payload: self.payload.clone(),
        }
    }
}

/// Delivery bookkeeping of one event.
///
/// Attempts are counted two ways: `attempts` is every attempt ever made (what
/// the events listing and the `Pientegra-Delivery-Attempt` header show; it
/// never goes down), while `run_attempts` counts the current run, which a
/// replay restarts with a fresh budget of [`MAX_ATTEMPTS`].
#[derive(Clone, Debug)]
pub struct Delivery {
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub run_attempts: u32,
    pub last_response_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    /// `None`: due as soon as it can be sent.
    pub next_attempt_at: Option<Instant>,
    /// The secret of the run's first attempt; kept for all its retries even
    /// if the site rotates in between. A replay starts a run and re-pins.
    pub secret: Option<String>,
    /// An attempt is running right now.
    pub in_flight: bool,
    /// Bumped by a replay, so a result from an older run cannot overwrite the new one.
    pub run: u64,
}

impl Delivery {
    pub(super) fn new() -> Delivery {
        Delivery {
            status: DeliveryStatus::Pending,
            attempts: 0,
            run_attempts: 0,
            last_response_status: None,
            last_error: None,
            delivered_at: None,
            next_attempt_at: None,
            secret: None,
            in_flight: false,
            run: 0,
        }
    }
}

/// Where and how webhooks are sent.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    pub url: Option<String>,
    pub secret: String,
    /// When the current secret came into force (the sandbox's start for the configured one).
    pub rotated_at: Timestamp,
}

/// One delivery attempt handed to the worker.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub body: Arc<[u8]>,
    pub url: String,
    pub secret: String,
    /// Counting every attempt of the event, starting at 1.
    pub number: u32,
    pub run: u64,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered { status: u16 },
    Failed { status: Option<u16>, error: Option<String> },
}

impl Store {
    /// Records an event announcing a change; the worker picks it up.
    pub(super) fn emit(&mut self, now: Timestamp, kind: EventKind) {
        let (occurred_at, id) = self.fresh_key(now);
        let event = WebhookEvent { event_id: id, occurred_at, kind };
        let record = EventRecord {
            id,
            event_type: static_event_type(&event),
            occurred_at,
            body: event.to_body().into(),
            payload: serde_json::Value::Object(event.payload()),
            delivery: Delivery::new(),
        };
        self.undelivered.insert(record.key());
        self.events.insert(record);
    }
    /// Marks up to `max` due deliveries in flight and hands them out (oldest
    /// event first), plus when the next one not handed out is due.
    /// Nothing is due while there is no webhook URL.
    pub fn take_due_attempts(&mut self, clock: Instant, max: usize) -> (Vec<Attempt>, Option<Instant>) {
        let Some(url) = self.webhook.url.clone() else { return (Vec::new(), None) };
        let current_secret = self.webhook.secret.clone();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for &(_, id) in &self.undelivered {
            let event = self.events.rows.get_mut(&id).expect("undelivered events exist");
            let delivery = &mut event.delivery;
            if delivery.in_flight {
                continue;
            }
            let at = delivery.next_attempt_at.unwrap_or(clock);
            if at > clock || due.len() >= max {
                next = Some(next.map_or(at, |n| n.min(at)));
                continue;
            }
            delivery.in_flight = true;
            let secret = delivery.secret.get_or_insert_with(|| current_secret.clone()).clone();
            due.push(Attempt {
                event_id: id,
                event_type: event.event_type,
                body: event.body.clone(),
                url: url.clone(),
                secret,
                number: delivery.attempts + 1,
                run: delivery.run,
            });
        }
        (due, next)
    }

    /// Records how an attempt ended and schedules the retry, if any.
    pub fn finish_attempt(
        &mut self,
        attempt: &Attempt,
        outcome: Outcome,
        now: Timestamp,
        clock: Instant,
        scale_ppm: u64,
    ) {
        let Some(event) = self.events.get_mut(&attempt.event_id) else { return };
        let key = event.key();
        let delivery = &mut event.delivery;
        delivery.in_flight = false;
        delivery.attempts += 1;
        if attempt.run != delivery.run {
            // A replay restarted the delivery while this attempt ran; the new run decides.
            return;
        }
        delivery.run_attempts += 1;
        match outcome {
            Outcome::Delivered { status } => {
                delivery.status = DeliveryStatus::Delivered;
                delivery.last_response_status = Some(status);
                delivery.last_error = None;
                delivery.delivered_at = Some(now);
                delivery.next_attempt_at = None;
                self.undelivered.remove(&key);
            }
            Outcome::Failed { status, error } => {
                delivery.last_response_status = status;
                delivery.last_error = error;
                let retry = usize::try_from(delivery.run_attempts - 1).ok().and_then(|i| RETRY_SCHEDULE.get(i));
                match retry {
                    Some(&wait) if delivery.run_attempts < MAX_ATTEMPTS => {
                        delivery.status = DeliveryStatus::Failed;
                        delivery.next_attempt_at = Some(clock + scale_duration(wait, scale_ppm));
                    }
                    _ => {
                        delivery.status = DeliveryStatus::Dead;
                        delivery.next_attempt_at = None;
                        self.undelivered.remove(&key);
                    }
                }
            }
        }
    }

    /// Re-queues a FAILED, DEAD or DELIVERED event as a new run: PENDING, due
    /// now, a fresh budget of attempts, and the secret in force at its first attempt.
    pub fn replay(&mut self, id: Uuid) -> Result<(), StoreError> {
        let event = self.events.get_mut(&id).ok_or(StoreError::NotFound("event"))?;
        let delivery = &mut event.delivery;
        if delivery.status == DeliveryStatus::Pending {
            return Err(StoreError::ReplayOfPending);
        }
        delivery.status = DeliveryStatus::Pending;
        delivery.run += 1;
        delivery.run_attempts = 0;
        delivery.next_attempt_at = None;
        delivery.secret = None;
        self.undelivered.insert(event.key());
        Ok(())
    }
}

/// The event type as a `'static` name (every event the sandbox emits is a known type).
fn static_event_type(event: &WebhookEvent) -> &'static str {
    match &event.kind {
        EventKind::Intent { event, .. } => event.event_type(),
        EventKind::Withdrawal { event, .. } => event.event_type(),
        EventKind::Unknown { .. } => unreachable!("the sandbox only emits known event types"),
    }
}

/// Every event type the sandbox emits, for validating the `eventType` filter.
pub fn known_event_types() -> impl Iterator<Item = &'static str> {
    IntentEvent::ALL
        .into_iter()
        .map(IntentEvent::event_type)
        .chain(WithdrawalEvent::ALL.into_iter().map(WithdrawalEvent::event_type))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::fixtures::{create, store};

    #[test]
    fn a_failing_delivery_dies_after_eight_attempts_and_a_replay_revives_it() {
        let mut store = store(1);
        let id = create(&mut store);
        store.expire_intent(id, Utc::now()).unwrap();
        let clock = Instant::now();
        for n in 1..=MAX_ATTEMPTS {
            let (due, _) = store.take_due_attempts(clock + Duration::from_secs(3600), 10);
            assert_eq!(due.len(), 1, "attempt {n}");
            assert_eq!(due[0].number, n);
            store.finish_attempt(&due[0], Outcome::Failed { status: Some(500), error: None }, Utc::now(), clock, 1_000);
        }
        let event = store.events.newest_first().next().unwrap().clone();
        assert_eq!(event.delivery.status, DeliveryStatus::Dead);
        assert!(store.take_due_attempts(clock + Duration::from_secs(3600), 10).0.is_empty());
        assert!(store.undelivered.is_empty(), "a dead event is not looked at again");
        store.replay(event.id).unwrap();
        assert_eq!(store.replay(event.id), Err(StoreError::ReplayOfPending));
        let (due, _) = store.take_due_attempts(clock, 10);
        assert_eq!(due[0].number, MAX_ATTEMPTS + 1);
        store.finish_attempt(&due[0], Outcome::Delivered { status: 204 }, Utc::now(), clock, 1_000);
        let event = store.events.get(&event.id).unwrap();
        assert_eq!(event.delivery.status, DeliveryStatus::Delivered);
        assert_eq!(event.delivery.attempts, MAX_ATTEMPTS + 1);
        assert!(store.undelivered.is_empty(), "a delivered event is not looked at again");
    }
}
