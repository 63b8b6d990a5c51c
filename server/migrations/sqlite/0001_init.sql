-- The companion server's state. Times are unix milliseconds, money is integer
-- minor units, ids are UUID text. Uniqueness here is what makes duplicates harmless.

CREATE TABLE accounts (
    user_id      TEXT PRIMARY KEY,
    available    INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Last SSE event sequence number handed out for this user.
    last_seq     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE deposits (
    intent_id        TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    reference_no     TEXT NOT NULL,
    deposit_url      TEXT NOT NULL,
    requested_amount INTEGER NOT NULL,
    amount           INTEGER NOT NULL,
    credited_amount  INTEGER,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    rejected_reason  TEXT,
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deposits_by_user ON deposits (user_id, created_at DESC);
CREATE INDEX deposits_by_created ON deposits (created_at);

CREATE TABLE withdrawals (
    local_id         TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    withdrawal_id    TEXT UNIQUE,
    reference_no     TEXT,
    amount           INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    iban             TEXT NOT NULL,
    holder_name      TEXT NOT NULL,
    -- SUBMITTING (sent to Pientegra, answer unknown), REFUSED, or a Pientegra status.
    status           TEXT NOT NULL,
    rejected_reason  TEXT,
    balance_model    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX withdrawals_by_user ON withdrawals (user_id, created_at DESC);
CREATE INDEX withdrawals_submitting ON withdrawals (status) WHERE status = 'SUBMITTING';

CREATE TABLE ledger_entries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    business_key     TEXT NOT NULL UNIQUE,
    user_id          TEXT NOT NULL,
    available_delta  INTEGER NOT NULL,
    reserved_delta   INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX ledger_by_user ON ledger_entries (user_id, id);

CREATE TABLE webhook_inbox (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    subject_id   TEXT,
    body         BLOB NOT NULL,
    -- applied | stale | ignored | orphan | mismatch
    outcome      TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    applied_at   INTEGER
);
CREATE INDEX inbox_orphans ON webhook_inbox (subject_id) WHERE outcome = 'orphan';

CREATE TABLE user_events (
    user_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
);

CREATE TABLE idempotency (
    user_id          TEXT NOT NULL,
    route            TEXT NOT NULL,
    key              TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    -- in_flight | done
    state            TEXT NOT NULL,
    -- An in-flight claim older than this was abandoned (a crash) and may be taken over.
    locked_until     INTEGER NOT NULL,
    response_status  INTEGER,
    response_body    TEXT,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, route, key)
);
