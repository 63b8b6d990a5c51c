//! Statements written once for every database. Placeholders are `$1`, `$2`,
//! … in the order they appear: PostgreSQL's numbered parameters, which SQLite
//! reads as well (rusqlite and sqlx bind them by position).

/// Events that arrived before the record they are about (`$1`: its id), in
/// the order they are replayed: as received, and events received in the same
/// millisecond (SQLite gives every webhook of one group commit the same
/// `received_at`) by `eventId`, so both databases replay them alike whatever
/// their plan returns first.
pub(super) const SELECT_ORPHANS: &str = "SELECT event_id, body FROM webhook_inbox
     WHERE subject_id = $1 AND outcome = 'orphan' ORDER BY received_at, event_id";

/// What a user's final-debit withdrawals not yet sent or ended hold back
/// (`$1`: the user): final-debit leaves the balance alone until `sent`, so a
/// request is checked against these too ([`super::procedure::check_funds`]).
pub(super) const SELECT_PENDING_FINAL_DEBIT: &str = "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM withdrawals
     WHERE user_id = $1 AND balance_model = 'final-debit' AND status IN ('SUBMITTING', 'PENDING_REVIEW', 'APPROVED')";

/// Writes what [`super::procedure::accept`] or [`super::procedure::refuse`]
/// changed of a withdrawal (`$6`: its `local_id`).
pub(super) const UPDATE_WITHDRAWAL: &str = "UPDATE withdrawals
     SET withdrawal_id = $1, reference_no = $2, status = $3, rejected_reason = $4, updated_at = $5 WHERE local_id = $6";

/// A user's balance (`$1`), read by the readers and inside write transactions.
pub(super) const SELECT_BALANCE: &str = "SELECT available, reserved FROM accounts WHERE user_id = $1";

/// A withdrawal by (user `$1`, idempotency key `$2`), read by the readers and inside write transactions.
pub(super) const SELECT_WITHDRAWAL_BY_KEY: &str =
    "SELECT * FROM withdrawals WHERE user_id = $1 AND idempotency_key = $2";
