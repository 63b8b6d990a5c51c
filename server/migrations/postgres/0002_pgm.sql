-- The Mia-Platform Payment Gateway Manager facade (`/v3/pientegra`): which
-- intents and withdrawals PGM started, and the shop notifications owed for them.
-- Times are unix milliseconds (BIGINT). The Pientegra records themselves stay in
-- `deposits` and `withdrawals`; the notifier only reads their `status`.

CREATE TABLE pgm_payments (
    -- The Pientegra intentId (PAYMENT) or withdrawalId (REFUND): PGM's paymentId.
    payment_id            TEXT PRIMARY KEY,
    -- PAYMENT | REFUND
    action                TEXT NOT NULL CHECK (action IN ('PAYMENT', 'REFUND')),
    -- The shop's id; for a refund, the one of the refunded payment.
    shop_transaction_id   TEXT NOT NULL,
    -- For a refund: the payment_id it refunds.
    refund_of             TEXT,
    external_user_id      TEXT NOT NULL,
    amount                BIGINT NOT NULL,
    currency              TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    -- The Pientegra status the notifier last looked at (NULL: never).
    seen_status           TEXT,
    -- 1 once the Pientegra status can no longer change and its notification is queued or sent.
    settled               INTEGER NOT NULL DEFAULT 0,
    -- The PGM status (ACCEPTED | FAILED | PENDING) the shop last acknowledged.
    last_notified_status  TEXT,
    -- A queued notification: the PGM status and the JSON status object to POST.
    pending_status        TEXT,
    pending_body          TEXT,
    notify_attempts       INTEGER NOT NULL DEFAULT 0,
    next_notify_at        BIGINT,
    last_notify_error     TEXT
);
-- One payment per shop transaction: a repeated shopTransactionId finds this row.
CREATE UNIQUE INDEX pgm_payments_shop_tx ON pgm_payments (shop_transaction_id) WHERE action = 'PAYMENT';
CREATE INDEX pgm_payments_refunds ON pgm_payments (refund_of) WHERE refund_of IS NOT NULL;
CREATE INDEX pgm_payments_open ON pgm_payments (payment_id) WHERE settled = 0;
CREATE INDEX pgm_payments_due ON pgm_payments (next_notify_at) WHERE pending_status IS NOT NULL;
