#!/bin/bash
# Entry point of the kooisv/postgres image (Debian's PostgreSQL 15). It runs as the postgres user
# only (never root) and understands the official postgres image's variables, so either image works
# in docker-compose.yml:
#   POSTGRES_USER (default postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required on first
#   start; >= 8 characters, >= 2 character classes, not the user name), POSTGRES_DB (optional extra
#   database), POSTGRES_INITDB_ARGS, PGDATA, scripts in /docker-entrypoint-initdb.d (*.sh, *.sql)
#   run once on an empty data directory.
# Additions: POSTGRES_TLS_CERT_FILE + POSTGRES_TLS_KEY_FILE turn TLS on, and then only TLS
# connections are accepted over the network (POSTGRES_TLS_OPTIONAL=1 also allows plain ones).
# pg_hba.conf is rewritten on every start: local socket by peer (OS user postgres -> POSTGRES_USER),
# network by SCRAM-SHA-256 password only. The data directory is a volume: nothing secret is in the
# image.
set -euo pipefail

die() {
    echo "postgres-entrypoint: $*" >&2
    exit 1
}

# NAME from NAME or from the file NAME_FILE points at (trailing newlines dropped).
file_env() {
    local var=$1 file_var="${1}_FILE"
    if [ -n "${!file_var:-}" ]; then
        [ -z "${!var:-}" ] || die "both $var and $file_var are set"
        [ -r "${!file_var}" ] || die "$file_var: cannot read ${!file_var}"
        printf -v "$var" '%s' "$(<"${!file_var}")"
        export "$var"
    fi
}

# password_ok: the spec §8 password rule, shared with the other database script.
. "${KOOISV_SCRIPT_LIB:-/usr/local/lib/kooisv}/password-rules.sh"

write_hba() {
    local net=host
    if [ -n "$tls_cert" ] && [ "${POSTGRES_TLS_OPTIONAL:-0}" != 1 ]; then net=hostssl; fi
    {
        echo "# written by docker-entrypoint.sh on every start; edits are lost"
        echo "local all all peer map=entrypoint"
        echo "$net all all all scram-sha-256"
        if [ "$net" = hostssl ]; then echo "hostnossl all all all reject"; fi
    } >"$PGDATA/pg_hba.conf"
    echo "entrypoint postgres $POSTGRES_USER" >"$PGDATA/pg_ident.conf"
}

run_init_scripts() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
        *.sh)
            echo "postgres-entrypoint: running $f"
            if [ -x "$f" ]; then "$f"; else . "$f"; fi
            ;;
        *.sql)
            echo "postgres-entrypoint: running $f"
            psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres -f "$f"
            ;;
        *) echo "postgres-entrypoint: ignoring $f" ;;
        esac
    done
}

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
shift

[ "$(id -u)" != 0 ] || die "refusing to run as root; run as postgres (uid 999)"
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGHOST=/var/run/postgresql
umask 077

tls_cert=
tls_key=
if [ -n "${POSTGRES_TLS_CERT_FILE:-}" ] || [ -n "${POSTGRES_TLS_KEY_FILE:-}" ]; then
    [ -r "${POSTGRES_TLS_CERT_FILE:-}" ] || die "POSTGRES_TLS_CERT_FILE: cannot read '${POSTGRES_TLS_CERT_FILE:-}'"
    [ -r "${POSTGRES_TLS_KEY_FILE:-}" ] || die "POSTGRES_TLS_KEY_FILE: cannot read '${POSTGRES_TLS_KEY_FILE:-}'"
    # PostgreSQL refuses a key readable by others; secrets are mounted as they are on the host,
    # so use a private copy outside the data volume.
    mkdir -p /var/lib/postgresql/tls
    cp "$POSTGRES_TLS_CERT_FILE" /var/lib/postgresql/tls/server.crt
    cp "$POSTGRES_TLS_KEY_FILE" /var/lib/postgresql/tls/server.key
    chmod 0600 /var/lib/postgresql/tls/server.key /var/lib/postgresql/tls/server.crt
    tls_cert=/var/lib/postgresql/tls/server.crt
    tls_key=/var/lib/postgresql/tls/server.key
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    file_env POSTGRES_PASSWORD
    [ -n "${POSTGRES_PASSWORD:-}" ] || die "POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required to initialise $PGDATA"
    why=$(password_ok "$POSTGRES_PASSWORD" "$POSTGRES_USER") || die "POSTGRES_PASSWORD: $why"
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    echo "postgres-entrypoint: initialising $PGDATA"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words by design
    initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    unset POSTGRES_PASSWORD
    write_hba
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=$PGHOST" start >/dev/null
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
            -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    run_init_scripts
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres-entrypoint: initialisation done"
fi

write_hba
args=(-c listen_addresses='*' -c unix_socket_directories="$PGHOST" -c password_encryption=scram-sha-256)
if [ -n "$tls_cert" ]; then
    args+=(-c ssl=on -c ssl_cert_file="$tls_cert" -c ssl_key_file="$tls_key" -c ssl_min_protocol_version=TLSv1.2)
fi
exec postgres -D "$PGDATA" "${args[@]}" "$@"
