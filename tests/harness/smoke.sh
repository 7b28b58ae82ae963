#!/usr/bin/env bash
# smoke.sh <build dir>: the harness's own check, run inside the `suite` fixture: suite.env has
# every key the integration tests rely on, both gateways answer over verified TLS, an unsigned
# call is refused with a signed JSON answer, and a service comes back after a restart.
set -euo pipefail
build=$(readlink -f "$1")
env_file=$build/suite/suite.env
suite_sh=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/suite.sh
fail() {
    printf 'harness_smoke: FAIL: %s\n' "$*" >&2
    exit 1
}

[[ -r $env_file ]] || fail "$env_file missing"
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
for k in KOOISV_URL KOOISV_BASIC_KEY KOOISV_KIT_KEY KOOISV_CA_FILE KOOISV_ADMIN_URL \
    KOOISV_METRICS_URL KOOISV_OPERATOR_TOKEN KOOISV_OPERATOR_ROLE_TOKEN KOOISV_AUDITOR_TOKEN \
    KOOISV_PG_SUPER_DSN KOOISV_EMULATOR_URL KOOISV_RSA_PUBLIC_KEY_FILE KOOISV_GATEWAY2_URL \
    KOOISV_SUITE_DIR; do
    [[ -n ${!k:-} ]] || fail "$k is empty in $env_file"
done

# The file is sourced as README says: every value whole (a libpq string has spaces), nothing else
# defined (an unquoted "port=..." would become a variable of its own).
[[ $KOOISV_PG_SUPER_DSN == *" password="* ]] || fail "KOOISV_PG_SUPER_DSN is cut short when sourced"
for v in port dbname user password; do
    [[ -z ${!v+set} ]] || fail "sourcing $env_file defines \$$v"
done

for m in "$KOOISV_METRICS_URL" "$KOOISV_GATEWAY2_METRICS_URL"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$m/healthz") || true
    [[ $code == 200 ]] || fail "$m/healthz answered $code"
done

# An unsigned basic call: HTTP 200, a JSON verdict that is not success, and a Body-Sign header.
for url in "$KOOISV_URL" "$KOOISV_GATEWAY2_URL"; do
    hdr=$(mktemp)
    body=$(curl -sS --cacert "$KOOISV_CA_FILE" --max-time 10 -D "$hdr" -H 'Content-Type: application/json' \
        -d '{"activity":"newInstance","orderId":"o","orderLineId":"l","businessId":"b"}' "$url") ||
        fail "POST $url failed (TLS verified with $KOOISV_CA_FILE)"
    status=$(head -n 1 "$hdr" | awk '{print $2}')
    sign=$(grep -i '^Body-Sign:' "$hdr" || true)
    rm -f "$hdr"
    [[ $status == 200 ]] || fail "unsigned call to $url: HTTP $status"
    [[ $body == *'"resultCode"'* && $body != *'"000000"'* ]] || fail "unsigned call to $url answered $body"
    [[ $sign == *'sign_type="HMAC-SHA256"'* ]] || fail "no Body-Sign header from $url"
done

# A service killed and started again serves again (the harness's per-process verbs work).
"$suite_sh" kill "$build" tenant
"$suite_sh" start-svc "$build" tenant
"$suite_sh" restart "$build" order
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$KOOISV_METRICS_URL/healthz") || true
[[ $code == 200 ]] || fail "healthz after restarts answered $code"
echo "harness_smoke: ok"
