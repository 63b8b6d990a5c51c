-- The presence id of the instance that claimed an Idempotency-Key
-- (server/src/storage/presence.rs): while that instance's presence lock is
-- free, another instance takes the claim over before its lease ends. NULL
-- for claims made before this column: their lease decides.
ALTER TABLE idempotency ADD COLUMN claimant INTEGER;
