-- The tables a new deposit writes, clustered on their primary keys (WITHOUT
-- ROWID). A rowid table with a TEXT primary key is two B-trees, the rows by
-- rowid and the key's own index, and an insert writes a page of each. A new
-- deposit wrote ten B-tree pages in its one durable commit; clustered, it
-- writes seven, and every one of them is synced to the log before
-- `POST /api/deposits` answers.
-- The columns, constraints and secondary indexes are unchanged.

CREATE TABLE accounts_clustered (
    user_id      TEXT PRIMARY KEY,
    available    INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Last SSE event sequence number handed out for this user.
    last_seq     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO accounts_clustered SELECT user_id, available, reserved, last_seq FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_clustered RENAME TO accounts;

CREATE TABLE deposits_clustered (
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
) WITHOUT ROWID;
INSERT INTO deposits_clustered
    SELECT intent_id, user_id, reference_no, deposit_url, requested_amount, amount, credited_amount, currency,
           status, rejected_reason, expires_at, created_at, updated_at
    FROM deposits;
DROP TABLE deposits;
ALTER TABLE deposits_clustered RENAME TO deposits;
CREATE INDEX deposits_by_user ON deposits (user_id, created_at DESC);
CREATE INDEX deposits_by_created ON deposits (created_at);
CREATE INDEX deposits_reserved ON deposits (created_at) WHERE status = 'RESERVED';

CREATE TABLE user_events_clustered (
    user_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
INSERT INTO user_events_clustered SELECT user_id, seq, name, data, created_at FROM user_events;
DROP TABLE user_events;
ALTER TABLE user_events_clustered RENAME TO user_events;

CREATE TABLE idempotency_clustered (
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
) WITHOUT ROWID;
INSERT INTO idempotency_clustered
    SELECT user_id, route, key, request_hash, state, locked_until, response_status, response_body, created_at
    FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_clustered RENAME TO idempotency;
