#!/usr/bin/env bash
# audit-start.sh <build dir>: kooisv-audit fails closed at start, inside the `suite` fixture
# (its database migrated and sealed by the runner's kooisv-audit --migrate):
#  - it refuses to serve when given the schema owner's connection (KOOISV_PG_MIGRATE_DSN), or
#    when KOOISV_PG_DSN is the owner's (its role could lift the append-only triggers);
#  - it refuses a chain key other than the one the trail's epoch was sealed with;
#  - --migrate without the owner's connection fails; with it, a second run changes nothing.
# Each refusal is one line naming the reason, and nothing is served.
set -euo pipefail
build=$(readlink -f "$1")
repo=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../..
. "$repo/deploy/local/lib.sh"
kv_state_init "$build/suite" "$build" suite
fail() {
    printf 'audit_start: FAIL: %s\n' "$*" >&2
    exit 1
}
bin=$(kv_bin audit)
s=$KV_SECRETS
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# A free port that must stay free: nothing may bind it.
port=$((20000 + RANDOM % 20000))
while kv_port_busy "$port"; do port=$((port + 1)); done

# run <expected message> NAME=VALUE...: kooisv-audit with exactly that environment must exit
# non-zero with the message on its output.
run() {
    local want=$1 out rc=0
    shift
    # Valid ZeroMQ keys (the suite's own): what is refused is the database side.
    out=$(cd / && env -i PATH=/usr/bin:/bin KOOISV_BIND="tcp://127.0.0.1:$port" KOOISV_PG_WAIT_S=0 \
        "KOOISV_CURVE_SECRET_KEY_FILE=$s/curve-audit.key" \
        "KOOISV_CURVE_CLIENTS=$(kv_curve_public gateway)" "$@" "$bin" 2>&1 </dev/null) || rc=$?
    ((rc != 0)) || fail "kooisv-audit started with $* (expected: $want)"
    grep -qF -- "$want" <<<"$out" || fail "with $*: expected \"$want\", got: $out"
    kv_port_busy "$port" && fail "something bound port $port"
    return 0
}
key=KOOISV_AUDIT_CHAIN_KEY_FILE=$s/audit-chain-key
run "refusing to serve with KOOISV_PG_MIGRATE_DSN set" "KOOISV_PG_DSN_FILE=$s/pg-kooisv_audit.dsn" \
    "KOOISV_PG_MIGRATE_DSN_FILE=$s/pg-kooisv_audit_owner.dsn" "$key"
run "refusing to serve: KOOISV_PG_DSN's role owns schema audit" \
    "KOOISV_PG_DSN_FILE=$s/pg-kooisv_audit_owner.dsn" "$key"
printf 'another-Chain-key-0123456789\n' >"$scratch/key"
run "does not match KOOISV_AUDIT_CHAIN_KEY" "KOOISV_PG_DSN_FILE=$s/pg-kooisv_audit.dsn" \
    "KOOISV_AUDIT_CHAIN_KEY_FILE=$scratch/key"
printf 'short\n' >"$scratch/weak"
run "KOOISV_AUDIT_CHAIN_KEY" "KOOISV_PG_DSN_FILE=$s/pg-kooisv_audit.dsn" \
    "KOOISV_AUDIT_CHAIN_KEY_FILE=$scratch/weak"
run "KOOISV_AUDIT_CHAIN_KEY" "KOOISV_PG_DSN_FILE=$s/pg-kooisv_audit.dsn"
out=$(cd / && env -i PATH=/usr/bin:/bin "$key" "$bin" --migrate 2>&1) &&
    fail "--migrate without KOOISV_PG_MIGRATE_DSN succeeded"
grep -qF "KOOISV_PG_MIGRATE_DSN is not set" <<<"$out" || fail "--migrate without the owner: $out"
out=$(cd / && env -i PATH=/usr/bin:/bin "$key" \
    "KOOISV_PG_MIGRATE_DSN_FILE=$s/pg-kooisv_audit_owner.dsn" "$bin" --migrate 2>&1) ||
    fail "a second --migrate failed: $out"
grep -qE 'applied|sealed' <<<"$out" && fail "a second --migrate changed something: $out"
echo "audit_start: ok"
