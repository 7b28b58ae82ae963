-- The audit trail (ARCHITECTURE.md "Audit and replay"). Applied as kooisv_audit_owner, the owner
-- of schema audit; the service (kooisv_audit) may only INSERT and SELECT the trail, operators'
-- tools (kooisv_auditor) only SELECT. Intents and outcomes share one gapless sequence and one
-- hash chain: hash = SHA-256(prev_hash || canonical content) here, keyed (HMAC-SHA256) from
-- migration 002 on, see services/audit/entry.h.

CREATE TABLE intents (
    seq           bigint  PRIMARY KEY CHECK (seq > 0),
    request_id    text    NOT NULL UNIQUE,
    trace_id      text    NOT NULL,
    received_ms   bigint  NOT NULL,          -- gateway clock, UTC ms
    caller_kind   text    NOT NULL,          -- basic | kit | operator | system
    caller_id     text    NOT NULL,          -- key id or operator token name
    event_type    text    NOT NULL,          -- activity, sync name or admin.<action>
    resources     jsonb   NOT NULL,          -- [{"kind":..,"id":..}] in request order
    source_addr   text    NOT NULL,
    test_flag     boolean NOT NULL,
    nonce         text    NOT NULL,          -- not secret: it travels in the query string
    nonce_ts_ms   bigint  NOT NULL,
    reject_reason text    NOT NULL,          -- '' = accepted for execution
    reject_code   text    NOT NULL,
    prev_hash     bytea   NOT NULL CHECK (length(prev_hash) = 32),
    hash          bytea   NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX intents_received ON intents (received_ms);
CREATE INDEX intents_event ON intents (event_type, seq);
CREATE INDEX intents_caller ON intents (caller_id, seq);
CREATE INDEX intents_source ON intents (source_addr, seq);
CREATE INDEX intents_resources ON intents USING gin (resources jsonb_path_ops);

-- One row per request that got an answer; appended, never an update of the intent.
CREATE TABLE outcomes (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    request_id   text   NOT NULL UNIQUE,
    recorded_ms  bigint NOT NULL,            -- audit service clock, UTC ms
    result_code  text   NOT NULL,
    result_msg   text   NOT NULL,
    latency_us   bigint NOT NULL,
    http_status  bigint NOT NULL,
    prev_hash    bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash         bytea  NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX outcomes_result ON outcomes (result_code, seq);

-- Replay protection: a nonce is unique per caller key. Not part of the trail: rows older than
-- the signature window (plus a margin) are pruned by the service.
CREATE TABLE nonces (
    caller_id    text   NOT NULL,
    nonce        text   NOT NULL,
    request_id   text   NOT NULL,
    nonce_ts_ms  bigint NOT NULL,
    recorded_ms  bigint NOT NULL,
    PRIMARY KEY (caller_id, nonce)
);
CREATE INDEX nonces_recorded ON nonces (recorded_ms);

-- The whole chain in order, for verification and for auditors reading with SQL.
CREATE VIEW chain AS
    SELECT seq, 'intent'::text AS kind, request_id, received_ms AS at_ms, prev_hash, hash
      FROM intents
    UNION ALL
    SELECT seq, 'outcome'::text, request_id, recorded_ms, prev_hash, hash
      FROM outcomes;

-- Refuse every change to the trail, whoever asks (the owner included). Disabling these triggers
-- needs the owner or a superuser, and verify does NOT notice by itself what such a role does
-- with plain SHA-256: it can rewrite entries and re-hash the chain after them. What stops that
-- is the key of migration 002 (the database never sees it) and a chain head kept outside the
-- database (verify --head), which also shows the newest entries removed.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on %.% refused',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER intents_append_only BEFORE UPDATE OR DELETE ON intents
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER intents_no_truncate BEFORE TRUNCATE ON intents
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER outcomes_append_only BEFORE UPDATE OR DELETE ON outcomes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER outcomes_no_truncate BEFORE TRUNCATE ON outcomes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

REVOKE ALL ON intents, outcomes, nonces, chain FROM PUBLIC;
GRANT SELECT, INSERT ON intents, outcomes TO kooisv_audit;
GRANT SELECT, INSERT, DELETE ON nonces TO kooisv_audit;
GRANT SELECT ON chain, schema_migrations TO kooisv_audit;
GRANT SELECT ON intents, outcomes, chain, schema_migrations TO kooisv_auditor;
