//! Idempotency keys of the create calls: one key per attempt, made before
//! its first request and kept in sessionStorage, so a retry (after a reload,
//! or a click after a network failure) sends the same key and can never
//! create a second deposit or withdrawal. Once the attempt's answer is known
//! the key is dropped, and the next attempt gets a new one.

use super::Session;
use crate::api::ApiFailure;

/// The key of the attempt at a create call of `kind` (`"deposit"`,
/// `"withdrawal"`) with this request body (`fingerprint`): the stored one
/// while its answer is not known, else a new one. A different body gets a
/// new key: reusing one with another body is an error by the
/// Idempotency-Key draft.
pub fn for_attempt(session: &impl Session, kind: &str, fingerprint: &str) -> String {
    let storage_key = storage_key(kind);
    let stored = session.get(&storage_key);
    if let Some((key, stored_fingerprint)) = stored.as_deref().and_then(|s| s.split_once('\n')) {
        if stored_fingerprint == fingerprint {
            return key.to_owned();
        }
    }
    let key = session.new_key();
    session.set(&storage_key, &format!("{key}\n{fingerprint}"));
    key
}

/// Drops the key of `kind` once `answer` is the server's last word for it:
/// the record, or a refusal a retry cannot change. A transient failure keeps
/// it for the retry.
pub fn settle<T>(session: &impl Session, kind: &str, answer: &Result<T, ApiFailure>) {
    if answer.as_ref().err().is_none_or(|failure| !failure.is_transient()) {
        session.remove(&storage_key(kind));
    }
}

fn storage_key(kind: &str) -> String {
    format!("idem:{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fake::Fake;

    const ANSWERED: Result<(), ApiFailure> = Ok(());

    #[test]
    fn the_key_of_an_unanswered_attempt_is_kept_for_the_same_body() {
        let session = Fake::new();
        let first = for_attempt(&session, "deposit", "ayse|25000");
        assert_eq!(for_attempt(&session, "deposit", "ayse|25000"), first);
        assert_eq!(session.stored("idem:deposit").as_deref(), Some(format!("{first}\nayse|25000").as_str()));
    }

    #[test]
    fn another_body_or_another_kind_gets_its_own_key() {
        let session = Fake::new();
        let deposit = for_attempt(&session, "deposit", "ayse|25000");
        let withdrawal = for_attempt(&session, "withdrawal", "ayse|25000");
        assert_ne!(withdrawal, deposit);
        assert_eq!(for_attempt(&session, "deposit", "ayse|25000"), deposit, "the other kind left it alone");
        assert_ne!(for_attempt(&session, "deposit", "ayse|30000"), deposit);
    }

    #[test]
    fn only_a_transient_failure_keeps_the_key() {
        let session = Fake::new();
        let key = for_attempt(&session, "deposit", "body");
        settle(&session, "deposit", &Err::<(), _>(ApiFailure::Network));
        assert_eq!(for_attempt(&session, "deposit", "body"), key, "kept after a network failure");
        let busy = ApiFailure::Api { status: 503, code: "provider_unavailable".into() };
        settle(&session, "deposit", &Err::<(), _>(busy));
        assert_eq!(for_attempt(&session, "deposit", "body"), key, "kept while the provider is away");

        let refused = ApiFailure::Api { status: 400, code: "amount_below_min".into() };
        settle(&session, "deposit", &Err::<(), _>(refused));
        let after_refusal = for_attempt(&session, "deposit", "body");
        assert_ne!(after_refusal, key, "a refusal is final for its key");
        settle(&session, "deposit", &ANSWERED);
        assert_eq!(session.stored("idem:deposit"), None);
        assert_ne!(for_attempt(&session, "deposit", "body"), after_refusal, "an answer is final too");
    }
}
