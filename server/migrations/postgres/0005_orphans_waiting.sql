-- Whether webhooks about a subject (an intent) wait in the inbox as orphans.
-- A function, so that a statement can ask after taking the subject's lock:
-- every query a VOLATILE PL/pgSQL function runs sees what committed before
-- it started, where a plain subquery sees what committed before its
-- statement began (storage/postgres.rs, RECORD_NEW_DEPOSIT).
CREATE FUNCTION orphans_waiting(subject TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM webhook_inbox WHERE subject_id = subject AND outcome = 'orphan');
END
$$;
