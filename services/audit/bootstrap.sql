-- Audit roles and schema: the fragment the local runner and the test harness run (as a
-- superuser, connected to database kooisv) after creating the login roles with their passwords:
--   kooisv_audit_owner  owns schema audit; the audit service migrates as this role
--                       (KOOISV_PG_MIGRATE_DSN)
--   kooisv_audit        the service's own role (KOOISV_PG_DSN): INSERT and SELECT on the trail
--   kooisv_auditor      read-only SELECT for operators' tools
-- Idempotent: safe to run on every start. Table grants live in the migrations, which the owner
-- applies, so that a new table never ships without its grants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'audit') THEN
        CREATE SCHEMA audit AUTHORIZATION kooisv_audit_owner;
    END IF;
END
$$;
ALTER SCHEMA audit OWNER TO kooisv_audit_owner;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO kooisv_audit, kooisv_auditor;
-- Neither the service nor the auditors may create objects anywhere.
REVOKE CREATE ON SCHEMA audit FROM kooisv_audit, kooisv_auditor;
ALTER ROLE kooisv_audit_owner SET search_path = audit;
ALTER ROLE kooisv_audit SET search_path = audit;
ALTER ROLE kooisv_auditor SET search_path = audit;
-- The service role must not be able to lift the append-only triggers or own anything.
ALTER ROLE kooisv_audit NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE kooisv_auditor NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE kooisv_audit_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
