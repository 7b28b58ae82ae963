#!/usr/bin/env bash
# tools/bench/query-times.sh ENV_FILE BUILD [RUNS]: how long `kooisvctl audit query` takes, the
# whole command (process start, TLS to the admin API, the gateway, the audit service and
# PostgreSQL), RUNS (7) times each, median and slowest in ms, and the median of the gateway's
# own time for the same calls (from their audit outcomes: without the client's start and TLS), for
#   one resource   --resource grow-inst-0000042 (an instance of tools/bench/grow.sh)
#   one hour       --from/--to one hour 180 days ago (in the grown year)
#   one old hour   --from/--to one hour 360 days ago
#   the newest     no filter (the default page)
#   verify, whole  audit verify --checkpoint FILE without FILE: the whole chain, once
#   verify, new    the same again: only the entries appended since (the incremental check)
# each with --limit 100. Numbers, not a test.
set -euo pipefail
env_file=${1:?usage: query-times.sh ENV_FILE BUILD [RUNS]}
build=${2:?usage: query-times.sh ENV_FILE BUILD [RUNS]}
runs=${3:-7}
ctl=("$build/gateway/kooisvctl" --env-file "$env_file")
now_h=$(($(date +%s) / 3600 * 3600))
hour() { date -u -d "@$((now_h - $1 * 86400))" +%Y-%m-%dT%H:00:00Z; }
hour_to() { date -u -d "@$((now_h - $1 * 86400 + 3600))" +%Y-%m-%dT%H:00:00Z; }
checkpoint=$(mktemp)
rm -f "$checkpoint"
time_one() {
    local name=$1 i t0 t1 n ms=()
    shift
    for ((i = 0; i < runs; i++)); do
        t0=$(date +%s%N)
        "$@" >/tmp/query-times.$$ 2>&1 || { cat /tmp/query-times.$$ >&2; rm -f /tmp/query-times.$$; exit 1; }
        t1=$(date +%s%N)
        ms+=($(((t1 - t0) / 1000000)))
    done
    n=$(grep -c . /tmp/query-times.$$ || true)
    rm -f /tmp/query-times.$$
    # The gateway's own time for those calls (received to answered), from their audit outcomes;
    # the newest entry of the event is this look-up itself, still without an outcome.
    local event=admin.audit.query server
    [[ $name == verify* ]] && event=admin.audit.verify
    server=$("${ctl[@]}" audit query --event "$event" --limit "$((runs + 1))" --json |
        jq -r '.entries[1:][] | .outcome.latency_us // empty' | sort -n |
        sed -n "$((runs / 2 + 1))p")
    printf '%-14s median %6d ms  max %6d ms  gateway median %6.1f ms  (%d runs, %d lines of output)\n' \
        "$name" "$(printf '%s\n' "${ms[@]}" | sort -n | sed -n "$((runs / 2 + 1))p")" \
        "$(printf '%s\n' "${ms[@]}" | sort -n | tail -n 1)" "$(bc <<<"scale=1; ${server:-0} / 1000")" \
        "$runs" "$n"
}
time_one "one resource" "${ctl[@]}" audit query --resource grow-inst-0000042 --limit 100
time_one "one hour" "${ctl[@]}" audit query --from "$(hour 180)" --to "$(hour_to 180)" --limit 100
time_one "one old hour" "${ctl[@]}" audit query --from "$(hour 360)" --to "$(hour_to 360)" --limit 100
time_one "the newest" "${ctl[@]}" audit query --limit 100
# The whole chain once (it leaves the checkpoint; minutes at 10 million entries, skipped with
# QUERY_TIMES_NO_VERIFY=1), then only what was appended since.
[[ ${QUERY_TIMES_NO_VERIFY:-} == 1 ]] && exit 0
runs_all=$runs
runs=1 time_one "verify, whole" "${ctl[@]}" audit verify --checkpoint "$checkpoint"
runs=$runs_all time_one "verify, new" "${ctl[@]}" audit verify --checkpoint "$checkpoint"
rm -f "$checkpoint" "$checkpoint.tmp"
