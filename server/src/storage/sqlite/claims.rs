//! Idempotency claims in flight, kept in memory. One SQLite file serves one
//! server process, so a claim never has to outlive its process: a restart must
//! free every claim anyway, so that the retry of a request killed mid-flight
//! runs at once. Only finished answers are written to the file, by the same
//! transaction as the change they report where the route allows it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use super::super::IdempotencyScope;

type Key = (String, String, String);

struct Claim {
    request_hash: String,
    locked_until: i64,
}

/// What claiming a key in memory found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// Ours now (the file may still hold a finished answer: check it).
    Claimed,
    /// Another request with this key and another body is running.
    Mismatch,
    /// A request with this key and this body is running.
    InFlight,
}

#[derive(Default)]
pub(super) struct Claims {
    in_flight: Mutex<HashMap<Key, Claim>>,
}

fn key(scope: &IdempotencyScope<'_>) -> Key {
    (scope.user_id.to_owned(), scope.route.to_owned(), scope.key.to_owned())
}

impl Claims {
    /// Claims `scope` until `now + lease_ms` unless a live claim holds it. A
    /// claim past its lease belongs to a request that was dropped: take it over.
    pub(super) fn take(&self, scope: &IdempotencyScope<'_>, request_hash: &str, now: i64, lease_ms: i64) -> Taken {
        let mut in_flight = self.in_flight.lock().expect("claims");
        let claim = Claim { request_hash: request_hash.to_owned(), locked_until: now + lease_ms };
        match in_flight.entry(key(scope)) {
            Entry::Occupied(held) if held.get().locked_until > now => {
                if held.get().request_hash == request_hash {
                    Taken::InFlight
                } else {
                    Taken::Mismatch
                }
            }
            Entry::Occupied(mut expired) => {
                expired.insert(claim);
                Taken::Claimed
            }
            Entry::Vacant(free) => {
                free.insert(claim);
                Taken::Claimed
            }
        }
    }

    /// Lets go of a claim (after its answer is committed, or to let a retry run).
    pub(super) fn forget(&self, scope: &IdempotencyScope<'_>) {
        self.in_flight.lock().expect("claims").remove(&key(scope));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: IdempotencyScope<'static> = IdempotencyScope { user_id: "u", route: "deposits", key: "k" };

    #[test]
    fn a_live_claim_holds_until_forgotten_or_expired() {
        let claims = Claims::default();
        assert_eq!(claims.take(&SCOPE, "h", 0, 100), Taken::Claimed);
        assert_eq!(claims.take(&SCOPE, "h", 50, 100), Taken::InFlight);
        assert_eq!(claims.take(&SCOPE, "other", 50, 100), Taken::Mismatch);
        assert_eq!(claims.take(&SCOPE, "other", 100, 100), Taken::Claimed, "an expired claim is taken over");
        claims.forget(&SCOPE);
        assert_eq!(claims.take(&SCOPE, "h", 101, 100), Taken::Claimed);
    }
}
