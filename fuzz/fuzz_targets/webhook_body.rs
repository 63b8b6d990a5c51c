//! Webhook bodies are parsed after the signature check, but a leaked or
//! rotated-out secret, or a bug upstream, still puts arbitrary JSON here.
//! Properties: `WebhookEvent::parse` never panics, and an event it accepts
//! serializes (`to_body`, what the sandbox and reconciliation produce) to a
//! body that parses back to the same event.

#![no_main]

use chrono::SubsecRound;
use libfuzzer_sys::fuzz_target;
use pientegra_shared::event::{EventKind, WebhookEvent};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = WebhookEvent::parse(data) else { return };
    let again = WebhookEvent::parse(&event.to_body())
        .unwrap_or_else(|e| panic!("to_body of an accepted event is refused: {e}"));
    assert!(same_event(&again, &event), "{again:?}\n  is not\n{event:?}");
});

/// Equality up to the two known losses of `to_body`: the parser accepts any
/// RFC 3339 precision but `to_body` writes milliseconds, so a finer
/// `occurredAt` is truncated; and serde_json parses floats fast rather than
/// exactly, so a float in an unknown type's payload may move by an ulp.
/// Everything else, amounts included, must survive exactly.
fn same_event(after: &WebhookEvent, before: &WebhookEvent) -> bool {
    after.event_id == before.event_id
        && after.occurred_at == before.occurred_at.trunc_subsecs(3)
        && match (&after.kind, &before.kind) {
            (EventKind::Unknown { event_type: a, payload: p }, EventKind::Unknown { event_type: b, payload: q }) => {
                a == b && same_json(&Value::Object(p.clone()), &Value::Object(q.clone()))
            }
            (a, b) => a == b,
        }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 2)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        (a, b) => a == b,
    }
}
