#!/usr/bin/env bash
# billing-export-bench.sh: the one-million-row detail export, measured (a benchmark, not a test).
#
#   tests/bench/billing-export-bench.sh <build dir> [rows]      (default 1000000 rows)
#
# Needs a running suite or local runner whose env file it reads: <build>/suite/suite.env
# (tests/harness/suite.sh start <build>) or $KOOISV_ENV_FILE (e.g. .state/kooisv.env of
# `kooisv-local up`). Use a build without sanitizers (ASan doubles the time and the memory).
# It loads <rows> usage records of one new instance (generate_series, as the superuser), asks
# for that instance's detail export with kooisvctl, and prints the generation time (started_at
# to finished_at, as billing recorded it), rows, bytes, chunks, the billing process's peak RSS
# (VmHWM) before and after, and the download's time. The rows are deleted at the end.
set -euo pipefail
build=${1:?usage: $0 <build dir> [rows]}
rows=${2:-1000000}
env_file=${KOOISV_ENV_FILE:-$build/suite/suite.env}
[[ -r $env_file ]] || { echo "no env file $env_file (start a suite or set KOOISV_ENV_FILE)" >&2; exit 2; }
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
ctl=("$build/gateway/kooisvctl" --env-file "$env_file")
state=${KOOISV_STATE_DIR:-$build/suite}
pidfile=$state/run/billing.pid
[[ -r $pidfile ]] || { echo "no billing pid file $pidfile" >&2; exit 2; }
pid=$(cat "$pidfile")
hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$pid/status"; }
psql_super() { psql "$KOOISV_PG_SUPER_DSN" -v ON_ERROR_STOP=1 -qAt "$@"; }

inst="BENCH-$(date +%s)-$$"
echo "loading $rows usage records of instance $inst ..."
t0=$(date +%s.%N)
psql_super <<SQL
INSERT INTO billing.instances (instance_id, tenant_id, customer_id, product_id, sku_code,
  charging_mode, test_flag, state, created_at, updated_at)
VALUES ('$inst', 'bench-tenant', 'bench-customer', 'bench-product', 'bench-sku', 'PERIOD',
  false, 'active', now(), now());
INSERT INTO billing.usage_records (instance_id, client_record_id, quantity, used_begin, used_end,
  bucket_start, request_id)
SELECT '$inst', 'rec-' || g, 1.2500, t, t + interval '1 minute', date_trunc('hour', t), 'bench'
FROM (SELECT g, timestamptz '2026-10-01 00:00:00+00' + (g % 40000) * interval '1 minute' AS t
      FROM generate_series(1, $rows) g) s;
ANALYZE billing.usage_records;
SQL
echo "loaded in $(echo "$(date +%s.%N) - $t0" | bc) s; billing's peak RSS so far: $(hwm)"

t0=$(date +%s.%N)
doc=$("${ctl[@]}" billing export detail --from 2026-10-01 --to 2026-11-01 --instance "$inst" --wait)
wall=$(echo "$(date +%s.%N) - $t0" | bc)
id=$(jq -r .id <<<"$doc")
echo "$doc" | jq -c '{id, status, rows, bytes, chunks, started_at, finished_at, error}'
gen=$(psql_super -c "SELECT round(extract(epoch FROM finished_at - claimed_at)::numeric, 2)
                     FROM billing.exports WHERE id = '$id'")
echo "generation: $gen s (request to ready, as seen by kooisvctl: $wall s)"
echo "billing's peak RSS after the export: $(hwm)"

t0=$(date +%s.%N)
"${ctl[@]}" billing download "$id" -o /dev/null
echo "download: $(echo "$(date +%s.%N) - $t0" | bc) s"

psql_super -c "DELETE FROM billing.usage_records WHERE instance_id = '$inst';
               DELETE FROM billing.instances WHERE instance_id = '$inst'" >/dev/null
