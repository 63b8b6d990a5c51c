-- The companion server's state in PostgreSQL, the same tables as SQLite's.
-- Times are unix milliseconds (BIGINT), money is integer minor units (BIGINT),
-- ids are UUID text. Uniqueness here is what makes duplicates harmless, also
-- across several server instances sharing this database.

CREATE TABLE accounts (
    user_id      TEXT PRIMARY KEY,
    available    BIGINT NOT NULL DEFAULT 0 CHECK (available >= 0),
    reserved     BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Last SSE event sequence number handed out for this user. Bumped with
    -- UPDATE ... RETURNING, so the row lock keeps it monotonic across instances.
    last_seq     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE deposits (
    intent_id        TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    reference_no     TEXT NOT NULL,
    deposit_url      TEXT NOT NULL,
    requested_amount BIGINT NOT NULL,
    amount           BIGINT NOT NULL,
    credited_amount  BIGINT,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    rejected_reason  TEXT,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deposits_by_user ON deposits (user_id, created_at DESC);
CREATE INDEX deposits_by_created ON deposits (created_at);

CREATE TABLE withdrawals (
    local_id         TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    withdrawal_id    TEXT UNIQUE,
    reference_no     TEXT,
    amount           BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    iban             TEXT NOT NULL,
    holder_name      TEXT NOT NULL,
    -- SUBMITTING (sent to Pientegra, answer unknown), REFUSED, or a Pientegra status.
    status           TEXT NOT NULL,
    rejected_reason  TEXT,
    balance_model    TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX withdrawals_by_user ON withdrawals (user_id, created_at DESC);
CREATE INDEX withdrawals_by_created ON withdrawals (created_at);
CREATE INDEX withdrawals_submitting ON withdrawals (status) WHERE status = 'SUBMITTING';

CREATE TABLE ledger_entries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_key     TEXT NOT NULL UNIQUE,
    user_id          TEXT NOT NULL,
    available_delta  BIGINT NOT NULL,
    reserved_delta   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger_entries (user_id, id);

CREATE TABLE webhook_inbox (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    subject_id   TEXT,
    body         BYTEA NOT NULL,
    -- pending (inside the applying transaction) | applied | stale | ignored | orphan | mismatch
    outcome      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    applied_at   BIGINT
);
CREATE INDEX inbox_orphans ON webhook_inbox (subject_id) WHERE outcome = 'orphan';

CREATE TABLE user_events (
    user_id     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
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
    locked_until     BIGINT NOT NULL,
    response_status  INTEGER,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, route, key)
);
