#!/usr/bin/env bash
# usage-push-bench.sh: push throughput of billing against the marketplace emulator (a
# measurement, not a test). Starts a suite in <build>/suite (as CTest's suite_start does; do not
# run it while CTest uses that build), seals N usage records (N instances, one hour) at once by
# moving billing's test clock (KOOISV_BILLING_CLOCK_OFFSET_FILE) into the hour's window, times
# until the marketplace accepted them all, prints records/s, and stops the suite.
#   tests/harness/usage-push-bench.sh <build dir> [records, default 20000] [replicas 1|2]
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
build=$(readlink -f "${1:?usage: $0 <build dir> [records] [replicas]}")
records=${2:-20000}
replicas=${3:-1}
suite="$here/suite.sh"
state="$build/suite"

"$suite" start "$build" >/dev/null
pid2=
cleanup() {
    [[ -n $pid2 ]] && kill "$pid2" 2>/dev/null && wait "$pid2" 2>/dev/null
    "$suite" stop "$build" >/dev/null || true
}
trap cleanup EXIT
set -a
. "$state/suite.env"
set +a
sql() { psql "$KOOISV_PG_SUPER_DSN" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

now=$(date +%s)
hour=$(((now / 3600 - 3) * 3600))
prefix="BENCH$now"
# billing's clock inside the hour first: nothing is due while the rows are written
clock="$state/billing-clock-offset"
echo $((hour + 600 - now)) >"$clock"
chmod 0644 "$clock"
mkdir -p "$state/env"
printf 'KOOISV_BILLING_CLOCK_OFFSET_FILE=%s\nKOOISV_USAGE_POLL_MS=200\n' "$clock" \
    >"$state/env/billing.env"
chmod 0644 "$state/env/billing.env"
"$suite" restart "$build" billing >/dev/null

sql "INSERT INTO billing.instances (instance_id, charging_mode, test_flag, state, created_at,
       updated_at) SELECT '$prefix-' || g, 'ON_DEMAND', false, 'active', now(), now()
     FROM generate_series(1, $records) g"
sql "INSERT INTO billing.usage_records (instance_id, client_record_id, quantity, used_begin,
       used_end, bucket_start, request_id)
     SELECT '$prefix-' || g, 'r', 1.25, to_timestamp($hour + 60), to_timestamp($hour + 60),
       to_timestamp($hour), 'bench' FROM generate_series(1, $records) g"

if [[ $replicas == 2 ]]; then
    # a second replica: billing's own environment, another bind port
    mapfile -d '' envs <"/proc/$(cat "$state/run/billing.pid")/environ"
    keep=()
    for e in "${envs[@]}"; do [[ $e == KOOISV_BIND=* ]] || keep+=("$e"); done
    env -i "${keep[@]}" "KOOISV_BIND=tcp://127.0.0.1:$((20000 + $$ % 20000))" \
        "$build/services/billing/kooisv-billing" >>"$state/logs/billing2.log" 2>&1 &
    pid2=$!
    sleep 3
fi

calls0=$(curl -s --cacert "$KOOISV_CA_FILE" "$KOOISV_EMULATOR_URL/_emulator/calls" |
    sed -n 's/.*"usage-data":\([0-9]*\).*/\1/p')
start=$(date +%s.%N)
echo $((hour + 3600 + 330 - $(date +%s))) >"$clock.tmp" && mv "$clock.tmp" "$clock"
while :; do
    done_n=$(sql "SELECT count(*) FROM billing.usage_pushes WHERE instance_id LIKE '$prefix-%'
                  AND state = 'accepted'")
    ((done_n >= records)) && break
    sleep 0.1
done
end=$(date +%s.%N)
calls1=$(curl -s --cacert "$KOOISV_CA_FILE" "$KOOISV_EMULATOR_URL/_emulator/calls" |
    sed -n 's/.*"usage-data":\([0-9]*\).*/\1/p')
awk -v n="$records" -v s="$start" -v e="$end" -v c=$((${calls1:-0} - ${calls0:-0})) \
    -v r="$replicas" 'BEGIN { t = e - s; printf "usage push: %d records in %d requests, %d replica(s): %.2f s, %.0f records/s\n", n, c, r, t, n / t }'
