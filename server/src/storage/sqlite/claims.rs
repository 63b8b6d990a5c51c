//! Idempotency claims in flight, kept in memory. One SQLite file serves one
//! server process, so a claim never has to outlive its process: a restart must
//! free every claim anyway, so that the retry of a request killed mid-flight
//! runs at once. Only finished answers are written to the file, by the same
//! transaction as the change they report where the route allows it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{OpenFlags, OptionalExtension};

use super::super::{IdempotencyScope, Result};
use super::open_direct;

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

/// A finished answer as stored: the request's fingerprint, the status and the body.
pub(super) type Answer = (String, i64, String);

/// Reads finished answers in the calling thread, on a read-only connection
/// of its own. A claim is checked before every idempotent request, and the
/// lookup (one indexed row, a few microseconds) costs less than a hand-off to
/// sqlx's SQLite thread and back. In WAL mode a reader never waits for the
/// writer, so this never blocks on a commit.
pub(super) struct Answers {
    conn: Mutex<rusqlite::Connection>,
}

impl Answers {
    pub(super) fn open(file: &Path) -> anyhow::Result<Answers> {
        let conn = open_direct(file, OpenFlags::SQLITE_OPEN_READ_ONLY, "stored answers")?;
        Ok(Answers { conn: Mutex::new(conn) })
    }

    /// The finished answer stored for `scope`, if any.
    pub(super) fn find(&self, scope: &IdempotencyScope<'_>) -> Result<Option<Answer>> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let answer = conn
            .prepare_cached(
                "SELECT request_hash, response_status, response_body FROM idempotency
                 WHERE user_id = ? AND route = ? AND key = ? AND state = 'done'",
            )?
            .query_row([scope.user_id, scope.route, scope.key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()?;
        Ok(answer)
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
