#!/bin/bash
# kooisv-db-init: create or update the kooisv database, its roles, passwords and schemas on a
# PostgreSQL server (the compose `postgres` service or a managed one). Idempotent: run on every
# deployment (compose runs it before the services start; on Kubernetes run it as a Job). It applies
# deploy/local/pg-bootstrap.sql and services/audit/bootstrap.sql, baked into the dbinit image under
# /usr/share/kooisv/sql; each service applies its own migrations when it starts.
#
# Environment (libpq's own variables work too):
#   PGHOST (default postgres) PGPORT (5432) PGUSER (administrator, default postgres)
#   PGSSLMODE (default verify-full) PGSSLROOTCERT (default /run/secrets/pg-ca.crt)
#   KOOISV_PG_ADMIN_PASSWORD_FILE  administrator's password (default /run/secrets/pg-super.password)
#   KOOISV_SECRETS_DIR             folder with pg-kooisv_<role>.password files (default /run/secrets)
#   KOOISV_DB_INIT_WAIT            seconds to wait for the server (default 60)
set -euo pipefail
umask 077

sql_dir=${KOOISV_SQL_DIR:-/usr/share/kooisv/sql}
secrets=${KOOISV_SECRETS_DIR:-/run/secrets}
db=kooisv # pg-bootstrap.sql names it
export PGHOST=${PGHOST:-postgres} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGSSLMODE=${PGSSLMODE:-verify-full} PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
export PGSSLROOTCERT=${PGSSLROOTCERT:-$secrets/pg-ca.crt}
export PGAPPNAME=kooisv-db-init
unset PGPASSWORD PGDATABASE

die() {
    echo "db-init: $*" >&2
    exit 1
}

# password_ok: the spec §8 password rule, shared with the other database script.
. "${KOOISV_SCRIPT_LIB:-/usr/local/lib/kooisv}/password-rules.sh"

admin_pw_file=${KOOISV_PG_ADMIN_PASSWORD_FILE:-$secrets/pg-super.password}
[ -r "$admin_pw_file" ] || die "cannot read the administrator password file $admin_pw_file"
for r in kooisv_order kooisv_tenant kooisv_app kooisv_billing kooisv_audit kooisv_auditor \
    kooisv_audit_owner; do
    f=$secrets/pg-$r.password
    if [ "$r" = kooisv_audit_owner ] && [ ! -e "$f" ]; then
        echo "db-init: no $f: kooisv_audit_owner stays NOLOGIN (apply the audit migrations by hand)"
        continue
    fi
    [ -r "$f" ] || die "cannot read $f"
    why=$(password_ok "$(head -n 1 "$f")" "$r") || die "$f: weak password: $why"
done
[ -r "$sql_dir/pg-bootstrap.sql" ] || die "missing $sql_dir/pg-bootstrap.sql"

# The password reaches libpq through a private pgpass file, never a command line or environment.
PGPASSFILE=$(mktemp)
export PGPASSFILE
trap 'rm -f "$PGPASSFILE"' EXIT
printf '*:*:*:%s:%s\n' "$(printf '%s' "$PGUSER" | sed 's/[\\:]/\\&/g')" \
    "$(head -n 1 "$admin_pw_file" | sed 's/[\\:]/\\&/g')" >"$PGPASSFILE"

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Wall-clock bound: one attempt may itself take seconds (DNS, connect_timeout).
wait_s=${KOOISV_DB_INIT_WAIT:-60}
while :; do
    if err=$(psql_admin -d postgres -Atc 'SELECT 1' 2>&1 >/dev/null); then break; fi
    ((SECONDS < wait_s)) || die "PostgreSQL at $PGHOST:$PGPORT not reachable after ${wait_s}s: $err"
    sleep 1
done
echo "db-init: connected to $PGHOST:$PGPORT as $PGUSER (sslmode=$PGSSLMODE)"

psql_admin -d postgres -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
psql_admin -d "$db" -v secrets_dir="$secrets" -f "$sql_dir/pg-bootstrap.sql" >/dev/null
echo "db-init: roles, passwords and schemas up to date (pg-bootstrap.sql)"
if [ -r "$sql_dir/audit-bootstrap.sql" ]; then
    psql_admin -d "$db" -f "$sql_dir/audit-bootstrap.sql" >/dev/null
    echo "db-init: audit schema up to date (services/audit/bootstrap.sql)"
fi
echo "db-init: done"
