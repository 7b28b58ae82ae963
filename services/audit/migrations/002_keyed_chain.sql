-- The chain is keyed from here on: hash = HMAC-SHA256(KOOISV_AUDIT_CHAIN_KEY, prev_hash ||
-- canonical content), with a key the database never sees (services/audit/entry.h, epoch.h).
-- Entries already in the trail keep their plain SHA-256 hashes; keyed_from is the first seq
-- after them (1 on a fresh trail). Writers are held off while it is taken: stop the audit
-- services of the earlier version before migrating, since what they append afterwards is not
-- keyed and verify reports it as modified. kooisv-audit --migrate seals the row once with the
-- key (mac); the service refuses to serve while it is unsealed or sealed with another key.
LOCK TABLE intents, outcomes IN SHARE MODE;

CREATE TABLE chain_epoch (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),   -- a single row
    keyed_from  bigint  NOT NULL CHECK (keyed_from > 0),
    mac         bytea   CHECK (mac IS NULL OR length(mac) = 32)
);
INSERT INTO chain_epoch (keyed_from) SELECT coalesce(max(seq), 0) + 1 FROM chain;

-- The row is sealed once (mac from NULL to a value, nothing else changes) and never removed.
CREATE FUNCTION chain_epoch_seal_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.mac IS NULL AND NEW.mac IS NOT NULL
       AND NEW.keyed_from = OLD.keyed_from AND NEW.one = OLD.one THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit chain epoch is sealed once: % on %.% refused',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER chain_epoch_sealed BEFORE UPDATE OR DELETE ON chain_epoch
    FOR EACH ROW EXECUTE FUNCTION chain_epoch_seal_once();
CREATE TRIGGER chain_epoch_no_truncate BEFORE TRUNCATE ON chain_epoch
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

REVOKE ALL ON chain_epoch FROM PUBLIC;
GRANT SELECT ON chain_epoch TO kooisv_audit, kooisv_auditor;
