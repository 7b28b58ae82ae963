-- pg-bootstrap.sql: roles, schemas and grants of the kooisv database (ARCHITECTURE.md
-- "PostgreSQL"). Idempotent: run on every start by deploy/local/lib.sh (kv_pg_bootstrap) as the
-- superuser, connected to database kooisv. Passwords are read from files, never passed on a
-- command line: run with psql -v secrets_dir=<dir holding pg-<role>.password>.
-- Each service role owns its schema, finds it first on its search_path and reaches nothing else.
-- The audit schema is services/audit/bootstrap.sql's, applied right after this file: it belongs
-- to kooisv_audit_owner (the audit service migrates as that role), the service role kooisv_audit
-- may only INSERT and SELECT, operators' kooisv_auditor may only read.
-- kooisv_audit_owner logs in only when pg-kooisv_audit_owner.password exists; without it the
-- role stays NOLOGIN (the audit migrations must then be applied by an administrator).
\set ON_ERROR_STOP on

\set pw_order `cat :'secrets_dir'/pg-kooisv_order.password`
\set pw_tenant `cat :'secrets_dir'/pg-kooisv_tenant.password`
\set pw_app `cat :'secrets_dir'/pg-kooisv_app.password`
\set pw_billing `cat :'secrets_dir'/pg-kooisv_billing.password`
\set pw_audit `cat :'secrets_dir'/pg-kooisv_audit.password`
\set pw_auditor `cat :'secrets_dir'/pg-kooisv_auditor.password`
\set pw_audit_owner `cat :'secrets_dir'/pg-kooisv_audit_owner.password 2>/dev/null || true`

SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['kooisv_order', 'kooisv_tenant', 'kooisv_app', 'kooisv_billing',
                    'kooisv_audit', 'kooisv_audit_owner', 'kooisv_auditor']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

ALTER ROLE kooisv_order NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_order';
ALTER ROLE kooisv_tenant NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_tenant';
ALTER ROLE kooisv_app NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_app';
ALTER ROLE kooisv_billing NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_billing';
ALTER ROLE kooisv_audit NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_audit';
ALTER ROLE kooisv_auditor NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_auditor';
SELECT :'pw_audit_owner' <> '' AS audit_owner_logs_in \gset
\if :audit_owner_logs_in
ALTER ROLE kooisv_audit_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN PASSWORD :'pw_audit_owner';
\else
ALTER ROLE kooisv_audit_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOLOGIN PASSWORD NULL;
\endif

-- Nobody but the listed roles connects; nobody creates objects in public.
REVOKE ALL ON DATABASE kooisv FROM PUBLIC;
GRANT CONNECT ON DATABASE kooisv TO kooisv_order, kooisv_tenant, kooisv_app, kooisv_billing,
    kooisv_audit, kooisv_audit_owner, kooisv_auditor;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION kooisv_order;
CREATE SCHEMA IF NOT EXISTS tenants AUTHORIZATION kooisv_tenant;
CREATE SCHEMA IF NOT EXISTS apps AUTHORIZATION kooisv_app;
CREATE SCHEMA IF NOT EXISTS billing AUTHORIZATION kooisv_billing;
ALTER SCHEMA orders OWNER TO kooisv_order;
ALTER SCHEMA tenants OWNER TO kooisv_tenant;
ALTER SCHEMA apps OWNER TO kooisv_app;
ALTER SCHEMA billing OWNER TO kooisv_billing;
REVOKE ALL ON SCHEMA orders, tenants, apps, billing FROM PUBLIC;

ALTER ROLE kooisv_order SET search_path = orders;
ALTER ROLE kooisv_tenant SET search_path = tenants;
ALTER ROLE kooisv_app SET search_path = apps;
ALTER ROLE kooisv_billing SET search_path = billing;
ALTER ROLE kooisv_auditor SET default_transaction_read_only = on;
