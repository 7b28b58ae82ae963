#!/usr/bin/env bash
# gen-secrets.sh: create the files docker-compose.yml mounts as Docker secrets, in
# deploy/docker/secrets/ (git-ignored; directory 0700). Random keys and passwords, a development
# CA with a gateway and a PostgreSQL certificate, the RSA key pair for clientSecret, operator tokens.
# Existing files are never overwritten: delete one to regenerate it, or replace a generated value
# with the real one (the seller keys from the seller console, the marketplace AK/SK, a real
# certificate, a managed PostgreSQL's CA and DSNs). Run it again after changing any setting below.
#
# Environment:
#   KOOISV_SECRETS_DIR   where to write (default: deploy/docker/secrets next to this script)
#   KOOISV_TLS_SAN       extra subjectAltName entries of the gateway certificate, e.g.
#                        "DNS:isv.example.com,IP:203.0.113.7" (always: localhost, 127.0.0.1,
#                        gateway, emulator)
#   KOOISV_PG_HOST       PostgreSQL host in the DSNs (default postgres, the compose service)
#   KOOISV_PG_PORT       (default 5432)
#   KOOISV_PG_DATABASE   (default kooisv)
#   KOOISV_PG_SSLMODE    libpq sslmode in the DSNs (default verify-full)
#
# Files (each a Docker secret of the same name unless noted):
#   basic-key kit-key            seller keys (basic interfaces / kit sync): REPLACE with the console's
#   data-key                     64 hex digits: at-rest encryption key (sealbox)
#   marketplace-ak marketplace-sk  credentials for calls to the marketplace: REPLACE with real ones
#   admin-tokens                 "name role sha256hex" lines: operator tokens, hashes only
#   token-<name>                 the plain operator tokens (only the kooisvctl tool service mounts them)
#   rsa-private.pem              clientSecret decryption key (app); rsa-public.pem goes to the console
#   license-private.pem          Ed25519 key signing licenses (order); license-public.pem goes to
#                                the seller's software, which verifies licenses with it
#   ca.crt tls-ca.key            development CA (the key stays here, never mounted)
#   server.crt tls-server.key    gateway certificate (chain: server-chain.crt) and key
#   pg-server.crt pg-server.key  PostgreSQL server certificate and key
#   pg-ca.crt                    CA the services trust for PostgreSQL (a managed service's CA)
#   pg-super.password            PostgreSQL superuser (db-init and the postgres container only)
#   pg-kooisv_<role>.password    per-role login passwords (db-init sets them)
#   pg-kooisv_<svc>.dsn          each service's libpq connection string; pg-kooisv_audit_owner.dsn
#                                only for the one-shot audit-migrate container
#   audit-chain-key              HMAC key of the audit hash chain (audit, audit-migrate): keep a
#                                copy off the host; without it the trail can no longer be verified
#   curve-<p>.key curve-<p>.pub  CURVE key pair of the ZeroMQ plane (gateway, order, tenant, app,
#                                audit, billing; deploy/curve-keygen.sh); .pub is public,
#                                re-derived each run; every service admits curve-gateway.pub
#                                (KOOISV_CURVE_CLIENTS_FILE), order also curve-billing.pub as a
#                                system client (KOOISV_CURVE_SYSTEM_CLIENTS_FILE)
set -euo pipefail
umask 077

here=$(cd "$(dirname "$0")" && pwd)
dir=${KOOISV_SECRETS_DIR:-$here/secrets}
pg_host=${KOOISV_PG_HOST:-postgres}
pg_port=${KOOISV_PG_PORT:-5432}
pg_db=${KOOISV_PG_DATABASE:-kooisv}
pg_sslmode=${KOOISV_PG_SSLMODE:-verify-full}
# "emulator": the development marketplace (compose profile emulator) serves the same certificate.
gw_san="DNS:localhost,IP:127.0.0.1,DNS:gateway,DNS:emulator${KOOISV_TLS_SAN:+,$KOOISV_TLS_SAN}"
# DSN per login role a process uses: the five services, and the audit schema's owner, as which
# the one-shot audit-migrate container applies the audit migrations (KOOISV_PG_MIGRATE_DSN).
dsn_roles=(order tenant app audit billing audit_owner)
roles=(kooisv_order kooisv_tenant kooisv_app kooisv_billing kooisv_audit kooisv_audit_owner kooisv_auditor)

command -v openssl >/dev/null || { echo "gen-secrets.sh: openssl is required" >&2; exit 1; }
mkdir -p "$dir"
chmod 0700 "$dir"

say() { printf 'gen-secrets: %s\n' "$*"; }

# kv_rand_alnum N, kv_rand_hex N (shared with deploy/local/lib.sh).
# shellcheck source=deploy/rand-secret.sh
. "$here/../rand-secret.sh"

# put <name> <value>: write the file unless it exists (printf is a builtin: no command line).
put() {
    local f=$dir/$1
    [[ -s $f ]] && return 0
    printf '%s\n' "$2" >"$f.tmp"
    mv "$f.tmp" "$f"
    say "created $1"
}

put basic-key "$(kv_rand_alnum 32)"
put kit-key "$(kv_rand_alnum 32)"
put data-key "$(kv_rand_hex 32)"
put webhook-secret "$(kv_rand_alnum 40)"
put audit-chain-key "$(kv_rand_alnum 40)"
put marketplace-ak "$(kv_rand_alnum 20 | tr a-z A-Z)"
put marketplace-sk "$(kv_rand_alnum 40)"
put pg-super.password "$(kv_rand_alnum 32)"
for r in "${roles[@]}"; do put "pg-$r.password" "$(kv_rand_alnum 32)"; done

# Operator tokens: the gateway gets only their SHA-256; the plain tokens stay in this folder.
if [[ ! -s $dir/admin-tokens ]] || ! grep -q '^meter meter ' "$dir/admin-tokens"; then
    for t in admin operator auditor meter; do put "token-$t" "$(kv_rand_hex 32)"; done
    for t in admin operator auditor meter; do
        printf '%s %s %s\n' "$t" "$t" "$(tr -d '\n' <"$dir/token-$t" | openssl dgst -sha256 -r | cut -d' ' -f1)"
    done >"$dir/admin-tokens.tmp"
    mv "$dir/admin-tokens.tmp" "$dir/admin-tokens"
    say "created admin-tokens (plain tokens in token-admin, token-operator, token-auditor, token-meter)"
fi

if [[ ! -s $dir/rsa-private.pem ]]; then
    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$dir/rsa-private.pem.tmp"
    mv "$dir/rsa-private.pem.tmp" "$dir/rsa-private.pem"
    say "created rsa-private.pem"
fi
openssl pkey -in "$dir/rsa-private.pem" -pubout -out "$dir/rsa-public.pem.tmp"
mv -f "$dir/rsa-public.pem.tmp" "$dir/rsa-public.pem"

if [[ ! -s $dir/license-private.pem ]]; then
    openssl genpkey -algorithm ed25519 -out "$dir/license-private.pem.tmp"
    mv "$dir/license-private.pem.tmp" "$dir/license-private.pem"
    say "created license-private.pem"
fi
openssl pkey -in "$dir/license-private.pem" -pubout -out "$dir/license-public.pem.tmp"
mv -f "$dir/license-public.pem.tmp" "$dir/license-public.pem"

# ---- development CA and leaf certificates (ECDSA P-256) ----
if [[ ! -s $dir/tls-ca.key || ! -s $dir/ca.crt ]]; then
    openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/tls-ca.key"
    openssl req -x509 -new -key "$dir/tls-ca.key" -sha256 -days 3650 \
        -subj "/CN=kooisv docker dev CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.crt" 2>/dev/null
    rm -f "$dir/server.crt" "$dir/pg-server.crt"
    say "created the development CA (ca.crt, tls-ca.key)"
fi

# leaf <cert> <key> <cn> <san>: (re)issue when missing, expiring within 30 days, or names changed.
leaf() {
    local crt=$dir/$1 key=$dir/$2 cn=$3 san=$4
    if [[ -s $crt && -s $key && -s $crt.san && $(<"$crt.san") == "$san" ]] &&
        openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null; then
        return 0
    fi
    if ! openssl x509 -in "$crt" -noout -issuer 2>/dev/null | grep -q "kooisv docker dev CA" &&
        [[ -s $crt ]]; then
        say "keeping $1: not issued by the development CA (yours to renew)"
        return 0
    fi
    [[ -s $key ]] || openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key"
    rm -f "$crt.ext"
    printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$crt.ext"
    openssl req -new -key "$key" -subj "/CN=$cn" 2>/dev/null |
        openssl x509 -req -CA "$dir/ca.crt" -CAkey "$dir/tls-ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days 397 -sha256 -extfile "$crt.ext" \
            -out "$crt.tmp" 2>/dev/null
    mv -f "$crt.tmp" "$crt"
    rm -f "$crt.ext"
    rm -f "$crt.san"
    printf '%s\n' "$san" >"$crt.san"
    say "issued $1 for $san"
}
leaf server.crt tls-server.key localhost "$gw_san"
cat "$dir/server.crt" "$dir/ca.crt" >"$dir/server-chain.crt.tmp"
mv -f "$dir/server-chain.crt.tmp" "$dir/server-chain.crt"
leaf pg-server.crt pg-server.key "$pg_host" "DNS:$pg_host,DNS:localhost"
[[ -s $dir/pg-ca.crt ]] || { cp "$dir/ca.crt" "$dir/pg-ca.crt"; say "created pg-ca.crt (the dev CA)"; }

# ---- CURVE key pairs of the ZeroMQ plane: a service admits the gateway; order also billing, as a
# system client that may only pull the order events ----
for p in gateway order tenant app audit billing; do
    [[ -s $dir/curve-$p.key ]] || say "created curve-$p.key"
    "$here/../curve-keygen.sh" "$dir/curve-$p.key" "$dir/curve-$p.pub"
done
# The client lists of earlier versions gave billing (and, at audit, every service) the gateway's
# rights: gone.
rm -f "$dir/curve-audit-clients" "$dir/curve-order-clients"

# ---- connection strings: rewritten every run so host/port/sslmode changes apply ----
for s in "${dsn_roles[@]}"; do
    pw=$(head -n 1 "$dir/pg-kooisv_$s.password")
    printf 'host=%s port=%s dbname=%s user=kooisv_%s password=%s sslmode=%s sslrootcert=/run/secrets/pg-ca.crt connect_timeout=5 application_name=kooisv-%s\n' \
        "$pg_host" "$pg_port" "$pg_db" "$s" "$pw" "$pg_sslmode" "${s/_/-}" >"$dir/pg-kooisv_$s.dsn.tmp"
    if cmp -s "$dir/pg-kooisv_$s.dsn.tmp" "$dir/pg-kooisv_$s.dsn"; then
        rm -f "$dir/pg-kooisv_$s.dsn.tmp"
    else
        mv "$dir/pg-kooisv_$s.dsn.tmp" "$dir/pg-kooisv_$s.dsn"
        say "wrote pg-kooisv_$s.dsn"
    fi
done

# Docker bind-mounts secret files with their host owner and mode, and the containers run as
# uid 10001 (kooisv) and 999 (postgres): the files are readable inside the 0700 folder, which is
# what keeps other host users out. Keys that are never mounted stay owner-only.
chmod 0444 "$dir"/*
chmod 0400 "$dir/tls-ca.key"
say "secrets in $dir"
