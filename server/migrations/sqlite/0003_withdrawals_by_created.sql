-- Reconciliation walks withdrawals by creation time.
CREATE INDEX withdrawals_by_created ON withdrawals (created_at);
