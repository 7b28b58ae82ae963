-- The writer's group commit in one round trip (services/audit/journal.c). A writer that knows
-- the chain's head from its own last commit no longer reads it before appending: it sends the
-- lock, this check, its rows and the COMMIT together. When the head is not the one it expects
-- (another replica appended meanwhile, or the newest entries were removed) the check fails the
-- transaction with SQLSTATE KA001 and nothing is written; the writer then reads the head and
-- appends again. Called under the chain's advisory lock, so the head cannot move after the check.
CREATE FUNCTION expect_head(want_seq bigint, want_hash bytea) RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM (
        (SELECT seq, hash FROM audit.intents ORDER BY seq DESC LIMIT 1)
        UNION ALL
        (SELECT seq, hash FROM audit.outcomes ORDER BY seq DESC LIMIT 1)) h
     ORDER BY h.seq DESC LIMIT 1;
    IF head_seq IS DISTINCT FROM want_seq OR head_hash IS DISTINCT FROM want_hash THEN
        RAISE EXCEPTION 'audit chain head moved' USING ERRCODE = 'KA001',
            DETAIL = format('expected seq %s, found %s', want_seq, head_seq);
    END IF;
END $$;

REVOKE ALL ON FUNCTION expect_head(bigint, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION expect_head(bigint, bytea) TO kooisv_audit;
