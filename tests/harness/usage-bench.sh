#!/usr/bin/env bash
# usage-bench.sh <env file> [calls] [parallel]: usage intake throughput (a benchmark, not a
# test). Sends <calls> POST /v1/usage calls of 1000 records each (default 40), <parallel> at a
# time (default 4, the per-token limit of calls in progress), with the meter token of the env
# file (a suite's suite.env or the runner's .state/kooisv.env), and prints records/s. Every
# record is new (fresh recordIds), so each call really stores 1000 rows. It needs a pay-per-use
# instance: it inserts one into billing.instances through KOOISV_PG_SUPER_DSN, so point it at a
# scratch installation only (the suite's, or a local `up`).
set -euo pipefail
env_file=$1
calls=${2:-40}
parallel=${3:-4}
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
: "${KOOISV_METER_TOKEN:?no KOOISV_METER_TOKEN in $env_file}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inst=bench-$(date +%s)-$$
psql -qAt "$KOOISV_PG_SUPER_DSN" -c "INSERT INTO billing.instances (instance_id, charging_mode,
    test_flag, state, created_at, updated_at) VALUES ('$inst', 'ON_DEMAND', false, 'active',
    now(), now())" >/dev/null
at=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
for ((c = 0; c < calls; c++)); do
    {
        printf '{"records":['
        for ((i = 0; i < 1000; i++)); do
            ((i)) && printf ','
            printf '{"instanceId":"%s","recordId":"c%d-%d","quantity":"1.5","usedAt":"%s"}' \
                "$inst" "$c" "$i" "$at"
        done
        printf ']}'
    } >"$work/body-$c.json"
done
# The token goes to curl through a file (-H @file), never on a command line.
printf 'Authorization: Bearer %s\nContent-Type: application/json\n' "$KOOISV_METER_TOKEN" \
    >"$work/headers"
export KOOISV_ADMIN_URL KOOISV_CA_FILE work
start=$(date +%s%N)
seq 0 $((calls - 1)) | xargs -P "$parallel" -I{} sh -c \
    'curl -sS --fail --cacert "$KOOISV_CA_FILE" -H @"$work/headers" \
        --data-binary @"$work/body-{}.json" "$KOOISV_ADMIN_URL/v1/usage" >"$work/out-{}"' ||
    { echo "usage-bench: a call failed" >&2; cat "$work"/out-* >&2; exit 1; }
end=$(date +%s%N)
stored=$(psql -qAt "$KOOISV_PG_SUPER_DSN" -c \
    "SELECT count(*) FROM billing.usage_records WHERE instance_id = '$inst'")
ms=$(((end - start) / 1000000))
echo "usage-bench: $calls calls x 1000 records, $parallel at a time: $stored stored in $ms ms," \
    "$((stored * 1000 / (ms > 0 ? ms : 1))) records/s"
