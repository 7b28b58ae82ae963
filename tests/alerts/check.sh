#!/usr/bin/env bash
# alerts: the Prometheus alert rules (deploy/prometheus/kooisv-alerts.yml) against a running
# suite. 1. promtool checks the rules and runs their unit tests (kooisv-alerts.test.yml: each
# alert fires under its condition, silent otherwise). 2. Every series the rules name, and every
# label they match on, is in the suite gateway's real /metrics (its own series and the services'
# through it). 3. The values mean what the rules assume: after an operator's verify the audit
# chain series say verified and when; the provisioning job counts equal the orders.jobs table;
# the certificate expiry equals the suite certificate's notAfter. Exit 77 (skip) without
# promtool (Debian package prometheus).
#   tests/alerts/check.sh <build dir>
set -uo pipefail
build=${1:?usage: check.sh <build dir>}
repo=$(cd "$(dirname "$0")/../.." && pwd)
rules=$repo/deploy/prometheus/kooisv-alerts.yml
fails=0
fail() {
    echo "alerts: FAIL: $*"
    fails=$((fails + 1))
}
ok() { echo "alerts: ok: $*"; }

if ! command -v promtool >/dev/null; then
    echo "alerts: SKIP: promtool not installed (apt-get install prometheus)"
    exit 77
fi
out=$(promtool check rules "$rules" 2>&1) && ok "promtool check rules" || fail "promtool check rules: $out"
out=$(cd "$repo/deploy/prometheus" && promtool test rules kooisv-alerts.test.yml 2>&1) &&
    ok "promtool test rules" || fail "promtool test rules: $out"

set -a
# shellcheck disable=SC1091
. "$build/suite/suite.env" || exit 1
set +a

# An operator's verify (recorded by the gateway as admin.audit.verify with its outcome), and an
# unsigned call (answered 000002), so that the series the rules read have values to compare.
curl -sf --cacert "$KOOISV_CA_FILE" -X POST -H "Authorization: Bearer $KOOISV_AUDITOR_TOKEN" \
    "$KOOISV_ADMIN_URL/v1/audit/verify" >/dev/null || fail "POST /v1/audit/verify"
curl -sf --cacert "$KOOISV_CA_FILE" -H 'Content-Type: application/json' \
    -d '{"activity":"queryInstance","instanceId":"alerts-check"}' "$KOOISV_URL" >/dev/null ||
    fail "unsigned call"
scrape=$(curl -sf "$KOOISV_METRICS_URL/metrics") || { fail "GET /metrics"; exit 1; }
series=$(printf '%s\n' "$scrape" | grep -v '^#')

# 2. names and labels: the rules' text without comments
expr_text=$(grep -v '^ *#' "$rules")
for name in $(printf '%s\n' "$expr_text" | grep -o 'kooisv_[a-z0-9_]*' | sort -u); do
    printf '%s\n' "$series" | grep -Eq "^$name(\{| )" || fail "rules read $name, which /metrics lacks"
done
# name{label="v"} / {label=~"..."} / {label!~"..."}: the label is on the series; with = and a
# plain value, a series with that value exists.
while IFS= read -r m; do
    name=${m%%\{*}
    body=${m#*\{}
    body=${body%\}}
    IFS=, read -ra parts <<<"$body"
    for p in "${parts[@]}"; do
        label=${p%%[=!]*}
        label=${label// /}
        value=${p#*\"}
        value=${value%\"}
        printf '%s\n' "$series" | grep -E "^$name\{" | grep -q "[{,]$label=\"" ||
            fail "$name has no label $label"
        if [[ $p =~ ^[a-z_]+=\" && $name != kooisv_requests_total ]]; then
            printf '%s\n' "$series" | grep -E "^$name\{" | grep -q "[{,]$label=\"$value\"" ||
                fail "$name has no series with $label=\"$value\""
        fi
    done
done < <(printf '%s\n' "$expr_text" | grep -o 'kooisv_[a-z0-9_]*{[^}]*}' | sort -u)
[ "$fails" = 0 ] && ok "every series and label the rules read is exposed"

value() { printf '%s\n' "$series" | grep -E "^$1 " | head -1 | awk '{ print $2 }'; }

# 3. the values
v=$(value 'kooisv_audit_chain_verify_ok\{service="audit"\}')
[ "$v" = 1 ] && ok "audit chain verified after the verify" || fail "kooisv_audit_chain_verify_ok is '$v', not 1"
t=$(value 'kooisv_audit_chain_last_verify_timestamp_seconds\{service="audit"\}')
now=$(date +%s)
if [ -n "$t" ] && awk -v t="$t" -v n="$now" 'BEGIN { exit !(t > n - 300 && t <= n + 5) }'; then
    ok "audit chain verified $((now - ${t%.*})) s ago"
else
    fail "kooisv_audit_chain_last_verify_timestamp_seconds is '$t', now is $now"
fi
for st in pending running failed; do
    want=$(psql "$KOOISV_PG_SUPER_DSN" -XAtc "SELECT count(*) FROM orders.jobs WHERE state = '$st'")
    got=$(value "kooisv_provisioning_jobs\\{service=\"order\",state=\"$st\"\\}")
    [ "${got%.*}" = "$want" ] && ok "$st jobs: $want" || fail "kooisv_provisioning_jobs{state=$st} is '$got', the table has $want"
done
want=$(psql "$KOOISV_PG_SUPER_DSN" -XAtc "SELECT count(*) FROM orders.outbox WHERE status = 'failed'")
got=$(printf '%s\n' "$series" | grep -E '^kooisv_outbox_failed\{' | grep 'service="order"' | awk '{ print $2 }')
[ "${got%.*}" = "$want" ] && ok "order dead letters: $want" ||
    fail "kooisv_outbox_failed{service=order} is '$got', the table has $want"
want=$(date -d "$(openssl x509 -noout -enddate -in "$(dirname "$KOOISV_CA_FILE")/server.crt" | cut -d= -f2)" +%s)
got=$(value 'kooisv_tls_certificate_expiry_timestamp_seconds\{listener="marketplace"\}')
[ "$got" = "$want" ] && ok "certificate expiry $got" || fail "certificate expiry is '$got', the certificate says $want"

if [ "$fails" = 0 ]; then
    echo "alerts: all checks passed"
    exit 0
fi
echo "alerts: $fails check(s) failed"
exit 1
