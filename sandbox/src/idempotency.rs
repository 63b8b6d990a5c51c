//! `Idempotency-Key` on the creates: the first response is kept for 24 hours
//! per (API key, endpoint, key) and replayed for a retry of the same request.
//!
//! Bodies are compared semantically, as parsed JSON values: key order and
//! whitespace do not make two requests different, but a value does (`100`
//! and `"100"` are different bodies, as are `100` and `100.0`).
//!
//! Only successful responses are kept. A request refused by validation never
//! claims its key (nothing started), and a 5xx such as `no_account_available`
//! releases it, so the contract's advice (retry 5xx with the same key and
//! body) can succeed once the cause is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use http::StatusCode;
use pientegra_shared::ids::IdempotencyKey;
use serde_json::Value;
use tokio::time::Instant;

/// How long a response is kept.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Whose key it is and where it was used.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub api_key: String,
    pub endpoint: &'static str,
    pub key: IdempotencyKey,
}

/// A response kept for replay.
#[derive(Clone, Debug)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug)]
enum Entry {
    InFlight { body: Value },
    Done { body: Value, response: StoredResponse, expires: Instant },
}

/// How often expired responses are swept out. Between sweeps an expired one
/// is still ignored: a claim checks the expiry of what it finds.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Every key in use.
#[derive(Clone, Debug, Default)]
pub struct Idempotency {
    entries: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    by_scope: HashMap<Scope, Entry>,
    /// When the next claim sweeps: one sweep visits every key, so it runs
    /// once a minute, not on every claim.
    next_sweep: Option<Instant>,
}

impl Entries {
    /// Drops the responses past their retention, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.by_scope.retain(|_, entry| !entry.expired(now));
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        matches!(self, Entry::Done { expires, .. } if *expires <= now)
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is new: run the request, then [`KeyGuard::complete`].
    Fresh(KeyGuard),
    /// The same request already ran: answer this again.
    Replay(StoredResponse),
}

/// Why a key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// The key was used with another body.
    DifferentBody,
    /// The first request with this key is still running.
    InFlight,
}

impl Idempotency {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `scope` for a request with `body`.
    ///
    /// A different body is reported before "still running": retrying later
    /// cannot fix it, so it is the more useful answer.
    pub fn claim(&self, scope: Scope, body: Value) -> Result<Claim, Conflict> {
        let now = Instant::now();
        let mut entries = self.entries();
        entries.sweep(now);
        let entries = &mut entries.by_scope;
        if entries.get(&scope).is_some_and(|entry| entry.expired(now)) {
            entries.remove(&scope);
        }
        match entries.get(&scope) {
            Some(Entry::InFlight { body: first }) | Some(Entry::Done { body: first, .. }) if *first != body => {
                Err(Conflict::DifferentBody)
            }
            Some(Entry::InFlight { .. }) => Err(Conflict::InFlight),
            Some(Entry::Done { response, .. }) => Ok(Claim::Replay(response.clone())),
            None => {
                entries.insert(scope.clone(), Entry::InFlight { body });
                Ok(Claim::Fresh(KeyGuard { owner: self.clone(), scope: Some(scope) }))
            }
        }
    }
}

/// Holds a claimed key while its request runs; dropped without
/// [`KeyGuard::complete`] (an error, a cancelled request) it frees the key.
#[derive(Debug)]
pub struct KeyGuard {
    owner: Idempotency,
    scope: Option<Scope>,
}

impl KeyGuard {
    /// Keeps `response` for replays of this key.
    pub fn complete(mut self, response: StoredResponse) {
        if let Some(scope) = self.scope.take() {
            let mut entries = self.owner.entries();
            if let Some(entry) = entries.by_scope.get_mut(&scope) {
                let body = match entry {
                    Entry::InFlight { body } | Entry::Done { body, .. } => std::mem::take(body),
                };
                *entry = Entry::Done { body, response, expires: Instant::now() + RETENTION };
            }
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some(scope) = self.scope.take() {
            self.owner.entries().by_scope.remove(&scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            api_key: "k".into(),
            endpoint: "deposits",
            key: IdempotencyKey::parse("0192f1c4-8b7e-7c3a-9f1e-2b7d8c9a0e11").unwrap(),
        }
    }

    #[test]
    fn a_key_runs_once_then_replays() {
        let idem = Idempotency::default();
        let body = serde_json::json!({"a": 1, "b": "x"});
        let Ok(Claim::Fresh(guard)) = idem.claim(scope(), body.clone()) else { panic!("fresh") };
        assert_eq!(idem.claim(scope(), body.clone()).unwrap_err(), Conflict::InFlight);
        assert_eq!(idem.claim(scope(), serde_json::json!({"a": 2})).unwrap_err(), Conflict::DifferentBody);
        guard.complete(StoredResponse { status: StatusCode::CREATED, body: Bytes::from_static(b"{}") });
        let reordered: Value = serde_json::from_str(r#"{ "b": "x", "a": 1 }"#).unwrap();
        assert!(matches!(idem.claim(scope(), reordered), Ok(Claim::Replay(r)) if r.status == StatusCode::CREATED));
        assert_eq!(idem.claim(scope(), serde_json::json!({"a": "1", "b": "x"})).unwrap_err(), Conflict::DifferentBody);
    }

    #[test]
    fn an_abandoned_claim_frees_the_key() {
        let idem = Idempotency::default();
        let Ok(Claim::Fresh(guard)) = idem.claim(scope(), Value::Null) else { panic!("fresh") };
        drop(guard);
        assert!(matches!(idem.claim(scope(), Value::Null), Ok(Claim::Fresh(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_response_expires_after_its_retention_swept_or_not() {
        let idem = Idempotency::default();
        let other = Scope { endpoint: "withdrawals", ..scope() };
        for scope in [scope(), other.clone()] {
            let Ok(Claim::Fresh(guard)) = idem.claim(scope, Value::Null) else { panic!("fresh") };
            guard.complete(StoredResponse { status: StatusCode::CREATED, body: Bytes::from_static(b"{}") });
        }
        tokio::time::advance(RETENTION - Duration::from_secs(1)).await;
        assert!(matches!(idem.claim(scope(), Value::Null), Ok(Claim::Replay(_))));
        // That claim swept; the next sweep is a minute away, and the response expires before it.
        tokio::time::advance(Duration::from_secs(2)).await;
        let Ok(Claim::Fresh(guard)) = idem.claim(scope(), Value::Null) else { panic!("expired, so fresh") };
        drop(guard);
        assert_eq!(idem.entries().by_scope.len(), 1, "the other one waits for the sweep");
        tokio::time::advance(SWEEP_EVERY).await;
        let _fresh = idem.claim(scope(), Value::Null).unwrap();
        assert!(!idem.entries().by_scope.contains_key(&other), "swept");
    }
}
